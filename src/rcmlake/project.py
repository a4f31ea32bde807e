"""The facade: ``Project(config)`` owns config, lake, engine and console.

The CLI, the tests and (later) the Airflow DAG factory all go through it.

Example::

    project = Project.load("rcmlake.yaml")
    result = project.run(layers=["bronze", "silver", "gold"])
    result.exit_code
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcmlake.config import load_config
from rcmlake.config.models import ProjectConfig
from rcmlake.console import Console, QuietConsole
from rcmlake.engines.base import Engine
from rcmlake.engines.duckdb import DuckDBEngine
from rcmlake.errors import ConfigError
from rcmlake.layers.context import RunContext
from rcmlake.storage.audit import AuditLog, LoadRecord
from rcmlake.storage.delta import Lake
from rcmlake.storage.lock import lake_lock

LAYERS = ("bronze", "silver", "gold")
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
                "secs": round(r.duration_s, 2),
                "status": r.status,
            }
            for r in self.records
        ]


class Project:
    """One lake and its configuration."""

    def __init__(
        self, config: ProjectConfig, *, console: Console | None = None, engine: Engine | None = None
    ):
        self.config = config
        self.console = console or QuietConsole()
        self.engine = engine or DuckDBEngine()
        self.lake = Lake(config.lake_uri)
        self.audit = AuditLog(self.lake)

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs: Any) -> Project:
        return cls(load_config(path), **kwargs)

    def context(self) -> RunContext:
        return RunContext(self.config, self.lake, self.audit, self.engine, self.console)

    def ingest(self, only: set[str] | None = None) -> RunResult:
        """Land sources and landing files in bronze."""
        return self.run(["bronze"], only=only)

    def transform(self, layer: str) -> RunResult:
        """Build silver or gold from the layer below."""
        return self.run([layer])

    def run(self, layers: Sequence[str] = LAYERS, *, only: set[str] | None = None) -> RunResult:
        """Run layers in order under the lake lock; a failed layer does not stop ingestion of others."""
        unknown = [layer for layer in layers if layer not in LAYERS]
        if unknown:
            raise ConfigError(f"unknown layer {unknown[0]!r}; known: {', '.join(LAYERS)}")
        from rcmlake.transforms import validate

        validate(self.config)
        ctx = self.context()
        result = RunResult(ctx.run_id)
        with lake_lock(self.lake.root, local=self.lake.is_local):
            for layer in [layer for layer in LAYERS if layer in layers]:
                result.records.extend(self._layer(layer, ctx, only))
        return result

    def _layer(self, layer: str, ctx: RunContext, only: set[str] | None) -> list[LoadRecord]:
        if layer == "bronze":
            from rcmlake.layers.bronze import run_bronze

            return run_bronze(ctx, only)
        if layer == "silver":
            from rcmlake.layers.silver import run_silver

            return run_silver(ctx)
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

    def rollback(self, table: str, version: int) -> int:
        """Restore a lake table (e.g. ``silver/patients``) to an earlier Delta version."""
        dt = self.lake.table(table)
        if dt is None:
            raise ConfigError(f"no table {table!r} in the lake")
        dt.restore(version)
        return dt.version()
