"""Gold: the star schema and KPI marts, built from silver in one engine session.

Each model of ``transforms/gold/gold.yml`` runs in order (dims, facts, marts) against
the current silver tables and the gold models before it. Every commit carries a
fingerprint of what it was built from (silver versions, gold config, the models' SQL,
the package version). A complete build is published as one release
(:mod:`rcmlake.storage.release`), which is what readers see; when the fingerprint of the
latest release still holds and no gold table moved since, nothing is written.

Gold is derived, so it is never merged row by row; but neither is it rebuilt whole on
every change. When only silver moved since the last release (same config, SQL and
package) and gold is as that release left it, a build is incremental: a model whose
inputs did not change *in the columns it reads* (``transforms/lineage.py``) keeps its
released version, and a fact partitioned by service month rewrites only the months its
changed input rows map to (``months:`` in gold.yml), with one partition overwrite.
Dimensions and marts that changed are rebuilt whole (they are small or aggregate).
Anything the plan cannot vouch for (an input it cannot map, an old version that vacuum
removed) rebuilds that table whole: slower, never stale.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from rcmlake import __version__, faults
from rcmlake.engines.base import EngineSession, quote_ident, timestamp
from rcmlake.errors import RcmlakeError
from rcmlake.layers.context import RunContext
from rcmlake.layers.silver import STAMP, register_silver, silver_path
from rcmlake.storage import release
from rcmlake.storage.audit import LoadRecord
from rcmlake.storage.delta import is_maintenance, vouched
from rcmlake.storage.release import Release
from rcmlake.transforms import Model, model, models
from rcmlake.transforms.lineage import PARAMS, gold_lineage, gold_params


def gold_path(name: str) -> str:
    return f"gold/{name}"


def fingerprint(ctx: RunContext) -> str:
    """What gold is built from: silver versions, gold config, the models' SQL and the package.

    The SQL and the version are in it so that an upgrade that fixes a mart rebuilds gold
    instead of serving the numbers of the old code.
    """
    versions = {}
    for m in models("silver"):
        versions[m.name] = ctx.lake.content_version(silver_path(m.name))
    code = hashlib.sha256()
    for m in models("gold"):
        code.update(
            f"{m.name}\0{m.sql}\0{json.dumps(m.spec, sort_keys=True, default=str)}\0".encode()
        )
    return json.dumps(
        {
            "silver": versions,
            # how gold is built (incremental or whole) does not change what it holds
            "gold": ctx.config.gold.model_dump(mode="json", exclude={"incremental"}),
            "sql": code.hexdigest()[:16],
            "rcmlake": __version__,
        },
        sort_keys=True,
    )


def _current_versions(ctx: RunContext) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for m in models("gold"):
        version = ctx.lake.content_version(gold_path(m.name))  # maintenance changes no rows
        out[m.name] = version if version >= 0 else None
    return out


def _built_unreleased(ctx: RunContext, fp: str) -> tuple[dict[str, int], str] | None:
    """Versions (and as-of date) of a complete build of ``fp`` that was killed before its
    release, if any: every gold model's newest commit carries ``fp`` from one run."""
    versions, runs, as_of = {}, set(), ""
    for m in models("gold"):
        newest = [
            c for c in ctx.lake.commits(gold_path(m.name), limit=20) if not is_maintenance(c)
        ][:1]
        if not newest or newest[0]["rcmlake"].get("fingerprint") != fp:
            return None
        versions[m.name] = int(newest[0]["version"])
        runs.add(newest[0]["rcmlake"].get("run_id"))
        as_of = str(newest[0]["rcmlake"].get("as_of_date", ""))
    return (versions, as_of) if len(runs) == 1 else None


def _start(ctx: RunContext, m: Model) -> LoadRecord:
    return ctx.record(layer="gold", datasource="*", table=m.name, load_type="rebuild")


def default_as_of(s: Any) -> date:
    """The last day the data reaches: the latest service, claim or paid date among rows that
    passed quality, never after today (UTC). A/R is aged to that day, not to the end of its
    month (which would age every open claim by days the data has not seen yet), and a
    future-dated row, quarantined, cannot move it."""
    top = s.scalar("""
        SELECT max(d) FROM (
            SELECT CAST(greatest(service_date, coalesce(paid_date, service_date)) AS DATE) AS d
            FROM silver.transactions WHERE NOT is_quarantined
            UNION ALL
            SELECT CAST(greatest(service_date, claim_date) AS DATE) FROM silver.claims WHERE NOT is_quarantined
        ) AS days WHERE d <= current_date""")
    return top or datetime.now(UTC).date()


def run_gold(ctx: RunContext) -> list[LoadRecord]:
    """Build gold when what it is built from changed, then publish it as one release."""
    all_models = models("gold")
    for m in all_models:
        ctx.audit.recover(gold_path(m.name), layer="gold", datasource="*", table=m.name)
    fp = fingerprint(ctx)
    current = release.latest(ctx.lake)
    held = _current_versions(ctx)
    if current and current.fingerprint == fp and current.versions == held:
        records = [_start(ctx, m).finish("no_change") for m in all_models]
        ctx.audit.record(*records)
        return records
    if (built := _built_unreleased(ctx, fp)) is not None:
        versions, as_of = built
        release.publish(
            ctx.lake, run_id=ctx.run_id, fingerprint=fp, versions=versions, as_of_date=as_of
        )
        records = [
            _start(ctx, m).finish("recovered", "built before the run stopped; released now")
            for m in all_models
        ]
        ctx.audit.record(*records)
        return records
    return _build(ctx, fp, _base(ctx, fp, current, held))


def _base(
    ctx: RunContext, fp: str, current: Release | None, held: dict[str, int | None]
) -> Release | None:
    """The release an incremental build may start from: built by the same config, SQL and
    package from older silver, and still what gold holds (no table moved since: a failed or
    killed build, or a rollback, rebuilds whole)."""
    if not ctx.config.gold.incremental or current is None or current.versions != held:
        return None
    before, now = json.loads(current.fingerprint), json.loads(fp)
    before.pop("silver", None), now.pop("silver", None)
    return current if before == now else None


def _month_filter(months: list[date | None]) -> str:
    """``service_month`` in ``months`` (a NULL month is the partition of rows with none)."""
    days = [f"DATE '{m.isoformat()}'" for m in months if m is not None]
    parts = [f"service_month IN ({', '.join(days)})"] if days else []
    if None in months:
        parts.append("service_month IS NULL")
    return " OR ".join(parts)


@dataclass
class _Plan:
    """How one model is built this run: ``keep`` its released version, rewrite ``months``,
    or (neither) rebuild it whole; ``why`` for the audit log."""

    keep: bool = False
    months: list[date | None] | None = None
    why: str = ""


class _Changes:
    """What moved between the base release and now, as each model reads it.

    A relation's change is the rows that differ between the base release's version and the
    current one, in the columns the model reads, as multisets (a dropped duplicate counts).
    Gold tables rebuilt by month are compared in those months only.
    """

    def __init__(self, s: EngineSession, ctx: RunContext, base: Release, as_of: date):
        self.s, self.ctx, self.base = s, ctx, base
        self.silver: dict[str, int] = json.loads(base.fingerprint)["silver"]
        self.as_of_moved = base.as_of_date != as_of.isoformat()
        self.rebuilt: dict[str, list[date | None] | None] = {}  # gold model -> months (None: all)
        self._names = itertools.count(1)
        self._written_keys: dict[str, str | None] = {}
        self._opened: set[str] = set()  # base versions read so far (``_sides``)

    def moved(self, relation: str) -> bool:
        """Whether ``relation`` can differ from the base at all (versions, no data read)."""
        if relation == PARAMS:
            return self.as_of_moved
        layer, _, name = relation.partition(".")
        if layer == "silver":
            return self.ctx.lake.content_version(silver_path(name)) != self.silver.get(name, -1)
        return name in self.rebuilt

    @staticmethod
    def is_fact(relation: str) -> bool:
        """A gold table partitioned by month: large, compared only to map changes to months."""
        layer, _, name = relation.partition(".")
        return layer == "gold" and bool(model("gold", name).spec.get("partition_by"))

    def changed(self, relation: str, columns: frozenset[str]) -> str | None:
        """A temp table of ``relation``'s changed rows (in ``columns``), or None if none."""
        layer, _, name = relation.partition(".")
        where = ""
        if layer == "silver":
            if (written := self._written(name)) is None:
                return None
            if written:  # compare only the keys written since (see ``_written``)
                key = quote_ident(model("silver", name).key)
                where = f" WHERE {key} IN (SELECT {key} FROM {written})"
            old, new = self._sides(layer, name)
        else:
            old, new = self._sides(layer, name)
            months = self.rebuilt[name]
            where = f" WHERE {_month_filter(months)}" if months is not None else ""
        return self._diff(old, new, sorted(columns), where)

    def _sides(self, layer: str, name: str) -> tuple[str, str]:
        """The base version of a silver or gold table and its version now, as relations
        holding only the files one of them has (``read_lake``'s ``without``): the rows of the
        files both hold are the same on both sides, so comparing the rest finds the same
        changes. A MERGE that rewrote last month's files of 10M clustered transactions is
        compared in those files, not in every row of both versions. Opened once per run."""
        old, new = f"base_{layer}_{name}", f"now_{layer}_{name}"
        if old in self._opened:
            return old, new
        path = silver_path(name) if layer == "silver" else gold_path(name)
        then = self.silver.get(name, -1) if layer == "silver" else self.base.versions[name]
        table = self.ctx.lake.table(path)
        if then < 0 or table is None:  # not there at the base (``_written``): every row is new
            return old, f"{layer}.{name}"
        now = table.version()
        self.s.read_lake(old, self.ctx.lake, path, version=then, without=now)
        self.s.read_lake(new, self.ctx.lake, path, version=now, without=then)
        self._opened.add(old)
        return old, new

    def _written(self, name: str) -> str | None:
        """The keys of silver entity ``name`` written or removed since the base, as a temp
        table (``""``: compare every row; None: nothing was).

        Every silver write stamps the rows it writes with ``_updated_at`` (inserts, new and
        closed versions, re-checked quality), so a row that differs from the base differs in
        ``(key, _updated_at)``, and a removed or restored one too. Comparing those two columns
        first keeps the wide comparison to the keys they name: at 10M rows hashing every
        column read was most of a fact's plan. When every commit since the base is a write
        that removed no key and recorded its stamp (``silver._meta``), the keys written are
        the rows carrying those stamps, found without comparing the base version's rows (10M
        transactions: 4.0 s for that comparison). Rows without a key fall back to every row."""
        if name in self._written_keys:
            return self._written_keys[name]
        from rcmlake.transforms.check import empty_silver

        version = self.silver.get(name, -1)
        key = model("silver", name).key
        found: str | None = ""
        if version < 0:  # not there when the base was built: every row is new
            self.s.register(f"base_silver_{name}", empty_silver()[name].empty_table())
            self._written_keys[name] = found
            return found
        # opened either way: ``changed`` compares the written keys' rows in them; a row
        # stamped since the base is in a file written since, so one the base lacks
        old, new = self._sides("silver", name)
        if (stamps := self._stamps(name, version)) is not None:
            found = f"changed_{next(self._names)}"
            listed = ", ".join(timestamp(at) for at in stamps) or "NULL"
            self.s.materialize(
                found,
                f"SELECT DISTINCT {quote_ident(key)} FROM {new} WHERE _updated_at IN ({listed})",
            )
            if not int(self.s.scalar(f"SELECT count(*) FROM {found}")):
                self.s.drop(found)
                found = None
        else:
            found = self._diff(old, new, [key, "_updated_at"], "")
        if found and self.s.scalar(
            f"SELECT count(*) FROM {found} WHERE {quote_ident(key)} IS NULL"
        ):
            found = ""
        self._written_keys[name] = found
        return found

    def _stamps(self, name: str, version: int) -> list[datetime] | None:
        """The stamps of silver entity ``name``'s commits after ``version``, or None when one
        of them may have removed a key or restored older rows (no stamp recorded: an
        overwrite, a delete, a rollback, which copies the metadata of the version it restores)."""
        commits = self.ctx.lake.commits_since(silver_path(name), version)
        if commits is None:
            return None
        stamps = []
        described = vouched(commits)  # Sail's MERGEs, described by the empty commit after them
        for commit in commits:
            meta = commit["rcmlake"]
            if is_maintenance(commit) or int(commit["version"]) in described:
                continue
            if STAMP not in meta or "rolled_back_from" in meta:
                return None
            stamps.append(datetime.fromisoformat(str(meta[STAMP])))
        return stamps

    def _diff(self, old: str, new: str, columns: list[str], where: str) -> str | None:
        """Rows of ``old`` and ``new`` (``where``) that differ in ``columns``, as a temp
        table; None when none do."""
        cols = ", ".join(quote_ident(c) for c in columns)
        table = f"changed_{next(self._names)}"
        # rows counted by a hash of the compared columns (old +1, new -1): a hash whose count
        # does not cancel out names changed rows. One 64-bit hash per row, grouped, is a
        # fraction of an EXCEPT ALL over every column (which at 1M rows cost more than
        # rebuilding the table); a change is missed only if its new row hashes as its old.
        # Materialised, as it is read twice: scanning both versions of 10M transactions for
        # the keys written took 3.4 s as a view and 1.8 s so
        self.s.materialize(
            "sides",
            f"SELECT {cols}, hash({cols}) AS _h, 1 AS _side FROM {old}{where} "
            f"UNION ALL SELECT {cols}, hash({cols}) AS _h, -1 AS _side FROM {new}{where}",
        )
        self.s.materialize(
            table,
            f"SELECT {cols} FROM sides WHERE _h IN "
            "(SELECT _h FROM sides GROUP BY _h HAVING sum(_side) <> 0)",
        )
        found = int(self.s.scalar(f"SELECT count(*) FROM {table}"))
        self.s.drop("sides")
        if found:
            return table
        self.s.drop(table)
        return None

    def plan(self, m: Model) -> _Plan:
        reads = gold_lineage()[m.name]
        mapped: dict[str, str] = m.spec.get("months", {})
        moved = [r for r in reads if self.moved(r)]
        if not moved:
            return _Plan(keep=True, why="none of its inputs changed")
        if PARAMS in moved:  # one row of settings: every row it touches may move
            return _Plan(why="the as-of date moved")
        months: set[date | None] = set()
        changed_inputs = []
        for relation in sorted(moved, key=lambda r: r in mapped):  # unmapped ones first
            if self.is_fact(relation) and (
                relation not in mapped or self.rebuilt[relation.partition(".")[2]] is None
            ):
                # a fact rewritten this run (whole, or read by a model with no month mapping
                # for it): comparing its millions of rows costs more than rebuilding what
                # reads it whole; a fact rewritten whole changed in every month it holds
                return _Plan(why=f"{relation} was rewritten")
            table = self.changed(relation, reads[relation])
            if table is None:
                continue
            changed_inputs.append(relation)
            if relation not in mapped:
                self.s.drop(table)
                return _Plan(why=f"{relation} changed")
            self.s.execute(f"CREATE OR REPLACE TEMP VIEW changed AS SELECT * FROM {table}")
            found = self.s.sql(
                "SELECT DISTINCT CAST(date_trunc('month', day) AS DATE) AS month "
                f"FROM ({mapped[relation]}) AS moved"
            )
            months |= set(found.column(0).to_pylist())
            self.s.drop(table)
        if not changed_inputs:
            return _Plan(keep=True, why="its inputs changed, not in the columns it reads")
        if not months:
            return _Plan(keep=True, why=f"no service month reads what changed in {changed_inputs}")
        held = {
            None if v is None else date.fromisoformat(v)
            for v in self.ctx.lake.partition_values(gold_path(m.name), "service_month")
        }
        if held <= months:  # every month it holds: one plain overwrite, no filter to apply
            return _Plan(why=f"every service month changed: {', '.join(changed_inputs)}")
        ordered = sorted(months, key=lambda d: (d is not None, d or date.min))
        return _Plan(
            months=ordered, why=f"{len(ordered)} service month(s): {', '.join(changed_inputs)}"
        )


def _build(ctx: RunContext, fp: str, base: Release | None) -> list[LoadRecord]:
    """Build every model (``base``: incrementally from that release) and release the result."""
    all_models = models("gold")
    records: list[LoadRecord] = []
    versions: dict[str, int] = {}
    try:
        session = ctx.engine.session()
    except RcmlakeError as exc:  # no engine (an unreachable cluster): every model fails
        records = [_start(ctx, m).fail(exc) for m in all_models]
        ctx.audit.record(*records)
        return records
    with session as s, ctx.console.progress("gold", len(all_models)) as bar:
        register_silver(s, ctx)
        cfg = ctx.config.gold
        as_of = cfg.as_of or default_as_of(s)
        s.register(PARAMS, gold_params(cfg, as_of))
        changes = _Changes(s, ctx, base, as_of) if base is not None else None
        failed = False
        for m in all_models:
            rec = _start(ctx, m)
            if failed:
                records.append(rec.finish("skipped", "an earlier gold model failed"))
                continue
            try:
                plan = _Plan(why="first build" if base is None else "")
                if changes is not None:
                    try:
                        plan = changes.plan(m)
                    except RcmlakeError as exc:  # an old version gone (vacuumed): build whole
                        plan = _Plan(why=f"whole: {exc}")
                if plan.keep and base is not None:
                    versions[m.name] = base.versions[m.name]
                    s.read_lake(
                        f"gold.{m.name}", ctx.lake, gold_path(m.name), version=versions[m.name]
                    )
                    records.append(rec.finish("no_change", plan.why))
                    bar.advance(f"gold {m.name}")
                    continue
                versions[m.name] = _write(s, ctx, m, rec, fp, as_of, plan.months)
                if changes is not None:
                    changes.rebuilt[m.name] = plan.months
                if plan.why:
                    rec.note(plan.why)
                # later models read what was written: the engine holds one model's result at a
                # time (not every fact built so far, which at 10M rows outgrew a 4 GB DuckDB),
                # and Spark does not recompute the chain of models before it
                s.read_lake(f"gold.{m.name}", ctx.lake, gold_path(m.name), version=versions[m.name])
                faults.point("gold.after_commit")
                rec.finish("success")
            except RcmlakeError as exc:
                failed = True
                rec.fail(exc)
            records.append(rec)
            bar.advance(f"gold {m.name}")
    # one audit commit for the build; a crash before it is recovered from the Delta log
    # (every gold commit carries its batch id) at the start of the next run
    ctx.audit.record(*records)
    if not failed:
        release.publish(
            ctx.lake,
            run_id=ctx.run_id,
            fingerprint=fp,
            versions=versions,
            as_of_date=as_of.isoformat(),
        )
    return records


def _write(
    s: EngineSession,
    ctx: RunContext,
    m: Model,
    rec: LoadRecord,
    fp: str,
    as_of: date,
    months: list[date | None] | None,
) -> int:
    """Build ``m`` (only ``months`` of it, overwriting those partitions) in one commit."""
    where = _month_filter(months) if months is not None else None
    rec.load_type = "months" if where else "rebuild"
    query = f"SELECT * FROM ({m.sql}) AS built WHERE {where}" if where else m.sql
    cfg = ctx.config.gold
    # streamed straight into the table: a 10M-row fact is never held by the engine as a
    # copy; its rows are counted from what was written (file statistics, not a scan)
    rec.delta_version = version = s.write(
        ctx.lake,
        gold_path(m.name),
        query,
        comments=m.describe(),
        mode="overwrite",
        schema_mode=None if where else "overwrite",
        predicate=where,
        replace=None if months is None else [{"service_month": month} for month in months],
        partition_by=m.spec.get("partition_by"),
        description=m.spec.get("description"),
        metadata={
            "run_id": ctx.run_id,
            "batch_id": rec.batch_id,
            "load_type": rec.load_type,
            "fingerprint": fp,
            "as_of_date": as_of.isoformat(),
            "aging_basis": cfg.aging_basis,
            **({"months": [str(x) for x in months]} if months is not None else {}),
        },
    )
    written = f"written_{m.name}"
    s.read_lake(written, ctx.lake, gold_path(m.name), version=version)
    rows = s.scalar(f"SELECT count(*) FROM {written}{f' WHERE {where}' if where else ''}")
    rec.rows_read = rec.rows_written = int(rows)
    return version
