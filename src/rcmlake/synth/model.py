"""A deterministic timeline of one hospital's revenue cycle.

The whole horizon (base months plus room for later ``--update`` steps) is
drawn once from the seed; :func:`snapshot` then shows the source tables as
they stand at an as-of date. An update is the difference between two
snapshots, so incremental loads, SCD2 moves and claim status changes all
follow from one consistent history: claims are submitted after service,
adjudicated after submission, paid after adjudication, and never pay more
than was billed. Everything is vectorised with NumPy; nothing loops per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rcmlake.synth import catalog

MAX_UPDATES = 6
EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Same spec and seed, same bytes."""

    seed: int = 42
    transactions: int = 5_000
    months: int = 6
    start: date = date(2025, 1, 1)
    defect_rate: float = 0.01
    datasources: tuple[str, ...] = ("hospital_a", "hospital_b")
    # X12 835 remittances consistent with the claims, one file per hospital and month
    remittances: bool = True
    # a re-sent copy and a broken-envelope 835 per hospital (the broken one is rejected)
    remittance_defects: bool = True

    @property
    def horizon_months(self) -> int:
        return self.months + MAX_UPDATES

    def month_end(self, month: int) -> date:
        """Last day of the ``month``-th month (1-based) of the timeline."""
        y, m = divmod(self.start.month - 1 + month, 12)
        return date(self.start.year + y, m + 1, 1) - timedelta(days=1)

    def month_start(self, month: int) -> date:
        return self.month_end(month - 1) + timedelta(days=1)


def _d(x: date) -> np.datetime64:
    return np.datetime64(x, "D")


def _npi(rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid 10-digit NPIs: Luhn check digit computed over the 80840 prefix."""
    base = np.unique(rng.integers(100_000_000, 300_000_000, size=n * 2))[:n]
    digits = np.array([[int(c) for c in f"80840{b}"] for b in base])  # n x 14, small n
    rev = digits[:, ::-1]
    dbl = rev[:, ::2] * 2
    dbl = np.where(dbl > 9, dbl - 9, dbl)
    total = dbl.sum(axis=1) + rev[:, 1::2].sum(axis=1)
    check = (10 - total % 10) % 10
    return base * 10 + check


@dataclass
class Timeline:
    """Every row a hospital will ever have over the horizon, with event dates."""

    index: int
    departments: pa.Table
    providers: pa.Table
    patients: dict[str, np.ndarray]
    encounters: dict[str, np.ndarray]
    _ids: dict[str, pa.Array] = field(default_factory=dict)

    def ids(self, prefix: str) -> pa.Array:
        """``ENC000001``-style ids of every encounter-line over the horizon, built once."""
        if prefix not in self._ids:
            self._ids[prefix] = numbered(prefix, np.arange(1, len(self.encounters["date"]) + 1))
        return self._ids[prefix]


def numbered(prefix: str, numbers: np.ndarray, width: int = 6) -> pa.Array:
    """``prefix`` and each number zero-padded to ``width`` (wider numbers kept whole), in
    Arrow: NumPy's ``np.char`` builds fixed-width UTF-32 arrays, slow and 4 bytes a char."""
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def pick(values: pa.Array, rows: np.ndarray) -> pa.Array:
    """``values`` at a boolean mask or at integer positions."""
    if rows.dtype == np.bool_:
        return values.filter(pa.array(rows))
    return values.take(pa.array(rows))


def build(spec: SynthSpec, index: int) -> Timeline:
    """Draw hospital number ``index`` (0-based) of ``spec``."""
    rng = np.random.default_rng([spec.seed, index])
    n_dept = len(catalog.DEPARTMENTS)
    departments = pa.table(
        {
            "DeptID": [f"DEPT{i + 1:03d}" for i in range(n_dept)],
            "Name": [d[0] for d in catalog.DEPARTMENTS],
        }
    )
    n_prov = 40
    prov_dept = rng.integers(0, n_dept, n_prov)
    first, last = np.array(catalog.FIRST_NAMES), np.array(catalog.LAST_NAMES)
    providers = pa.table(
        {
            "ProviderID": [f"H{index + 1}-PROV{i + 1:04d}" for i in range(n_prov)],
            "FirstName": first[rng.integers(0, len(first), n_prov)],
            "LastName": last[rng.integers(0, len(last), n_prov)],
            "Specialization": [catalog.DEPARTMENTS[d][1] for d in prov_dept],
            "DeptID": [f"DEPT{d + 1:03d}" for d in prov_dept],
            "NPI": pa.array(_npi(rng, n_prov), pa.int64()),
        }
    )

    start, horizon_end = _d(spec.start), _d(spec.month_end(spec.horizon_months))
    span = int((horizon_end - start).astype(int)) + 1
    base_span = int((_d(spec.month_end(spec.months)) - start).astype(int)) + 1
    n_enc = int(spec.transactions * span / base_span)
    n_pat = max(50, spec.transactions // 4)

    # Patients: most registered before the window; some register during it.
    reg = np.where(
        rng.random(n_pat) < 0.8,
        start - rng.integers(30, 900, n_pat),
        start + rng.integers(0, span, n_pat),
    ).astype("datetime64[D]")
    order = np.argsort(reg, kind="stable")
    reg = reg[order]
    moves = rng.random(n_pat) < 0.03 * spec.horizon_months
    move_at = np.where(
        moves, np.maximum(reg, start) + rng.integers(1, span, n_pat), np.datetime64("NaT")
    )
    move_at = np.where(move_at > horizon_end, np.datetime64("NaT"), move_at).astype("datetime64[D]")
    city = rng.integers(0, len(catalog.CITIES), (2, n_pat))
    payer_idx = rng.choice(len(catalog.PAYERS), n_pat, p=[p[4] for p in catalog.PAYERS])
    patients = {
        "id": numbered("HOSP1-", np.arange(1, n_pat + 1)),
        "first": first[rng.integers(0, len(first), n_pat)],
        "last": last[rng.integers(0, len(last), n_pat)],
        "middle": np.where(
            rng.random(n_pat) < 0.15, "NULL", first[rng.integers(0, len(first), n_pat)]
        ),
        "ssn": np.char.add(
            np.char.add(np.char.zfill(rng.integers(100, 899, n_pat).astype(str), 3), "-"),
            np.char.add(
                np.char.add(np.char.zfill(rng.integers(1, 99, n_pat).astype(str), 2), "-"),
                np.char.zfill(rng.integers(1, 9999, n_pat).astype(str), 4),
            ),
        ),
        "phone": np.stack([_phones(rng, n_pat, city[k]) for k in range(2)]),
        "address": np.stack([_addresses(rng, n_pat, city[k]) for k in range(2)]),
        "gender": np.where(rng.random(n_pat) < 0.52, "Female", "Male"),
        "dob": (np.datetime64("2024-06-01") - rng.integers(365, 365 * 90, n_pat)).astype(
            "datetime64[D]"
        ),
        "registered": reg,
        "moved": move_at,
        "payer": payer_idx,
    }

    # Encounters, one transaction line and one claim each, sorted by date so ids grow with time.
    enc_date = np.sort(start + rng.integers(0, span, n_enc)).astype("datetime64[D]")
    eligible = np.searchsorted(reg, enc_date, side="right")
    eligible = np.maximum(eligible, 1)
    patient = np.minimum((eligible * rng.random(n_enc) ** 1.6).astype(np.int64), eligible - 1)
    cpt = catalog.cpt_catalog()
    numeric = np.array([c.isdigit() for c in cpt["code"].to_pylist()])
    codes = np.array(cpt["code"].to_pylist())[numeric].astype(np.int64)
    charges = np.array(cpt["charge"].to_pylist(), dtype=float)[numeric]
    weights = 1.0 / np.sqrt(charges)
    proc_idx = rng.choice(len(codes), n_enc, p=weights / weights.sum())
    provider = rng.integers(0, n_prov, n_enc)
    payer = payer_idx[patient]
    ratio = np.array([p[5] for p in catalog.PAYERS])[payer]
    adj_days = np.array([p[6] for p in catalog.PAYERS])[payer]
    amount = np.round(charges[proc_idx] * rng.uniform(0.9, 1.15, n_enc), 2)
    allowed = np.round(amount * ratio * rng.uniform(0.95, 1.05, n_enc), 2)
    allowed = np.minimum(allowed, amount)
    insured = payer != len(catalog.PAYERS) - 1
    deductible = np.where(
        insured & (rng.random(n_enc) < 0.25),
        np.round(np.minimum(allowed * 0.4, rng.uniform(50, 500, n_enc)), 2),
        0.0,
    )
    coins = np.where(insured & (payer >= 2), np.round((allowed - deductible) * 0.2, 2), 0.0)
    copay = np.where(
        insured & (charges[proc_idx] < 400),
        np.minimum(rng.choice([20.0, 30.0, 40.0, 50.0], n_enc), allowed - deductible - coins),
        0.0,
    )
    copay = np.maximum(copay, 0.0)
    expected = np.where(insured, allowed - deductible - coins - copay, np.round(allowed * 0.45, 2))
    outcome = rng.choice(4, n_enc, p=[0.78, 0.10, 0.05, 0.07])  # paid, denied, rejected, partial
    paid = np.where(outcome == 0, expected, np.where(outcome == 3, expected * 0.55, 0.0))
    paid, copay = np.round(paid, 2), np.round(copay, 2)
    claim_lag = np.where(
        rng.random(n_enc) < 0.93, rng.geometric(0.3, n_enc), rng.integers(12, 60, n_enc)
    )
    claim_date = enc_date + claim_lag
    adj_date = claim_date + np.maximum(3, rng.normal(adj_days, 6, n_enc).astype(np.int64))
    rej_date = claim_date + 2
    paid_date = adj_date + rng.integers(1, 12, n_enc)
    encounters = {
        "date": enc_date,
        "patient": patient,
        "provider": provider,
        "type": rng.choice(catalog.ENCOUNTER_TYPES[0], n_enc, p=catalog.ENCOUNTER_TYPES[1]),
        "visit": rng.choice(catalog.VISIT_TYPES[0], n_enc, p=catalog.VISIT_TYPES[1]),
        "proc": codes[proc_idx],
        "icd": rng.choice(np.array(catalog.icd_catalog()["code"].to_pylist()), n_enc),
        "payer": payer,
        "amount": amount,
        "paid": paid,
        "outcome": outcome,
        "deductible": deductible,
        "coinsurance": coins,
        "copay": copay,
        "claim_date": claim_date,
        "adj_date": adj_date,
        "rej_date": rej_date,
        "paid_date": paid_date,
    }
    return Timeline(index, departments, providers, patients, encounters)


def _phones(rng: np.random.Generator, n: int, city: np.ndarray) -> np.ndarray:
    area = np.array([c[2] for c in catalog.CITIES])[city]
    mid = np.char.zfill(rng.integers(200, 999, n).astype(str), 3)
    end = np.char.zfill(rng.integers(0, 9999, n).astype(str), 4)
    style = rng.integers(0, 3, n)
    a = np.char.add(
        np.char.add(np.char.add("(", area), ") "), np.char.add(np.char.add(mid, "-"), end)
    )
    b = np.char.add(
        np.char.add("+1-", area), np.char.add(np.char.add("-", mid), np.char.add("-", end))
    )
    c = np.char.add(
        np.char.add(area, np.char.add(".", mid)), np.char.add(np.char.add(".", end), "x12")
    )
    return np.where(style == 0, a, np.where(style == 1, b, c))


def _addresses(rng: np.random.Generator, n: int, city: np.ndarray) -> np.ndarray:
    num = rng.integers(1, 9999, n).astype(str)
    street = np.array(catalog.STREETS)[rng.integers(0, len(catalog.STREETS), n)]
    place = np.array([f"{c[0]}, {c[1]}" for c in catalog.CITIES])[city]
    return np.char.add(np.char.add(np.char.add(num, " "), street), np.char.add(", ", place))


def claim_status(tl: Timeline, as_of: np.datetime64) -> np.ndarray:
    """Each claim's status at ``as_of`` ('' before it is submitted)."""
    e = tl.encounters
    out = np.full(len(e["date"]), "Pending", dtype=object)
    adjudicated = e["adj_date"] <= as_of
    out[(e["outcome"] == 1) & adjudicated] = "Denied"
    out[(e["outcome"] == 2) & (e["rej_date"] <= as_of)] = "Rejected"
    payable = np.isin(e["outcome"], (0, 3))
    out[payable & adjudicated] = "Approved"
    out[payable & (e["paid_date"] <= as_of)] = "Paid"
    out[e["claim_date"] > as_of] = ""
    return out


def status_changed_at(tl: Timeline, as_of: np.datetime64) -> np.ndarray:
    """Date of each claim's latest status change on or before ``as_of``."""
    e = tl.encounters
    steps = [
        e["claim_date"],
        np.where(e["outcome"] == 2, e["rej_date"], e["adj_date"]),
        np.where(np.isin(e["outcome"], (0, 3)), e["paid_date"], e["adj_date"]),
    ]
    changed = e["claim_date"].copy()
    for s in steps[1:]:
        changed = np.where(s <= as_of, np.maximum(changed, s), changed)
    return changed


def _dates(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[D]"), pa.date32())


def _ids_where(mask: np.ndarray, prefix: str, ids: np.ndarray) -> pa.Array:
    """Payer member ids where the payer has them, NULL elsewhere."""
    return pc.if_else(pa.array(mask), numbered(prefix, ids, 0), pa.scalar(None, pa.string()))


def snapshot(tl: Timeline, as_of: date) -> dict[str, pa.Table]:
    """The hospital's five EMR tables as they stand at the end of ``as_of`` (seed layout A)."""
    cut = _d(as_of)
    p, e = tl.patients, tl.encounters
    pk = p["registered"] <= cut
    moved = ~np.isnat(p["moved"]) & (p["moved"] <= cut)
    version = moved.astype(int)
    n = len(pk)
    patients = pa.table(
        {
            "PatientID": pick(p["id"], pk),
            "FirstName": p["first"][pk],
            "LastName": p["last"][pk],
            "MiddleName": p["middle"][pk],
            "SSN": p["ssn"][pk],
            "PhoneNumber": p["phone"][version, np.arange(n)][pk],
            "Gender": p["gender"][pk],
            "DOB": _dates(p["dob"][pk]),
            "Address": p["address"][version, np.arange(n)][pk],
            "ModifiedDate": _dates(np.where(moved, p["moved"], p["registered"])[pk]),
        }
    )
    ek = e["date"] <= cut
    ids = np.arange(1, len(ek) + 1)[ek]
    enc_ids = pick(tl.ids("ENC"), ek)
    patient_ids = pick(p["id"], e["patient"][ek])
    prov = tl.providers
    prov_ids = np.array(prov["ProviderID"].to_pylist())[e["provider"][ek]]
    dept_ids = np.array(prov["DeptID"].to_pylist())[e["provider"][ek]]
    encounters = pa.table(
        {
            "EncounterID": enc_ids,
            "PatientID": patient_ids,
            "EncounterDate": _dates(e["date"][ek]),
            "EncounterType": e["type"][ek],
            "ProviderID": prov_ids,
            "DepartmentID": dept_ids,
            "ProcedureCode": pa.array(e["proc"][ek], pa.int64()),
            "InsertedDate": _dates(e["date"][ek]),
            "ModifiedDate": _dates(e["date"][ek]),
        }
    )
    payers = catalog.PAYERS
    payer = e["payer"][ek]
    paid_now = e["paid_date"][ek] <= cut
    payable = np.isin(e["outcome"][ek], (0, 3))
    paid_amount = np.where(payable & paid_now, e["paid"][ek], 0.0)
    paid_date = np.where(payable & paid_now, e["paid_date"][ek], np.datetime64("NaT"))
    status_at = status_changed_at(tl, cut)[ek]
    modified = np.where(
        e["claim_date"][ek] <= cut, np.maximum(e["date"][ek], status_at), e["date"][ek]
    )
    lob = np.array([x[2] for x in payers])[payer]
    transactions = pa.table(
        {
            "TransactionID": pick(tl.ids("TRANS"), ek),
            "EncounterID": enc_ids,
            "PatientID": patient_ids,
            "ProviderID": prov_ids,
            "DeptID": dept_ids,
            "VisitDate": _dates(e["date"][ek]),
            "ServiceDate": _dates(e["date"][ek]),
            "PaidDate": _dates(paid_date),
            "VisitType": e["visit"][ek],
            "Amount": e["amount"][ek],
            "AmountType": np.array([x[3] for x in payers])[payer],
            "PaidAmount": paid_amount,
            "ClaimID": pick(tl.ids("CLAIM"), ek),
            "PayorID": np.array([x[0] for x in payers])[payer],
            "ProcedureCode": pa.array(e["proc"][ek], pa.int64()),
            "ICDCode": e["icd"][ek],
            "LineOfBusiness": lob,
            "MedicaidID": _ids_where(lob == "Medicaid", "MCD", ids),
            "MedicareID": _ids_where(lob == "Medicare", "MCR", ids),
            "InsertDate": _dates(e["date"][ek]),
            "ModifiedDate": _dates(modified),
        }
    )
    return {
        "departments": tl.departments,
        "providers": tl.providers,
        "patients": patients,
        "encounters": encounters,
        "transactions": transactions,
    }


def claims_for_month(tl: Timeline, spec: SynthSpec, month: int) -> pa.Table:
    """The insurer file of ``month``: claims submitted in it, and earlier ones whose status changed."""
    end, prev = _d(spec.month_end(month)), _d(spec.month_end(month - 1))
    e = tl.encounters
    now, before = claim_status(tl, end), claim_status(tl, prev)
    rows = np.nonzero((now != "") & (now != before))[0]
    payers = catalog.PAYERS
    payer = e["payer"][rows]
    status = now[rows]
    paid = np.where(status == "Paid", e["paid"][rows], 0.0)
    prov = np.array(tl.providers["ProviderID"].to_pylist())[e["provider"][rows]]
    dept = np.array(tl.providers["DeptID"].to_pylist())[e["provider"][rows]]
    adjudicated = np.isin(status, ("Paid", "Approved", "Denied"))
    return pa.table(
        {
            "ClaimID": pick(tl.ids("CLAIM"), rows),
            "TransactionID": pick(tl.ids("TRANS"), rows),
            "PatientID": pick(tl.patients["id"], e["patient"][rows]),
            "EncounterID": pick(tl.ids("ENC"), rows),
            "ProviderID": prov,
            "DeptID": dept,
            "ServiceDate": _dates(e["date"][rows]),
            "ClaimDate": _dates(e["claim_date"][rows]),
            "PayorID": np.array([x[0] for x in payers])[payer],
            "ClaimAmount": e["amount"][rows],
            "PaidAmount": paid,
            "ClaimStatus": status.astype(str),
            "PayorType": np.array([x[1] for x in payers])[payer],
            "Deductible": np.where(adjudicated, e["deductible"][rows], 0.0),
            "Coinsurance": np.where(adjudicated, e["coinsurance"][rows], 0.0),
            "Copay": np.where(adjudicated, e["copay"][rows], 0.0),
            "InsertDate": _dates(e["claim_date"][rows]),
            "ModifiedDate": _dates(status_changed_at(tl, end)[rows]),
        }
    )


def claim_months(tl: Timeline, spec: SynthSpec) -> np.ndarray:
    """How many monthly files each claim appears in over the horizon (for defect targeting)."""
    counts = np.zeros(len(tl.encounters["date"]), dtype=np.int64)
    prev = claim_status(tl, _d(spec.month_end(0)))
    for m in range(1, spec.horizon_months + 1):
        now = claim_status(tl, _d(spec.month_end(m)))
        counts += (now != "") & (now != prev)
        prev = now
    return counts


def changed_rows(old: pa.Table, new: pa.Table) -> pa.Table:
    """Rows of ``new`` that are not in ``old`` (new or changed), compared on every column."""
    from rcmlake.engines.duckdb import connect

    con = connect()
    con.register("old_t", old)
    con.register("new_t", new)
    return con.sql("SELECT * FROM new_t EXCEPT SELECT * FROM old_t").to_arrow_table()
