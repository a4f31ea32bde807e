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
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import oxedi
import pyarrow as pa

MONEY = pa.decimal128(38, 2)
# denial reasons by payer: (CARC, weight); duplicates (18) among them
DENIAL_MIX = {
    "Medicare": [("50", 0.35), ("16", 0.25), ("197", 0.15), ("18", 0.10), ("29", 0.15)],
    "Medicaid": [("27", 0.30), ("16", 0.25), ("197", 0.20), ("18", 0.10), ("50", 0.15)],
    "BlueCross": [("197", 0.35), ("50", 0.25), ("16", 0.20), ("18", 0.10), ("29", 0.10)],
    "Aetna": [("197", 0.30), ("16", 0.30), ("50", 0.20), ("18", 0.10), ("31", 0.10)],
    "UnitedHealthcare": [("16", 0.35), ("197", 0.25), ("50", 0.20), ("18", 0.10), ("29", 0.10)],
}
FILING = {"Medicare": "MB", "Medicaid": "MC"}
PLB_AMOUNT = Decimal("25.00")


def _money(value: float) -> Decimal:
    return Decimal(str(round(float(value), 2))).quantize(Decimal("0.01"))


class _Builder:
    """Rows of the oxedi tables for one interchange."""

    def __init__(self) -> None:
        self.payments: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []
        self.adjustments: list[dict[str, Any]] = []
        self.plb: list[dict[str, Any]] = []

    def payment(self, payer: str, trace: str, day: dt.date, hospital: str, npi: str) -> int:
        self.payments.append(
            {
                "row": len(self.payments),
                "credit_debit_flag": "C",
                "handling_code": "I",
                "payment_method": "ACH",
                "payment_date": day,
                "production_date": day,
                "trace_number": trace,
                "payer_identifier": f"1{zlib.crc32(payer.encode()) % 10**9:09d}",
                "payer_name": payer,
                "payer_address": "1 PAYER PLAZA",
                "payer_city": "HARTFORD",
                "payer_state": "CT",
                "payer_zip": "06101",
                "payer_technical_contact_qualifier": "TE",
                "payer_technical_contact_number": "8005551212",
                "payee_name": hospital,
                "payee_id": npi,
                "payee_id_qualifier": "XX",
                "total_payment_amount": Decimal("0.00"),
            }
        )
        return len(self.payments) - 1

    def claim(
        self,
        payment: int,
        claim_id: str,
        status: str,
        charge: Decimal,
        paid: Decimal,
        patient: Decimal,
        filing: str,
        service: dt.date,
        cas: list[tuple[str, str, Decimal]],
    ) -> None:
        row = len(self.claims)
        self.claims.append(
            {
                "row": row,
                "payment": payment,
                "claim_id": claim_id,
                "claim_status": status,
                "charge_amount": charge,
                "payment_amount": paid,
                "patient_responsibility": patient,
                "filing_indicator": filing,
                "payer_control_number": f"PCN{claim_id}{status}",
                "statement_from": service,
                "patient_last_name": "SYNTHETIC",
                "patient_first_name": "PATIENT",
                "patient_id": f"M{zlib.crc32(claim_id.encode()) % 10**9:09d}",
                "patient_id_qualifier": "MI",
            }
        )
        for group, reason, amount in cas:
            if amount != 0:
                self.adjustments.append(
                    {
                        "row": len(self.adjustments),
                        "payment": payment,
                        "claim": row,
                        "service": None,
                        "group_code": group,
                        "reason_code": reason,
                        "amount": amount,
                    }
                )
        self.payments[payment]["total_payment_amount"] += paid

    def provider_adjustment(self, payment: int, npi: str, day: dt.date) -> None:
        self.plb.append(
            {
                "row": len(self.plb),
                "payment": payment,
                "provider_id": npi,
                "fiscal_period_date": dt.date(day.year, 12, 31),
                "reason_code": "WO",
                "reference_id": f"OVERPAY{len(self.plb) + 1}",
                "amount": PLB_AMOUNT,
            }
        )
        self.payments[payment]["total_payment_amount"] -= PLB_AMOUNT

    def write(self, sender: str, receiver: str, day: dt.date, control: int) -> bytes:
        def table(rows: list[dict[str, Any]]) -> pa.Table:
            t = pa.Table.from_pylist(rows)
            for name in t.column_names:
                if name.endswith("amount") or name == "patient_responsibility":
                    t = t.set_column(t.column_names.index(name), name, t[name].cast(MONEY))
            return t

        tables = {"payments": table(self.payments), "claims": table(self.claims)}
        if self.adjustments:
            adj = table(self.adjustments)
            tables["adjustments"] = adj.set_column(
                adj.column_names.index("service"), "service", pa.nulls(adj.num_rows, pa.int64())
            )
        if self.plb:
            tables["provider_adjustments"] = table(self.plb)
        env = oxedi.Envelope(
            sender_id=sender,
            receiver_id=receiver,
            date=day,
            time=dt.time(6, 0),
            control_number=control,
        )
        out = oxedi.write(tables, env, allow_findings=True)
        return bytes(out[0])


def write_remittances(
    out: Path,
    index: int,
    months: list[tuple[int, pa.Table, dt.date]],
    seed: int,
    *,
    fresh: bool = True,
) -> dict[str, Any]:
    """One 835 per month of ``months`` ((month, that month's claims, month end)); returns the
    manifest of what the files hold."""
    rng = np.random.default_rng([seed, index, 835])
    folder = out / "landing" / "remittances"
    folder.mkdir(parents=True, exist_ok=True)
    hospital, npi = f"SYNTHETIC HOSPITAL {index + 1}", f"{1234567893 + index}"
    facts: dict[str, Any] = {
        "files": [],
        "claims": 0,
        "denied": {},
        "reversals": 0,
        "unmatched": 0,
        "plb": 0,
        "paid_total": Decimal("0.00"),
    }
    previous_paid: list[dict[str, Any]] = []
    for month, claims, month_end in months:
        b = _Builder()
        payments: dict[str, int] = {}
        rows = claims.to_pylist()
        paid_now: list[dict[str, Any]] = []

        def pay(
            payer: str,
            b: _Builder = b,
            payments: dict[str, int] = payments,
            day: dt.date = month_end,
        ) -> int:
            """The payer's payment of this month's file (one BPR/TRN per payer)."""
            if payer not in payments:
                trace = f"EFT{index + 1}{day:%y%m}{len(payments) + 1:02d}"
                payments[payer] = b.payment(payer, trace, day, hospital, npi)
            return payments[payer]

        for r in rows:
            if r["PayorID"] == "Self-Pay" or r["ClaimStatus"] not in ("Paid", "Denied"):
                continue
            charge, filing = _money(r["ClaimAmount"]), FILING.get(r["PayorID"], "CI")
            if r["ClaimStatus"] == "Paid":
                ded, coins, copay = (_money(r[c]) for c in ("Deductible", "Coinsurance", "Copay"))
                paid = _money(r["PaidAmount"])
                contractual = charge - paid - ded - coins - copay
                if contractual < 0:
                    continue  # a claim paid over its charge has no plain 835 here
                cas = [
                    ("PR", "1", ded),
                    ("PR", "2", coins),
                    ("PR", "3", copay),
                    ("CO", "45", contractual),
                ]
                b.claim(
                    pay(r["PayorID"]),
                    r["ClaimID"],
                    "1",
                    charge,
                    paid,
                    ded + coins + copay,
                    filing,
                    r["ServiceDate"],
                    cas,
                )
                paid_now.append({**r, "_cas": cas, "_paid": paid, "_patient": ded + coins + copay})
                facts["paid_total"] += paid
            else:
                mix = DENIAL_MIX[r["PayorID"]]
                carc = mix[int(rng.choice(len(mix), p=[w for _, w in mix]))][0]
                b.claim(
                    pay(r["PayorID"]),
                    r["ClaimID"],
                    "4",
                    charge,
                    Decimal("0.00"),
                    Decimal("0.00"),
                    filing,
                    r["ServiceDate"],
                    [("CO", carc, charge)],
                )
                d = facts["denied"].setdefault(carc, {"claims": 0, "amount": Decimal("0.00")})
                d["claims"] += 1
                d["amount"] += charge
            facts["claims"] += 1
        # reversals of two paid claims of the month before, each paid again
        for r in previous_paid[:2]:
            p = pay(r["PayorID"])
            charge = _money(r["ClaimAmount"])
            neg = [(g, c, -a) for g, c, a in r["_cas"]]
            filing = FILING.get(r["PayorID"], "CI")
            b.claim(
                p,
                r["ClaimID"],
                "22",
                -charge,
                -r["_paid"],
                -r["_patient"],
                filing,
                r["ServiceDate"],
                neg,
            )
            b.claim(
                p,
                r["ClaimID"],
                "1",
                charge,
                r["_paid"],
                r["_patient"],
                filing,
                r["ServiceDate"],
                r["_cas"],
            )
            facts["reversals"] += 1
            facts["claims"] += 2
        # a remittance for a claim the lake does not have
        if payments:
            first = next(iter(payments))
            b.claim(
                payments[first],
                f"EXT-{index + 1}-{month:02d}",
                "1",
                Decimal("120.00"),
                Decimal("100.00"),
                Decimal("0.00"),
                "CI",
                month_end,
                [("CO", "45", Decimal("20.00"))],
            )
            facts["unmatched"] += 1
            facts["claims"] += 1
            facts["paid_total"] += Decimal("100.00")
            if month % 2 == 0:
                b.provider_adjustment(payments[first], npi, month_end)
                facts["plb"] += 1
        previous_paid = paid_now
        if not b.payments:
            continue
        name = f"hospital{index + 1}_{month_end:%Y_%m}.835"
        (folder / name).write_bytes(b.write("PAYERHUB", f"HOSP{index + 1}", month_end, month))
        facts["files"].append(name)
    if facts["files"] and fresh:
        first_file = folder / facts["files"][0]
        resent = f"hospital{index + 1}_resent_{first_file.stem.split('_', 1)[1]}.835"
        (folder / resent).write_bytes(first_file.read_bytes())
        broken = f"hospital{index + 1}_broken.835"
        (folder / broken).write_bytes(first_file.read_bytes().rsplit(b"IEA", 1)[0])
        facts["resent_files"], facts["broken_files"] = [resent], [broken]
    facts.setdefault("resent_files", [])
    facts.setdefault("broken_files", [])
    facts["paid_total"] = str(facts["paid_total"])
    facts["denied"] = {
        k: {"claims": v["claims"], "amount": str(v["amount"])}
        for k, v in sorted(facts["denied"].items())
    }
    return facts


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
