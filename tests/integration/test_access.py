"""Roles: no direct identifier leaves through any analyst path; privileged sees them all."""

from __future__ import annotations

import stat
from pathlib import Path

import duckdb
import pytest

from rcmlake.errors import EngineError
from rcmlake.project import Project
from rcmlake.serve.access import classification
from rcmlake.transforms import models
from tests.conftest import make_project


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, synth_template: Path) -> Project:
    import shutil

    work = tmp_path_factory.mktemp("access")
    shutil.copytree(synth_template, work, dirs_exist_ok=True)
    project = make_project(work)
    assert project.run().exit_code == 0
    return project


def identifiers(project: Project) -> set[str]:
    """The direct identifiers in the lake, read as privileged: MRNs, SSNs, phones, streets,
    Medicaid/Medicare ids. (Dates of birth are checked by their mask below: as bare dates
    they coincide with other dates, such as a code's start date.)"""
    found: set[str] = set()
    p = project.sql(
        "SELECT patient_key, source_patient_id, ssn, phone, address FROM patients",
        role="privileged",
    )
    for column in p.columns:
        found |= {v for v in column.to_pylist() if v}
    t = project.sql("SELECT medicaid_id, medicare_id FROM transactions", role="privileged")
    for column in t.columns:
        found |= {v for v in column.to_pylist() if v}
    return {v for v in found if len(v) >= 6}


def leaked(text: str, secrets: set[str]) -> list[str]:
    """Identifiers found in ``text``: a masked column leaks all its values or none, so every
    tenth identifier (each kind is represented) is enough, and keeps this quick."""
    return sorted(v for v in sorted(secrets)[::10] if v in text)


def leaked_cells(rows: list[dict], secrets: set[str]) -> list[str]:
    """Cells that are an identifier, or hold one inside a longer text."""
    cells = {str(v) for r in rows for v in r.values() if v is not None}
    long = " ".join(c for c in cells if len(c) > 40)
    return sorted((cells & secrets) | set(leaked(long, secrets)))


def test_no_direct_identifier_leaves_through_an_analyst_path(lake: Project, tmp_path: Path) -> None:
    secrets = identifiers(lake)
    assert len(secrets) > 500  # the check has teeth: SSNs, MRNs, phones, streets, dates
    # sql over every table
    for name in lake.tables():
        rows = lake.sql(f"SELECT * FROM {name}").to_pylist()
        assert not leaked_cells(rows, secrets), name
    # the quality report's example keys
    assert not leaked(str(lake.quality(examples=10)), secrets)
    # the dashboard
    html = lake.report(tmp_path / "report.html").read_text()
    assert not leaked(html, secrets)
    # the DuckDB export (views for tables without identifiers, masked copies for the rest)
    out = tmp_path / "lake.duckdb"
    names = lake.export_duckdb(out)
    con = duckdb.connect(str(out), read_only=True)
    for qualified in names:
        got = con.sql(f"SELECT * FROM {qualified}").to_arrow_table().to_pylist()
        assert not leaked_cells(got, secrets), qualified
    con.close()
    # what masking looks like, and that hashed keys still join
    p = lake.sql(
        "SELECT first_name, ssn, date_of_birth, zip_code, patient_key FROM patients LIMIT 50"
    )
    assert set(p["first_name"].to_pylist()) <= {"(redacted)", None}
    assert all(
        s is None or (s.startswith("***-**-") and len(s) == 11) for s in p["ssn"].to_pylist()
    )
    assert all(d is None or (d.month, d.day) == (1, 1) for d in p["date_of_birth"].to_pylist())
    assert all(z is None or len(z) <= 3 for z in p["zip_code"].to_pylist())
    assert all(k.startswith("h:") for k in p["patient_key"].to_pylist())
    join = (
        "SELECT count(*) FROM transactions t JOIN patients p USING (patient_key) WHERE p.is_current"
    )
    assert lake.sql(join).to_pylist() == lake.sql(join, role="privileged").to_pylist()
    gold = "SELECT count(*) FROM fact_transaction f JOIN dim_patient d USING (patient_sk)"
    assert lake.sql(gold).to_pylist() == lake.sql(gold, role="privileged").to_pylist()


def test_privileged_sees_the_values(lake: Project) -> None:
    ssn = lake.sql("SELECT ssn FROM patients WHERE ssn IS NOT NULL LIMIT 1", role="privileged")
    assert not ssn["ssn"][0].as_py().startswith("***")
    with pytest.raises(Exception, match="unknown role 'admin'"):
        lake.sql("SELECT 1", role="admin")


def test_the_analyst_session_cannot_touch_host_files(lake: Project, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="Permission Error"):
        lake.sql("SELECT * FROM read_csv('/etc/hostname')")
    with pytest.raises(EngineError, match="Permission Error"):
        lake.sql(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
    with pytest.raises(EngineError, match="locked"):
        lake.sql("SET enable_external_access = true")
    # the raw rows of a masked table are not in the analyst session under any name
    names = lake.sql(
        "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views()"
    )
    assert not [n for n in names.column(0).to_pylist() if "raw" in n or "_silver_patients" in n]


def test_lake_files_are_private_to_their_owner(lake: Project) -> None:
    root = Path(lake.lake.root)
    loose = [
        p for p in root.rglob("*") if stat.S_IMODE(p.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO)
    ]
    assert not loose, loose[:5]


def test_every_classified_column_exists(lake: Project) -> None:
    for layer in ("silver", "gold"):
        for m in models(layer):
            dt = lake.lake.table(f"{layer}/{m.name}")
            if dt is None:
                continue
            columns = {f.name for f in dt.schema().fields}
            c = classification(layer, m.name)
            named = set(c["direct"]) | set(c["quasi"]) | set(c["financial"])
            assert named <= columns, (m.name, named - columns)
