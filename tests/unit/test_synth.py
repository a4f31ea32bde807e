"""The synthetic hospitals: deterministic, realistic, with recorded defects."""

from __future__ import annotations

import functools
import operator
import sqlite3
from pathlib import Path

import duckdb
import pytest
import yaml

from rcmlake.demo import hospital_names, prepare
from rcmlake.errors import ConfigError
from rcmlake.synth import SynthSpec, synthesize
from rcmlake.synth.catalog import cpt_catalog, icd_catalog

SPEC = SynthSpec(seed=3, transactions=800, months=3)


def dump(path: Path) -> list:
    con = sqlite3.connect(path)
    out = [
        con.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
        for t in ("patients", "encounters", "transactions", "providers")
    ]
    con.close()
    return out


def test_same_seed_same_data(tmp_path: Path) -> None:
    a, b, c = (
        synthesize(tmp_path / n, s)
        for n, s in (("a", SPEC), ("b", SPEC), ("c", SynthSpec(seed=4, transactions=800, months=3)))
    )
    assert dump(tmp_path / "a/sources/hospital_a.db") == dump(tmp_path / "b/sources/hospital_a.db")
    assert dump(tmp_path / "a/sources/hospital_a.db") != dump(tmp_path / "c/sources/hospital_a.db")
    files = sorted(p.name for p in (tmp_path / "a/landing/claims").glob("*.csv"))
    assert files == [f"hospital{h}_claims_2025_0{m}.csv" for h in (1, 2) for m in (1, 2, 3)]
    for f in files:
        assert (tmp_path / "a/landing/claims" / f).read_bytes() == (
            tmp_path / "b/landing/claims" / f
        ).read_bytes()
    assert a.manifest["defects"] == b.manifest["defects"] != c.manifest["defects"]


def test_hospital_b_names_patient_columns_its_own_way(tmp_path: Path) -> None:
    synthesize(tmp_path, SPEC)
    con = sqlite3.connect(tmp_path / "sources/hospital_b.db")
    cols = [r[1] for r in con.execute("PRAGMA table_info(patients)")]
    assert cols[:4] == ["ID", "F_Name", "L_Name", "M_Name"] and "Updated_Date" in cols
    con = sqlite3.connect(tmp_path / "sources/hospital_a.db")
    assert next(r[1] for r in con.execute("PRAGMA table_info(patients)")) == "PatientID"


def test_money_flows_and_keys_are_consistent(tmp_path: Path) -> None:
    out = synthesize(tmp_path, SPEC)
    con = duckdb.connect()
    db = tmp_path / "sources/hospital_a.db"
    src = sqlite3.connect(db)
    import pyarrow as pa

    for t in ("transactions", "encounters", "patients", "providers"):
        cur = src.execute(f"SELECT * FROM {t}")
        names = [d[0] for d in cur.description]
        con.register(
            t, pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cur.fetchall()])
        )
    defects = out.manifest["defects"]["hospital_a"]
    bad = functools.reduce(
        operator.iadd, (defects[k] for k in defects if k.startswith("transaction_")), []
    )
    clean = f"TransactionID NOT IN ({', '.join(repr(x) for x in bad)})"
    # paid never exceeds billed, never precedes service; every transaction joins its encounter and provider
    assert con.execute(
        f"SELECT count(*) FROM transactions WHERE {clean} AND (PaidAmount > Amount OR PaidDate < ServiceDate)"
    ).fetchone() == (0,)
    assert con.execute(
        "SELECT count(*) FROM transactions t LEFT JOIN encounters e USING (EncounterID) WHERE e.EncounterID IS NULL"
    ).fetchone() == (0,)
    assert con.execute(
        "SELECT count(*) FROM transactions t LEFT JOIN providers p USING (ProviderID) WHERE p.ProviderID IS NULL"
    ).fetchone() == (0,)
    # payers, statuses, repeat visits
    assert con.execute("SELECT count(DISTINCT PayorID) FROM transactions").fetchone()[0] == 6
    visits = con.execute(
        "SELECT max(n) FROM (SELECT count(*) n FROM encounters GROUP BY PatientID)"
    ).fetchone()[0]
    assert visits >= 5
    codes = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT CAST(ProcedureCode AS VARCHAR) FROM encounters"
        ).fetchall()
    }
    assert codes - set(cpt_catalog()["code"].to_pylist()) == {
        "99999"
    }  # only the injected unknown code
    icd = {r[0] for r in con.execute("SELECT DISTINCT ICDCode FROM transactions").fetchall()}
    assert icd - set(icd_catalog()["code"].to_pylist()) == {"ZZZ.999"}
    claims = duckdb.sql(
        f"SELECT ClaimStatus, count(*) n FROM read_csv('{tmp_path}/landing/claims/hospital1_*.csv', all_varchar=true, ignore_errors=true) GROUP BY 1"
    ).fetchall()
    assert {s for s, _ in claims} == {"Paid", "Approved", "Denied", "Rejected", "Pending"}


def test_update_moves_patients_and_adds_a_month(tmp_path: Path) -> None:
    synthesize(tmp_path, SPEC)
    before = dump(tmp_path / "sources/hospital_a.db")
    upd = synthesize(tmp_path, update=True)
    after = dump(tmp_path / "sources/hospital_a.db")
    assert upd.manifest["updates"] == 1 and upd.manifest["as_of"] == "2025-04-30"
    assert len(after[1]) > len(before[1])  # new encounters
    moved = {r[0] for r in after[0]} & {r[0] for r in before[0]}
    changed = [r for r in after[0] if r[0] in moved and r not in before[0]]
    assert changed and all(r[-1] > "2025-03-31" for r in changed)
    assert (tmp_path / "landing/claims/hospital1_claims_2025_04.csv").exists()
    assert upd.manifest["corrected"]["hospital_a"]["transaction_negative_amount"]


def test_update_needs_a_base_set(tmp_path: Path) -> None:
    from rcmlake.errors import ConfigError

    with pytest.raises(ConfigError, match="run `rcmlake synth` before --update"):
        synthesize(tmp_path, update=True)


def test_the_demo_config_follows_the_sets_hospitals_unless_edited(tmp_path: Path) -> None:
    config = tmp_path / "rcmlake.yaml"
    prepare(tmp_path, SynthSpec(transactions=200, months=2))
    assert list(yaml.safe_load(config.read_text())["sources"]) == ["hospital_a", "hospital_b"]
    prepare(tmp_path, SynthSpec(transactions=200, months=2, datasources=hospital_names(3)))
    raw = yaml.safe_load(config.read_text())
    assert list(raw["sources"]) == ["hospital_a", "hospital_b", "hospital_c"]
    assert raw["files"]["remittances"]["patterns"]["hospital_c"] == "hospital3_*.835"
    assert (tmp_path / "landing" / "claims" / "hospital3_claims_2025_01.csv").exists()
    edited = config.read_text().replace("name: rcmlake-demo", "name: our-lake")
    config.write_text(edited)
    prepare(tmp_path, SynthSpec(transactions=200, months=2))
    assert config.read_text() == edited  # an edited config is the user's
    with pytest.raises(ConfigError, match="1 to 26 hospitals, not 27"):
        hospital_names(27)
