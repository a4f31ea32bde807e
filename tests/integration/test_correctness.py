"""Correct on any machine and any data: clock, same-day history, late parents, rollback, text sources."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.compute as pc
import pytest

from rcmlake.errors import ConfigError
from rcmlake.layers.silver import REQUALIFIED_PATH, silver_path
from rcmlake.project import Project
from tests.conftest import make_project


def _sqlite(workdir: Path, ds: str = "hospital_a") -> sqlite3.Connection:
    return sqlite3.connect(workdir / "sources" / f"{ds}.db")


def test_same_day_edit_opens_a_version(workdir: Path, engine_run: dict) -> None:
    project = make_project(workdir, run=engine_run)
    assert project.run(["bronze", "silver"]).exit_code == 0
    con = _sqlite(workdir)
    top = con.execute("SELECT max(ModifiedDate) FROM patients").fetchone()[0]
    pid, address = con.execute(
        "SELECT PatientID, Address FROM patients WHERE ModifiedDate = ? AND PatientID IS NOT NULL "
        "ORDER BY PatientID LIMIT 1",
        [top],
    ).fetchone()
    con.execute(
        "UPDATE patients SET Address = '1 Same Day Rd, Springfield, IL 62704' WHERE PatientID = ?",
        [pid],
    )
    con.commit()
    con.close()
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0
    p = project.lake.read(silver_path("patients"))
    rows = sorted(
        (r for r in p.to_pylist() if r["patient_key"] == f"{pid}-hospital_a"),
        key=lambda r: r["effective_from"],
    )
    assert [r["address"] for r in rows] == [address, "1 Same Day Rd, Springfield, IL 62704"]
    old, new = rows
    assert (old["is_current"], new["is_current"], new["effective_to"]) == (False, True, None)
    assert old["effective_to"] == new["effective_from"]
    assert old["source_modified_at"] == new["source_modified_at"]
    # the same source time: the new version starts one microsecond after the old one
    assert (new["effective_from"] - old["effective_from"]).total_seconds() == 1e-6
    # and a re-run changes nothing
    version = project.lake.table(silver_path("patients")).version()
    project.run(["bronze", "silver"])
    assert project.lake.table(silver_path("patients")).version() == version


def _lake_tables(project: Project, layer: str) -> dict[str, list[dict]]:
    """Every table of a layer as sorted rows, without run-dependent lineage columns."""
    from rcmlake.transforms import models

    drop = {"_batch_id", "_updated_at", "_ingested_at"}
    out = {}
    for m in models(layer):
        table = project.lake.read(f"{layer}/{m.name}")
        if table is None:
            continue
        table = table.drop_columns([c for c in table.column_names if c in drop])
        rows = table.to_pylist()
        out[m.name] = sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out


def test_gold_is_the_same_in_any_host_time_zone(tmp_path: Path, synth_template: Path) -> None:
    import shutil
    import subprocess
    import sys

    projects = {}
    for tz in ("UTC", "America/New_York", "Asia/Kolkata"):
        work = tmp_path / tz.replace("/", "_")
        shutil.copytree(synth_template, work)
        projects[tz] = make_project(work)
        env = {**__import__("os").environ, "TZ": tz}
        code = (
            "import sys; from rcmlake.project import Project; "
            "sys.exit(Project.load(sys.argv[1]).run().exit_code)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(work / "rcmlake.yaml")], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    utc = projects.pop("UTC")
    gold = _lake_tables(utc, "gold")
    assert gold["fact_claim"] and gold["mart_kpi_monthly"]
    for tz, other in projects.items():
        assert _lake_tables(other, "gold") == gold, tz
        # entities versioned by their source's own times (the others use the ingestion time)
        silver, expected = _lake_tables(other, "silver"), _lake_tables(utc, "silver")
        for entity in ("patients", "encounters", "transactions", "claims"):
            assert silver[entity] == expected[entity], (tz, entity)


def test_an_all_text_emr_gives_the_same_lake(tmp_path: Path, engine_run: dict) -> None:
    """The tiny hospital stored as TEXT everywhere (US dates, '1000' amounts, 'N/A' for
    missing) builds the same silver and gold as its typed original (built by DuckDB), on
    either engine."""
    from tests.integration.test_gold_kpis import build

    (tmp_path / "typed").mkdir()
    (tmp_path / "text").mkdir()
    typed = build(tmp_path / "typed")
    text = build(tmp_path / "text", untyped=True, run=engine_run)
    con = sqlite3.connect(tmp_path / "text" / "sources" / "tiny.db")
    types = {r[2] for r in con.execute("SELECT * FROM pragma_table_info('transactions')")}
    assert types == {"TEXT"}
    assert (
        con.execute(
            "SELECT count(*) FROM transactions WHERE ServiceDate LIKE '__/__/____'"
        ).fetchone()[0]
        > 0
    )
    con.close()
    want, got = _lake_tables(typed, "gold"), _lake_tables(text, "gold")
    assert set(got) == set(want)
    for name in want:
        if name not in ("dim_provider", "dim_department", "dim_procedure", "dim_diagnosis"):
            assert got[name] == want[name], name
    for entity in ("patients", "encounters", "transactions"):
        rows = text.lake.read(silver_path(entity))
        assert not any(rows["is_quarantined"].to_pylist()), entity
    assert (
        _lake_tables(text, "silver")["transactions"]
        == _lake_tables(typed, "silver")["transactions"]
    )
    assert _lake_tables(text, "silver")["encounters"] == _lake_tables(typed, "silver")["encounters"]


def test_values_that_do_not_parse_are_quarantined_with_their_column(tmp_path: Path) -> None:
    from tests.integration.test_gold_kpis import build

    project = build(tmp_path, untyped=True)
    con = sqlite3.connect(tmp_path / "sources" / "tiny.db")
    con.execute(
        "UPDATE transactions SET Amount = 'twelve', ServiceDate = '31/02/2025' WHERE TransactionID = 'TRANS2'"
    )
    con.execute("UPDATE transactions SET Amount = '$1,234.50' WHERE TransactionID = 'TRANS3'")
    con.commit()
    con.close()
    result = project.run()
    assert result.exit_code == 0
    tx = {
        r["source_transaction_id"]: r
        for r in project.lake.read(silver_path("transactions")).to_pylist()
    }
    bad = tx["TRANS2"]
    assert bad["is_quarantined"] and "values_typed" in bad["dq_failures"]
    assert sorted(bad["cast_errors"]) == ["amount", "service_date"]  # the columns, never the values
    assert bad["amount"] is None and bad["service_date"] is None
    assert str(tx["TRANS3"]["amount"]) == "1234.50" and tx["TRANS3"]["cast_errors"] == []
    assert [k for k, r in tx.items() if r["is_quarantined"]] == ["TRANS2"], {
        k: r["dq_failures"] for k, r in tx.items()
    }
    # and the quarantined line is not in gold
    assert (
        project.sql("SELECT count(*) FROM fact_transaction WHERE source_transaction_id = 'TRANS2'")
        .column(0)[0]
        .as_py()
        == 0
    )


def test_age_bands_in_whole_years_and_addresses_without_zip_codes(tmp_path: Path) -> None:
    from datetime import date

    from tests.integration.test_gold_kpis import AS_OF, build

    project = build(tmp_path)
    people = {  # id: (date of birth, address, expected state, expected zip3)
        "P1": ("2007-04-01", "1 Main St, Springfield, IL 62704", "IL", "627"),  # 17 until tomorrow
        "P2": ("2007-03-31", "1 Main St Apt 4, Springfield IL 62704-1234", "IL", "627"),  # 18 today
        "P3": ("1960-04-15", "PSC 1234, Box 5678, APO AE 09012", "AE", "090"),
        "P4": ("1960-03-15", "USNS Comfort, FPO AA 34055", "AA", "340"),
        "P5": ("1990-12-31", "Unit 2050 Box 4190, DPO AP 96522", "AP", "965"),
        "P6": ("1976-01-01", "  9 Elm Rd ,  Cheyenne , wy 82001 ", "WY", "820"),
        "P7": (
            "1976-01-01",
            "77 Ranch Rd, Tiny Town, WY 82101",
            "WY",
            "000",
        ),  # a low-population prefix
        "P8": ("1991-06-30", "9 Elm Rd", None, None),
        "P9": ("1950-02-28", "Rua X, Lisboa, Portugal", None, None),
    }
    con = sqlite3.connect(tmp_path / "sources" / "tiny.db")
    for pid, (dob, address, _, _) in people.items():
        con.execute(
            "INSERT INTO patients VALUES (?, 'A', 'B', NULL, NULL, NULL, 'Male', ?, ?, '2025-01-01')",
            [pid, dob, address],
        )
    con.commit()
    con.close()
    assert project.run().exit_code == 0
    dim = {
        r["patient_key"].split("-")[0]: r
        for r in project.sql("SELECT * FROM dim_patient", role="privileged").to_pylist()
    }

    def age(dob: date) -> int:
        return AS_OF.year - dob.year - ((AS_OF.month, AS_OF.day) < (dob.month, dob.day))

    def band(a: int) -> str:
        return (
            next(
                b
                for limit, b in [(18, "0-17"), (35, "18-34"), (50, "35-49"), (65, "50-64")]
                if a < limit
            )
            if a < 65
            else "65+"
        )

    for pid, (dob, _, state, zip3) in people.items():
        row = dim[pid]
        assert row["age_band"] == band(age(date.fromisoformat(dob))), pid
        assert (row["state"], row["zip3"]) == (state, zip3), pid
    assert dim["P1"]["age_band"] == "0-17" and dim["P2"]["age_band"] == "18-34"
    assert dim["P4"]["age_band"] == "65+" and dim["P3"]["age_band"] == "50-64"
    columns = set(project.sql("SELECT * FROM dim_patient LIMIT 0").column_names)
    assert not columns & {"city", "zip_code", "address", "date_of_birth"}
    # none of these ZIP codes appears anywhere in gold
    zips = ("62704", "09012", "34055", "96522", "82001", "82101")
    for name, rows in _lake_tables(project, "gold").items():
        text = repr(rows)
        assert not [z for z in zips if z in text], name


def test_late_arriving_encounter_releases_its_transactions(workdir: Path, engine_run: dict) -> None:
    con = _sqlite(workdir)
    enc_id = con.execute(
        "SELECT e.EncounterID FROM encounters e JOIN transactions t USING (EncounterID) "
        "GROUP BY 1 ORDER BY 1 LIMIT 1"
    ).fetchone()[0]
    cols = [r[1] for r in con.execute("PRAGMA table_info(encounters)")]
    row = con.execute("SELECT * FROM encounters WHERE EncounterID = ?", [enc_id]).fetchone()
    tx_ids = {
        r[0]
        for r in con.execute(
            "SELECT TransactionID FROM transactions WHERE EncounterID = ?", [enc_id]
        )
    }
    con.execute("DELETE FROM encounters WHERE EncounterID = ?", [enc_id])
    con.commit()
    con.close()
    project = make_project(workdir, run=engine_run)
    assert project.run().exit_code == 0

    def lines() -> dict[str, dict]:
        tx = project.lake.read(silver_path("transactions"))
        rows = tx.filter(pc.equal(tx["datasource"], "hospital_a")).to_pylist()
        return {r["source_transaction_id"]: r for r in rows if r["source_transaction_id"] in tx_ids}

    before = lines()
    assert set(before) == tx_ids and all(
        "encounter_exists" in r["dq_failures"] for r in before.values()
    )
    in_gold = f"SELECT count(*) FROM fact_transaction WHERE encounter_key = '{enc_id}-hospital_a'"
    assert project.sql(in_gold).column(0)[0].as_py() == 0
    # the encounter arrives late, with a newer modified date
    con = _sqlite(workdir)
    top = con.execute("SELECT max(ModifiedDate) FROM encounters").fetchone()[0]
    values = [top if c == "ModifiedDate" else v for c, v in zip(cols, row, strict=True)]
    con.execute(f"INSERT INTO encounters VALUES ({', '.join('?' * len(cols))})", values)
    # and a new transaction in the same run: transactions is built with new rows, after its
    # parents moved, so its older rows must still be re-checked (not only the new ones)
    tx_cols = [r[1] for r in con.execute("PRAGMA table_info(transactions)")]
    tx_top = con.execute("SELECT max(ModifiedDate) FROM transactions").fetchone()[0]
    con.execute(
        "INSERT INTO transactions SELECT "
        + ", ".join(
            "'TNEW000001'" if c == "TransactionID" else "?" if c == "ModifiedDate" else f'"{c}"'
            for c in tx_cols
        )
        + " FROM transactions WHERE EncounterID <> ? LIMIT 1",
        [tx_top, enc_id],
    )
    con.commit()
    con.close()
    result = project.run()
    assert result.exit_code == 0
    after = lines()
    still = {k: r["dq_failures"] for k, r in after.items() if r["is_quarantined"]}
    released = {k for k in tx_ids if k not in still}
    assert released and all("encounter_exists" not in f for f in still.values())
    tx_record = next(r for r in result.records if r.layer == "silver" and r.table == "transactions")
    assert tx_record.rows_read == 1 and tx_record.rows_released == len(released)
    assert {"released": len(released)}.items() <= next(
        row for row in result.summary() if row["table"] == "*.transactions"
    ).items()
    assert project.sql(in_gold).column(0)[0].as_py() == len(released)
    # and nothing else moved: a re-run changes nothing, and with nothing its rules look up
    # changed, the quarantine is not even re-checked
    version = project.lake.table(silver_path("transactions")).version()
    checks = project.lake.read(REQUALIFIED_PATH)
    assert "transactions" in checks["entity"].to_pylist()
    assert project.run().exit_code == 0
    assert project.lake.table(silver_path("transactions")).version() == version
    assert project.lake.read(REQUALIFIED_PATH).num_rows == checks.num_rows


def test_rule_severity_is_config_per_datasource(workdir: Path) -> None:
    con = _sqlite(workdir)  # one line failing two rules
    con.execute(
        "UPDATE transactions SET Amount = -5, PaidDate = '1999-01-01' "
        "WHERE TransactionID = (SELECT min(TransactionID) FROM transactions)"
    )
    con.commit()
    con.close()
    project = make_project(
        workdir,
        silver={
            "mappings": yaml_mappings(),
            "severity": [
                {"rule": "amount_non_negative", "severity": "warn", "datasources": ["hospital_b"]},
                {"rule": "icd_code_known", "severity": "warn"},
            ],
        },
    )
    assert project.run(["bronze", "silver"]).exit_code == 0
    tx = project.lake.read(silver_path("transactions")).to_pylist()
    negative = [r for r in tx if r["amount"] is not None and r["amount"] < 0]
    a = [r for r in negative if r["datasource"] == "hospital_a"]
    b = [r for r in negative if r["datasource"] == "hospital_b"]
    assert a and b
    assert all(r["is_quarantined"] and "amount_non_negative" in r["dq_failures"] for r in a)
    assert all(
        "amount_non_negative" in r["dq_warnings"] and "amount_non_negative" not in r["dq_failures"]
        for r in b
    )
    assert not any("icd_code_known" in r["dq_failures"] for r in tx)
    assert any("icd_code_known" in r["dq_warnings"] for r in tx)
    quality = project.quality()
    sev = {
        (r["datasource"], r["rule"]): r["severity"]
        for r in quality["rules"]
        if r["table"] == "transactions"
    }
    assert sev[("hospital_a", "amount_non_negative")] == "error"
    assert sev[("hospital_b", "amount_non_negative")] == "warn"
    assert sev[("hospital_a", "icd_code_known")] == "warn"
    # totals count rows once, however many rules they fail, and rule hits apart
    totals = {(r["table"], r["datasource"]): r for r in quality["tables"]}
    for ds in ("hospital_a", "hospital_b"):
        mine = [r for r in tx if r["datasource"] == ds]
        got = totals[("transactions", ds)]
        assert got["quarantined_rows"] == sum(r["is_quarantined"] for r in mine)
        assert got["rule_hits"] == sum(len(r["dq_failures"]) for r in mine if r["is_quarantined"])
        assert got["rows"] == len(mine)
    assert any(len(r["dq_failures"]) > 1 for r in tx)  # so rows and hits do differ
    # changing the severity back re-checks the rows already in silver: hospital B's are quarantined
    project = make_project(workdir, silver={"mappings": yaml_mappings()})
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0
    tx = project.lake.read(silver_path("transactions")).to_pylist()
    assert all(r["is_quarantined"] for r in tx if r["amount"] is not None and r["amount"] < 0)


def yaml_mappings() -> dict:
    import yaml

    from rcmlake.demo import demo_config

    return yaml.safe_load(demo_config())["silver"]["mappings"]


def _source_rows(workdir: Path) -> dict[str, int]:
    """Distinct ids (the first column) per source table."""
    out = {}
    for ds in ("hospital_a", "hospital_b"):
        con = _sqlite(workdir, ds)
        for table in ("patients", "encounters", "transactions"):
            first = next(r[1] for r in con.execute(f"PRAGMA table_info({table})"))
            out[f"{ds}.{table}"] = con.execute(
                f"SELECT count(DISTINCT {first}) FROM {table}"
            ).fetchone()[0]
        con.close()
    return out


def _bronze_rows(project: Project) -> dict[str, int]:
    """Distinct ids (the first column) per bronze table."""
    out = {}
    for ds in ("hospital_a", "hospital_b"):
        for table in ("patients", "encounters", "transactions"):
            data = project.lake.read(f"bronze/{ds}/{table}")
            out[f"{ds}.{table}"] = len(set(data.column(0).drop_null().to_pylist()))
    return out


def test_update_run_rollback_run_equals_a_clean_run(tmp_path: Path, synth_template: Path) -> None:
    import shutil

    from rcmlake.synth import synthesize

    rolled, clean = tmp_path / "rolled", tmp_path / "clean"
    for d in (rolled, clean):
        shutil.copytree(synth_template, d)
    a, b = make_project(rolled), make_project(clean)
    assert a.run().exit_code == 0 and b.run().exit_code == 0
    for d in (rolled, clean):
        synthesize(d, update=True)
    second = a.run()
    assert second.exit_code == 0 and b.run().exit_code == 0
    moved = a.rollback(second.run_id)
    assert {f"{r.layer}/{r.table}" for r in moved} >= {
        "bronze/transactions",
        "bronze/claims",
        "silver/transactions",
        "gold/fact_claim",
        "_state/silver_batches",
    }
    # the lake is back where the first run left it: the update's claims files wait in landing again
    assert sorted(p.name for p in (rolled / "landing" / "claims").glob("*.csv")) == sorted(
        p.name
        for p in (clean / "landing" / "archive" / "claims").glob("*.csv")
        if not (rolled / "landing" / "archive" / "claims" / p.name).exists()
    )
    assert a.run().exit_code == 0
    assert _bronze_rows(a) == _bronze_rows(b) == _source_rows(rolled)
    silver_a, silver_b = _lake_tables(a, "silver"), _lake_tables(b, "silver")
    for entity in ("patients", "encounters", "transactions", "claims"):
        assert silver_a[entity] == silver_b[entity], entity
    gold_a, gold_b = _lake_tables(a, "gold"), _lake_tables(b, "gold")
    for name in (
        "fact_claim",
        "fact_transaction",
        "mart_kpi_monthly",
        "mart_ar_aging",
        "dim_patient",
    ):
        assert gold_a[name] == gold_b[name], name


def test_rolling_back_the_first_run_then_a_run_builds_as_a_first_build(
    tmp_path: Path,
    synth_template: Path,
    streamed: list[tuple[str, bool]],
    split_apart: list[tuple[str, bool]],
) -> None:
    """A rollback of the run that created the lake empties its tables (a new empty version,
    never a deletion). The run after it fills them as a first build does: the same rows as a
    clean lake, written the same way (streamed, repeated keys checked apart), not merged
    into empty tables (silver at scale 10 took 158.7 s that way against 121.5 s)."""
    import shutil

    rolled, clean = tmp_path / "rolled", tmp_path / "clean"
    for d in (rolled, clean):
        shutil.copytree(synth_template, d)
    a, b = make_project(rolled), make_project(clean)
    first = a.run()
    assert first.exit_code == 0
    built = (sorted(streamed), sorted(split_apart))
    streamed.clear()
    split_apart.clear()
    a.rollback(first.run_id)
    assert a.lake.read(silver_path("transactions")).num_rows == 0  # emptied, still there
    again = a.run()
    assert again.exit_code == 0
    assert (sorted(streamed), sorted(split_apart)) == built
    assert any(took for _, took in streamed) and any(took for _, took in split_apart)
    assert b.run().exit_code == 0
    written = {
        (r.table, r.rows_written, r.rows_quarantined) for r in again.records if r.layer == "silver"
    }
    assert written == {
        (r.table, r.rows_written, r.rows_quarantined) for r in first.records if r.layer == "silver"
    }
    assert _lake_tables(a, "gold") == _lake_tables(b, "gold")
    # tables without a source time are dated by when they were loaded: those two columns differ
    loaded_at = {"source_modified_at", "effective_from"}
    undated = {"departments", "providers", "cpt_codes", "icd_codes", "carc_codes", "rarc_codes"}
    silver_a, silver_b = _lake_tables(a, "silver"), _lake_tables(b, "silver")
    assert silver_a.keys() == silver_b.keys()
    for name in silver_a:
        drop = loaded_at if name in undated else set()
        rows = [
            [{k: v for k, v in r.items() if k not in drop} for r in t[name]]
            for t in (silver_a, silver_b)
        ]
        assert rows[0] == rows[1], name


def test_batches_processed_again_change_no_silver_table(workdir: Path) -> None:
    """A run killed after an entity's commit and before it marked its batches processed
    stages them again next time. Replayed rows must add nothing: not the same-day versions
    (a key edited twice on one day), not the quarantined conflicting rows of one key and
    time (before the fix, each replay added those as new versions, and could make an older
    one current)."""
    from rcmlake.layers.silver import STATE_PATH

    project = make_project(workdir)
    assert project.run(["bronze", "silver"]).exit_code == 0
    before = _lake_tables(project, "silver")
    patients = project.lake.read(silver_path("patients"))
    shared = patients.group_by(["patient_key", "source_modified_at"]).aggregate(
        [("patient_key", "count")]
    )
    assert pc.max(shared["patient_key_count"]).as_py() > 1, "the data has same-time versions"
    project.lake.delete(STATE_PATH, "true")  # as if every entity was killed before marking
    assert project.run(["silver"]).exit_code == 0
    assert _lake_tables(project, "silver") == before
    assert project.lake.read(STATE_PATH).num_rows > 0  # and now they are marked


def test_rolling_back_one_silver_table_reprocesses_its_batches(workdir: Path) -> None:
    from rcmlake.synth import synthesize

    project = make_project(workdir)
    assert project.run().exit_code == 0
    synthesize(workdir, update=True)
    assert project.run().exit_code == 0
    path = silver_path("transactions")
    assert project.lake.table(path).version() > 0
    before = _lake_tables(project, "silver")["transactions"]
    (record,) = project.rollback(table=path, version=0)
    assert record.status == "success"
    assert len(_lake_tables(project, "silver")["transactions"]) < len(before)
    assert project.run(["silver"]).exit_code == 0
    assert _lake_tables(project, "silver")["transactions"] == before


def test_an_emptied_full_table_fails_by_default_and_empties_when_accepted(workdir: Path) -> None:
    project = make_project(workdir)
    assert project.run(["bronze", "silver"]).exit_code == 0
    con = _sqlite(workdir)
    held = con.execute("SELECT count(*) FROM departments").fetchone()[0]
    con.execute("DELETE FROM departments")
    con.commit()
    con.close()
    bronze = project.lake.table("bronze/hospital_a/departments").version()
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 1
    (failed,) = result.failed
    assert (failed.datasource, failed.table) == ("hospital_a", "departments")
    assert f"returned no rows where bronze holds {held:,}" in failed.error
    assert project.lake.table("bronze/hospital_a/departments").version() == bronze
    silver = project.lake.read(silver_path("departments"))
    assert silver.filter(pc.equal(silver["datasource"], "hospital_a")).num_rows == held
    # the user says an empty table is real: bronze and silver empty for hospital A only
    raw = __import__("yaml").safe_load((workdir / "rcmlake.yaml").read_text())
    for t in raw["sources"]["hospital_a"]["tables"]:
        if t["name"] == "departments":
            t["on_empty"] = "accept"
    (workdir / "rcmlake.yaml").write_text(__import__("yaml").safe_dump(raw))
    project = Project.load(workdir / "rcmlake.yaml")
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    assert project.lake.read("bronze/hospital_a/departments").num_rows == 0
    silver = project.lake.read(silver_path("departments"))
    assert silver.filter(pc.equal(silver["datasource"], "hospital_a")).num_rows == 0
    assert silver.filter(pc.equal(silver["datasource"], "hospital_b")).num_rows > 0
    dept = next(r for r in result.records if r.layer == "silver" and r.table == "departments")
    assert (dept.status, dept.rows_written) == ("success", held)
    # and again: nothing more changes
    assert {
        r.status for r in project.run(["bronze", "silver"]).records if r.table == "departments"
    } == {"no_change"}


def test_a_source_time_zone_turns_naive_times_into_utc(workdir: Path) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    import yaml

    make_project(workdir)
    raw = yaml.safe_load((workdir / "rcmlake.yaml").read_text())
    raw["sources"]["hospital_a"]["timezone"] = "America/New_York"
    (workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw))
    project = Project.load(workdir / "rcmlake.yaml")
    assert project.run(["bronze", "silver"]).exit_code == 0
    con = _sqlite(workdir)
    source = dict(
        con.execute("SELECT PatientID, ModifiedDate FROM patients WHERE PatientID IS NOT NULL")
    )
    con.close()
    rows = project.lake.read(silver_path("patients")).to_pylist()
    zone = ZoneInfo("America/New_York")
    checked = 0
    for r in rows:
        pid = r["source_patient_id"]
        if r["datasource"] == "hospital_a" and pid in source and r["is_current"]:
            local = datetime.fromisoformat(str(source[pid])).replace(tzinfo=zone)
            assert r["source_modified_at"] == local.astimezone(UTC), pid
            checked += 1
        elif r["datasource"] == "hospital_b":  # no zone declared: naive times are UTC
            assert r["source_modified_at"].hour == 0
    assert checked > 100
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        raw["sources"]["hospital_a"]["timezone"] = "Mars/Olympus"
        (workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw))
        Project.load(workdir / "rcmlake.yaml")


def test_future_and_null_watermarks_lose_nothing_and_are_reported(workdir: Path) -> None:
    project = make_project(workdir)
    assert project.run(["bronze", "silver"]).exit_code == 0
    con = _sqlite(workdir)
    top = con.execute("SELECT max(ModifiedDate) FROM patients").fetchone()[0]
    ids = [
        r[0]
        for r in con.execute(
            "SELECT PatientID FROM patients WHERE PatientID IS NOT NULL ORDER BY 1 LIMIT 3"
        )
    ]
    con.execute(
        "UPDATE patients SET ModifiedDate = '2099-01-01', Address = '1 Future Way, Salem, OR' WHERE PatientID = ?",
        [ids[0]],
    )
    con.execute(
        "UPDATE patients SET ModifiedDate = NULL, Address = '2 Null Rd, Salem, OR' WHERE PatientID = ?",
        [ids[1]],
    )
    con.commit()
    con.close()
    first = project.run(["bronze", "silver"])
    rec = next(
        r
        for r in first.records
        if r.layer == "bronze" and r.table == "patients" and r.datasource == "hospital_a"
    )
    assert rec.status == "success" and rec.watermark_to == str(top)  # not 2099
    assert "1 rows have ModifiedDate after" in (rec.error or "")
    # a later ordinary change is still seen, and the future row is not appended again
    con = _sqlite(workdir)
    con.execute(
        "UPDATE patients SET ModifiedDate = ?, Address = '3 Later St, Salem, OR' WHERE PatientID = ?",
        [top, ids[2]],
    )
    con.commit()
    con.close()
    assert project.run(["bronze", "silver"]).exit_code == 0
    bronze = project.lake.read("bronze/hospital_a/patients").to_pylist()
    assert (
        sum(
            r["PatientID"] == ids[0]
            and r["ModifiedDate"] is not None
            and str(r["ModifiedDate"]).startswith("2099")
            for r in bronze
        )
        == 1
    )
    assert sum(r["PatientID"] == ids[1] and r["ModifiedDate"] is None for r in bronze) == 1
    silver = {
        r["source_patient_id"]: r
        for r in project.lake.read(silver_path("patients")).to_pylist()
        if r["datasource"] == "hospital_a" and r["is_current"]
    }
    assert silver[ids[2]]["address"] == "3 Later St, Salem, OR"
    assert silver[ids[0]]["address"] == "1 Future Way, Salem, OR"
    # the NULL-watermark edit is reported, reaches silver as the current version, dated by
    # its ingestion; its earlier version is closed
    assert "1 rows have no ModifiedDate" in (rec.error or "")
    assert silver[ids[1]]["address"] == "2 Null Rd, Salem, OR"
    ingested = next(
        r["_ingested_at"] for r in bronze if r["PatientID"] == ids[1] and r["ModifiedDate"] is None
    )
    assert silver[ids[1]]["effective_from"] == ingested
    history = [
        r
        for r in project.lake.read(silver_path("patients")).to_pylist()
        if r["datasource"] == "hospital_a" and r["source_patient_id"] == ids[1]
    ]
    assert len(history) == 2 and sum(r["is_current"] for r in history) == 1


def test_a_hung_run_is_named_by_the_lock_and_killing_it_frees_the_lake(workdir: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from rcmlake.errors import LakeLocked

    project = make_project(workdir)
    code = (
        "import os, signal, sys\n"
        "from rcmlake.storage.lock import lake_lock\n"
        "with lake_lock(sys.argv[1], local=True):\n"
        "    print('locked', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    hung = subprocess.Popen(
        [sys.executable, "-c", code, project.lake.root], stdout=subprocess.PIPE, text=True
    )
    try:
        assert hung.stdout is not None and hung.stdout.readline().strip() == "locked"
        for _ in range(50):
            if project.lock_holder():
                break
            time.sleep(0.1)
        who = project.lock_holder()
        assert who is not None and who["pid"] == hung.pid
        with pytest.raises(LakeLocked, match=rf"pid {hung.pid} on .* since .*kill <pid>"):
            project.run(["bronze"])
    finally:
        hung.send_signal(signal.SIGKILL)
        hung.wait(timeout=30)
    assert project.lock_holder() is None
    assert project.run(["bronze"]).exit_code == 0


def test_source_names_are_quoted_never_spliced(workdir: Path) -> None:
    import yaml

    con = _sqlite(workdir)
    con.execute('CREATE TABLE "odd""name" AS SELECT * FROM departments')
    n = con.execute("SELECT count(*) FROM departments").fetchone()[0]
    con.commit()
    con.close()
    make_project(workdir)
    raw = yaml.safe_load((workdir / "rcmlake.yaml").read_text())
    raw["sources"]["hospital_a"]["tables"] += [
        {"name": 'odd"name', "entity": "departments", "target": "departments_odd"},
        {
            "name": 'departments" WHERE 1=0 UNION SELECT * FROM patients --',
            "entity": "departments",
            "target": "departments_evil",
        },
    ]
    (workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw))
    project = Project.load(workdir / "rcmlake.yaml")
    result = project.run(["bronze"])
    by = {r.table: r for r in result.records if r.datasource == "hospital_a"}
    assert by["departments_odd"].status == "success"
    assert project.lake.read("bronze/hospital_a/departments_odd").num_rows == n
    assert (
        by["departments_evil"].status == "failed"
        and "table not found" in by["departments_evil"].error
    )
    assert project.lake.table("bronze/hospital_a/departments_evil") is None


def test_errors_and_silver_never_carry_the_bad_value(tmp_path: Path) -> None:
    """A value that does not type is named by its column and row, never shown: not in
    silver, not in the audit log, not in an engine error."""
    from rcmlake.engines.duckdb import DuckDBEngine
    from rcmlake.errors import EngineError
    from tests.integration.test_gold_kpis import build

    project = build(tmp_path, untyped=True)
    con = sqlite3.connect(tmp_path / "sources" / "tiny.db")
    con.execute(
        "UPDATE patients SET DOB = '1970-13-45 secret-note' WHERE PatientID = 'HOSP1-000001'"
    )
    con.commit()
    con.close()
    assert project.run().exit_code == 0
    patient = next(
        r for r in project.lake.read(silver_path("patients")).to_pylist() if r["is_current"]
    )
    assert patient["cast_errors"] == ["date_of_birth"] and patient["is_quarantined"]
    from rcmlake.serve.catalog import lake_tables

    for name, (path, _) in lake_tables(project.lake).items():
        assert "secret-note" not in str(project.lake.read(path).to_pylist()), name
    assert "secret-note" not in str(project.lake.read("_audit/loads").to_pylist())
    with DuckDBEngine().session() as s, pytest.raises(EngineError) as err:
        s.sql("SELECT CAST('1970-13-45 secret-note' AS DATE)")
    assert "secret-note" not in str(err.value) and "Conversion Error" in str(err.value)


def test_a_duplicated_department_is_quarantined_and_the_good_row_kept(workdir: Path) -> None:
    project = make_project(workdir)
    assert project.run().exit_code == 0
    con = _sqlite(workdir)
    dept, name = con.execute(
        "SELECT DeptID, Name FROM departments ORDER BY DeptID LIMIT 1"
    ).fetchone()
    con.execute("INSERT INTO departments (DeptID, Name) VALUES (?, 'Typo Department')", [dept])
    con.commit()
    con.close()
    key = f"{dept}-hospital_a"
    before = (
        project.sql(
            f"SELECT count(*) FROM fact_transaction t JOIN dim_department d USING (department_sk) "
            f"WHERE d.department_key = '{key}'"
        )
        .column(0)[0]
        .as_py()
    )
    assert before > 0
    result = project.run()
    rec = next(
        r
        for r in result.records
        if r.layer == "bronze" and r.table == "departments" and r.datasource == "hospital_a"
    )
    assert "1 values of the primary key [DeptID] have rows that differ" in (rec.error or "")
    rows = [
        r
        for r in project.lake.read(silver_path("departments")).to_pylist()
        if r["department_key"] == key
    ]
    quarantined = sorted(r["name"] for r in rows if r["is_quarantined"])
    assert quarantined == sorted([name, "Typo Department"])
    assert all(r["dq_failures"] == ["unique_key"] for r in rows if r["is_quarantined"])
    assert [r["name"] for r in rows if not r["is_quarantined"]] == [name]
    # gold keeps the department and every transaction of it
    after = (
        project.sql(
            f"SELECT count(*) FROM fact_transaction t JOIN dim_department d USING (department_sk) "
            f"WHERE d.department_key = '{key}'"
        )
        .column(0)[0]
        .as_py()
    )
    assert after == before
    # once the source is fixed, the department is clean again
    con = _sqlite(workdir)
    con.execute("DELETE FROM departments WHERE Name = 'Typo Department'")
    con.commit()
    con.close()
    assert project.run().exit_code == 0
    rows = [
        r
        for r in project.lake.read(silver_path("departments")).to_pylist()
        if r["department_key"] == key
    ]
    assert [(r["name"], r["is_quarantined"]) for r in rows] == [(name, False)]


def test_edits_that_add_no_key_skip_the_claims_recheck_and_a_late_transaction_releases(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, rechecked: list[str]
) -> None:
    """Claims' rules look up transactions by key only. After a run that edited transactions
    in place (no key added), re-checking the quarantined claims could move no verdict, so it
    is skipped: a twin lake that re-checks anyway moves nothing. A transaction that arrives
    late adds a key, and its claim is released in the next run."""
    import shutil

    import duckdb

    from rcmlake.layers import silver as layer
    from rcmlake.storage.delta import ROWS_INSERTED
    from rcmlake.synth import touch

    claims = f"{workdir}/landing/claims/hospital1_*.csv"
    con = _sqlite(workdir)
    listed = {r[0] for r in con.execute("SELECT TransactionID FROM transactions")}
    billed = duckdb.sql(
        "SELECT DISTINCT TransactionID FROM "
        f"read_csv('{claims}', all_varchar=true, union_by_name=true, ignore_errors=true)"
    )
    late = sorted(t for (t,) in billed.fetchall() if t in listed and not t.endswith("00"))[0]
    cols = [r[1] for r in con.execute("PRAGMA table_info(transactions)")]
    row = con.execute("SELECT * FROM transactions WHERE TransactionID = ?", [late]).fetchone()
    con.execute("DELETE FROM transactions WHERE TransactionID = ?", [late])
    con.commit()
    con.close()
    project = make_project(workdir)
    assert project.run(["bronze", "silver"]).exit_code == 0

    def waiting() -> dict[str, list[str]]:
        rows = project.lake.read(silver_path("claims")).to_pylist()
        key = f"{late}-hospital_a"
        return {r["claim_key"]: r["dq_failures"] for r in rows if r["transaction_key"] == key}

    assert waiting() and all("transaction_exists" in f for f in waiting().values())

    assert touch(workdir, 0.01)
    shutil.copytree(workdir, tmp_path / "twin")
    claims_version = project.lake.table(silver_path("claims")).version()  # type: ignore[union-attr]
    assert project.run(["bronze", "silver"]).exit_code == 0
    edit = project.lake.commits(silver_path("transactions"), limit=1)[0]
    assert edit["rcmlake"][ROWS_INSERTED] == 0 and "claims" not in rechecked
    assert project.lake.read(REQUALIFIED_PATH)["entity"].to_pylist().count("claims") >= 2
    assert project.lake.table(silver_path("claims")).version() == claims_version  # type: ignore[union-attr]

    # the twin re-checks every quarantined claim against the same edit: nothing moves
    monkeypatch.setattr(layer, "_only_kept_keys_since", lambda *args: False)
    twin = make_project(tmp_path / "twin")
    assert twin.run(["bronze", "silver"]).exit_code == 0
    assert "claims" in rechecked
    assert twin.lake.table(silver_path("claims")).version() == claims_version  # type: ignore[union-attr]
    monkeypatch.undo()

    # the transaction arrives late: a key added, so the claims are re-checked and released
    con = _sqlite(workdir)
    top = con.execute("SELECT max(ModifiedDate) FROM transactions").fetchone()[0]
    con.execute(
        f"INSERT INTO transactions VALUES ({', '.join('?' * len(cols))})",
        [top if c == "ModifiedDate" else v for c, v in zip(cols, row, strict=True)],
    )
    con.commit()
    con.close()
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0
    assert (
        project.lake.commits(silver_path("transactions"), limit=1)[0]["rcmlake"][ROWS_INSERTED] == 1
    )
    record = next(r for r in result.records if r.layer == "silver" and r.table == "claims")
    now = waiting()
    assert not any("transaction_exists" in f for f in now.values())
    assert record.rows_released == sum(1 for f in now.values() if not f) > 0
