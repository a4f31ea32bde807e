"""Silver: every hospital's bronze rows in one Common Data Model, checked and historised.

For each model of ``transforms/silver/silver.yml``, in order:

1. **stage**: bronze batches this entity has not processed yet, from every
   datasource that has the table, renamed to CDM columns by the config mapping;
2. **model**: the entity's SQL file (typing, trimming, vocabularies, surrogate keys);
3. **dedupe**: exact repeats dropped; rows that share key and modified time but differ
   in content are all kept and fail ``unique_key`` (a ``full`` entity keeps the good row
   it already held for that key);
4. **quality**: each rule's predicate evaluated into ``dq_failures`` / ``dq_warnings``;
5. **commit** by history: ``full`` replaces a datasource's rows, ``upsert`` merges by key
   when content changed, ``scd2`` closes current versions and opens new ones;
6. the processed batch ids are recorded in ``_state/silver_batches``.

Each entity is one Delta commit (or none), and re-processing a batch changes
nothing, so a run killed anywhere can simply run again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from rcmlake import faults
from rcmlake.config.models import ProjectConfig
from rcmlake.engines.base import EngineSession, quote_ident, quote_literal, timestamp
from rcmlake.errors import EngineError, RcmlakeError, SchemaDriftError
from rcmlake.layers.bronze import CODESET_TABLES, feed_paths
from rcmlake.layers.context import RunContext
from rcmlake.storage.audit import LoadRecord
from rcmlake.storage.delta import is_maintenance, kept_keys
from rcmlake.storage.lake_types import UTC_TS
from rcmlake.transforms import (
    CODESETS,
    Model,
    cdm_types,
    column_expr,
    effective_rules,
    mapping,
    models,
    rules_fingerprint,
    tracked,
)
from rcmlake.transforms.check import empty_silver

STATE_PATH = "_state/silver_batches"
REQUALIFIED_PATH = "_state/requalified"  # what each entity's quarantine was last re-checked against
UNIQUE_KEY = "unique_key"
STAMP = "stamp"  # commit metadata: the ``_updated_at`` of the rows a key-preserving write wrote
LINEAGE = ("datasource", "_batch_id", "_ingested_at", "_row_hash", "source_modified_at")


def silver_path(entity: str) -> str:
    return f"silver/{entity}"


def inputs(config: ProjectConfig, m: Model) -> list[tuple[str, str]]:
    """(datasource, bronze path) of every bronze table that feeds model ``m``."""
    found = []
    for ds, source in config.sources.items():
        found += [
            (ds, f"bronze/{ds}/{t.target_name}") for t in source.tables if t.entity_name == m.source
        ]
    for name, feed in config.files.items():
        for ds in feed.patterns:
            found += [(ds, p) for p in feed_paths(ds, name, feed) if p.endswith(f"/{m.source}")]
    if m.source in CODESET_TABLES:
        found.append((CODESETS, f"bronze/{CODESETS}/{m.source}"))
    return found


def processed(ctx: RunContext) -> pa.Table:
    return ctx.lake.read(STATE_PATH) or pa.table(
        {
            "entity": pa.array([], pa.string()),
            "datasource": pa.array([], pa.string()),
            "batch_id": pa.array([], pa.string()),
            "run_id": pa.array([], pa.string()),
            "processed_at": pa.array([], UTC_TS),
        }
    )


def register_silver(s: EngineSession, ctx: RunContext, needed: str | None = None) -> None:
    """Current silver tables as ``silver.<entity>`` for rules that look up other entities;
    with ``needed`` (SQL text), only the entities it names, so each open is paid for once."""
    empty = empty_silver()
    for m in models("silver"):
        if needed is not None and f"silver.{m.name}" not in needed:
            continue
        # an entity with no data yet (NPI enrichment off, no 835 files) reads as an empty
        # table of the schema its model builds
        s.read_lake(f"silver.{m.name}", ctx.lake, silver_path(m.name), empty=empty[m.name])


def stage(s: EngineSession, ctx: RunContext, m: Model, seen: pa.Table) -> list[tuple[str, str]]:
    """Create temp table ``stage`` from unprocessed bronze batches; returns (datasource, batch_id) staged."""
    parts, staged = [], []
    s.register("seen", seen)
    for ds, path in inputs(ctx.config, m):
        rel = f"bronze_{ds}_{m.source}"
        if not s.read_lake(rel, ctx.lake, path):
            continue
        fresh = s.sql(
            f"SELECT DISTINCT _batch_id FROM {rel} WHERE _batch_id NOT IN "
            f"(SELECT batch_id FROM seen WHERE entity = '{m.name}' AND datasource = '{ds}')"
        )
        batches = fresh.column(0).to_pylist()
        if not batches:
            continue
        staged += [(ds, b) for b in batches]
        parts.append(_typed_select(s, ctx, m, ds, rel, list(s.columns(rel)), batches))
    if parts:
        s.union_all_by_name("stage0", parts)
        _stage_view(s, ctx)
    return staged


def _stage_view(
    s: EngineSession, ctx: RunContext, hashed: bool = True, rows: str = "stage0"
) -> None:
    """View ``stage``: ``rows`` (the staged rows, or those ``_newest_rows`` kept) with
    ``_row_hash``, the md5 of its CDM columns (or, not ``hashed``, NULL: for a pass that
    needs the keys alone, see ``_newest_rows``)."""
    cdm = [c for c in s.columns(rows) if c not in LINEAGE]
    row_hash = ctx.engine.row_hash(cdm) if hashed else "CAST(NULL AS VARCHAR)"
    s.execute(f"CREATE OR REPLACE TEMP VIEW stage AS SELECT *, {row_hash} AS _row_hash FROM {rows}")


def _typed_select(
    s: EngineSession,
    ctx: RunContext,
    m: Model,
    ds: str,
    rel: str,
    columns: list[str],
    batches: list[str],
) -> str:
    """The unprocessed rows of one datasource as CDM columns, each typed by a safe cast.

    Sources type columns as they like (all-text staging schemas, REAL money, dates as
    ``MM/DD/YYYY``), so silver types every CDM column itself: a value that does not parse
    becomes NULL, and the column's name (never the value: it may be PHI) goes into ``cast_errors`` (rule ``values_typed``).
    """
    mapped = mapping(ctx.config, ds, m.name)
    # columns bronze gained in a later version (``added:`` in silver.yml): a table written
    # before has no such column, and its rows read it as NULL (the model computes it then)
    added = set(m.spec.get("added", []))
    select = ", ".join(
        f"{_NO_VALUE if k in added and v not in columns else column_expr(v, columns, f'{ds}.{m.source}')}"
        f' AS "{k}"'
        for k, v in mapped.items()
    )
    view = f"raw_{ds}_{m.name}"
    # the unprocessed batches by name: a list of constants reaches the Parquet scan, which
    # skips the row groups of processed batches (a join with ``seen`` read every column of
    # every row of the table first)
    fresh = ", ".join(quote_literal(b) for b in batches)
    try:
        s.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select}, _batch_id, _ingested_at "
            f"FROM {rel} WHERE _batch_id IN ({fresh})"
        )
    except EngineError:
        _name_the_mapping(s, mapped, columns, rel, f"{ds}.{m.source}")
        raise
    raw_types = s.columns(view)
    source = ctx.config.sources.get(ds)
    zone = getattr(source, "timezone", None)
    types = cdm_types(m)
    watermarks = {
        t.watermark
        for t in getattr(source, "tables", [])
        if t.load_type == "incremental" and t.entity_name == m.source
    }
    typed, errors = [], []
    for col in mapped:
        target = types.get(col, "text")
        expr = ctx.engine.safe_cast(
            f'"{col}"', raw_types[col], target, zone if target == "timestamp" else None
        )
        if col == "source_modified_at" and mapped[col] in watermarks:
            # a row without a watermark is dated by when rcmlake first saw that content, so
            # it orders after what was known before (bronze re-reads and reports such rows)
            expr = f"coalesce({expr}, CAST(_ingested_at AS TIMESTAMP))"
        typed.append(f'{expr} AS "{col}"')
        if target not in ("text", "raw"):
            errors.append(ctx.engine.cast_error(col, f'"{col}"', raw_types[col], expr))
    found = ctx.engine.list_of_present([e for e in errors if e])
    if "cast_errors" in mapped:  # errors the landing file reader already found
        typed = [t for t in typed if not t.endswith('AS "cast_errors"')]
        found = f'list_concat(coalesce("cast_errors", CAST([] AS VARCHAR[])), {found})'
    return (
        f"SELECT '{ds}' AS datasource, {', '.join(typed)}, {found} AS cast_errors, "
        f"_batch_id, _ingested_at FROM {view}"
    )


_NO_VALUE = "CAST(NULL AS VARCHAR)"  # typed, so the safe cast to the CDM type applies


def _name_the_mapping(
    s: EngineSession, mapped: dict[str, str], columns: list[str], rel: str, where: str
) -> None:
    """Raise naming the mapping expression that does not bind to bronze's columns (the
    engine's own message has its names scrubbed)."""
    for col, value in mapped.items():
        try:
            s.execute(f"SELECT {column_expr(value, columns, where)} FROM {rel} LIMIT 0")
        except EngineError:
            raise SchemaDriftError(
                f"{where}: the mapping of {col} ({value!r}) does not bind to bronze's columns: "
                f"{', '.join(columns)}"
            ) from None


def _streamed(ctx: RunContext, m: Model, unique: bool | None) -> bool:
    """Whether this build creates upsert entity ``m`` (or refills it: a rollback emptied it)
    from rows that hold each key once (``unique``, from ``_newest_rows``), so they can stream
    from bronze into the new table without being materialised first: no repeat to drop, no
    newest row per key to pick, one pass (claim adjustments, 17.4M rows at scale 10: 43.0 →
    26.5 s). Only for a model that projects ``stage`` alone (``_key_shape``): streamed, a
    model that looks up other entities would compute its joins twice, once for the keys
    (remittance claims: 30.0 → 46.9 s). A key that falls back to the row hash is no obstacle:
    ``unique`` comes from the pass that found every key without it (none was NULL there)."""
    return (
        m.history == "upsert"
        and _key_shape(m.sql, m.key) is not None
        and not ctx.lake.holds_files(silver_path(m.name))
        and bool(unique)
    )


# each path upwards from ``_row_hash`` to a key may pass only nodes that give NULL for a
# NULL argument, or be the last argument of a COALESCE
_NULL_KEEPING = (exp.DPipe, exp.Paren, exp.Trim, exp.Lower, exp.Upper, exp.Cast)


@cache
def _key_shape(sql: str, key: str) -> str | None:
    """How a model that only projects ``stage`` (no join, no subquery) computes ``key``:
    ``"plain"`` without ``_row_hash``; ``"fallback"`` with it only where every other value
    is missing (``coalesce(trim(id), 'unkeyed:' || _row_hash) || '-' || datasource``); None
    otherwise, or for a model that joins (its keys would cost its joins to compute).

    With ``_row_hash`` as NULL a fallback key is NULL where it would use the hash, and the
    key itself everywhere else: the keys can then be found without hashing every row."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or any(
        isinstance(node, exp.Join | exp.Subquery | exp.With) for node in tree.walk()
    ):
        return None
    found = {p.alias_or_name: p for p in tree.expressions}
    if key not in found or "source_modified_at" not in found:
        return None
    if any(c.name == "_row_hash" for c in found["source_modified_at"].find_all(exp.Column)):
        return None
    hashes = [c for c in found[key].find_all(exp.Column) if c.name == "_row_hash"]
    for node in hashes:
        while not isinstance(node.parent, exp.Alias | exp.Select):
            parent = node.parent
            last = isinstance(parent, exp.Coalesce) and node is (parent.expressions or [None])[-1]
            if not (last or isinstance(parent, _NULL_KEEPING)):
                return None
            node = parent
    return "fallback" if hashes else "plain"


@cache
def _key_and_time(sql: str, key: str) -> tuple[str, str]:
    """The SQL of ``key`` and of ``source_modified_at`` in a model ``_key_shape`` accepts,
    as expressions over ``stage``'s columns."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    found = {p.alias_or_name: p for p in tree.expressions}
    bare = [found[key], found["source_modified_at"]]
    key_sql, time_sql = (
        (e.this if isinstance(e, exp.Alias) else e).sql(dialect="duckdb") for e in bare
    )
    return key_sql, time_sql


# leave out older versions when at least this share of the staged rows repeats a key
LEAVE_OUT_SHARE = 0.05


class Newest(NamedTuple):
    """What ``_newest_rows`` found in the staged rows."""

    left_out: bool  # rows older than their key's newest were left out of ``stage``
    unique: bool | None  # every row has a key of its own (None: not known)
    # views ``stage_once`` and ``stage_again`` split the staged rows by whether their key
    # comes once or again (or could not be computed): see ``_apart``
    split: bool = False


def _newest_rows(s: EngineSession, ctx: RunContext, m: Model) -> Newest:
    """Leave out the staged rows of upsert ``m`` not worth checking (view ``stage`` then holds
    the rest); returns whether any were left out, whether the rows hold each key once, and
    whether they were split by it.

    An upsert writes each key's newest row only (``_latest``). When keys come again in the
    staged rows (claims: every monthly file sends the open claims again, 17M rows for 9.7M
    keys at scale 10), the rows older than their key's newest are left out here, before
    the rules look them up, the rows are materialised and the repeats searched. Which rows
    those are is found from the keys and source times alone, with ``_row_hash`` as NULL
    (``_key_shape``): a scan of the key columns, not the typing and hashing of every row.

    A row is left out only when another row of its key is newer (NULL is older than any
    time); rows whose key the pass could not compute, and ties, stay for ``check``.

    The keys are first counted by their 64-bit hash: distinct hashes are distinct keys, so a
    table with no hash twice has each key once, found without grouping its long text keys
    (17.4M adjustment keys of 85 characters: 2.5 s by hash, 3.9 s by text). Only the keys
    whose hash repeats are then grouped as text; a hash shared by two keys costs that
    grouping, never a wrong answer."""
    shape = _key_shape(m.sql, m.key) if m.history == "upsert" else None
    if shape is None:
        return Newest(False, None)
    # a key the pass left NULL stands for keys it could not compute
    fallback = shape == "fallback"
    _stage_view(s, ctx, hashed=False)
    kept = False  # whether ``stage`` is to be the rows kept, not every staged row
    split = False  # whether ``repeated_hashes`` stays, for the views of ``_apart``
    try:
        s.materialize(
            "repeated_hashes",
            f"SELECT hash({m.key}) AS _h, count(*) AS _rows, bool_or({m.key} IS NULL) AS _null "
            f"FROM ({m.sql}) AS keys GROUP BY 1 "
            f"HAVING count(*) > 1{f' OR bool_or({m.key} IS NULL)' if fallback else ''}",
        )
        got = s.sql(
            "SELECT count(*) AS n, coalesce(sum(_rows - 1) FILTER (WHERE NOT _null), 0) AS extra, "
            "(SELECT count(*) FROM stage0) AS staged FROM repeated_hashes"
        ).to_pylist()[0]
        if not got["n"]:
            return Newest(False, True)
        if got["extra"] < LEAVE_OUT_SHARE * got["staged"]:
            # few repeats (re-read boundary rows, mostly exact copies): the join that would
            # leave them out costs more than checking them; the repeats are known (or the
            # hashes of two keys are equal: ``check`` finds them distinct). A build that
            # creates the table checks them apart from the rest, which then streams
            split = not ctx.lake.holds_files(silver_path(m.name))
            if split:
                _apart(s, m)
            return Newest(False, False if got["extra"] else None, split)
        s.materialize(
            "newest_keys",
            f"SELECT {m.key} AS _k, max(source_modified_at) AS _top, count(*) AS _rows "
            f"FROM ({m.sql}) AS keys "
            f"WHERE hash({m.key}) IN (SELECT _h FROM repeated_hashes) GROUP BY {m.key} "
            f"HAVING count(*) > 1{' OR _k IS NULL' if fallback else ''}",
        )
        s.scalar("SELECT count(*) FROM newest_keys")  # computed (Spark caches lazily) first
        # the staged rows are left out before they are hashed and modelled: their key and
        # time computed as the model computes them, with ``_row_hash`` NULL as in the pass
        # above. Left out after the model, claims hashed and modelled all 17M staged rows to
        # keep 9.7M (14.1 + 7.1 s of CPU in DuckDB's profile)
        cols = _keyed_stage(s, m)
        s.execute(f"""
            CREATE OR REPLACE TEMP VIEW stage_kept AS
            SELECT {cols} FROM stage_keyed AS st LEFT JOIN newest_keys n ON st._kk = n._k
            WHERE n._k IS NULL OR n._top IS NULL OR NOT (st._tt < n._top OR st._tt IS NULL)""")
        kept = True
    finally:
        if not split:
            s.drop("repeated_hashes")
        _stage_view(s, ctx, rows="stage_kept" if kept else "stage0")
    return Newest(True, None)


def _keyed_stage(s: EngineSession, m: Model) -> str:
    """View ``stage_keyed``: ``stage0`` with each row's key (``_kk``) and source time
    (``_tt``) computed as the model computes them, ``_row_hash`` NULL as in the narrow pass
    of ``_newest_rows``; returns the select list of ``stage0``'s columns over it (``st.``)."""
    key_sql, time_sql = _key_and_time(m.sql, m.key)
    s.execute(
        f"CREATE OR REPLACE TEMP VIEW stage_keyed AS SELECT *, {key_sql} AS _kk, "
        f"{time_sql} AS _tt "
        "FROM (SELECT *, CAST(NULL AS VARCHAR) AS _row_hash FROM stage0) AS stage"
    )
    return ", ".join(f"st.{quote_ident(c)}" for c in s.columns("stage0"))


def _apart(s: EngineSession, m: Model) -> None:
    """Views ``stage_once`` and ``stage_again``: the staged rows whose key (as the narrow
    pass of ``_newest_rows`` computed it, its hash in ``repeated_hashes`` or not) comes
    once, and the rest: the keys that come again and those the pass could not compute.

    Why: a build that creates an upsert table from rows of which a few repeat a key
    (transactions: 2% re-read boundary rows) materialised all of them to find those few
    and pick their newest, then read them twice more to write them. Apart, only
    ``stage_again`` is materialised and picked from, and ``stage_once`` streams from
    bronze into the table with it, in one pass (``_build_apart``)."""
    cols = _keyed_stage(s, m)
    again = "hash(st._kk) IN (SELECT _h FROM repeated_hashes)"
    s.execute(
        f"CREATE OR REPLACE TEMP VIEW stage_once AS SELECT {cols} FROM stage_keyed AS st "
        f"WHERE st._kk IS NOT NULL AND NOT ({again})"
    )
    s.execute(
        f"CREATE OR REPLACE TEMP VIEW stage_again AS SELECT {cols} FROM stage_keyed AS st "
        f"WHERE st._kk IS NULL OR {again}"
    )


def check(s: EngineSession, ctx: RunContext, m: Model, unique: bool = False) -> None:
    """``modeled`` → ``checked``: drop exact repeats, flag conflicts, evaluate the rules.

    Rows that share key and source time but differ are all kept, each quarantined as
    ``unique_key``: which one is right is for the source to say, and nothing is dropped.
    ``unique``: every row has a key of its own, so there is nothing to drop or flag."""
    if unique:
        s.execute(
            "CREATE OR REPLACE TEMP VIEW deduped AS SELECT *, false AS _conflict FROM modeled"
        )
    else:
        _dedupe(s, m.key)
    evaluate(s, ctx, m, "deduped", "checked")


def _dedupe(s: EngineSession, key: str) -> None:
    """View ``deduped``: ``modeled`` without exact repeats, with ``_conflict`` on the rows
    that share key and source time but differ."""
    # per (key, source time), sorted: exact repeats are adjacent (the one of the smallest
    # batch id comes first and is kept), and more than one content shows as a first hash
    # that differs from the last (a DISTINCT window aggregate says the same, but Spark has none)
    w = f"PARTITION BY {key}, source_modified_at ORDER BY _row_hash, _batch_id"
    whole = f"{w} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
    windowed = f"""
        SELECT {s.select_list("modeled")}, _lo <> _hi AS _conflict FROM (
            SELECT *,
                   lag(_row_hash) OVER ({w}) AS _prev,
                   first_value(_row_hash) OVER ({whole}) AS _lo,
                   last_value(_row_hash) OVER ({whole}) AS _hi
            FROM {{rows}}) AS ranked
        WHERE _prev IS NULL OR _prev <> _row_hash"""
    window_repeats(
        s, "deduped", "modeled", [key, "source_modified_at"], windowed, "false AS _conflict"
    )


def window_repeats(
    s: EngineSession, name: str, source: str, partition: list[str], windowed: str, plain: str = ""
) -> None:
    """View ``name``: ``windowed`` (a query over ``{rows}``) computed only over the rows of
    ``source`` whose ``partition`` values repeat; every other row passes as ``*`` (plus
    ``plain``, the columns ``windowed`` adds, as they are for a row alone in its group).

    Why: a window sorts every row with all its columns; at 10M rows that is the costliest
    step of silver and spills. Repeats (re-deliveries, several versions in one batch) are
    rare, so a narrow aggregate finds them and the window sorts only those."""
    cols = ", ".join(partition)
    s.materialize(
        f"{name}_repeats",
        f"SELECT {cols}, true AS _repeated FROM {source} GROUP BY {cols} HAVING count(*) > 1",
    )
    same = " AND ".join(f"r.{c} IS NOT DISTINCT FROM x.{c}" for c in partition)
    s.execute(
        f"CREATE OR REPLACE TEMP VIEW {name}_marked AS SELECT x.*, r._repeated FROM {source} x "
        f"LEFT JOIN {name}_repeats r ON {same}"
    )
    rows = s.select_list(name + "_marked", ("_repeated",))
    s.union_all_by_name(
        name,
        [
            f"SELECT {rows}{', ' + plain if plain else ''} FROM {name}_marked WHERE _repeated IS NULL",
            windowed.replace(
                "{rows}", f"(SELECT {rows} FROM {name}_marked WHERE _repeated) AS repeated"
            ),
        ],
    )


def verdicts(ctx: RunContext, m: Model) -> str:
    """Select-list tail: each rule's verdict as a boolean ``_v<i>`` (true: the rule failed).

    Computed where the rows are first materialised (``modeled``, ``recheck``), so a rule that
    looks up another entity is one join, paid once; ``evaluate`` only names the failures."""
    rs = effective_rules(ctx.config, m.name)
    return "".join(f", NOT coalesce(({r.rule.predicate}), true) AS _v{i}" for i, r in enumerate(rs))


def evaluate(s: EngineSession, ctx: RunContext, m: Model, source: str, out: str) -> None:
    """View ``out``: ``source`` (with ``verdicts`` and a boolean ``_conflict``) with
    ``dq_failures``, ``dq_warnings`` and ``is_quarantined``; each rule counts as an error or
    a warning by its severity for the row's datasource.

    A view, not a table: naming the failures is cheap, while a second wide copy of every row
    next to ``modeled`` made the build of 10M transactions 47% slower, most of it spill."""
    rs = effective_rules(ctx.config, m.name)

    def hits(severity: str) -> list[str]:
        return [
            f"CASE WHEN _v{i} AND {r.severity_sql()} = '{severity}' THEN '{r.name}' END"
            for i, r in enumerate(rs)
        ]

    conflict = f"CASE WHEN _conflict THEN '{UNIQUE_KEY}' END"
    internal = ("_conflict", *(f"_v{i}" for i in range(len(rs))))
    s.execute(f"""
        CREATE OR REPLACE TEMP VIEW {out} AS
        SELECT {s.select_list(source, internal)},
               _failures AS dq_failures,
               {ctx.engine.list_of_present(hits("warn"))} AS dq_warnings,
               array_length(_failures) > 0 AS is_quarantined
        FROM (SELECT *, {ctx.engine.list_of_present([*hits("error"), conflict])} AS _failures
              FROM {source}) AS f""")


def requalify(
    s: EngineSession,
    ctx: RunContext,
    m: Model,
    rec: LoadRecord,
    before: dict[str, int] | None = None,
) -> int:
    """Re-check rows already in silver whose verdict may have changed; returns rows released.

    A transaction quarantined because its encounter had not arrived passes once the
    encounter lands: rows quarantined by a rule that looks up another entity are re-checked
    every run. When the entity's rules changed (added, re-written, severity), every row is.
    Only the quality columns change, in one commit; the row keeps its content and history.

    ``before``: the looked-up versions when this build started, which its new rows were
    checked against. When the older rows had been re-checked against those same versions
    (or there were none) and nothing but this build's own write moved since, every row's
    verdict is current: the re-check would scan the whole table to find nothing.
    """
    path = silver_path(m.name)
    current = ctx.lake.dataset(path)
    rs = effective_rules(ctx.config, m.name)
    if current is None:
        return 0
    fp = rules_fingerprint(rs)
    changed = fp != _last_rules_fingerprint(ctx, path)
    dependent = [r.name for r in rs if r.depends_on_other_tables]
    if not changed and not dependent:
        return 0
    # a verdict moves only when the entities the rules look up moved: unchanged since the
    # last re-check (a no-op run), there is nothing to re-check
    against = _looked_up_versions(ctx, m)
    last = _last_requalified(ctx, m)
    if not changed and json.dumps(against, sort_keys=True) == last:
        return 0
    if not changed and (
        (before is not None and _only_own_write_since(ctx, m, before, against, last))
        or _only_kept_keys_since(ctx, m, against, last)
    ):
        _mark_requalified(ctx, m, json.dumps(against, sort_keys=True))
        return 0
    register_silver(s, ctx, references(ctx.config, m))
    s.read_lake("requalify_src", ctx.lake, path)
    hit = " OR ".join(f"list_contains(dq_failures, '{d}')" for d in dependent)
    where = "true" if changed else f"is_quarantined AND ({hit})"
    kept = s.select_list("requalify_src", ("dq_failures", "dq_warnings", "is_quarantined"))
    s.materialize(
        "recheck",
        f"""
        SELECT {kept},
               dq_failures AS _old_failures, dq_warnings AS _old_warnings,
               is_quarantined AS _was_quarantined,
               list_contains(dq_failures, '{UNIQUE_KEY}') AS _conflict{verdicts(ctx, m)}
        FROM requalify_src WHERE {where}""",
    )
    evaluate(s, ctx, m, "recheck", "rechecked")
    identity = [m.key, "effective_from"] if m.history == "scd2" else [m.key]
    cols = ", ".join(identity)
    stamp = datetime.now(UTC)
    s.materialize(
        "moved",
        f"""
        SELECT {cols}, dq_failures, dq_warnings, is_quarantined,
               {timestamp(stamp)} AS _updated_at,
               _was_quarantined AND NOT is_quarantined AS _released
        FROM rechecked
        WHERE list_sort(dq_failures) IS DISTINCT FROM list_sort(_old_failures)
           OR list_sort(dq_warnings) IS DISTINCT FROM list_sort(_old_warnings)""",
    )
    got = s.sql("SELECT count(*) AS n, count(*) FILTER (WHERE _released) AS r FROM moved")
    moved, released = int(got["n"][0].as_py()), int(got["r"][0].as_py())
    meta = {**_meta(ctx, rec, stamp=stamp), "rules": fp, "requalified": moved}
    if moved == 0:
        if changed:  # an empty commit records that these rules were applied to every row
            ctx.lake.write(path, current.schema.empty_table(), mode="append", metadata=meta)
    else:
        s.update_columns(
            ctx.lake,
            path,
            f"SELECT {cols}, dq_failures, dq_warnings, is_quarantined, _updated_at FROM moved",
            on=identity,
            metadata=meta,
        )
    against[m.name] = ctx.lake.content_version(path)  # with the commit just made
    _mark_requalified(ctx, m, json.dumps(against, sort_keys=True))
    rec.rows_released += released
    return released


def _looked_up(ctx: RunContext, m: Model) -> set[str]:
    """The silver entities ``m``'s rules look up (``m`` itself too, if they name it)."""
    text = " ".join(r.rule.predicate for r in effective_rules(ctx.config, m.name))
    return {e.name for e in models("silver") if f"silver.{e.name}" in text}


def _looked_up_versions(ctx: RunContext, m: Model) -> dict[str, int]:
    """The content versions of ``m`` and of the silver entities its rules look up: ``m``'s
    own, so rows written or restored (a rollback) since are re-checked too."""
    names = _looked_up(ctx, m) | {m.name}
    return {n: ctx.lake.content_version(silver_path(n)) for n in sorted(names)}


def _only_own_write_since(
    ctx: RunContext, m: Model, before: dict[str, int], now: dict[str, int], last: str | None
) -> bool:
    """Whether only ``m``'s own write moved ``now`` away from ``before``, and ``m``'s older
    rows were last re-checked (``last``) against ``before`` (or ``m`` had no rows). Not when
    ``m``'s rules look ``m`` itself up: its new rows were checked against its old self."""
    if m.name in _looked_up(ctx, m):
        return False
    others = {k: v for k, v in now.items() if k != m.name}
    if others != {k: v for k, v in before.items() if k != m.name}:
        return False  # an entity it looks up changed while this build ran
    return before.get(m.name, -1) == -1 or json.dumps(before, sort_keys=True) == last


def _only_kept_keys_since(ctx: RunContext, m: Model, now: dict[str, int], last: str | None) -> bool:
    """Whether no verdict of ``m``'s rows can have moved since they were last re-checked
    (``last``): ``m`` unmoved, and each entity its rules look up that moved since moved only
    by MERGEs that inserted and deleted no row (``kept_keys``), while every rule naming it
    reads its keys alone (``EffectiveRule.key_lookup``).

    1% of the transactions edited in place left the claims' re-check to scan the quarantined
    claims against 10M transaction keys that had not changed: 2.0-3.9 s of each such run."""
    then: dict[str, int] = json.loads(last) if last else {}
    if not then or then.get(m.name) != now.get(m.name):
        return False
    rules = [r for r in effective_rules(ctx.config, m.name) if r.depends_on_other_tables]
    for name, version in now.items():
        if name == m.name or then.get(name) == version:
            continue
        if name not in then or any(
            r.key_lookup != name for r in rules if f"silver.{name}" in r.rule.predicate
        ):
            return False
        commits = ctx.lake.commits_since(silver_path(name), then[name])
        if not commits or not all(is_maintenance(c) or kept_keys(c) for c in commits):
            return False  # none since its version moved (a table made anew), or unknown
    return True


def _last_requalified(ctx: RunContext, m: Model) -> str | None:
    done = ctx.lake.read(REQUALIFIED_PATH)
    if done is None:
        return None
    mine = done.filter(pc.equal(done["entity"], m.name))
    if mine.num_rows == 0:
        return None
    latest = pc.index(mine["at"], pc.max(mine["at"])).as_py()
    return str(mine["against"][latest].as_py())


def _mark_requalified(ctx: RunContext, m: Model, against: str) -> None:
    # after the commit it describes: a run killed between the two re-checks once more
    ctx.lake.write(
        REQUALIFIED_PATH,
        pa.table(
            {
                "entity": [m.name],
                "against": [against],
                "run_id": [ctx.run_id],
                "at": pa.array([datetime.now(UTC)], UTC_TS),
            }
        ),
        mode="append",
    )


def references(config: ProjectConfig, m: Model) -> str:
    """The SQL of the model and its rules: what decides which silver tables it reads."""
    return m.sql + " ".join(r.rule.predicate for r in effective_rules(config, m.name))


def upstream(config: ProjectConfig, m: Model) -> list[str]:
    """The entities built before ``m`` that it reads (its SQL or its rules name them): what
    ``m`` waits for when entities are built in parallel. Later entities it names are read as
    they were, as ``run_silver``'s order reads them."""
    before = [e.name for e in models("silver")]
    before = before[: before.index(m.name)]
    text = references(config, m)
    return [name for name in before if f"silver.{name}" in text]


def _last_rules_fingerprint(ctx: RunContext, path: str) -> str | None:
    for commit in ctx.lake.commits(path, limit=50):
        if "rules" in commit["rcmlake"]:
            return str(commit["rcmlake"]["rules"])
    return None


def run_silver(ctx: RunContext, entities: set[str] | None = None) -> list[LoadRecord]:
    """Build every entity (or those of ``entities``) in the order of ``silver.yml``."""
    records = []
    all_models = [m for m in models("silver") if entities is None or m.name in entities]
    seen = processed(ctx)  # read once: each entity only adds rows of its own during the run
    with ctx.console.progress("silver", len(all_models)) as bar:
        for m in all_models:
            records.append(build(ctx, m, seen))
            bar.advance(f"silver {m.name}")
    return records


def build(ctx: RunContext, m: Model, seen: pa.Table) -> LoadRecord:
    rec = ctx.record(
        layer="silver",
        datasource="*",
        table=m.name,
        load_type=m.history,
    )
    ctx.audit.recover(silver_path(m.name), layer="silver", datasource="*", table=m.name)
    try:
        with ctx.engine.session() as s:
            if m.history == "full":
                rec.rows_written += _empty_emptied(ctx, m, rec)
            staged = stage(s, ctx, m, seen)
            if not staged and rec.rows_written:
                faults.point("silver.after_commit")
                ctx.audit.record(rec.finish("success"))
                return rec
            if not staged:
                requalify(s, ctx, m, rec)
                ctx.audit.record(rec.finish("success" if rec.rows_released else "no_change"))
                return rec
            # the versions the new rows are checked against (read here, not for every entity
            # of a run with nothing new; a datasource emptied above counts as a change)
            before = _looked_up_versions(ctx, m)
            register_silver(s, ctx, references(ctx.config, m))
            left_out, unique, split = _newest_rows(s, ctx, m)
            if split:
                _build_apart(s, ctx, m)
                # the rows staged; ``latest`` holds the newest of each key
                rec.rows_read = s.scalar("SELECT count(*) FROM stage0")
            else:
                _model_rows(s, ctx, m)
                streamed = _streamed(ctx, m, unique)
                if streamed:
                    s.execute("CREATE OR REPLACE TEMP VIEW modeled AS SELECT * FROM model_rows")
                else:
                    # computed once: typing, hashing, the model and the rules' lookups are
                    # most of silver's cost; what is built from it (``checked``) are views
                    s.materialize("modeled", "SELECT * FROM model_rows")
                # the rows staged, older versions left out by ``_newest_rows`` included (a
                # streamed model projects ``stage`` row for row: counted there, not modelled)
                rec.rows_read = s.scalar(
                    f"SELECT count(*) FROM {'stage0' if left_out or streamed else 'modeled'}"
                )
                # an upsert's rows with a key each (a first build, most incremental runs)
                # have no repeats to find: two aggregates over every key saved (4.6 + 5.2 s
                # at 17M)
                if m.history == "upsert" and unique is None:
                    unique = s.keys_unique("modeled", m.key)
                check(s, ctx, m, bool(unique))
            now = datetime.now(UTC)
            if m.history == "upsert":
                written = _write_upsert(s, ctx, m, now, rec, bool(unique), picked=split)
            else:
                written = {"full": _write_full, "scd2": _write_scd2}[m.history](s, ctx, m, now, rec)
            rec.rows_written, rec.rows_quarantined = written
            requalify(s, ctx, m, rec, before)
        faults.point("silver.after_commit")
        _mark_processed(ctx, m, staged, now)
        ctx.audit.record(rec.finish("success"))
    except RcmlakeError as exc:
        ctx.audit.record(rec.fail(exc))
    return rec


def _model_rows(s: EngineSession, ctx: RunContext, m: Model) -> None:
    """View ``model_rows``: the model over ``stage``, with each rule's verdict."""
    s.execute(
        f"CREATE OR REPLACE TEMP VIEW model_rows AS SELECT *{verdicts(ctx, m)} "
        f"FROM (\n{m.sql}\n) AS model"
    )


def _build_apart(s: EngineSession, ctx: RunContext, m: Model) -> None:
    """View ``latest`` of a build that creates upsert ``m`` from rows ``_apart`` split: the
    rows whose key comes again are modelled, checked and picked from as any upsert's are
    (materialised: they are few); the others, each the newest of its key, join them
    unmaterialised, so they are typed, hashed, modelled and checked as they are written.

    Transactions at scale 10 (10.2M staged rows, 2% repeating a key): materialising every
    row and reading it back twice to write it spilled 3.5 GB."""
    _stage_view(s, ctx, rows="stage_again")
    _model_rows(s, ctx, m)
    s.materialize("modeled", "SELECT * FROM model_rows")
    check(s, ctx, m)
    _latest(s, m.key)
    s.materialize("latest_again", "SELECT * FROM latest")
    for name in ("modeled", "latest_top", "latest_pick"):  # ``stage_once`` reads the hashes
        s.drop(name)
    _stage_view(s, ctx, rows="stage_once")
    _model_rows(s, ctx, m)
    s.execute("CREATE OR REPLACE TEMP VIEW modeled AS SELECT * FROM model_rows")
    check(s, ctx, m, unique=True)
    s.union_all_by_name("latest", ["SELECT * FROM checked", "SELECT * FROM latest_again"])


def _empty_emptied(ctx: RunContext, m: Model, rec: LoadRecord) -> int:
    """A full entity whose bronze table was emptied (``on_empty: accept``) is emptied for that
    datasource too: an empty load has no batch for ``stage`` to find. Returns rows removed."""
    current = ctx.lake.dataset(silver_path(m.name))
    if current is None:
        return 0
    emptied = []
    for ds, path in inputs(ctx.config, m):
        data = ctx.lake.dataset(path)
        if data is not None and data.count_rows() == 0:
            emptied.append(ds)
    if not emptied:
        return 0
    predicate = "datasource IN (" + ", ".join(f"'{d}'" for d in emptied) + ")"
    # read, not filtered by pyarrow: a string_view file would fail it (engines.duckdb.scannable)
    held = current.to_table(columns=["datasource"])["datasource"]
    if not pc.any(pc.is_in(held, pa.array(emptied))).as_py():
        return 0
    return ctx.lake.delete(silver_path(m.name), predicate, metadata=_meta(ctx, rec))


def _mark_processed(ctx: RunContext, m: Model, staged: list[tuple[str, str]], at: datetime) -> None:
    ctx.lake.write(
        STATE_PATH,
        pa.table(
            {
                "entity": [m.name] * len(staged),
                "datasource": [d for d, _ in staged],
                "batch_id": [b for _, b in staged],
                "run_id": [ctx.run_id] * len(staged),
                "processed_at": pa.array([at] * len(staged), UTC_TS),
            }
        ),
        mode="append",
    )


def _meta(
    ctx: RunContext, rec: LoadRecord, created: Model | None = None, stamp: datetime | None = None
) -> dict[str, object]:
    """Commit metadata; a commit that ``created`` the table evaluated every row under the
    current rules, so it records their fingerprint (later writes evaluate only their rows).

    ``stamp``: the ``_updated_at`` of every row the commit writes, given only by a write that
    removes no key (a merge, new versions, re-checked quality; not a datasource's overwrite or
    a delete). Gold then finds the keys written since its last build by that value alone
    (``gold._Changes._written``) instead of comparing two versions of 10M rows."""
    extra: dict[str, object] = (
        {"rules": rules_fingerprint(effective_rules(ctx.config, created.name))} if created else {}
    )
    if stamp is not None:
        extra[STAMP] = stamp.isoformat()
    return {
        **extra,
        "run_id": ctx.run_id,
        "batch_id": rec.batch_id,
        "layer": "silver",
        "load_type": rec.load_type,
        "rows_read": rec.rows_read,
    }


def _counts(s: EngineSession, relation: str) -> tuple[int, int]:
    """Rows and quarantined rows of ``relation``, counted by the engine (not in Python)."""
    got = s.sql(
        f"SELECT count(*) AS n, count(*) FILTER (WHERE is_quarantined) AS q FROM {relation}"
    )
    return int(got["n"][0].as_py()), int(got["q"][0].as_py())


def _write_full(
    s: EngineSession, ctx: RunContext, m: Model, now: datetime, rec: LoadRecord
) -> tuple[int, int]:
    """Replace the rows of the datasources that delivered a new batch, in one commit."""
    sources = sorted(
        r["datasource"] for r in s.sql("SELECT DISTINCT datasource FROM checked").to_pylist()
    )
    predicate = "datasource IN (" + ", ".join(f"'{d}'" for d in sources) + ")"
    exists = s.read_lake("full_now", ctx.lake, silver_path(m.name))
    rows = [f"SELECT *, {timestamp(now)} AS _updated_at FROM checked"]
    if exists:
        # Two rows for one key (a duplicated department) are both quarantined; the good row
        # silver already holds for that key stays, so gold keeps the department meanwhile.
        rows.append(f"""
            SELECT * FROM full_now WHERE {predicate} AND NOT is_quarantined AND {m.key} IN
                (SELECT {m.key} FROM checked WHERE list_contains(dq_failures, '{UNIQUE_KEY}'))""")
    s.union_all_by_name("full_rows", rows)
    s.write(
        ctx.lake,
        silver_path(m.name),
        "SELECT * FROM full_rows",
        mode="overwrite",
        metadata=_meta(ctx, rec, None if exists else m),
        schema_mode=None if exists else "overwrite",
        predicate=predicate if exists else None,
    )
    return _counts(s, "checked")


def _write_upsert(
    s: EngineSession,
    ctx: RunContext,
    m: Model,
    now: datetime,
    rec: LoadRecord,
    unique: bool,
    picked: bool = False,
) -> tuple[int, int]:
    """Latest version per key; merge where content changed and the source is not older.

    ``unique``: ``checked`` holds each key once, so it is the latest version; ``picked``:
    view ``latest`` is there already (``_build_apart``). A write that
    creates the table counts its rows in what it wrote, instead of computing ``latest`` again
    (streamed, it was never materialised; else its joins: 1.2 s at 10M transactions)."""
    if unique:
        s.execute("CREATE OR REPLACE TEMP VIEW latest AS SELECT * FROM checked")
    elif not picked:
        _latest(s, m.key)
    path = silver_path(m.name)
    # the write creates every row of the table (it had none: new, or emptied by a rollback)
    creates = not ctx.lake.holds_files(path)
    s.merge(
        ctx.lake,
        path,
        f"SELECT *, {timestamp(now)} AS _updated_at FROM latest",
        on=[m.key],
        metadata=_meta(ctx, rec, m if creates else None, stamp=now),
        update_when="s._row_hash <> t._row_hash AND (t.source_modified_at IS NULL OR "
        "s.source_modified_at >= t.source_modified_at)",
        cluster_by=m.spec.get("cluster_by"),
    )
    if creates:
        s.read_lake("created", ctx.lake, path)
        return _counts(s, "created")
    return _counts(s, "latest")


def _latest(s: EngineSession, key: str) -> None:
    """View ``latest``: ``checked``'s newest row per key (latest source time, NULL last;
    then the smallest row hash), picked by aggregates over narrow columns.

    Why not a window: claims come again in every monthly file, so most keys repeat, and a
    window sorts those rows with all their columns: at 17M claims rows, reading the newest
    rows took 29.1 s through the window and 11.7 s this way (5.2 s of it the aggregates).
    ``checked`` holds no exact repeat (same key, source time and hash): the pick is one row."""
    s.materialize(
        "latest_top",
        f"SELECT {key} AS _k, max(source_modified_at) AS _top FROM checked "
        f"GROUP BY {key} HAVING count(*) > 1",
    )
    s.materialize(
        "latest_pick",
        f"""
        SELECT c.{key} AS _k, c.source_modified_at AS _top, min(c._row_hash) AS _hash
        FROM checked c JOIN latest_top t
          ON c.{key} IS NOT DISTINCT FROM t._k
         AND c.source_modified_at IS NOT DISTINCT FROM t._top
        GROUP BY c.{key}, c.source_modified_at""",
    )
    s.execute(f"""
        CREATE OR REPLACE TEMP VIEW latest AS
        SELECT c.* FROM checked c LEFT JOIN latest_pick p ON c.{key} IS NOT DISTINCT FROM p._k
        WHERE p._k IS NULL
           OR (c.source_modified_at IS NOT DISTINCT FROM p._top AND c._row_hash = p._hash)""")


def _write_scd2(
    s: EngineSession, ctx: RunContext, m: Model, now: datetime, rec: LoadRecord
) -> tuple[int, int]:
    """Close current versions whose tracked columns changed and open new ones, in one MERGE."""
    key = m.key
    th = ctx.engine.row_hash(tracked(ctx.config, m.name))
    path = silver_path(m.name)
    exists = s.read_lake("current_all", ctx.lake, path)
    if exists:
        s.materialize(
            "cur",
            f"SELECT {key}, effective_from, source_modified_at, {th} AS _th "
            "FROM current_all WHERE is_current",
        )
        # the versions that share the current one's source time: a batch processed again (a
        # run killed between the commit and marking its batches) brings them back as rows
        s.materialize(
            "held",
            f"""
            SELECT a.{key}, a._row_hash, a.source_modified_at
            FROM current_all a JOIN cur ON cur.{key} = a.{key}
            WHERE a.source_modified_at = cur.source_modified_at
              AND a.{key} IN (SELECT {key} FROM checked)""",
        )
    else:
        s.materialize(
            "cur",
            f"SELECT CAST(NULL AS VARCHAR) AS {key}, CAST(NULL AS TIMESTAMP) AS effective_from, "
            "CAST(NULL AS TIMESTAMP) AS source_modified_at, CAST(NULL AS VARCHAR) AS _th "
            "WHERE false",
        )
        s.materialize(
            "held",
            f"SELECT CAST(NULL AS VARCHAR) AS {key}, CAST(NULL AS VARCHAR) AS _row_hash, "
            "CAST(NULL AS TIMESTAMP) AS source_modified_at WHERE false",
        )
    # Incoming versions not older than the current one, in source-time order; at equal source
    # times the current version comes first (it was ingested first), so a same-day edit of a
    # date-granular ModifiedDate still opens a version. Consecutive repeats of the same tracked
    # values are dropped. A version whose source time equals its predecessor's starts one
    # microsecond later, so (key, effective_from) identifies a version and the earlier one is
    # valid for an empty interval. A row that already is a version (same key, source row and
    # source time) is a replay and adds nothing, so processing a batch twice changes nothing.
    s.execute(f"""
        CREATE OR REPLACE TEMP VIEW incoming AS
        SELECT c.*, {th} AS _th, false AS _existing, c.source_modified_at AS _from FROM checked c
        LEFT JOIN cur ON cur.{key} = c.{key}
        LEFT JOIN held h ON h.{key} = c.{key} AND h._row_hash = c._row_hash
                        AND h.source_modified_at = c.source_modified_at
        WHERE (cur.source_modified_at IS NULL OR c.source_modified_at >= cur.source_modified_at)
          AND h.{key} IS NULL""")
    s.union_all_by_name(
        "chain",
        [
            f"SELECT {key}, _th, source_modified_at, effective_from AS _from, true AS _existing "
            f"FROM cur WHERE {key} IN (SELECT {key} FROM incoming)",
            "SELECT * FROM incoming",
        ],
    )
    s.materialize("chain_rows", "SELECT * FROM chain")
    s.release("modeled")  # what ``checked`` is a view of
    order = f"PARTITION BY {key} ORDER BY source_modified_at, _existing DESC, _row_hash"
    # a key alone in the chain (most: a new patient, or one version of a known one) is its
    # own version, starting at its source time with no successor; only repeated keys sort
    window_repeats(
        s,
        "chained",
        "chain_rows",
        [key],
        f"""
        SELECT *, lead(_start) OVER (PARTITION BY {key} ORDER BY _start) AS _next FROM (
            SELECT *,
                   CASE WHEN _from <= lag(_from) OVER w
                        THEN lag(_from) OVER w + INTERVAL 1 MICROSECOND ELSE _from END AS _start
            FROM (SELECT {s.select_list("chain_rows")}
                  FROM (SELECT *, lag(_th) OVER ({order}) AS _prev FROM {{rows}}) AS steps
                  WHERE _prev IS NULL OR _prev <> _th) AS versions
            WINDOW w AS ({order})) AS started""",
        "_from AS _start, CAST(NULL AS TIMESTAMP) AS _next",
    )
    kept = s.select_list("chained", ("_th", "_existing", "_next", "_start", "_from"))
    s.materialize(
        "new_versions",
        f"""
        SELECT {kept},
               _start AS effective_from, _next AS effective_to, _next IS NULL AS is_current,
               {timestamp(now)} AS _updated_at, CAST(NULL AS VARCHAR) AS _merge_key
        FROM chained WHERE NOT _existing""",
    )
    written = _counts(s, "new_versions")
    if written[0] == 0:
        return 0, 0
    columns = [c for c in s.columns("new_versions") if c != "_merge_key"]
    if not exists:
        rows = f"SELECT {s.select_list('new_versions', ('_merge_key',))} FROM new_versions"
        meta = _meta(ctx, rec, m, stamp=now)
        s.write(ctx.lake, path, rows, mode="append", metadata=meta)  # created
        return written
    # closing rows (_merge_key = key: end the current version) and new versions (_merge_key NULL)
    s.union_all_by_name(
        "scd2_changes",
        [
            "SELECT * FROM new_versions",
            f"SELECT {key} AS _merge_key, _next AS effective_to, {timestamp(now)} AS _updated_at "
            "FROM chained WHERE _existing AND _next IS NOT NULL",
        ],
    )
    s.merge_scd2(
        ctx.lake,
        path,
        "SELECT * FROM scd2_changes",
        key=key,
        columns=columns,
        metadata=_meta(ctx, rec, stamp=now),
    )
    return written
