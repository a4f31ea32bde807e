"""Code sets into bronze: ICD-10-CM and NPI registry records, fetched only for codes not yet held.

They run after the EMR tables land, because which codes to fetch depends on
what the transactions and providers use. What the APIs return lands in
bronze like any source (append-only, lineage, audit), so silver treats code
sets like every other entity, and the bronze tables double as the local
cache: a code already there is never requested again.
"""

from __future__ import annotations

import pyarrow as pa

from rcmlake.errors import RcmlakeError
from rcmlake.layers.bronze import TS, _commit_meta, retrying
from rcmlake.layers.context import RunContext
from rcmlake.sources.codesets import icd, npi
from rcmlake.sources.codesets.http import ApiClient
from rcmlake.storage.audit import LoadRecord
from rcmlake.transforms import CODESETS, mapping

ICD_PATH = f"bronze/{CODESETS}/icd_codes"
NPI_PATH = f"bronze/{CODESETS}/npi_registry"


def _used(ctx: RunContext, entity: str, cdm_column: str) -> set[str]:
    """Distinct values of a CDM column across every datasource's bronze table for ``entity``."""
    values: set[str] = set()
    for ds, source in ctx.config.sources.items():
        for t in source.tables:
            if t.entity_name != entity:
                continue
            column = mapping(ctx.config, ds, entity).get(cdm_column)
            data = ctx.lake.read(f"bronze/{ds}/{t.target_name}")
            if data is not None and column in data.column_names:
                values |= {
                    str(v).strip().upper()
                    for v in data[column].unique().to_pylist()
                    if v is not None
                }
    return values


def _held(ctx: RunContext, path: str, column: str) -> set[str]:
    data = ctx.lake.read(path, columns=[column])
    return set(data.column(0).to_pylist()) if data is not None else set()


def _append(
    ctx: RunContext, rec: LoadRecord, path: str, table: pa.Table, mode: str = "append"
) -> LoadRecord:
    rec.rows_read = rec.rows_written = table.num_rows
    if table.num_rows == 0:
        return rec.finish("no_change")
    table = table.append_column("_batch_id", pa.repeat(pa.scalar(rec.batch_id), table.num_rows))
    table = table.append_column(
        "_ingested_at", pa.repeat(pa.scalar(rec.started_at, TS), table.num_rows)
    )
    table = table.append_column("_source", pa.repeat(pa.scalar(rec.table), table.num_rows))
    rec.delta_version = ctx.lake.write(path, table, mode=mode, metadata=_commit_meta(rec))
    return rec.finish("success")


def load_icd(ctx: RunContext) -> LoadRecord:
    cfg = ctx.config.codesets.icd
    rec = ctx.record(
        layer="bronze",
        datasource=CODESETS,
        table="icd_codes",
        load_type=f"codeset:{cfg.mode}",
    )
    if cfg.mode == "off":
        return rec.finish("skipped", "codesets.icd.mode is off")
    held = _held(ctx, ICD_PATH, "code")
    if cfg.mode == "packaged":
        table = icd.packaged()
        new = [c not in held for c in table["code"].to_pylist()]
        return _append(ctx, rec, ICD_PATH, table.filter(pa.array(new)))
    wanted = _used(ctx, "transactions", "icd_code") - held
    with ApiClient(
        cfg.url or "",
        per_second=cfg.requests_per_second,
        timeout=cfg.timeout_seconds,
        name="NLM ICD-10-CM",
    ) as api:
        table = icd.lookup(api, wanted, cfg.page_size)
    return _append(ctx, rec, ICD_PATH, table)


def load_npi(ctx: RunContext) -> LoadRecord:
    cfg = ctx.config.codesets.npi
    rec = ctx.record(
        layer="bronze",
        datasource=CODESETS,
        table="npi_registry",
        load_type=f"codeset:{cfg.mode}",
    )
    if cfg.mode != "api":
        return rec.finish("skipped", f"codesets.npi.mode is {cfg.mode}")
    wanted = {n.zfill(10) for n in _used(ctx, "providers", "npi")} - _held(ctx, NPI_PATH, "npi")
    with ApiClient(
        cfg.url or "",
        per_second=cfg.requests_per_second,
        timeout=cfg.timeout_seconds,
        name="NPPES NPI Registry",
    ) as api:
        table = npi.lookup(api, wanted)
    return _append(ctx, rec, NPI_PATH, table)


def run_codesets(ctx: RunContext) -> list[LoadRecord]:
    out = []
    for loader in (load_icd, load_npi):
        try:
            rec = retrying(ctx)(loader, ctx)
        except RcmlakeError as exc:
            rec = ctx.record(
                layer="bronze",
                datasource=CODESETS,
                table=loader.__name__.removeprefix("load_"),
                load_type="codeset",
            ).finish("failed", str(exc))
        ctx.audit.record(rec)
        out.append(rec)
    return out
