"""Every KPI recomputed in plain Python from a small hand-made hospital and compared with gold.

Six transactions and their claims, chosen to cover each status (Paid, Denied, Pending,
Rejected), partial payment, patient responsibility, and A/R crossing month ends.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path
from statistics import mean, median

import pytest

from rcmlake.config import parse_config
from rcmlake.project import Project
from rcmlake.sources.files import LAYOUTS
from rcmlake.synth import _write_cpt

AS_OF = date(2025, 3, 31)
D = date.fromisoformat
# id, service date, charge, payer, line of business, claim date, status, paid, paid date, deductible, coinsurance, copay
ROWS = [
    (
        "1",
        D("2025-01-05"),
        1000.00,
        "Medicare",
        "Medicare",
        D("2025-01-07"),
        "Paid",
        600.00,
        D("2025-02-10"),
        50,
        100,
        20,
    ),
    (
        "2",
        D("2025-01-20"),
        500.00,
        "BlueCross",
        "Commercial",
        D("2025-01-22"),
        "Denied",
        0,
        None,
        0,
        0,
        0,
    ),
    (
        "3",
        D("2025-02-03"),
        800.00,
        "Aetna",
        "Commercial",
        D("2025-02-06"),
        "Pending",
        0,
        None,
        0,
        0,
        0,
    ),
    (
        "4",
        D("2025-02-15"),
        200.00,
        "Aetna",
        "Commercial",
        D("2025-02-16"),
        "Paid",
        150.00,
        D("2025-03-20"),
        0,
        30,
        20,
    ),
    (
        "5",
        D("2025-03-01"),
        400.00,
        "Medicaid",
        "Medicaid",
        D("2025-03-03"),
        "Rejected",
        0,
        None,
        0,
        0,
        0,
    ),
    (
        "6",
        D("2025-03-25"),
        300.00,
        "Self-Pay",
        "Self-Pay",
        D("2025-03-28"),
        "Pending",
        0,
        None,
        0,
        0,
        0,
    ),
]
PAYER_TYPE = {
    "Medicare": "Government",
    "Medicaid": "Government",
    "BlueCross": "Private",
    "Aetna": "Private",
    "Self-Pay": "Self-pay",
}


def build(tmp: Path, untyped: bool = False, **config: object) -> Project:
    """The tiny hospital; ``untyped`` stores its EMR as an all-TEXT staging schema would."""
    (tmp / "sources").mkdir()
    con = sqlite3.connect(tmp / "sources" / "tiny.db")
    con.execute("CREATE TABLE departments (DeptID VARCHAR(50), Name VARCHAR(100))")
    con.execute("INSERT INTO departments VALUES ('DEPT001', 'Cardiology')")
    con.execute(
        "CREATE TABLE providers (ProviderID VARCHAR(50), FirstName TEXT, LastName TEXT, Specialization TEXT, DeptID TEXT, NPI BIGINT)"
    )
    con.execute(
        "INSERT INTO providers VALUES ('H1-PROV0001', 'Ana', 'Rivera', 'Cardiologist', 'DEPT001', 1234567893)"
    )
    con.execute(
        "CREATE TABLE patients (PatientID TEXT, FirstName TEXT, LastName TEXT, MiddleName TEXT, SSN TEXT, PhoneNumber TEXT, Gender TEXT, DOB DATE, Address TEXT, ModifiedDate DATE)"
    )
    con.execute(
        "INSERT INTO patients VALUES ('HOSP1-000001', 'Pat', 'Doe', 'NULL', '123-45-6789', '(555) 123-4567', 'Female', '1970-01-01', '1 Main St, Salem, OR', '2024-12-01')"
    )
    con.execute(
        "CREATE TABLE encounters (EncounterID TEXT, PatientID TEXT, EncounterDate DATE, EncounterType TEXT, ProviderID TEXT, DepartmentID TEXT, ProcedureCode INTEGER, InsertedDate DATE, ModifiedDate DATE)"
    )
    con.execute(
        "CREATE TABLE transactions (TransactionID TEXT, EncounterID TEXT, PatientID TEXT, ProviderID TEXT, DeptID TEXT, VisitDate DATE, ServiceDate DATE, PaidDate DATE, VisitType TEXT, Amount REAL, AmountType TEXT, PaidAmount REAL, ClaimID TEXT, PayorID TEXT, ProcedureCode INTEGER, ICDCode TEXT, LineOfBusiness TEXT, MedicaidID TEXT, MedicareID TEXT, InsertDate DATE, ModifiedDate DATE)"
    )
    lines = [",".join(LAYOUTS["claims"].columns)]
    for i, svc, amt, payer, lob, cdate, status, paid, pdate, ded, coins, copay in ROWS:
        con.execute(
            "INSERT INTO encounters VALUES (?, 'HOSP1-000001', ?, 'Outpatient', 'H1-PROV0001', 'DEPT001', 99213, ?, ?)",
            (f"ENC{i}", svc.isoformat(), svc.isoformat(), svc.isoformat()),
        )
        con.execute(
            "INSERT INTO transactions VALUES (?, ?, 'HOSP1-000001', 'H1-PROV0001', 'DEPT001', ?, ?, ?, 'Routine', ?, 'Insurance', ?, ?, ?, 99213, 'I10', ?, NULL, NULL, ?, ?)",
            (
                f"TRANS{i}",
                f"ENC{i}",
                svc.isoformat(),
                svc.isoformat(),
                pdate.isoformat() if pdate else None,
                amt,
                paid,
                f"CLAIM{i}",
                payer,
                lob,
                svc.isoformat(),
                (pdate or svc).isoformat(),
            ),
        )
        modified = (pdate or cdate).isoformat()
        lines.append(
            ",".join(
                str(x)
                for x in [
                    f"CLAIM{i}",
                    f"TRANS{i}",
                    "HOSP1-000001",
                    f"ENC{i}",
                    "H1-PROV0001",
                    "DEPT001",
                    svc,
                    cdate,
                    payer,
                    amt,
                    paid,
                    status,
                    PAYER_TYPE[payer],
                    ded,
                    coins,
                    copay,
                    cdate,
                    modified,
                ]
            )
        )
    con.commit()
    if untyped:
        as_text(con)
    con.close()
    (tmp / "landing" / "claims").mkdir(parents=True)
    (tmp / "landing" / "claims" / "hospital1_claims_2025_03.csv").write_text(
        "\n".join(lines) + "\n"
    )
    _write_cpt(tmp / "landing" / "cptcodes" / "cptcodes.csv")
    raw = {
        "lake": "lake",
        "sources": {
            "hospital_a": {
                "type": "sqlite",
                "url": "sqlite:///sources/tiny.db",
                "tables": [
                    {"name": t, "load_type": "full"}
                    for t in ("departments", "providers", "patients", "encounters", "transactions")
                ],
            }
        },
        "files": {
            "claims": {
                "folder": "landing/claims",
                "layout": "claims",
                "patterns": {"hospital_a": "hospital1_*.csv"},
            },
            "cpt_codes": {
                "folder": "landing/cptcodes",
                "layout": "cpt_codes",
                "patterns": {"codesets": "*.csv"},
            },
        },
        "gold": {"as_of": AS_OF.isoformat()},
        **config,
    }
    project = Project(parse_config(raw, base_dir=tmp))
    result = project.run()
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    return project


def as_text(con: sqlite3.Connection) -> None:
    """Rewrite every table with TEXT columns: every other date as MM/DD/YYYY, whole amounts
    without decimals, and missing values spelled '', 'N/A', 'null' or blanks."""
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    missing = ["", "N/A", "null", "   "]
    for table in tables:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
        rows = con.execute(f"SELECT * FROM {table}").fetchall()
        con.execute(f"DROP TABLE {table}")
        con.execute(f"CREATE TABLE {table} ({', '.join(f'{c} TEXT' for c in cols)})")
        out = []
        for i, row in enumerate(rows):
            values = []
            for j, v in enumerate(row):
                if v is None:
                    v = missing[(i + j) % len(missing)]
                elif isinstance(v, float):
                    v = str(int(v)) if v == int(v) else f"{v:.2f}"
                elif isinstance(v, str) and len(v) == 10 and v[4] == "-" and (i + j) % 2:
                    v = f"{v[5:7]}/{v[8:10]}/{v[:4]}"
                values.append(str(v))
            out.append(values)
        con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", out)
    con.commit()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return build(tmp_path_factory.mktemp("tiny"))


def kpi(project: Project, month: str) -> dict:
    rows = project.sql(f"SELECT * FROM mart_kpi_monthly WHERE month = DATE '{month}'").to_pylist()
    assert len(rows) == 1
    return rows[0]


# ---- independent recomputation -------------------------------------------------------------------


def month_of(d: date) -> date:
    return d.replace(day=1)


def open_ar(at: date) -> list[tuple]:
    """Claims submitted by `at` and not paid by then, with their balance."""
    return [r for r in ROWS if r[5] <= at and not (r[6] == "Paid" and r[8] <= at)]


def adjustment(r: tuple) -> float:
    return r[2] - r[7] - (r[9] + r[10] + r[11]) if r[6] == "Paid" else 0.0


def bucket(age: int) -> str:
    return (
        "0-30"
        if age <= 30
        else "31-60"
        if age <= 60
        else "61-90"
        if age <= 90
        else "91-120"
        if age <= 120
        else "120+"
    )


@pytest.mark.parametrize("month", ["2025-01-01", "2025-02-01", "2025-03-01"])
def test_collection_rates(tiny: Project, month: str) -> None:
    cohort = [r for r in ROWS if month_of(r[1]) == D(month)]
    charges, paid = sum(r[2] for r in cohort), sum(r[7] for r in cohort)
    got = kpi(tiny, month)
    assert got["gross_charges"] == Decimal(str(charges)).quantize(Decimal("0.01"))
    assert got["gross_collection_rate"] == pytest.approx(paid / charges)
    assert got["net_collection_rate"] == pytest.approx(
        paid / (charges - sum(adjustment(r) for r in cohort))
    )
    assert "refunds" in got["missing_fields"]


@pytest.mark.parametrize("at", [D("2025-01-31"), D("2025-02-28"), AS_OF])
def test_ar_aging_buckets_and_over_90(tiny: Project, at: date) -> None:
    expected: dict[str, float] = {}
    for r in open_ar(at):
        expected[bucket((at - r[1]).days)] = expected.get(bucket((at - r[1]).days), 0) + r[2]
    rows = tiny.sql(
        f"SELECT aging_bucket, sum(ar_amount) AS ar FROM mart_ar_aging WHERE as_of_date = DATE '{at}' GROUP BY 1"
    ).to_pylist()
    assert {r["aging_bucket"]: float(r["ar"]) for r in rows if r["ar"]} == expected
    total = sum(expected.values())
    over = sum(v for k, v in expected.items() if k in ("91-120", "120+"))
    got = kpi(tiny, month_of(at).isoformat())
    assert float(got["ar_total"]) == total
    assert got["ar_over_90_share"] == pytest.approx(over / total)
    assert tiny.sql("SELECT DISTINCT aging_basis FROM mart_ar_aging").column(0).to_pylist() == [
        "service_date"
    ]


@pytest.mark.parametrize("at", [D("2025-01-31"), D("2025-02-28"), AS_OF])
def test_days_in_ar(tiny: Project, at: date) -> None:
    ar = sum(r[2] for r in open_ar(at))
    last_90 = sum(r[2] for r in ROWS if 0 <= (at - r[1]).days < 90)
    assert kpi(tiny, month_of(at).isoformat())["days_in_ar_gross"] == pytest.approx(
        ar / (last_90 / 90)
    )


@pytest.mark.parametrize("month", ["2025-01-01", "2025-02-01", "2025-03-01"])
def test_denial_rejection_first_pass_yield_and_lags(tiny: Project, month: str) -> None:
    claims = [r for r in ROWS if month_of(r[5]) == D(month)]
    adjudicated = [r for r in claims if r[6] in ("Paid", "Approved", "Denied")]
    denied = [r for r in claims if r[6] == "Denied"]
    rejected = [r for r in claims if r[6] == "Rejected"]
    clean = [r for r in claims if r[6] in ("Paid", "Approved")]
    got = kpi(tiny, month)
    if adjudicated:
        assert got["denial_rate"] == pytest.approx(len(denied) / len(adjudicated))
        assert got["denial_rate_amount"] == pytest.approx(
            sum(r[2] for r in denied) / sum(r[2] for r in adjudicated)
        )
    else:
        assert got["denial_rate"] is None
    assert got["rejection_rate"] == pytest.approx(len(rejected) / len(claims))
    assert got["first_pass_yield"] == pytest.approx(len(clean) / (len(adjudicated) + len(rejected)))
    lags = [(r[5] - r[1]).days for r in claims]
    assert got["claim_lag_mean"] == pytest.approx(mean(lags)) and got[
        "claim_lag_median"
    ] == pytest.approx(median(lags))
    paid_here = [(r[8] - r[5]).days for r in ROWS if r[8] and month_of(r[8]) == D(month)]
    if paid_here:
        assert got["payment_lag_mean"] == pytest.approx(mean(paid_here))
        assert got["payment_lag_median"] == pytest.approx(median(paid_here))


def test_payer_mix_and_reimbursement_per_encounter(tiny: Project) -> None:
    jan = [r for r in ROWS if month_of(r[1]) == D("2025-01-01")]
    total = sum(r[2] for r in jan)
    rows = tiny.sql(
        "SELECT payer, payer_share_of_charges FROM mart_revenue_monthly WHERE service_month = DATE '2025-01-01'"
    ).to_pylist()
    assert {r["payer"]: r["payer_share_of_charges"] for r in rows} == pytest.approx(
        {r[3]: r[2] / total for r in jan}
    )
    assert kpi(tiny, "2025-01-01")["avg_reimbursement_per_encounter"] == pytest.approx(
        sum(r[7] for r in jan) / len(jan)
    )
    reimb = tiny.sql(
        "SELECT payer_type, sum(payments) p, sum(encounters_with_charge) n FROM mart_reimbursement GROUP BY 1"
    ).to_pylist()
    assert {r["payer_type"]: float(r["p"]) / float(r["n"]) for r in reimb}["medicare"] == 600.0


def test_collection_rate_by_aging_bucket(tiny: Project) -> None:
    expected: dict[str, list[float]] = {}
    for r in ROWS:
        end = r[8] if r[8] and r[8] <= AS_OF else AS_OF
        b = expected.setdefault(bucket((end - r[1]).days), [0.0, 0.0])
        b[0] += r[7] if r[8] and r[8] <= AS_OF else 0
        b[1] += r[2]
    rows = tiny.sql(
        "SELECT aging_bucket, collection_rate FROM mart_collection_by_aging"
    ).to_pylist()
    assert {r["aging_bucket"]: r["collection_rate"] for r in rows} == pytest.approx(
        {k: p / b for k, (p, b) in expected.items()}
    )


def test_denials_mart_and_fact_claim(tiny: Project) -> None:
    rows = tiny.sql("SELECT * FROM mart_denials").to_pylist()
    assert [
        (r["payer"], r["denial_reason"], r["denied_claims"], float(r["denied_amount"]))
        for r in rows
    ] == [("BlueCross", "not provided by source", 1, 500.0)]
    fc = {r["claim_id"]: r for r in tiny.sql("SELECT * FROM fact_claim").to_pylist()}
    c1 = fc["CLAIM1"]
    assert float(c1["patient_responsibility"]) == 170.0 and float(c1["allowed_amount"]) == 770.0
    assert (
        float(c1["contractual_adjustment"]) == 230.0
        and c1["payment_lag_days"] == 34
        and c1["claim_lag_days"] == 2
    )
    assert (
        fc["CLAIM2"]["is_denied"]
        and fc["CLAIM5"]["is_rejected"]
        and fc["CLAIM3"]["paid_date"] is None
    )
    assert all(
        r["patient_sk"] > 0 and r["payer_sk"] > 0 and r["procedure_sk"] > 0 for r in fc.values()
    )


def test_claim_kpis_survive_a_feed_whose_every_line_is_quarantined(tmp_path: Path) -> None:
    rule = {"name": "no_lines", "table": "transactions", "predicate": "false", "severity": "error"}
    project = build(tmp_path, silver={"rules": [rule]})
    assert project.sql("SELECT count(*) FROM fact_transaction").column(0)[0].as_py() == 0
    months = ["2025-01-01", "2025-02-01", "2025-03-01"]
    for month in months:
        got = kpi(project, month)
        claims = [r for r in ROWS if month_of(r[5]) == D(month)]
        adjudicated = [r for r in claims if r[6] in ("Paid", "Approved", "Denied")]
        denied = [r for r in claims if r[6] == "Denied"]
        rejected = [r for r in claims if r[6] == "Rejected"]
        first = [r for r in claims if r[6] in ("Paid", "Approved")]
        assert got["rejection_rate"] == pytest.approx(len(rejected) / len(claims))
        assert got["first_pass_yield"] == pytest.approx(
            len(first) / (len(adjudicated) + len(rejected))
        )
        if adjudicated:
            assert got["denial_rate"] == pytest.approx(len(denied) / len(adjudicated))
        at = (
            AS_OF
            if month == "2025-03-01"
            else D(month).replace(day=28 if month == "2025-02-01" else 31)
        )
        assert float(got["ar_total"]) == sum(r[2] for r in open_ar(at))
        cohort = [r for r in ROWS if month_of(r[1]) == D(month)]
        assert float(got["gross_charges"]) == sum(r[2] for r in cohort)  # billed on its claims
        assert got["inputs"] == "claims+encounters"
    revenue = project.sql("SELECT DISTINCT inputs FROM mart_revenue_monthly").column(0).to_pylist()
    assert revenue == ["claims"]


def test_inputs_name_every_source_of_a_kpi_row(tiny: Project) -> None:
    assert {kpi(tiny, m)["inputs"] for m in ("2025-01-01", "2025-02-01", "2025-03-01")} == {
        "transactions+claims+encounters"
    }


def test_paid_date_sources_and_impossible_payment_lags(tmp_path: Path) -> None:
    project = build(tmp_path)
    con = sqlite3.connect(tmp_path / "sources" / "tiny.db")
    # claim 1 (served 01-05, claimed 01-07): its line says it was paid before it was claimed
    con.execute("UPDATE transactions SET PaidDate = '2025-01-06' WHERE TransactionID = 'TRANS1'")
    # claim 4: the line lost its paid date, so the claim's own modified date (03-20) is used
    con.execute("UPDATE transactions SET PaidDate = NULL WHERE TransactionID = 'TRANS4'")
    con.commit()
    con.close()
    assert project.run().exit_code == 0
    fc = {r["claim_id"]: r for r in project.sql("SELECT * FROM fact_claim").to_pylist()}
    one, four = fc["CLAIM1"], fc["CLAIM4"]
    assert (one["paid_date"], one["paid_date_source"]) == (D("2025-01-06"), "transaction")
    assert one["is_payment_lag_impossible"] and one["payment_lag_days"] is None
    assert (four["paid_date"], four["paid_date_source"], four["payment_lag_days"]) == (
        D("2025-03-20"),
        "claim_modified",
        (D("2025-03-20") - D("2025-02-16")).days,
    )
    assert not four["is_payment_lag_impossible"]
    assert fc["CLAIM2"]["paid_date_source"] is None  # denied: not paid
    jan = kpi(project, "2025-01-01")
    assert jan["claims_paid_before_claim_date"] == 1 and jan["payment_lag_mean"] is None
