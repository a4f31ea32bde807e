"""Synthetic X12 835 remittances consistent with the synthetic claims, written by ``oxedi``.

For each hospital and month, one 835 file: one payment (BPR/TRN) per payer, one CLP per
claim the payer adjudicated that month (paid or denied), with balanced CAS adjustments:

- paid: PR-1/2/3 (deductible, coinsurance, co-payment) and CO-45 for the contractual rest;
- denied (CLP02 = 4): the whole charge under one CARC drawn from the payer's mix;
- a few paid claims of the month before are reversed (CLP02 = 22, amounts negated) and paid
  again; some payments carry a PLB (provider-level adjustment), so BPR02 = Σ CLP04 − Σ PLB;
- remittances for claims the lake does not have (``EXT-…``);
- one file re-sent under a new name (same bytes) and one file with a broken envelope.

The manifest records what a reader must find (``remittances`` in synth_manifest.json).
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import oxedi
import pyarrow as pa
import pyarrow.compute as pc

MONEY = pa.decimal128(38, 2)
# denial reasons by payer: (CARC, weight); duplicates (18) among them
DENIAL_MIX = {
    "Medicare": [("50", 0.35), ("16", 0.25), ("197", 0.15), ("18", 0.10), ("29", 0.15)],
    "Medicaid": [("27", 0.30), ("16", 0.25), ("197", 0.20), ("18", 0.10), ("50", 0.15)],
    "BlueCross": [("197", 0.35), ("50", 0.25), ("16", 0.20), ("18", 0.10), ("29", 0.10)],
    "Aetna": [("197", 0.30), ("16", 0.30), ("50", 0.20), ("18", 0.10), ("31", 0.10)],
    "UnitedHealthcare": [("16", 0.35), ("197", 0.25), ("50", 0.20), ("18", 0.10), ("29", 0.10)],
}
# CLP06, claim filing indicator: Medicare Part B, Medicaid, else a commercial PPO ("12"; the
# 837's "CI" is not among the 835's codes, and oxedi warned of it on every claim)
FILING = {"Medicare": "MB", "Medicaid": "MC"}
COMMERCIAL = "12"
PLB_CENTS = 2_500  # a provider-level adjustment of 25.00


def _cents(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Whole cents of amounts the generator rounded to two decimals."""
    return np.rint(np.asarray(values.to_numpy(zero_copy_only=False), dtype=float) * 100).astype(
        np.int64
    )


def _money(cents: np.ndarray) -> pa.Array:
    """decimal(38, 2) from whole cents: the 128-bit integers built directly, exact."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    wide = np.stack([cents, cents >> 63], axis=1)  # little-endian low, high (sign) words
    return pa.Array.from_buffers(MONEY, len(cents), [None, pa.py_buffer(wide.tobytes())])


def _crc_ids(prefix: str, values: list[str]) -> list[str]:
    return [f"{prefix}{zlib.crc32(v.encode()) % 10**9:09d}" for v in values]


@dataclass
class _Claims:
    """Columns of 835 claims (CLP) with their adjustments (CAS): amounts in cents, four
    adjustment slots per claim (group, reason, amount), zero amounts left out when written."""

    payer: np.ndarray
    claim_id: np.ndarray
    status: np.ndarray
    charge: np.ndarray
    paid: np.ndarray
    patient: np.ndarray
    filing: np.ndarray
    service: np.ndarray  # datetime64[D]
    cas_group: np.ndarray  # (n, 4)
    cas_reason: np.ndarray  # (n, 4)
    cas_amount: np.ndarray  # (n, 4)

    def __len__(self) -> int:
        return len(self.claim_id)

    def take(self, rows: np.ndarray | slice) -> _Claims:
        return _Claims(*(getattr(self, f.name)[rows] for f in fields(self)))

    def reversed(self) -> _Claims:
        """The reversal (CLP02 = 22) of these claims: every amount negated."""
        out = self.take(slice(None))
        out.status = np.full(len(self), "22", dtype=object)
        for name in ("charge", "paid", "patient", "cas_amount"):
            setattr(out, name, -getattr(self, name))
        return out

    @staticmethod
    def concat(parts: list[_Claims]) -> _Claims:
        return _Claims(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Claims))
        )


def _month_claims(claims: pa.Table, rng: np.random.Generator) -> _Claims:
    """The claims a month's 835 pays or denies, in file order: the paid ones with PR-1/2/3
    and CO-45 for the contractual rest (none where paid exceeds the charge), the denied
    ones with their whole charge under a CARC of the payer's mix."""
    payer = claims["PayorID"].to_numpy(zero_copy_only=False).astype(object)
    status = claims["ClaimStatus"].to_numpy(zero_copy_only=False).astype(object)
    charge = _cents(claims["ClaimAmount"])
    paid, ded, coins, copay = (
        _cents(claims[c]) for c in ("PaidAmount", "Deductible", "Coinsurance", "Copay")
    )
    contractual = charge - paid - ded - coins - copay
    is_paid, denied = status == "Paid", status == "Denied"
    keep = (payer != "Self-Pay") & ((is_paid & (contractual >= 0)) | denied)
    rows = np.nonzero(keep)[0]
    is_paid, denied = is_paid[rows], denied[rows]
    n = len(rows)
    zero = np.zeros(n, np.int64)
    groups = np.tile(np.array(["PR", "PR", "PR", "CO"], dtype=object), (n, 1))
    reasons = np.tile(np.array(["1", "2", "3", "45"], dtype=object), (n, 1))
    amounts = np.stack([ded[rows], coins[rows], copay[rows], contractual[rows]], axis=1)
    # one uniform draw per denied claim in file order, as Generator.choice(p=...) draws it
    draws = rng.random(int(denied.sum()))
    carc = np.empty(len(draws), dtype=object)
    denied_payers = payer[rows][denied]
    for name, mix in DENIAL_MIX.items():
        on = denied_payers == name
        cdf = np.asarray([w for _, w in mix], dtype=float).cumsum()
        cdf /= cdf[-1]
        carc[on] = np.array([c for c, _ in mix], dtype=object)[cdf.searchsorted(draws[on], "right")]
    d = np.nonzero(denied)[0]
    groups[d, 0], reasons[d, 0] = "CO", carc
    amounts[d] = 0
    amounts[d, 0] = charge[rows][d]
    return _Claims(
        payer=payer[rows],
        claim_id=claims["ClaimID"].to_numpy(zero_copy_only=False).astype(object)[rows],
        status=np.where(is_paid, "1", "4").astype(object),
        charge=charge[rows],
        paid=np.where(is_paid, paid[rows], zero),
        patient=np.where(is_paid, (ded + coins + copay)[rows], zero),
        filing=np.array([FILING.get(p, COMMERCIAL) for p in payer[rows].tolist()], dtype=object),
        service=claims["ServiceDate"].to_numpy(zero_copy_only=False)[rows].astype("datetime64[D]"),
        cas_group=groups,
        cas_reason=reasons,
        cas_amount=amounts,
    )


def _one_claim(payer: str, claim_id: str, charge: int, paid: int, day: dt.date) -> _Claims:
    """A paid claim with one CO-45 adjustment for the rest of its charge."""
    return _Claims(
        payer=np.array([payer], dtype=object),
        claim_id=np.array([claim_id], dtype=object),
        status=np.array(["1"], dtype=object),
        charge=np.array([charge]),
        paid=np.array([paid]),
        patient=np.array([0]),
        filing=np.array([FILING.get(payer, COMMERCIAL)], dtype=object),
        service=np.array([day], dtype="datetime64[D]"),
        cas_group=np.array([["CO", "", "", ""]], dtype=object),
        cas_reason=np.array([["45", "", "", ""]], dtype=object),
        cas_amount=np.array([[charge - paid, 0, 0, 0]]),
    )


def _interchange(
    c: _Claims, payers: list[str], plb: bool, index: int, day: dt.date, month: int
) -> bytes:
    """The 835 of one hospital and month, written by oxedi: one payment per payer (in
    ``payers`` order), its claims and adjustments, a PLB on the first payment if ``plb``."""
    hospital, npi = f"SYNTHETIC HOSPITAL {index + 1}", f"{1234567893 + index}"
    distinct, inverse = np.unique(c.payer.astype(str), return_inverse=True)
    payment = np.array([payers.index(p) for p in distinct.tolist()], np.int64)[inverse]
    totals = np.bincount(payment, weights=c.paid, minlength=len(payers)).astype(np.int64)
    if plb:
        totals[0] -= PLB_CENTS
    n, k = len(c), len(payers)
    tables = {
        "payments": pa.table(
            {
                "row": pa.array(range(k), pa.int64()),
                "credit_debit_flag": ["C"] * k,
                "handling_code": ["I"] * k,
                "payment_method": ["ACH"] * k,
                "payment_date": pa.array([day] * k, pa.date32()),
                "production_date": pa.array([day] * k, pa.date32()),
                "trace_number": [f"EFT{index + 1}{day:%y%m}{i + 1:02d}" for i in range(k)],
                "payer_identifier": _crc_ids("1", payers),
                "payer_name": payers,
                "payer_address": ["1 PAYER PLAZA"] * k,
                "payer_city": ["HARTFORD"] * k,
                "payer_state": ["CT"] * k,
                "payer_zip": ["06101"] * k,
                "payer_technical_contact_qualifier": ["TE"] * k,
                "payer_technical_contact_number": ["8005551212"] * k,
                "payee_name": [hospital] * k,
                "payee_id": [npi] * k,
                "payee_id_qualifier": ["XX"] * k,
                "total_payment_amount": _money(totals),
            }
        )
    }
    claim_id = pa.array(c.claim_id, pa.string())
    status = pa.array(c.status, pa.string())
    tables["claims"] = pa.table(
        {
            "row": pa.array(np.arange(n)),
            "payment": pa.array(payment),
            "claim_id": claim_id,
            "claim_status": status,
            "charge_amount": _money(c.charge),
            "payment_amount": _money(c.paid),
            "patient_responsibility": _money(c.patient),
            "filing_indicator": pa.array(c.filing, pa.string()),
            "header_number": pa.repeat(pa.scalar(1, pa.int64()), n),  # LX01: one header per payment
            "payer_control_number": pc.binary_join_element_wise("PCN", claim_id, status, ""),
            "statement_from": pa.array(c.service, pa.date32()),
            "patient_last_name": pa.repeat(pa.scalar("SYNTHETIC"), n),
            "patient_first_name": pa.repeat(pa.scalar("PATIENT"), n),
            "patient_id": pa.array(_crc_ids("M", c.claim_id.tolist()), pa.string()),
            "patient_id_qualifier": pa.repeat(pa.scalar("MI"), n),
        }
    )
    on = (c.cas_amount != 0).ravel()  # row-major: a claim's adjustments in slot order
    claim_of = np.repeat(np.arange(n), 4)[on]
    m = int(on.sum())
    if m:
        tables["adjustments"] = pa.table(
            {
                "row": pa.array(np.arange(m)),
                "payment": pa.array(payment[claim_of]),
                "claim": pa.array(claim_of),
                "service": pa.nulls(m, pa.int64()),
                "group_code": pa.array(c.cas_group.ravel()[on], pa.string()),
                "reason_code": pa.array(c.cas_reason.ravel()[on], pa.string()),
                "amount": _money(c.cas_amount.ravel()[on]),
            }
        )
    if plb:
        tables["provider_adjustments"] = pa.table(
            {
                "row": pa.array([0], pa.int64()),
                "payment": pa.array([0], pa.int64()),
                "provider_id": [npi],
                "fiscal_period_date": pa.array([dt.date(day.year, 12, 31)], pa.date32()),
                "reason_code": ["WO"],
                "reference_id": ["OVERPAY1"],
                "amount": _money(np.array([PLB_CENTS])),
            }
        )
    env = oxedi.Envelope(
        sender_id="PAYERHUB",
        receiver_id=f"HOSP{index + 1}",
        date=day,
        time=dt.time(6, 0),
        control_number=month,
    )
    return bytes(oxedi.write(tables, env, allow_findings=True)[0])


def write_remittances(
    out: Path,
    index: int,
    months: list[tuple[int, pa.Table, dt.date]],
    seed: int,
    *,
    fresh: bool = True,
) -> dict[str, Any]:
    """One 835 per month of ``months`` ((month, that month's claims, month end)); returns the
    manifest of what the files hold. Built column-wise: a month of 1.5M claims never becomes
    Python objects."""
    rng = np.random.default_rng([seed, index, 835])
    folder = out / "landing" / "remittances"
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    counts = {"claims": 0, "reversals": 0, "unmatched": 0, "plb": 0}
    paid_total = 0
    denied: dict[str, dict[str, int]] = {}
    previous: _Claims | None = None  # the month before's first two paid claims
    for month, claims, month_end in months:
        c = _month_claims(claims, rng)
        paid_total += int(c.paid.sum())
        for carc in np.unique(c.cas_reason[c.status == "4", 0]).tolist():
            on = (c.status == "4") & (c.cas_reason[:, 0] == carc)
            d = denied.setdefault(carc, {"claims": 0, "amount": 0})
            d["claims"] += int(on.sum())
            d["amount"] += int(c.charge[on].sum())
        counts["claims"] += len(c)
        parts = [c]
        # reversals of two paid claims of the month before, each paid again
        if previous is not None and len(previous):
            back = previous.reversed()
            for i in range(len(previous)):
                parts += [back.take(slice(i, i + 1)), previous.take(slice(i, i + 1))]
            counts["reversals"] += len(previous)
            counts["claims"] += 2 * len(previous)
        order = _first_seen(np.concatenate([p.payer for p in parts]))
        plb = False
        if order:
            # a remittance for a claim the lake does not have
            parts.append(
                _one_claim(order[0], f"EXT-{index + 1}-{month:02d}", 12000, 10000, month_end)
            )
            counts["unmatched"] += 1
            counts["claims"] += 1
            paid_total += 10000
            plb = month % 2 == 0
            counts["plb"] += plb
        previous = c.take(np.nonzero(c.status == "1")[0][:2])
        if not order:
            continue
        name = f"hospital{index + 1}_{month_end:%Y_%m}.835"
        (folder / name).write_bytes(
            _interchange(_Claims.concat(parts), order, plb, index, month_end, month)
        )
        files.append(name)
    facts: dict[str, Any] = {"files": files, **counts}
    facts["resent_files"], facts["broken_files"] = [], []
    if files and fresh:
        first_file = folder / files[0]
        resent = f"hospital{index + 1}_resent_{first_file.stem.split('_', 1)[1]}.835"
        (folder / resent).write_bytes(first_file.read_bytes())
        broken = f"hospital{index + 1}_broken.835"
        (folder / broken).write_bytes(first_file.read_bytes().rsplit(b"IEA", 1)[0])
        facts["resent_files"], facts["broken_files"] = [resent], [broken]
    facts["paid_total"] = _dollars(paid_total)
    facts["denied"] = {
        k: {"claims": v["claims"], "amount": _dollars(v["amount"])}
        for k, v in sorted(denied.items())
    }
    return facts


def _first_seen(values: np.ndarray) -> list[str]:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values.tolist()))


def _dollars(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2))


def merge(before: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a set after an update: counts added, files listed, denials summed."""
    if not before:
        return new
    denied = {k: dict(v) for k, v in before["denied"].items()}
    for carc, v in new["denied"].items():
        d = denied.setdefault(carc, {"claims": 0, "amount": "0.00"})
        d["claims"] += v["claims"]
        d["amount"] = str(Decimal(d["amount"]) + Decimal(v["amount"]))
    return {
        **before,
        "files": before["files"] + new["files"],
        "claims": before["claims"] + new["claims"],
        "reversals": before["reversals"] + new["reversals"],
        "unmatched": before["unmatched"] + new["unmatched"],
        "plb": before["plb"] + new["plb"],
        "paid_total": str(Decimal(before["paid_total"]) + Decimal(new["paid_total"])),
        "denied": dict(sorted(denied.items())),
    }
