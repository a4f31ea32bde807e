"""Rolling the lake back: every table to where it stood before a run, consistently.

Restoring one Delta table is easy; the lake also keeps *state about* its tables, and
that must move with them or the next run loses rows:

- an incremental bronze table's watermark is the ``rcmlake.watermark_to`` of its newest
  commit, so the restore commit carries the metadata of the version it restores (the
  watermark, content hash or fingerprint of that version, not of the undone one);
- silver's processed-batch state (``_state/silver_batches``, ``_state/requalified``) and the
  gold release log are Delta tables too, restored to the same point;
- landing files archived by an undone commit go back to the landing folder, so the
  next run loads them again.

Tables created by the undone runs are emptied (a new empty version), never deleted,
so their history stays readable. The audit log is not rolled back: it records the
rollback like any other step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from rcmlake.engines.base import quote_literal
from rcmlake.errors import ConfigError
from rcmlake.layers.bronze import feed_paths
from rcmlake.layers.context import RunContext
from rcmlake.layers.silver import REQUALIFIED_PATH, STATE_PATH
from rcmlake.storage import objects
from rcmlake.storage.audit import LoadRecord
from rcmlake.storage.release import RELEASE_PATH
from rcmlake.transforms import CODESETS, models


def lake_paths(ctx: RunContext) -> list[str]:
    """Every Delta table the config can have written (bronze, code sets, silver, gold, state)."""
    paths = [
        f"bronze/{ds}/{t.target_name}" for ds, src in ctx.config.sources.items() for t in src.tables
    ]
    for name, feed in ctx.config.files.items():
        paths += [p for ds in feed.patterns for p in feed_paths(ds, name, feed)]
    paths += [
        f"bronze/{CODESETS}/{t}" for t in ("icd_codes", "npi_registry", "carc_codes", "rarc_codes")
    ]
    paths += [f"{layer}/{m.name}" for layer in ("silver", "gold") for m in models(layer)]
    return [*sorted(set(paths)), STATE_PATH, REQUALIFIED_PATH, RELEASE_PATH]


def run_started(ctx: RunContext, run_id: str) -> datetime:
    """When ``run_id`` made its first step (from the audit log)."""
    audit = ctx.audit.read()
    started = [
        r["started_at"]
        for r in audit.select(["run_id", "started_at"]).to_pylist()
        if r["run_id"] == run_id
    ]
    if not started:
        raise ConfigError(f"no run {run_id!r} in the audit log; `rcmlake status` lists runs")
    return min(started)


def rollback_before(ctx: RunContext, run_id: str) -> list[LoadRecord]:
    """Undo ``run_id`` and every run after it; returns one audit record per table moved."""
    cutoff = run_started(ctx, run_id)
    records = []
    for path in lake_paths(ctx):
        dt = ctx.lake.table(path)
        if dt is None:
            continue
        history = ctx.lake.commits(path)
        kept = [c for c in history if _at(c) < cutoff]
        target = max((int(c["version"]) for c in kept), default=None)
        if target == dt.version():
            continue
        undone = [c for c in history if target is None or int(c["version"]) > target]
        rec = restore(ctx, path, history, target)
        _unarchive(ctx, undone)
        records.append(rec)
    ctx.audit.record(*records)
    return records


def rollback_table(ctx: RunContext, path: str, version: int) -> LoadRecord:
    """Restore one table to ``version`` and keep the state that refers to it consistent."""
    dt = ctx.lake.table(path)
    if dt is None:
        raise ConfigError(f"no table {path!r} in the lake")
    if not 0 <= version < dt.version():
        raise ConfigError(
            f"{path} is at version {dt.version()}; give an earlier one (0..{dt.version() - 1})"
        )
    history = ctx.lake.commits(path)
    undone = [c for c in history if int(c["version"]) > version]
    rec = restore(ctx, path, history, version)
    _unarchive(ctx, undone)
    if path.startswith("silver/"):
        _forget_batches(ctx, path.split("/", 1)[1], undone)
    ctx.audit.record(rec)
    return rec


def restore(
    ctx: RunContext, path: str, history: list[dict[str, Any]], version: int | None
) -> LoadRecord:
    """One commit: the table as of ``version`` (None: empty), stamped with that version's
    rcmlake metadata (from ``history``, the table's commits) so watermarks and fingerprints
    read from the log stay true."""
    layer, _, rest = path.partition("/")
    datasource, _, table = rest.rpartition("/")
    rec = ctx.record(layer=layer, datasource=datasource or "*", table=table, load_type="rollback")
    dt = ctx.lake.table(path)
    assert dt is not None
    rec.watermark_from = str(dt.version())
    meta: dict[str, object] = {"rolled_back_from": dt.version(), "run_id": ctx.run_id}
    if version is not None:
        target = next(c for c in history if int(c["version"]) == version)
        meta = {**target["rcmlake"], **meta, "batch_id": rec.batch_id}
        rec.delta_version = ctx.lake.restore(path, version, meta)
        rec.watermark_to = str(version)
    else:
        schema = pa.schema(dt.schema().to_arrow())
        rec.delta_version = ctx.lake.write(
            path,
            schema.empty_table(),
            mode="overwrite",
            # no watermark, content hash or fingerprint: the next run loads (or builds) it whole
            metadata={**meta, "batch_id": rec.batch_id, "watermark_to": None},
        )
        rec.watermark_to = "empty"
    return rec.finish(
        "success", f"restored {path} to {'empty' if version is None else f'version {version}'}"
    )


def _at(commit: dict[str, object]) -> datetime:
    return datetime.fromtimestamp(int(commit["timestamp"]) / 1000, UTC)  # type: ignore[call-overload]


def _unarchive(ctx: RunContext, undone: list[dict[str, object]]) -> None:
    """Files whose load was undone go back from ``archive/`` to the landing folder."""
    landing = objects.folder(ctx.config.landing_root)
    for commit in undone:
        meta = commit["rcmlake"]
        if not isinstance(meta, dict) or not meta.get("source_file"):
            continue
        rel = str(meta["source_file"])
        archived = str(meta.get("archived_as") or f"archive/{rel}")
        if landing.exists(archived):
            landing.move(archived, rel)


def _forget_batches(ctx: RunContext, entity: str, undone: list[dict[str, object]]) -> None:
    """Silver forgets the bronze batches its undone commits processed, so it reads them again."""
    runs = {c["rcmlake"].get("run_id") for c in undone if isinstance(c["rcmlake"], dict)}
    listed = ", ".join(quote_literal(str(r)) for r in runs if r)
    if listed and ctx.lake.exists(STATE_PATH):
        ctx.lake.delete(STATE_PATH, f"entity = '{entity}' AND run_id IN ({listed})")
