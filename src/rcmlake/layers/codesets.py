"""Code sets into bronze: ICD-10-CM and NPI registry records, fetched only for codes not yet held.

They run after the EMR tables land, because which codes to fetch depends on
what the transactions and providers use. What the APIs return lands in
bronze like any source (append-only, lineage, audit), so silver treats code
sets like every other entity, and the bronze tables double as the local
cache: a code already there is never requested again.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rcmlake.config.models import HttpCodesetConfig
from rcmlake.errors import RcmlakeError, SourceError, scrub
from rcmlake.layers.bronze import _commit_meta, last_content_hash, retrying
from rcmlake.layers.context import RunContext, with_lineage
from rcmlake.sources.codesets import icd, npi
from rcmlake.sources.codesets.http import ApiClient
from rcmlake.storage.audit import LoadRecord
from rcmlake.transforms import CODESETS, mapping

ICD_PATH = f"bronze/{CODESETS}/icd_codes"
NPI_PATH = f"bronze/{CODESETS}/npi_registry"
WHITESPACE = "' \t\r\n'"  # what a code is trimmed of (as Python's strip would)


def _used(ctx: RunContext, entity: str, cdm_column: str) -> set[str]:
    """Distinct values of a CDM column across every datasource's bronze table for ``entity``."""
    values: set[str] = set()
    as_code = f"upper(trim(CAST({{}} AS VARCHAR), {WHITESPACE}))"
    for ds, source in ctx.config.sources.items():
        for t in source.tables:
            if t.entity_name != entity:
                continue
            column = mapping(ctx.config, ds, entity).get(cdm_column)
            if column:  # one column's distinct values, never the table in Python
                values |= ctx.distinct(f"bronze/{ds}/{t.target_name}", column, as_code)
    return values


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
    held = ctx.distinct(ICD_PATH, "code")
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
    wanted = {n.zfill(10) for n in _used(ctx, "providers", "npi")} - ctx.distinct(NPI_PATH, "npi")
    with _client(cfg, "NPPES NPI Registry") as api:
        table = npi.lookup(api, wanted)
    return _append(ctx, rec, NPI_PATH, table)


CARC_PATH = f"bronze/{CODESETS}/carc_codes"
RARC_PATH = f"bronze/{CODESETS}/rarc_codes"


def _remit_codes(ctx: RunContext, table: str, path: str, file: Path | None) -> LoadRecord:
    """CARC or RARC codes from the packaged slice, or the file configured to refresh them
    (the X12 code lists, in the same columns); replaced only when the list changed, so
    silver versions a description, category or stop date that moved (SCD2)."""
    rec = _start(ctx, table, "file" if file else "packaged")
    source = file or Path(
        str(resources.files("rcmlake.sources.codesets").joinpath(f"data/{table[:4]}.csv"))
    )
    try:
        data = pacsv.read_csv(
            source,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(REMIT_COLUMNS, pa.string()),
                include_columns=list(REMIT_COLUMNS),
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(
            f"{table}: cannot read {source.name}: {scrub(str(exc).splitlines()[0])}"
        ) from None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest == last_content_hash(ctx, path):
        return rec.finish("no_change")
    rec.rows_read = rec.rows_written = data.num_rows
    rec.delta_version = ctx.lake.write(
        path,
        with_lineage(data, rec, source.name),
        mode="overwrite",
        schema_mode="overwrite",
        metadata=_commit_meta(rec, content_hash=digest),
    )
    return rec.finish("success")


REMIT_COLUMNS = ("code", "description", "category", "start_date", "stop_date")


def load_carc(ctx: RunContext) -> LoadRecord:
    file = ctx.config.codesets.carc_file
    return _remit_codes(ctx, "carc_codes", CARC_PATH, ctx.config.path(file) if file else None)


def load_rarc(ctx: RunContext) -> LoadRecord:
    file = ctx.config.codesets.rarc_file
    return _remit_codes(ctx, "rarc_codes", RARC_PATH, ctx.config.path(file) if file else None)


def run_codesets(ctx: RunContext) -> list[LoadRecord]:
    out = []
    for path, table in (
        (ICD_PATH, "icd_codes"),
        (NPI_PATH, "npi_registry"),
        (CARC_PATH, "carc_codes"),
        (RARC_PATH, "rarc_codes"),
    ):
        ctx.audit.recover(path, layer="bronze", datasource=CODESETS, table=table)
    for loader in (load_icd, load_npi, load_carc, load_rarc):
        try:
            rec = retrying(ctx)(loader, ctx)
        except RcmlakeError as exc:
            rec = _start(ctx, loader.__name__.removeprefix("load_"), "error").fail(exc)
        ctx.audit.record(rec)
        out.append(rec)
    return out
