"""Gold: the star schema and KPI marts, rebuilt from silver in one engine session.

Gold is derived, so it is rebuilt whole rather than merged: each model of
``transforms/gold/gold.yml`` runs in order (dims, facts, marts) against the
current silver tables and the gold models before it, and each table is one
Delta overwrite. Every commit carries a fingerprint of what it was built from
(silver versions, gold config, the models' SQL, the package version). A
complete build is published as one release (:mod:`rcmlake.storage.release`),
which is what readers see; when the fingerprint of the latest release still
holds and no gold table moved since, nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from rcmlake import __version__, faults
from rcmlake.errors import RcmlakeError
from rcmlake.layers.context import RunContext
from rcmlake.layers.silver import register_silver, silver_path
from rcmlake.storage import release
from rcmlake.storage.audit import LoadRecord
from rcmlake.storage.delta import is_maintenance
from rcmlake.transforms import Model, models


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
            "gold": ctx.config.gold.model_dump(mode="json"),
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
    """Rebuild gold when what it is built from changed, then publish it as one release."""
    all_models = models("gold")
    for m in all_models:
        ctx.audit.recover(gold_path(m.name), layer="gold", datasource="*", table=m.name)
    fp = fingerprint(ctx)
    current = release.latest(ctx.lake)
    if current and current.fingerprint == fp and current.versions == _current_versions(ctx):
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
    return _rebuild(ctx, fp)


def _rebuild(ctx: RunContext, fp: str) -> list[LoadRecord]:
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
        s.register(
            "params",
            pa.table(
                {
                    "as_of_date": [as_of],
                    "aging_basis": [cfg.aging_basis],
                    "fiscal_year_start_month": [cfg.fiscal_year_start_month],
                    "remittance_wait_days": [cfg.remittance_wait_days],
                    "underpayment_threshold": [cfg.underpayment_threshold],
                }
            ),
        )
        failed = False
        for m in all_models:
            rec = _start(ctx, m)
            if failed:
                records.append(rec.finish("skipped", "an earlier gold model failed"))
                continue
            try:
                s.materialize("gold_built", m.sql)
                rec.rows_read = rec.rows_written = int(s.scalar("SELECT count(*) FROM gold_built"))
                rec.delta_version = versions[m.name] = s.write(
                    ctx.lake,
                    gold_path(m.name),
                    "SELECT * FROM gold_built",
                    comments=m.describe(),
                    mode="overwrite",
                    schema_mode="overwrite",
                    partition_by=m.spec.get("partition_by"),
                    description=m.spec.get("description"),
                    metadata={
                        "run_id": ctx.run_id,
                        "batch_id": rec.batch_id,
                        "load_type": "rebuild",
                        "rows_read": rec.rows_read,
                        "rows_written": rec.rows_written,
                        "fingerprint": fp,
                        "as_of_date": as_of.isoformat(),
                        "aging_basis": cfg.aging_basis,
                    },
                )
                # later models read what was written: the engine holds one model's result at a
                # time (not every fact built so far, which at 10M rows outgrew a 4 GB DuckDB),
                # and Spark does not recompute the chain of models before it
                s.drop("gold_built")
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
