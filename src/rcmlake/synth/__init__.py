"""Synthetic hospitals: deterministic EMR databases, monthly claims files, a CPT file.

The canonical fixture of rcmlake. ``synthesize`` writes a base history;
``synthesize(update=True)`` applies the next month's changes to it (new
encounters and claims, patients who moved, claims that got paid, defects the
source corrected). A manifest records what was injected so tests can assert
exact quarantine counts.

Example::

    result = synthesize(Path("demo"), SynthSpec(seed=7, transactions=2_000))
    result.manifest["expected_quarantine"]["hospital_a"]["patients"]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from rcmlake.config.secrets import redact
from rcmlake.errors import ConfigError
from rcmlake.synth import defects, remittances, writers
from rcmlake.synth.catalog import cpt_catalog
from rcmlake.synth.model import (
    MAX_UPDATES,
    SynthSpec,
    build,
    changed_rows,
    claims_for_month,
    snapshot,
)

__all__ = ["SynthResult", "SynthSpec", "has_layout_b", "synthesize"]

MANIFEST = "synth_manifest.json"
# Hospital B names its patient columns differently (SOURCES.md).
LAYOUT_B = {
    "PatientID": "ID",
    "FirstName": "F_Name",
    "LastName": "L_Name",
    "MiddleName": "M_Name",
    "ModifiedDate": "Updated_Date",
}


@dataclass
class SynthResult:
    manifest: dict[str, Any]
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def claims_file_name(index: int, spec: SynthSpec, month: int) -> str:
    d = spec.month_start(month)
    return f"hospital{index + 1}_claims_{d:%Y_%m}.csv"


def has_layout_b(index: int) -> bool:
    """Whether hospital ``index`` (0-based) names its patient columns as hospital B does:
    every second one (SOURCES.md), here and in the demo config."""
    return index % 2 == 1


def _emr(tl: Any, spec: SynthSpec, plan: defects.DefectPlan, updates: int) -> dict[str, pa.Table]:
    as_of = spec.month_end(spec.months + updates)
    tables = defects.apply_emr(snapshot(tl, as_of), plan, updates, as_of)
    if has_layout_b(tl.index):
        p = tables["patients"]
        tables["patients"] = p.rename_columns([LAYOUT_B.get(c, c) for c in p.column_names])
    return tables


def synth_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the synthetic set in ``folder`` ({} when there is none)."""
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def synthesize(
    out: Path, spec: SynthSpec | None = None, *, target: str | None = None, update: bool = False
) -> SynthResult:
    """Write (or, with ``update``, advance) the synthetic sources under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    previous = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if update:
        if previous is None:
            raise ConfigError(f"no {MANIFEST} in {out}; run `rcmlake synth` before --update")
        spec = SynthSpec(
            **{
                **previous["spec"],
                "start": date.fromisoformat(previous["spec"]["start"]),
                "datasources": tuple(previous["spec"]["datasources"]),
            }
        )
        updates = previous["updates"] + 1
        if updates > MAX_UPDATES:
            raise ConfigError(
                f"at most {MAX_UPDATES} updates per synthetic set; run `rcmlake synth` afresh"
            )
    else:
        spec = spec or SynthSpec()
        updates = 0
    target = target or str(out / "sources")
    result = SynthResult(manifest={})
    plans: dict[str, defects.DefectPlan] = {}
    claims_rows: dict[str, int] = {}
    remits: dict[str, dict[str, object]] = {}
    for index, ds in enumerate(spec.datasources):
        # one hospital at a time: its timeline and tables are freed before the next is drawn
        plans[ds], remit = _hospital(out, spec, index, target, updates, result, claims_rows)
        if spec.remittances:
            before = (previous or {}).get("remittances", {}).get(ds) if update else None
            remits[ds] = remittances.merge(before, remit)
    result.files.append(_write_cpt(out / "landing" / "cptcodes" / "cptcodes.csv"))
    result.manifest = {
        "spec": {**asdict(spec), "start": spec.start.isoformat()},
        "updates": updates,
        "as_of": spec.month_end(spec.months + updates).isoformat(),
        "target": redact(target),
        "rows": result.rows,
        "claims_files": {**(previous or {}).get("claims_files", {}), **claims_rows}
        if update
        else claims_rows,
        "defects": {ds: p.targets for ds, p in plans.items()},
        "corrected": {
            ds: {k: p.corrected(k, updates) for k in defects.CORRECTED_BY_UPDATE}
            for ds, p in plans.items()
        },
        "expected_quarantine": defects.expected_quarantine(plans, updates),
        "remittances": remits,
    }
    manifest_path.write_text(json.dumps(result.manifest, indent=2, sort_keys=True))
    return result


def _hospital(
    out: Path,
    spec: SynthSpec,
    index: int,
    target: str,
    updates: int,
    result: SynthResult,
    claims_rows: dict[str, int],
) -> tuple[defects.DefectPlan, dict[str, Any]]:
    """Write hospital ``index``'s EMR database, claims files and 835s (the base history, or
    with ``updates`` > 0 that update's changes); returns its defect plan and what its 835s
    hold. Rows and files written are added to ``result`` and ``claims_rows``."""
    ds, update = spec.datasources[index], updates > 0
    tl = build(spec, index)
    plan = defects.plan(tl, spec)
    engine = writers.engine_for(writers.database_url(target, ds), create=True)
    try:
        tables = _emr(tl, spec, plan, updates)
        if update:
            old = _emr(tl, spec, plan, updates - 1)
            for name, table in tables.items():
                key = writers.KEYS[name] or table.column_names[0]
                writers.upsert_rows(engine, name, changed_rows(old[name], table), key)
        else:
            writers.replace_tables(engine, tables)
    finally:
        engine.dispose()
    result.rows[ds] = {name: t.num_rows for name, t in tables.items()}
    del tables
    months = [spec.months + updates] if update else range(1, spec.months + 1)
    adjudicated = []
    for month in months:
        claims = claims_for_month(tl, spec, month)
        adjudicated.append((month, claims, spec.month_end(month)))
        corrected: list[str] = []
        if update and updates == 1:
            claims = pa.concat_tables([claims, _corrections(tl, spec, plan)])
            corrected = plan.corrected("claim_negative_amount", updates)
        text, malformed = defects.apply_claims(claims, plan, corrected)
        path = out / "landing" / "claims" / claims_file_name(index, spec, month)
        writers.write_csv(text, path, truncate_ids=malformed)
        result.files.append(path)
        claims_rows[path.name] = text.num_rows
    remit: dict[str, Any] = {}
    if spec.remittances:
        remit = remittances.write_remittances(
            out, index, adjudicated, spec.seed, fresh=not update and spec.remittance_defects
        )
    return plan, remit


def _corrections(tl: Any, spec: SynthSpec, plan: defects.DefectPlan) -> pa.Table:
    """Clean re-sends of claims the source corrected, dated in the update's month."""
    fixed = set(plan.corrected("claim_negative_amount", 1))
    found = []
    for month in range(1, spec.months + 1):
        claims = claims_for_month(tl, spec, month)
        found.append(
            claims.filter(pc.is_in(claims["ClaimID"], pa.array(sorted(fixed), pa.string())))
        )
    table = pa.concat_tables(found)
    stamp = pa.array([spec.month_end(spec.months + 1)] * table.num_rows, pa.date32())
    return table.set_column(table.schema.get_field_index("ModifiedDate"), "ModifiedDate", stamp)


def _write_cpt(path: Path) -> Path:
    """The CPT file in the reference layout: spaced header, trailing spaces, mixed-case status."""
    cpt = cpt_catalog()
    statuses = ["No Change", "No change", "Added", "No Change", "Moved from 0050T"]
    table = pa.table(
        {
            "Procedure Code Category": cpt["category"],
            "CPT Codes": cpt["code"],
            "Procedure Code Descriptions": [d + "  " for d in cpt["description"].to_pylist()],
            "Code Status": [statuses[i % len(statuses)] for i in range(cpt.num_rows)],
        }
    )
    writers.write_csv(table, path)
    return path


def touch(
    out: Path, share: float = 0.01, *, target: str | None = None, recent_months: int | None = None
) -> dict[str, int]:
    """Edit ``share`` (in steps of 1%) of each hospital's transactions in place, chosen by
    the last two digits of their id: a cent more paid where that stays within the charge,
    modified the day after the set's as-of date. This is the small update an incremental
    run is measured on (``--update`` advances a whole month, which changes about a fifth of
    the rows). Returns the rows edited per hospital.

    ``recent_months``: the edits fall only on services of the set's last ``recent_months``
    months (still ``share`` of all transactions), as payments post mostly to recent claims;
    without it they are spread over every month, the worst case for a build by month."""
    manifest = synth_manifest(out)
    as_of = date.fromisoformat(manifest["as_of"])
    day = (as_of + timedelta(days=1)).isoformat()
    since = None
    if recent_months:
        first = as_of.year * 12 + as_of.month - recent_months  # months since year 0, 0-based
        since = date(first // 12, first % 12 + 1, 1)
    edited = {}
    params: dict[str, Any]
    for ds in manifest["spec"]["datasources"]:
        engine = writers.engine_for(writers.database_url(target or str(out / "sources"), ds))
        pg = engine.dialect.name == "postgresql"
        tail = "right(TransactionID, 2)" if pg else "substr(TransactionID, -2)"
        try:
            with engine.begin() as con:
                window, params = "", {"day": day}
                percent = share * 100
                if since is not None:
                    window, params["since"] = " AND ServiceDate >= :since", since
                    total = con.execute(sa.text("SELECT count(*) FROM transactions")).scalar_one()
                    recent = con.execute(
                        sa.text("SELECT count(*) FROM transactions WHERE ServiceDate >= :since"),
                        {"since": since},
                    ).scalar_one()
                    percent = min(100.0, percent * total / max(recent, 1))
                chosen = "1 = 1"  # every row of the window (two digits reach 99%)
                if round(percent) < 100:
                    chosen, params["cut"] = f"{tail} < :cut", f"{max(1, round(percent)):02d}"
                done = con.execute(
                    sa.text(
                        "UPDATE transactions SET "
                        "PaidAmount = CASE WHEN PaidAmount + 0.01 <= Amount "
                        "THEN round(PaidAmount + 0.01, 2) ELSE PaidAmount END, "
                        f"ModifiedDate = :day WHERE {chosen}{window}"
                    ),
                    params,
                )
                edited[ds] = int(done.rowcount)
        finally:
            engine.dispose()
    return edited
