"""The facade: ``Project(config)`` owns config, lake, engine and console.

The CLI, the tests and the Airflow DAG factory (``rcmlake.airflow``) all go through it.

Example::

    project = Project.load("rcmlake.yaml")
    result = project.run(layers=["bronze", "silver", "gold"])
    result.exit_code
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from rcmlake.config import load_config
from rcmlake.config.models import ProjectConfig
from rcmlake.console import Console, QuietConsole
from rcmlake.engines import engine_for
from rcmlake.engines.base import Engine
from rcmlake.engines.duckdb import DuckDBEngine, DuckDBSession
from rcmlake.errors import ConfigError, LakeLocked
from rcmlake.layers.context import RunContext, new_id
from rcmlake.storage import objects
from rcmlake.storage.audit import AUDIT_PATH, AuditLog, LoadRecord
from rcmlake.storage.delta import Lake
from rcmlake.storage.lease import Lease
from rcmlake.storage.lock import lake_lock, private_files

LAYERS = ("bronze", "silver", "gold")
SCRATCH = "_scratch"  # in the lake: what an engine writes for the length of a session
FAILED = ("failed", "rejected")


@dataclass
class RunResult:
    """What a run did, table by table."""

    run_id: str
    records: list[LoadRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[LoadRecord]:
        return [r for r in self.records if r.status in FAILED]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": r.layer,
                "table": f"{r.datasource}.{r.table}"
                + (f" ({Path(r.source_file).name})" if r.source_file else ""),
                "read": r.rows_read,
                "written": r.rows_written,
                "quarantined": r.rows_quarantined,
                "released": r.rows_released,
                "secs": round(r.duration_s, 2),
                "status": r.status,
            }
            for r in self.records
        ]


class Project:
    """One lake and its configuration.

    ``run_id`` and ``lease_owner`` are for orchestrators: the tasks of one Airflow DAG run
    share a run id (so ``rollback`` undoes the DAG run as one) and one lake lease (so they
    run in parallel while no other run writes); by default each ``run`` is its own.
    """

    def __init__(
        self,
        config: ProjectConfig,
        *,
        console: Console | None = None,
        engine: Engine | None = None,
        run_id: str | None = None,
        lease_owner: str | None = None,
    ):
        self.config = config
        self.console = console or QuietConsole()
        # bronze extraction and reading the lake (sql, report, export) run in this process;
        # silver and gold on ``run.engine``
        self.local = DuckDBEngine(config.run.memory_limit, config.run.threads)
        self.lake = Lake(config.lake_uri)
        self.engine = engine or (
            self.local
            if config.run.engine == "duckdb"
            else engine_for(config.run, self.lake.uri(SCRATCH))
        )
        self.audit = AuditLog(self.lake)
        self.run_id = run_id
        self.lease_owner = lease_owner

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs: Any) -> Project:
        return cls(load_config(path), **kwargs)

    def context(self) -> RunContext:
        ctx = RunContext(
            self.config, self.lake, self.audit, self.engine, self.console, local=self.local
        )
        ctx.run_id = self.run_id or ctx.run_id
        return ctx

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lake for writing: the lake lease (any storage; shared by ``lease_owner``'s
        tasks, kept for the owner's last step to release), and on a local lake for a run of its
        own also the ``flock``, which the kernel frees the moment a killed run dies."""
        shared = self.lease_owner is not None
        lease = Lease(
            self.lake.root,
            owner=self.lease_owner or new_id("lease"),
            ttl=self.config.run.lease_seconds,
            process_bound=not shared,
        )
        with (
            lake_lock(self.lake.root, local=self.lake.is_local and not shared),
            private_files() if self.lake.is_local else nullcontext(),
            lease.held(release=not shared),
        ):
            self.lake.fence = lease.check
            try:
                yield
            finally:
                self.lake.fence = lambda: None

    def release_lease(self) -> None:
        """Give up ``lease_owner``'s shared lease (an Airflow run's last task does)."""
        if self.lease_owner is not None:
            Lease(self.lake.root, owner=self.lease_owner, ttl=0, process_bound=False).release()

    def ingest(self, only: set[str] | None = None) -> RunResult:
        """Land sources and landing files in bronze."""
        return self.run(["bronze"], only=only)

    def transform(self, layer: str) -> RunResult:
        """Build silver or gold from the layer below."""
        return self.run([layer])

    def run(self, layers: Sequence[str] = LAYERS, *, only: set[str] | None = None) -> RunResult:
        """Run layers in order under the lake lock; a failed layer does not stop ingestion of
        others. ``only`` (sources, ``source.table``, feeds, datasources, ``codesets``) narrows
        bronze."""
        from rcmlake.layers.bronze import selected_loads

        unknown = [layer for layer in layers if layer not in LAYERS]
        if unknown:
            raise ConfigError(f"unknown layer {unknown[0]!r}; known: {', '.join(LAYERS)}")
        return self._run(layers, selected_loads(self.config, only) if only else None, None)

    def step(self, layer: str, target: str | None = None) -> RunResult:
        """One task of an orchestrated run: the bronze load ``target`` (a key of
        ``layers.bronze.bronze_loads``: ``hospital_a.patients``, ``files.claims``,
        ``codesets``), the silver entity ``target``, or all of gold (one release).

        Example (what each task of ``rcmlake.airflow`` calls)::

            Project(config, run_id=..., lease_owner=...).step("silver", "claims")
        """
        from rcmlake.layers.bronze import bronze_loads
        from rcmlake.transforms import models

        known = {
            "bronze": list(bronze_loads(self.config)),
            "silver": [m.name for m in models("silver")],
            "gold": [],
        }
        if layer not in known:
            raise ConfigError(f"unknown layer {layer!r}; known: {', '.join(LAYERS)}")
        if (target is None) != (layer == "gold") or (target and target not in known[layer]):
            raise ConfigError(
                f"{layer} step {target!r} is not one of: {', '.join(known[layer]) or 'none'}"
            )
        only = {target} if target else None
        return self._run([layer], only if layer == "bronze" else None, only)

    def claim_lease(self, wait: float = 0.0) -> None:
        """Take ``lease_owner``'s shared lease now (an orchestrated run's first task), so a run
        that finds the lake held waits before any work rather than in the middle. Tries for
        up to ``wait`` seconds: waiting ``run.lease_seconds`` outlasts a killed holder's
        lease, so only a live run still writing the lake makes it raise ``LakeLocked``."""
        deadline = time.monotonic() + wait
        while True:
            try:
                with self.writing():
                    return
            except LakeLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(5.0, max(0.2, wait / 20)))

    def _run(
        self, layers: Sequence[str], loads: set[str] | None, entities: set[str] | None
    ) -> RunResult:
        from rcmlake.layers.bronze import bronze_loads
        from rcmlake.transforms import validate

        validate(self.config)
        reading = {
            load.source for key, load in bronze_loads(self.config).items() if key in (loads or ())
        }
        for name, source in self.config.sources.items():
            if loads is None or name in reading:
                source.resolved_url()  # a missing ${VAR} is a config error before any work
        for notice in self.config.notices:
            self.console.info(notice)
        ctx = self.context()
        result = RunResult(ctx.run_id)
        with self.writing():
            for layer in [layer for layer in LAYERS if layer in layers]:
                with self.audit.held():  # one audit commit per layer
                    result.records.extend(self._layer(layer, ctx, loads, entities))
        return result

    def _layer(
        self, layer: str, ctx: RunContext, loads: set[str] | None, entities: set[str] | None
    ) -> list[LoadRecord]:
        if layer == "bronze":
            from rcmlake.layers.bronze import run_bronze

            return run_bronze(ctx, loads)
        if layer == "silver":
            from rcmlake.layers.silver import run_silver

            return run_silver(ctx, entities)
        from rcmlake.layers.gold import run_gold

        return run_gold(ctx)

    def status(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest loads from the audit log, newest first."""
        rows = self.audit.latest(limit)
        return [
            {
                "when": r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
                "layer": r["layer"],
                "table": f"{r['datasource']}.{r['table']}",
                "file": r["source_file"] or "",
                "watermark": r["watermark_to"] or "",
                "rows": r["rows_written"],
                "status": r["status"],
                "error": (r["error"] or "")[:80],
            }
            for r in rows
        ]

    def lock_holder(self) -> dict[str, Any] | None:
        """The run holding the lake (host, pid, started_at), or None: the ``flock`` of a
        local run, else the lease (any storage)."""
        from dataclasses import asdict

        from rcmlake.storage.lease import current
        from rcmlake.storage.lock import holder

        who = holder(self.lake.root) if self.lake.is_local else None
        if who is None and (leased := current(self.lake.root)) is not None:
            who = {**asdict(leased), "started_at": leased.acquired_at}
        return who

    def _reader(self, role: str) -> DuckDBSession:
        """A session to read the lake in as ``role``: an analyst's is locked away from host
        files, which locks its whole database, so it gets one of its own."""
        return self.local.session(private=role == "analyst")

    def sql(self, query: str, *, as_of: str | None = None, role: str = "analyst") -> pa.Table:
        """Run DuckDB SQL over every silver and gold table, registered as views by their names;
        ``as_of`` (a release number or an ISO time) reads the lake as it was then. As
        ``analyst`` (the default) direct identifiers are masked and host files unreachable;
        ``privileged`` sees every value."""
        from rcmlake.serve.catalog import register_lake

        with self._reader(role) as s:
            register_lake(s, self.lake, as_of, role=role, engine=self.local, needed=query)
            return s.sql(query)

    def history(self, table: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The versions of ``table`` (``silver/patients`` or ``silver.patients``), newest first,
        each with the run that wrote it; without a table, the gold releases (the numbers
        ``sql --as-of`` takes)."""
        from rcmlake.storage import release

        if table is None:
            return [
                {
                    "release": n,
                    "created_at": r.created_at,
                    "run_id": r.run_id,
                    "as_of_date": r.as_of_date,
                    "tables": len(r.versions),
                }
                for n, r in enumerate(release.releases(self.lake), start=1)
            ][::-1][:limit]
        path = table.replace(".", "/")
        if not self.lake.exists(path):
            raise ConfigError(
                f'no table {path} in the lake; `rcmlake sql "SHOW TABLES"` lists them'
            )
        out = []
        for c in self.lake.commits(path, limit):
            meta, metrics = c["rcmlake"], c.get("operationMetrics") or {}
            rows = metrics.get("num_added_rows", metrics.get("num_output_rows"))
            out.append(
                {
                    "version": c["version"],
                    "at": datetime.fromtimestamp(c["timestamp"] / 1000, UTC),
                    "operation": meta.get("operation", c.get("operation")),
                    "run_id": meta.get("run_id"),
                    "rows_written": meta.get("rows_written", rows),
                    "watermark_to": meta.get("watermark_to"),
                }
            )
        return out

    def vacuum(self, retain_hours: int = 168) -> list[dict[str, Any]]:
        """Compact, checkpoint and vacuum every table (see ``Lake.maintain``), under the lake
        lock. Files a version newer than ``retain_hours`` needs, and the published gold
        release, are kept: rollback and ``--as-of`` reach back that far. The scratch folder
        (``_scratch``, a Spark session's intermediate results) is emptied."""
        from rcmlake.layers.rollback import lake_paths
        from rcmlake.storage import release
        from rcmlake.transforms import models

        if retain_hours < 0:
            raise ConfigError("--retain-hours must be 0 or more")
        pinned = release.latest(self.lake)
        # silver entities laid out by month (``cluster_by``): compacted month by month
        clustered = {
            f"silver/{m.name}": m.spec["cluster_by"]
            for m in models("silver")
            if m.spec.get("cluster_by")
        }
        out = []
        with self.writing():
            for path in [*lake_paths(self.context()), AUDIT_PATH]:
                layer, _, name = path.partition("/")
                keep = (
                    [pinned.versions[name]]
                    if pinned and layer == "gold" and name in pinned.versions
                    else None
                )
                # by DuckDB month by month; by delta-rs where DuckDB cannot write (an object store)
                by_month: dict[str, int] = {}
                by_engine = path in clustered and self.lake.is_local
                if by_engine:
                    session = self.local.session()
                    with session:
                        by_month = session.compact_clustered(self.lake, path, clustered[path])
                done = self.lake.maintain(path, retain_hours, keep, compact=not by_engine)
                if done:
                    out.append({"table": path, **done, **by_month})
            # what a killed run's engine session left (no run holds the lake meanwhile)
            objects.remove_tree(self.lake.uri(SCRATCH))
        return out

    def tables(self) -> list[str]:
        from rcmlake.serve.catalog import lake_tables

        return list(lake_tables(self.lake))

    def quality(self, examples: int = 3, role: str = "analyst") -> dict[str, list[dict[str, Any]]]:
        """The quality picture: ``rules`` (rows failing each rule, by effective severity, with
        example keys), ``tables`` (quarantined rows and rule hits per table) and
        ``unknown_members`` (fact rows whose dimension key is -1)."""
        from rcmlake.serve.catalog import register_lake
        from rcmlake.serve.quality import (
            every_rule,
            quality_report,
            quarantine_totals,
            unknown_members,
        )

        with self._reader(role) as s:
            tables = register_lake(s, self.lake, role=role, engine=self.local)
            entities = _silver_entities(tables)
            hits = quality_report(s, entities, examples)
            totals = quarantine_totals(s, entities)
            return {
                "rules": every_rule(self.config, hits, totals),
                "tables": totals,
                "unknown_members": unknown_members(s, tables),
            }

    def report(self, out: Path | None = None, role: str = "analyst") -> Path:
        """Write the self-contained HTML dashboard (default: ``<config dir>/rcmlake-report.html``)."""
        from rcmlake.errors import StorageError
        from rcmlake.serve.catalog import register_lake
        from rcmlake.serve.quality import quality_report
        from rcmlake.serve.report import QUERIES, report_data, write_report

        with self._reader(role) as s:
            needed = " ".join(QUERIES.values())  # the marts: no masked table is copied
            tables = register_lake(s, self.lake, role=role, engine=self.local, needed=needed)
            if "gold.mart_kpi_monthly" not in tables:
                raise StorageError("no gold tables yet; run `rcmlake run` first")
            data = report_data(s)
        # The page's quality section is counts per table, datasource and rule, no keys and no
        # values, so it reads silver as stored: masking it first copied every silver table
        # with an identifier into the session (at 10M transactions, 9 GB and a minute).
        with self.local.session() as s:
            data["quality"] = quality_report(s, _silver_entities(register_lake(s, self.lake)), 0)
        return write_report(
            data,
            out or self.config.path("rcmlake-report.html"),
            f"{self.config.name} — revenue cycle",
        )

    def headline(self, months: int = 6) -> list[dict[str, Any]]:
        """Headline KPIs per hospital: rates over the trailing ``months`` (cohorts need time to
        be paid), A/R at the latest month end; re-aggregated from the mart's components."""
        table = self.sql(f"""
            WITH recent AS (
                SELECT * FROM mart_kpi_monthly
                QUALIFY month > max(month) OVER (PARTITION BY datasource) - INTERVAL {int(months)} MONTH
            )
            SELECT datasource AS hospital,
                   strftime(min(month), '%Y-%m') || '..' || strftime(max(month), '%Y-%m') AS months,
                   round(100 * sum(payments) / nullif(sum(gross_charges), 0), 1) AS "gross coll %",
                   round(100 * sum(payments) / nullif(sum(gross_charges - contractual_adjustments), 0), 1)
                       AS "net coll %",
                   round(100.0 * sum(claims_denied) / nullif(sum(claims_adjudicated), 0), 1) AS "denial %",
                   round(100.0 * sum(claims_first_pass) / nullif(sum(claims_adjudicated + claims_rejected), 0), 1)
                       AS "first-pass %",
                   round(arg_max(days_in_ar_gross, month), 1) AS "days in A/R (gross)",
                   round(100 * arg_max(ar_over_90_share, month), 1) AS "A/R>90 %"
            FROM recent GROUP BY datasource ORDER BY datasource""")
        return table.to_pylist()

    def export_duckdb(self, out: Path, *, copy: bool = False, role: str = "analyst") -> list[str]:
        from rcmlake.serve.export import to_duckdb

        return to_duckdb(self.lake, out, copy=copy, role=role, runner=self.local)

    def export_postgres(
        self, url: str, *, schema: str = "rcmlake_gold", role: str = "analyst"
    ) -> dict[str, int]:
        from rcmlake.config.secrets import resolve_env
        from rcmlake.serve.export import to_postgres

        return to_postgres(
            self.lake,
            resolve_env(url, field="--postgres", url=True),
            schema=schema,
            role=role,
            runner=self.local,
        )

    def rollback(
        self,
        run_id: str | None = None,
        *,
        table: str | None = None,
        version: int | None = None,
    ) -> list[LoadRecord]:
        """Undo ``run_id`` and every later run (each table, the watermarks in their commits,
        silver's processed batches, the gold release and archived landing files move back
        together), or restore one ``table`` (e.g. ``silver/patients``) to ``version``.

        Example::

            project.rollback("run-20250701T020000-1a2b3c4d")
            project.run()          # loads again what that run had loaded
        """
        from rcmlake.layers.rollback import rollback_before, rollback_table

        if (run_id is None) == (table is None):
            raise ConfigError("give a run id, or a table and a version")
        ctx = self.context()
        with self.writing():
            if run_id is not None:
                return rollback_before(ctx, run_id)
            if version is None:
                raise ConfigError("a table rollback needs --version")
            return [rollback_table(ctx, table or "", version)]


def _silver_entities(tables: list[str]) -> list[str]:
    return [q.split(".")[1] for q in tables if q.startswith("silver.")]
