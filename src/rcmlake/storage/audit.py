"""The audit log: one row per table per run, at ``<lake>/_audit/loads``.

Rows are appended after the data commit they describe. If a run dies in
between, :func:`recover` rebuilds the missing rows from the ``rcmlake.*``
metadata of the Delta commits themselves, so the log never misses a batch
that landed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from rcmlake.errors import is_transient
from rcmlake.storage.delta import Lake
from rcmlake.storage.lake_types import UTC_TS

AUDIT_PATH = "_audit/loads"
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("batch_id", pa.string()),
        ("layer", pa.string()),
        ("datasource", pa.string()),
        ("table", pa.string()),
        ("load_type", pa.string()),
        ("source_file", pa.string()),
        ("file_sha256", pa.string()),
        ("watermark_column", pa.string()),
        ("watermark_from", pa.string()),
        ("watermark_to", pa.string()),
        ("rows_read", pa.int64()),
        ("rows_written", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_released", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("started_at", UTC_TS),
        ("ended_at", UTC_TS),
        ("duration_s", pa.float64()),
        ("delta_version", pa.int64()),
    ]
)
STATUSES = ("success", "no_change", "failed", "rejected", "skipped", "recovered")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LoadRecord:
    """What one step did to one table."""

    run_id: str
    batch_id: str
    layer: str
    datasource: str
    table: str
    load_type: str = ""
    source_file: str | None = None
    file_sha256: str | None = None
    watermark_column: str | None = None
    watermark_from: str | None = None
    watermark_to: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    rows_released: int = 0
    status: str = "success"
    error: str | None = None
    started_at: datetime = field(default_factory=now)
    ended_at: datetime | None = None
    duration_s: float = 0.0
    delta_version: int | None = None
    # not stored: whether the failure is worth retrying, for orchestrators (rcmlake.airflow)
    transient: bool = False

    def note(self, text: str) -> None:
        """Add a remark to a load that succeeds (stored in ``error``, ``; ``-separated)."""
        self.error = f"{self.error}; {text}" if self.error else text

    def fail(self, exc: Exception) -> LoadRecord:
        """Finish as failed by ``exc``, noting whether a retry could succeed."""
        self.transient = is_transient(exc)
        return self.finish("failed", str(exc))

    def finish(self, status: str, error: str | None = None) -> LoadRecord:
        assert status in STATUSES, status
        self.status = status
        if error is not None:  # else the notes made on the way stay
            self.error = error
        self.ended_at = now()
        self.duration_s = (self.ended_at - self.started_at).total_seconds()
        return self


class AuditLog:
    """Appends load records; serialised in-process so parallel loads never race on it."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self._lock = threading.Lock()
        self._known: set[str] | None = None
        self._held: list[LoadRecord] | None = None  # records kept for one commit (``held``)

    def record(self, *records: LoadRecord) -> None:
        if not records:
            return
        with self._lock:
            if self._held is not None:
                self._held.extend(records)
            else:
                self._append(list(records))
            if self._known is not None:
                self._known.update(r.batch_id for r in records)

    def _append(self, records: list[LoadRecord]) -> None:
        table = pa.Table.from_pylist([asdict(r) for r in records], schema=SCHEMA)
        self.lake.write(AUDIT_PATH, table, mode="append", schema_mode="merge")

    @contextmanager
    def held(self) -> Iterator[None]:
        """Records made in the block are appended in one commit when it ends, raised or not.

        A layer's loads run in parallel, and one audit commit each serialised them on the
        audit table (on an object store a commit is several round trips). Nothing is lost
        by waiting: a load that committed and was killed before its audit row is recovered
        from its table's log (``recover``), and a load that did not commit has no row to keep.
        """
        with self._lock:
            outer = self._held is not None
            if not outer:
                self._held = []
        try:
            yield
        finally:
            if not outer:
                with self._lock:
                    pending, self._held = self._held or [], None
                    if pending:
                        self._append(pending)

    def read(self) -> pa.Table:
        return self.lake.read(AUDIT_PATH) or SCHEMA.empty_table()

    def batch_ids(self) -> set[str]:
        """Batch ids already audited; read once, then kept up to date by ``record``."""
        with self._lock:
            if self._known is None:
                table = self.lake.read(AUDIT_PATH, columns=["batch_id"])
                self._known = set(table.column(0).to_pylist()) if table is not None else set()
                self._known.update(r.batch_id for r in self._held or [])
            return set(self._known)

    def latest(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.read().sort_by([("started_at", "descending")]).slice(0, limit)
        return rows.to_pylist()

    def recover(self, path: str, *, layer: str, datasource: str, table: str) -> list[LoadRecord]:
        """Write audit rows for commits to ``path`` that landed without one (a crash in between)."""
        known = self.batch_ids()
        missing = []
        for commit in self.lake.commits(path, limit=50):
            meta = commit["rcmlake"]
            if meta.get("batch_id") and meta["batch_id"] not in known:
                # gold counts its rows after the write: the log's own metric has them
                written = (commit.get("operationMetrics") or {}).get("num_added_rows", 0)
                at = datetime.fromtimestamp(commit["timestamp"] / 1000, UTC)
                missing.append(
                    LoadRecord(
                        run_id=meta.get("run_id", ""),
                        batch_id=meta["batch_id"],
                        layer=layer,
                        datasource=datasource,
                        table=table,
                        load_type=meta.get("load_type", ""),
                        source_file=meta.get("source_file"),
                        file_sha256=meta.get("file_sha256"),
                        watermark_column=meta.get("watermark_column"),
                        watermark_from=meta.get("watermark_from"),
                        watermark_to=meta.get("watermark_to"),
                        rows_read=meta.get("rows_read", written),
                        rows_written=meta.get("rows_written", written),
                        started_at=at,
                        delta_version=commit.get("version"),
                    ).finish(
                        "recovered",
                        "committed before the run stopped; audit row rebuilt from the Delta log",
                    )
                )
        self.record(*missing)
        return missing
