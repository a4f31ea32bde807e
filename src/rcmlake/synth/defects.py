"""Known defects injected at a configurable rate, and the manifest of them.

Each defect lands on its own row, chosen among rows that never change again
over the horizon, so one defect makes exactly one quarantined silver row and
the manifest's counts can be asserted exactly. Defects that break a key are
added as extra rows rather than mutating a row others refer to, so they do
not cascade into foreign-key failures elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rcmlake.synth.model import (
    SynthSpec,
    Timeline,
    changed_rows,
    claim_months,
    numbered,
    snapshot,
)

# defect kind -> (entity, rule names in the default silver quality rules that it must trip)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "patient_null_key": ("patients", ("patient_id_required",)),
    "patient_future_dob": ("patients", ("date_of_birth_plausible",)),
    "patient_duplicate_key": ("patients", ("unique_key",)),
    "encounter_unknown_cpt": ("encounters", ("procedure_code_known",)),
    "encounter_future_date": ("encounters", ("encounter_date_not_future",)),
    "transaction_negative_amount": ("transactions", ("amount_non_negative",)),
    "transaction_paid_exceeds_billed": ("transactions", ("paid_not_above_billed",)),
    "transaction_unknown_icd": ("transactions", ("icd_code_known",)),
    "transaction_paid_before_service": ("transactions", ("paid_after_service",)),
    "transaction_duplicate_key": ("transactions", ("unique_key",)),
    "claim_malformed_row": ("claims", ("claim_row_well_formed",)),
    "claim_negative_amount": ("claims", ("claim_amount_non_negative",)),
    "claim_before_service": ("claims", ("claim_after_service",)),
    "claim_non_numeric_amount": ("claims", ("values_typed",)),
}
# Defects a later ``--update`` corrects at the source (first half of the targets).
CORRECTED_BY_UPDATE = ("transaction_negative_amount", "claim_negative_amount")
FUTURE = date(2099, 1, 1)
UNKNOWN_CPT, UNKNOWN_ICD = 99999, "ZZZ.999"


@dataclass
class DefectPlan:
    """Which source rows carry which defect, by the row's natural id."""

    targets: dict[str, list[str]] = field(default_factory=dict)

    def ids(self, kind: str) -> list[str]:
        return self.targets.get(kind, [])

    def corrected(self, kind: str, updates: int) -> list[str]:
        if updates < 1 or kind not in CORRECTED_BY_UPDATE:
            return []
        ids = self.ids(kind)
        return ids[: (len(ids) + 1) // 2]

    def active(self, kind: str, updates: int) -> list[str]:
        fixed = set(self.corrected(kind, updates))
        return [i for i in self.ids(kind) if i not in fixed]


def plan(tl: Timeline, spec: SynthSpec) -> DefectPlan:
    """Choose defect targets among rows that stay unchanged after the base snapshot."""
    rng = np.random.default_rng([spec.seed, tl.index, 7])
    base = snapshot(tl, spec.month_end(spec.months))
    final = snapshot(tl, spec.month_end(spec.horizon_months))
    targets: dict[str, list[str]] = {}

    def pick(pool: pa.Array | pa.ChunkedArray, kinds: list[str]) -> None:
        k = max(1, round(spec.defect_rate * len(pool) / len(kinds))) if spec.defect_rate > 0 else 0
        drawn = rng.choice(len(pool), size=min(len(pool), k * len(kinds)), replace=False)
        chosen = pool.take(pa.array(drawn)).to_pylist()
        for i, kind in enumerate(kinds):
            targets[kind] = sorted(chosen[i * k : (i + 1) * k])

    pat = base["patients"]
    moved_later = _changed_ids(pat, final["patients"], "PatientID")
    pool = pat["PatientID"].filter(pc.invert(pc.is_in(pat["PatientID"], moved_later)))
    pick(pool, ["patient_null_key", "patient_future_dob", "patient_duplicate_key"])
    pick(
        base["encounters"]["EncounterID"],
        ["encounter_unknown_cpt", "encounter_future_date"],
    )
    tx = base["transactions"]
    changed = _changed_ids(tx, final["transactions"], "TransactionID")
    settled = pc.and_(
        pc.invert(pc.is_in(tx["TransactionID"], changed)), pc.greater(tx["PaidAmount"], 0)
    )
    pick(
        tx["TransactionID"].filter(settled),
        [
            "transaction_negative_amount",
            "transaction_paid_exceeds_billed",
            "transaction_unknown_icd",
            "transaction_paid_before_service",
            "transaction_duplicate_key",
        ],
    )
    once = claim_months(tl, spec) == 1
    submitted = tl.encounters["claim_date"] <= np.datetime64(spec.month_end(spec.months))
    pick(
        numbered("CLAIM", np.nonzero(once & submitted)[0] + 1),
        [
            "claim_malformed_row",
            "claim_negative_amount",
            "claim_before_service",
            "claim_non_numeric_amount",
        ],
    )
    return DefectPlan(targets)


def _changed_ids(base: pa.Table, final: pa.Table, key: str) -> pa.Array:
    """Keys of ``base`` rows that change before ``final``."""
    return changed_rows(final, base)[key].combine_chunks()


def _mask(table: pa.Table, key: str, ids: list[str]) -> pa.Array:
    return pc.is_in(table[key], pa.array(ids, pa.string()))


def _set(table: pa.Table, column: str, mask: pa.Array, value: pa.Array | pa.Scalar) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pc.if_else(mask, value, table[column]))


def apply_emr(
    tables: dict[str, pa.Table], plan_: DefectPlan, updates: int, as_of: date
) -> dict[str, pa.Table]:
    """Inject EMR defects into one hospital's snapshot."""
    out = dict(tables)
    p = out["patients"]
    p = _set(
        p,
        "DOB",
        _mask(p, "PatientID", plan_.ids("patient_future_dob")),
        pa.scalar(FUTURE, pa.date32()),
    )
    dup = p.filter(_mask(p, "PatientID", plan_.ids("patient_duplicate_key")))
    dup = _set(dup, "PhoneNumber", pa.array([True] * dup.num_rows), pa.scalar("(555) 010-0000"))
    nulls = p.filter(_mask(p, "PatientID", plan_.ids("patient_null_key")))
    nulls = nulls.set_column(0, "PatientID", pa.nulls(nulls.num_rows, pa.string()))
    out["patients"] = pa.concat_tables([p, dup, nulls])

    e = out["encounters"]
    e = _set(
        e,
        "ProcedureCode",
        _mask(e, "EncounterID", plan_.ids("encounter_unknown_cpt")),
        pa.scalar(UNKNOWN_CPT, pa.int64()),
    )
    out["encounters"] = _set(
        e,
        "EncounterDate",
        _mask(e, "EncounterID", plan_.ids("encounter_future_date")),
        pa.scalar(FUTURE, pa.date32()),
    )

    t = out["transactions"]
    neg = _mask(t, "TransactionID", plan_.active("transaction_negative_amount", updates))
    t = _set(t, "Amount", neg, pc.negate(t["Amount"]))
    fixed = _mask(t, "TransactionID", plan_.corrected("transaction_negative_amount", updates))
    t = _set(t, "ModifiedDate", fixed, pa.scalar(as_of, pa.date32()))
    over = _mask(t, "TransactionID", plan_.ids("transaction_paid_exceeds_billed"))
    t = _set(t, "PaidAmount", over, pc.add(t["Amount"], 100.0))
    t = _set(
        t,
        "ICDCode",
        _mask(t, "TransactionID", plan_.ids("transaction_unknown_icd")),
        pa.scalar(UNKNOWN_ICD),
    )
    early = _mask(t, "TransactionID", plan_.ids("transaction_paid_before_service"))
    t = _set(
        t,
        "PaidDate",
        early,
        pc.subtract(t["ServiceDate"], pa.scalar(5 * 86_400_000, pa.duration("ms"))).cast(
            pa.date32()
        ),
    )
    dup = t.filter(_mask(t, "TransactionID", plan_.ids("transaction_duplicate_key")))
    dup = _set(dup, "Amount", pa.array([True] * dup.num_rows), pc.add(dup["Amount"], 10.0))
    out["transactions"] = pa.concat_tables([t, dup])
    return out


def apply_claims(
    claims: pa.Table, plan_: DefectPlan, corrected: list[str] | None = None
) -> tuple[pa.Table, list[str]]:
    """Inject claim-file defects; returns the table as strings and ids of rows to truncate.

    ``corrected`` claims are clean re-sends: they carry no defect.
    """
    c = claims.cast(pa.schema([pa.field(f.name, pa.string()) for f in claims.schema]))
    fixed = set(corrected or [])
    neg = _mask(c, "ClaimID", [i for i in plan_.ids("claim_negative_amount") if i not in fixed])
    c = _set(c, "ClaimAmount", neg, pc.binary_join_element_wise("-", c["ClaimAmount"], ""))
    early = _mask(claims, "ClaimID", plan_.ids("claim_before_service"))
    before = pc.subtract(claims["ServiceDate"], pa.scalar(3 * 86_400_000, pa.duration("ms"))).cast(
        pa.date32()
    )
    c = _set(c, "ClaimDate", early, before.cast(pa.string()))
    c = _set(
        c,
        "PaidAmount",
        _mask(c, "ClaimID", plan_.ids("claim_non_numeric_amount")),
        pa.scalar("N/A"),
    )
    present = pc.is_in(
        pa.array(plan_.ids("claim_malformed_row"), pa.string()), c["ClaimID"].combine_chunks()
    )
    malformed = pa.array(plan_.ids("claim_malformed_row"), pa.string()).filter(present).to_pylist()
    return c, malformed


def expected_quarantine(
    plans: dict[str, DefectPlan], updates: int
) -> dict[str, dict[str, dict[str, int]]]:
    """Per datasource, entity and rule: how many silver rows must be quarantined."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for ds, p in plans.items():
        for kind, (entity, rules) in KINDS.items():
            n = len(p.active(kind, updates))
            for rule in rules:
                out.setdefault(ds, {}).setdefault(entity, {}).setdefault(rule, 0)
                out[ds][entity][rule] += n
    return out
