"""Gold: the star schema and KPI marts, rebuilt from silver in one engine session.

Gold is derived, so it is rebuilt whole rather than merged: each model of
``transforms/gold/gold.yml`` runs in order (dims, facts, marts) against the
current silver tables and the gold models before it, and each table is one
Delta overwrite. Every commit carries a fingerprint of the silver versions
and parameters it was built from; when neither changed, nothing is written.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pyarrow as pa

from rcmlake import faults
from rcmlake.errors import RcmlakeError
from rcmlake.layers.context import RunContext
from rcmlake.layers.silver import register_silver, silver_path
from rcmlake.storage.audit import LoadRecord
from rcmlake.storage.lake_types import to_lake
from rcmlake.transforms import Model, models


def gold_path(name: str) -> str:
    return f"gold/{name}"


def fingerprint(ctx: RunContext) -> str:
    versions = {}
    for m in models("silver"):
        dt = ctx.lake.table(silver_path(m.name))
        versions[m.name] = dt.version() if dt is not None else -1
    return json.dumps(
        {"silver": versions, "gold": ctx.config.gold.model_dump(mode="json")}, sort_keys=True
    )


def _last_fingerprint(ctx: RunContext) -> str | None:
    last = models("gold")[-1]
    commits = ctx.lake.commits(gold_path(last.name), limit=1)
    return commits[0]["rcmlake"].get("fingerprint") if commits else None


def default_as_of(s: Any) -> date:
    """The last month end the data reaches (so synthetic history is not aged against today)."""
    top = s.scalar(
        "SELECT max(greatest(service_date, coalesce(paid_date, service_date))) FROM silver.transactions"
    )
    top = top or date.today()
    first_next = date(top.year + top.month // 12, top.month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def with_descriptions(table: pa.Table, m: Model) -> pa.Table:
    """Column descriptions from gold.yml as field metadata (Delta keeps them as column comments)."""
    notes = m.describe()
    fields = [
        f.with_metadata({"comment": notes[f.name]}) if f.name in notes else f for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def run_gold(ctx: RunContext) -> list[LoadRecord]:
    all_models = models("gold")
    fp = fingerprint(ctx)
    records: list[LoadRecord] = []

    def start(m: Model) -> LoadRecord:
        return ctx.record(layer="gold", datasource="*", table=m.name, load_type="rebuild")

    if fp == _last_fingerprint(ctx):
        for m in all_models:
            rec = start(m)
            records.append(rec.finish("no_change"))
        ctx.audit.record(*records)
        return records
    with ctx.engine.session() as s, ctx.console.progress("gold", len(all_models)) as bar:
        register_silver(s, ctx)
        cfg = ctx.config.gold
        as_of = cfg.as_of or default_as_of(s)
        s.register(
            "params_src",
            pa.table(
                {
                    "as_of_date": [as_of],
                    "aging_basis": [cfg.aging_basis],
                    "fiscal_year_start_month": [cfg.fiscal_year_start_month],
                }
            ),
        )
        s.execute("CREATE OR REPLACE TEMP TABLE params AS SELECT * FROM params_src")
        s.execute("CREATE SCHEMA IF NOT EXISTS gold")
        failed = False
        for m in all_models:
            rec = start(m)
            if failed:
                records.append(rec.finish("skipped", "an earlier gold model failed"))
                continue
            try:
                s.execute(f"CREATE OR REPLACE TABLE gold.{m.name} AS {m.sql}")
                table = with_descriptions(to_lake(s.sql(f"SELECT * FROM gold.{m.name}")), m)
                rec.rows_read = rec.rows_written = table.num_rows
                rec.delta_version = ctx.lake.write(
                    gold_path(m.name),
                    table,
                    mode="overwrite",
                    schema_mode="overwrite",
                    partition_by=m.spec.get("partition_by"),
                    description=m.spec.get("description"),
                    metadata={
                        "run_id": ctx.run_id,
                        "batch_id": rec.batch_id,
                        "fingerprint": fp,
                        "as_of_date": as_of.isoformat(),
                        "aging_basis": cfg.aging_basis,
                    },
                )
                faults.point("gold.after_commit")
                records.append(rec.finish("success"))
            except RcmlakeError as exc:
                failed = True
                records.append(rec.finish("failed", str(exc)))
            bar.advance(f"gold {m.name}")
    ctx.audit.record(*records)
    return records
