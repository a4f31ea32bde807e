"""Bronze: every source table and landing file, as delivered, append-only, with lineage.

Incremental tables read rows at or above the last *committed* watermark,
which is stored in the Delta commit itself (``rcmlake.watermark_to``), so
data and watermark move together atomically. Reading ``>=`` instead of
``>`` catches rows that share the boundary value but arrived after the last
extraction (date-granular ``ModifiedDate`` columns make that common); rows
already in bronze at the boundary are removed with ``EXCEPT ALL`` before
the append. Full tables are replaced only when their content changed.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from rcmlake import faults
from rcmlake.config.models import FileFeedConfig, ProjectConfig, TableConfig
from rcmlake.engines.base import EngineSession, quote_ident, quote_literal
from rcmlake.errors import (
    ConfigError,
    FileRejected,
    RcmlakeError,
    SchemaDriftError,
    SourceError,
    is_transient,
)
from rcmlake.layers.context import LINEAGE, RunContext, lineage_sql, with_lineage
from rcmlake.sources.files import read_file
from rcmlake.sources.sql import SqlSource
from rcmlake.sources.x835 import PARTS as X835_PARTS
from rcmlake.sources.x835 import read_835
from rcmlake.storage import objects
from rcmlake.storage.audit import LoadRecord
from rcmlake.transforms import CODESETS


def bronze_path(datasource: str, table: str) -> str:
    return f"bronze/{datasource}/{table}"


def retrying(ctx: RunContext) -> Retrying:
    """Retry transient errors (marked on the exception class) with exponential backoff."""
    run = ctx.config.run
    return Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(run.retries),
        wait=wait_exponential(multiplier=run.backoff_seconds, max=60),
        reraise=True,
    )


def last_watermark(ctx: RunContext, path: str) -> str | None:
    """The watermark of the newest commit that states one (None there, e.g. a table a
    rollback emptied, means: read everything)."""
    for commit in ctx.lake.commits(path, limit=200):
        if "watermark_to" in commit["rcmlake"]:
            value = commit["rcmlake"]["watermark_to"]
            return None if value is None else str(value)
    return None


def last_content_hash(ctx: RunContext, path: str) -> str | None:
    commits = ctx.lake.commits(path, limit=1)
    return commits[0]["rcmlake"].get("content_hash") if commits else None


def load_table(
    ctx: RunContext, source: SqlSource, table: TableConfig, columns: list[str]
) -> LoadRecord:
    """Land one source table in bronze; one Delta commit or none."""
    path = bronze_path(source.name, table.target_name)
    rec = ctx.record(
        layer="bronze",
        datasource=source.name,
        table=table.target_name,
        load_type=table.load_type,
        watermark_column=table.watermark,
    )
    ctx.audit.recover(path, layer="bronze", datasource=source.name, table=table.target_name)
    since = last_watermark(ctx, path) if table.load_type == "incremental" else None
    rec.watermark_from = since
    reader = source.extract(table, since, columns, ctx.config.run.batch_rows)
    with ctx.extractor.session() as s:
        s.register("incoming", reader)
        s.execute("CREATE TEMP TABLE batch AS SELECT * FROM incoming")
        rec.rows_read = s.scalar("SELECT count(*) FROM batch")
        # DuckDB's own reader where it can: the boundary rows below are a filtered scan
        existing = s.read_lake("bronze_now", ctx.lake, path)
        reads = _check_drift(s, ctx, source.name, table, existing, rec)
        cols = ", ".join(quote_ident(c) for c in reads)
        new_rows = "batch"
        future = "false"
        if table.load_type == "incremental":
            wm = quote_ident(table.watermark or "")
            wm_type = s.scalar(f"SELECT typeof({wm}) FROM batch LIMIT 1") or "VARCHAR"
            # a watermark in the future (2099-01-01 typed by hand) would move the table's
            # watermark past every later change: such rows load, but never set the watermark
            cap = (datetime.now(UTC) + FUTURE_TOLERANCE).strftime("%Y-%m-%d %H:%M:%S")
            future = f"({wm} > TRY_CAST({quote_literal(cap)} AS {wm_type}))"
        if since is not None and existing:
            # rows that are read again each time (at the boundary, NULL or future watermarks)
            # are appended only when bronze does not hold them yet
            boundary = (
                f"({wm} = CAST({quote_literal(since)} AS {wm_type}) OR {wm} IS NULL OR {future})"
            )
            # bronze as the batch's columns (NULL for a column the source just added)
            old = ", ".join(f"{e} AS {quote_ident(c)}" for c, e in reads.items())
            s.execute(
                f"CREATE TEMP TABLE fresh AS SELECT {cols} FROM batch WHERE NOT {boundary} "
                f"UNION ALL (SELECT {cols} FROM batch WHERE {boundary} "
                f"EXCEPT ALL SELECT {old} FROM bronze_now WHERE {boundary})"
            )
            new_rows = "fresh"
        count = s.scalar(f"SELECT count(*) FROM {new_rows}")
        duplicated = _duplicate_keys(s, table)
        if table.load_type == "incremental":
            top = s.scalar(
                f"SELECT CAST(max({wm}) AS VARCHAR) FROM {new_rows} WHERE NOT coalesce({future}, false)"
            )
            rec.watermark_to = top or since
            ahead = s.scalar(f"SELECT count(*) FROM {new_rows} WHERE {future}")
            missing = s.scalar(f"SELECT count(*) FROM batch WHERE {wm} IS NULL")
            if ahead:
                rec.note(
                    f"{ahead:,} rows have {table.watermark} after {cap[:10]} (in the future): "
                    "loaded, but the watermark stays at the latest present value"
                )
            if missing:
                rec.note(
                    f"{missing:,} rows have no {table.watermark}: read again every run (appended "
                    "once per content); silver dates them by when they were ingested"
                )
        if duplicated:
            rec.note(f"{duplicated:,} {_key_phrase(table)}")
        content = None
        emptied = False
        if table.load_type == "full":
            content = str(
                s.scalar(
                    f"SELECT coalesce(sum(hash({cols})::HUGEINT), 0) || ':' || count(*) FROM batch"
                )
            )
            if content == last_content_hash(ctx, path):
                count = 0
            elif count == 0 and (held := _rows_held(ctx, path)):
                if table.on_empty == "fail":
                    raise SourceError(
                        f"{source.name}.{table.name}: the source returned no rows where bronze "
                        f"holds {held:,}; nothing changed (an empty EMR table is usually an "
                        "outage; set `on_empty: accept` on the table to let it empty)"
                    )
                emptied = True
        if count == 0 and not emptied:
            ctx.audit.record(rec.finish("no_change"))
            return rec
        lineage = lineage_sql(rec, f"{source.name}.{table.name}")
        rec.rows_written = count
        rec.delta_version = s.write(
            ctx.lake,
            path,
            f"SELECT *, {lineage} FROM {new_rows}",
            mode="overwrite" if table.load_type == "full" else "append",
            schema_mode="overwrite" if table.load_type == "full" else "merge",
            metadata=_commit_meta(rec, content_hash=content),
        )
    faults.point("bronze.after_commit")
    ctx.audit.record(rec.finish("success"))
    return rec


def _check_drift(
    s: EngineSession,
    ctx: RunContext,
    datasource: str,
    table: TableConfig,
    existing: bool,
    rec: LoadRecord,
) -> dict[str, str]:
    """Compare the extracted columns with bronze's; returns, per batch column, the SQL that
    reads it from ``bronze_now`` (the table as bronze holds it, when ``existing``).

    A column the source added flows into bronze (schema evolution) and is reported. A
    column silver maps that is gone, or has changed type, stops this table with a message
    naming it (new rows would carry NULLs into silver's history); the rest of the run goes
    on. An unmapped column that is gone is reported and reads as NULL from then on.
    """
    batch = {r["column_name"]: r["column_type"] for r in s.sql("DESCRIBE batch").to_pylist()}
    if not existing:
        return {c: quote_ident(c) for c in batch}
    before = {
        r["column_name"]: r["column_type"]
        for r in s.sql("DESCRIBE bronze_now").to_pylist()
        if r["column_name"] not in LINEAGE
    }
    where = f"{datasource}.{table.name}"
    used = _mapped_columns(ctx, datasource, table, list(before))
    gone = [c for c in before if c not in batch]
    retyped = [c for c in batch if c in before and batch[c] != before[c] and "NULL" not in batch[c]]
    if stopped := [c for c in gone if c in used]:
        raise SchemaDriftError(
            f"{where}: mapped column(s) {', '.join(stopped)} no longer in the source; "
            "this table is not loaded until the column is back or its silver mapping changes"
        )
    # an appended column keeps its type; a replaced (full) table may change an unmapped one
    if retyped := [c for c in retyped if c in used or table.load_type == "incremental"]:
        changes = ", ".join(f"{c} {before[c]} -> {batch[c]}" for c in retyped)
        raise SchemaDriftError(
            f"{where}: column type changed ({changes}); this table is not loaded until the "
            "source type is restored or bronze is rebuilt for it"
        )
    if added := [c for c in batch if c not in before]:
        rec.note(f"new column(s) {', '.join(added)} added to bronze")
    if gone:
        rec.note(f"column(s) {', '.join(gone)} no longer delivered (NULL from now on)")
    return {c: quote_ident(c) if c in before else f"CAST(NULL AS {t})" for c, t in batch.items()}


def _mapped_columns(
    ctx: RunContext, datasource: str, table: TableConfig, columns: list[str]
) -> set[str]:
    """The source columns silver reads from this table: mapped names and names that
    appear in mapping expressions, plus the watermark and primary key."""
    from rcmlake.transforms import mapping, models

    found = {c for c in (table.watermark, *table.primary_key) if c}
    entities = [m.name for m in models("silver") if m.source == table.entity_name]
    for entity in entities:
        for value in mapping(ctx.config, datasource, entity).values():
            if value in columns:
                found.add(value)
            else:
                words = set(re.findall(r'"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_]*)', value))
                found |= {w.replace('""', '"') for pair in words for w in pair if w in columns}
    return found


def _duplicate_keys(s: EngineSession, table: TableConfig) -> int:
    """How many ``primary_key`` values the extracted batch holds more than once (with the
    same watermark, for incremental tables: an update at a later time is no duplicate)."""
    if not table.primary_key:
        return 0
    group = [*table.primary_key, *([table.watermark] if table.load_type == "incremental" else [])]
    keys = [quote_ident(c) for c in group if c]
    cols = ", ".join(keys)
    # most batches have each key once, found by the keys' hashes (5M transactions: grouping
    # the key columns themselves was 1.3 s of a 17.6 s load)
    if s.keys_unique("batch", cols):
        return 0
    on = " AND ".join(f"b.{k} IS NOT DISTINCT FROM d.{k}" for k in keys)
    # rows are compared whole only for the keys that repeat: a DISTINCT over every column
    # of every group cost a third of an EMR table's load
    return int(
        s.scalar(
            f"WITH d AS (SELECT {cols} FROM batch GROUP BY ALL HAVING count(*) > 1) "
            f"SELECT count(*) FROM (SELECT {', '.join(f'b.{k}' for k in keys)} "
            f"FROM batch b JOIN d ON {on} GROUP BY ALL HAVING count(DISTINCT b) > 1)"
        )
        or 0
    )


def _key_phrase(table: TableConfig) -> str:
    key = ", ".join(table.primary_key)
    return (
        f"values of the primary key [{key}] have rows that differ: silver quarantines them "
        "(unique_key) and keeps the version it already held"
    )


def _rows_held(ctx: RunContext, path: str) -> int:
    data = ctx.lake.dataset(path)
    return data.count_rows() if data is not None else 0


FUTURE_TOLERANCE = timedelta(days=1)  # clocks and time zones of sources differ by hours


def _commit_meta(rec: LoadRecord, **extra: object) -> dict[str, object]:
    keys = (
        "run_id",
        "batch_id",
        "load_type",
        "watermark_column",
        "watermark_from",
        "watermark_to",
        "rows_read",
        "rows_written",
        "source_file",
        "file_sha256",
    )
    meta = {k: getattr(rec, k) for k in keys}
    return {**meta, **{k: v for k, v in extra.items() if v is not None}}


def load_feed(
    ctx: RunContext, name: str, feed: FileFeedConfig, datasource: str | None = None
) -> list[LoadRecord]:
    """Land each new file of a feed (of one of its datasources, or of each in turn) once;
    reject unreadable ones; archive what was committed. The landing root may be a local
    folder or an object store (``storage.objects``). Each datasource of a feed writes its
    own bronze tables, so they can load in parallel; a file that an earlier datasource's
    pattern also matches is that datasource's (as when they load one after the other)."""
    if datasource is None:
        return [r for ds in feed.patterns for r in load_feed(ctx, name, feed, ds)]
    landing = objects.folder(ctx.config.landing_root)
    where = ctx.config.feed_folder(feed)
    names = list(feed.patterns)
    # earlier patterns listed first: a file they match and that is still here is theirs,
    # and one they have already archived is not in this listing either
    theirs = {
        k for ds in names[: names.index(datasource)] for k in landing.list(where, feed.patterns[ds])
    }
    paths = feed_paths(datasource, name, feed)
    for path in paths:
        table = path.rsplit("/", 1)[1]
        ctx.audit.recover(path, layer="bronze", datasource=datasource, table=table)
    loaded = {path: ctx.distinct(path, "_file_sha256") for path in paths}  # file checksums
    return [
        _load_file(ctx, landing, key, datasource, name, feed, loaded)
        for key in landing.list(where, feed.patterns[datasource])
        if key not in theirs
    ]


def feed_paths(datasource: str, name: str, feed: FileFeedConfig) -> list[str]:
    """The bronze tables a feed writes: one, or for 835 remittances one per part
    (``remittances_payments``, ``remittances_claims`` …)."""
    target = feed.target or name
    if feed.layout == "x835":
        return [bronze_path(datasource, f"{target}_{part}") for part in X835_PARTS]
    return [bronze_path(datasource, target)]


def _load_file(
    ctx: RunContext,
    landing: objects.Folder,
    key: str,
    datasource: str,
    name: str,
    feed: FileFeedConfig,
    loaded: dict[str, set[str]],
) -> LoadRecord:
    """One landing file (``key``, relative to the landing root) into its bronze table(s), one
    commit per table. A table that already holds the file's checksum is skipped, so a run
    killed between the parts of an 835 loads the rest next time and doubles nothing; the last
    table (the raw segments, which every 835 has) marks the file complete, and then it is
    archived."""
    digest = landing.sha256(key)
    rec = ctx.record(
        layer="bronze",
        datasource=datasource,
        table=feed.target or name,
        load_type="file",
        source_file=key,
        file_sha256=digest,
    )
    archived = _unique(landing, f"archive/{key}", digest)
    # the last table written (an 835's raw segments) says the file is complete
    if digest in loaded[list(loaded)[-1]]:
        landing.move(key, archived)
        ctx.audit.record(rec.finish("skipped", "already loaded (same checksum); archived"))
        return rec
    with ExitStack() as held:  # what the file's parse holds outside the engine, until written
        try:
            with landing.local(key) as file:
                if feed.layout == "x835":
                    size = os.path.getsize(file)
                    with _ONE_835:  # held from the parse until the parts are written
                        held.enter_context(ctx.extractor.outside(X835_BYTES_PER_BYTE * size))
                        parts = read_835(file)
                    tables = dict(zip(loaded, (parts[part] for part in X835_PARTS), strict=True))
                else:
                    tables = {next(iter(loaded)): read_file(file, feed.layout, feed.max_line_bytes)}
        except FileRejected as exc:
            target = _unique(landing, f"rejected/{key}", digest)
            landing.move(key, target)
            landing.write_text(target + ".reason.txt", f"{exc}\n")
            ctx.audit.record(rec.finish("rejected", str(exc)))
            return rec
        first = next(iter(tables.values()))
        rec.rows_read = rec.rows_written = first.num_rows
        meta = _commit_meta(rec, archived_as=archived)
        for path, table in tables.items():
            if digest in loaded[path] or (table.num_rows == 0 and path != list(tables)[-1]):
                continue  # written before a crash, or nothing to write
            data = with_lineage(table, rec, key, _file_sha256=digest)
            version = ctx.lake.write(path, data, mode="append", schema_mode="merge", metadata=meta)
            rec.delta_version = version if table is first else rec.delta_version
            loaded[path].add(digest)
            faults.point("bronze.after_commit")
    ctx.audit.record(rec.finish("success"))
    landing.move(key, archived)
    return rec


# one 835 parsed at a time, whichever feed's: parsing a month's remittances (112 MB, 749k
# claims) peaks at 2.8 GB outside the engine's memory limit, and two at once with the EMR
# loads took bronze to 6.9 GB at scale 10
_ONE_835 = threading.Lock()
# what a parse and its parts hold per byte of the file, above what was measured (synthetic
# months of 8, 76 and 112 MB: 35.7, 26.1 and 24.7 bytes per byte over the process before
# it; copies of a public example: 19-33); the engine's limit is lowered by it while they
# are held (``Engine.outside``)
X835_BYTES_PER_BYTE = 40


def _unique(landing: objects.Folder, target: str, digest: str) -> str:
    """Where to move a file: ``target``, or beside it with the content hash in the name when
    another file of that name is already there (a re-sent name never overwrites a file)."""
    if not landing.exists(target) or landing.sha256(target) == digest:
        return target
    p = PurePosixPath(target)
    return str(p.with_name(f"{p.stem}.{digest[:12]}{p.suffix}"))


CODESET_TABLES = ("icd_codes", "npi_registry", "carc_codes", "rarc_codes")  # from the APIs


@dataclass(frozen=True)
class BronzeLoad:
    """One load bronze makes: the names ``--only`` selects it by, the bronze tables it
    writes, and what it reads (a source's table, or a feed; neither for the API code sets)."""

    names: tuple[str, ...]
    paths: tuple[str, ...]
    source: str | None = None
    table: TableConfig | None = None
    feed: str | None = None


def bronze_loads(config: ProjectConfig) -> dict[str, BronzeLoad]:
    """Every load bronze makes, by key.

    Keys: ``<source>.<table>`` (selected also by the source's name), ``files.<feed>`` (also by
    the feed's name and its datasources) and ``codesets`` (the API code sets). No two keys
    load the same table, so an orchestrator can run one key per task in parallel.
    """
    out: dict[str, BronzeLoad] = {}
    for name, source in config.sources.items():
        for t in source.tables:
            if t.active:
                path = bronze_path(name, t.target_name)
                out[f"{name}.{t.target_name}"] = BronzeLoad((name,), (path,), name, t)
    for name, feed in config.files.items():
        paths = tuple(p for ds in feed.patterns for p in feed_paths(ds, name, feed))
        out[f"files.{name}"] = BronzeLoad((name, *feed.patterns), paths, feed=name)
    codesets = tuple(bronze_path(CODESETS, t) for t in CODESET_TABLES)
    out[CODESETS] = BronzeLoad((CODESETS,), codesets)
    return out


def selected_loads(config: ProjectConfig, only: set[str] | None) -> set[str]:
    """The keys of ``bronze_loads`` that ``--only`` names (all without it); an unknown name
    is a config error, not a run that silently loads nothing."""
    loads = bronze_loads(config)
    if not only:
        return set(loads)
    known = set(loads) | {n for load in loads.values() for n in load.names}
    if unknown := sorted(only - known):
        raise ConfigError(
            f"--only {unknown[0]!r} names no source, table, feed or datasource; "
            f"known: {', '.join(sorted(known))}"
        )
    return {key for key, load in loads.items() if key in only or set(load.names) & only}


def run_bronze(ctx: RunContext, keys: set[str] | None = None) -> list[LoadRecord]:
    """Ingest every active table and every feed (or the loads ``keys`` of ``bronze_loads``
    names), in parallel, each with retries."""
    chosen = [load for key, load in bronze_loads(ctx.config).items() if keys is None or key in keys]
    tables: dict[str, list[TableConfig]] = {}
    for load in chosen:
        if load.source is not None and load.table is not None:
            tables.setdefault(load.source, []).append(load.table)
    sources = [SqlSource(name, ctx.config.sources[name], ctx.config.base_dir) for name in tables]
    # one task per datasource of a file feed, so the hospitals' files need not wait for each
    # other; an 835 feed is one task over its datasources in turn: 835s are parsed one at
    # a time (_ONE_835), and a task per datasource would hold a worker idle waiting for it
    feeds: list[tuple[str, FileFeedConfig, str | None]] = []
    for load in chosen:
        if load.feed:
            feed = ctx.config.files[load.feed]
            each = [None] if feed.layout == "x835" else list(feed.patterns)
            feeds += [(load.feed, feed, ds) for ds in each]
    feeds.sort(key=lambda f: f[1].layout != "x835")  # the longest chain first
    total = sum(len(t) for t in tables.values()) + len(feeds)
    records: list[LoadRecord] = []
    with (
        ctx.console.progress("bronze", total) as bar,
        ThreadPoolExecutor(ctx.config.run.workers) as pool,
    ):
        # the feeds first: a feed's files load one after the other, so the longest chains
        # start early and the run does not end on one core
        futures: list[Future[list[LoadRecord]]] = [
            pool.submit(_guard_feed, ctx, name, feed, ds) for name, feed, ds in feeds
        ]
        for source in sources:
            futures.extend(_submit_source(ctx, pool, source, tables[source.name]))
        for future in futures:
            done = future.result()
            records.extend(done)
            bar.advance(f"bronze {done[0].datasource}.{done[0].table}" if done else "bronze")
    if keys is None or CODESETS in keys:
        from rcmlake.layers.codesets import run_codesets

        records.extend(run_codesets(ctx))
    return records


def _submit_source(
    ctx: RunContext, pool: ThreadPoolExecutor, source: SqlSource, tables: list[TableConfig]
) -> list[Future[list[LoadRecord]]]:
    """Check the database once; if it is unreachable, fail its tables without trying each."""
    try:
        columns = retrying(ctx)(source.check)
    except RcmlakeError as exc:
        failed = [_failed(ctx, source.name, t, exc) for t in tables]
        ctx.audit.record(*failed)
        return [pool.submit(lambda r: [r], r) for r in failed]
    return [pool.submit(_guard_table, ctx, source, t, columns.get(t.name, [])) for t in tables]


def _guard_table(
    ctx: RunContext, source: SqlSource, table: TableConfig, columns: list[str]
) -> list[LoadRecord]:
    try:
        return [retrying(ctx)(load_table, ctx, source, table, columns)]
    except RcmlakeError as exc:
        rec = _failed(ctx, source.name, table, exc)
        ctx.audit.record(rec)
        return [rec]


def _guard_feed(
    ctx: RunContext, name: str, feed: FileFeedConfig, datasource: str | None
) -> list[LoadRecord]:
    try:
        return retrying(ctx)(load_feed, ctx, name, feed, datasource)
    except RcmlakeError as exc:
        rec = ctx.record(
            layer="bronze",
            datasource=datasource or ",".join(feed.patterns),
            table=feed.target or name,
            load_type="file",
        )
        ctx.audit.record(rec.fail(exc))
        return [rec]


def _failed(ctx: RunContext, datasource: str, table: TableConfig, exc: Exception) -> LoadRecord:
    rec = ctx.record(
        layer="bronze",
        datasource=datasource,
        table=table.target_name,
        load_type=table.load_type,
        watermark_column=table.watermark,
    )
    return rec.fail(exc)
