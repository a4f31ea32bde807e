"""Code sets into bronze: ICD-10-CM and NPI registry records, fetched only for codes not yet held.

They run after the EMR tables land, because which codes to fetch depends on
what the transactions and providers use. What the APIs return lands in
bronze like any source (append-only, lineage, audit), so silver treats code
sets like every other entity, and the bronze tables double as the local
cache: a code already there is never requested again.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from rcmlake.config.models import HttpCodesetConfig
from rcmlake.errors import RcmlakeError
from rcmlake.layers.bronze import _commit_meta, retrying
from rcmlake.layers.context import RunContext, with_lineage
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
    data = with_lineage(table, rec, rec.table)
    rec.delta_version = ctx.lake.write(path, data, mode=mode, metadata=_commit_meta(rec))
    return rec.finish("success")


def _start(ctx: RunContext, table: str, mode: str) -> LoadRecord:
    return ctx.record(layer="bronze", datasource=CODESETS, table=table, load_type=f"codeset:{mode}")


def _client(cfg: HttpCodesetConfig, name: str) -> ApiClient:
    return ApiClient(
        cfg.url or "", per_second=cfg.requests_per_second, timeout=cfg.timeout_seconds, name=name
    )


def load_icd(ctx: RunContext) -> LoadRecord:
    cfg = ctx.config.codesets.icd
    rec = _start(ctx, "icd_codes", cfg.mode)
    if cfg.mode == "off":
        return rec.finish("skipped", "codesets.icd.mode is off")
    held = _held(ctx, ICD_PATH, "code")
    if cfg.mode == "packaged":
        table = icd.packaged()
        new = pc.invert(pc.is_in(table["code"], pa.array(sorted(held), pa.string())))
        return _append(ctx, rec, ICD_PATH, table.filter(new))
    with _client(cfg, "NLM ICD-10-CM") as api:
        table = icd.lookup(api, _used(ctx, "transactions", "icd_code") - held, cfg.page_size)
    return _append(ctx, rec, ICD_PATH, table)


def load_npi(ctx: RunContext) -> LoadRecord:
    cfg = ctx.config.codesets.npi
    rec = _start(ctx, "npi_registry", cfg.mode)
    if cfg.mode != "api":
        return rec.finish("skipped", f"codesets.npi.mode is {cfg.mode}")
    wanted = {n.zfill(10) for n in _used(ctx, "providers", "npi")} - _held(ctx, NPI_PATH, "npi")
    with _client(cfg, "NPPES NPI Registry") as api:
        table = npi.lookup(api, wanted)
    return _append(ctx, rec, NPI_PATH, table)


def run_codesets(ctx: RunContext) -> list[LoadRecord]:
    out = []
    for path, table in ((ICD_PATH, "icd_codes"), (NPI_PATH, "npi_registry")):
        ctx.audit.recover(path, layer="bronze", datasource=CODESETS, table=table)
    for loader in (load_icd, load_npi):
        try:
            rec = retrying(ctx)(loader, ctx)
        except RcmlakeError as exc:
            rec = _start(ctx, loader.__name__.removeprefix("load_"), "error").finish(
                "failed", str(exc)
            )
        ctx.audit.record(rec)
        out.append(rec)
    return out
