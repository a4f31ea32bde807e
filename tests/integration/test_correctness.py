"""Correct on any machine and any data: clock, same-day history, late parents, rollback, text sources."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.compute as pc

from rcmlake.layers.silver import silver_path
from rcmlake.project import Project
from tests.conftest import make_project


def _sqlite(workdir: Path, ds: str = "hospital_a") -> sqlite3.Connection:
    return sqlite3.connect(workdir / "sources" / f"{ds}.db")


def test_same_day_edit_opens_a_version(workdir: Path) -> None:
    project = make_project(workdir)
    assert project.run(["bronze", "silver"]).exit_code == 0
    con = _sqlite(workdir)
    top = con.execute("SELECT max(ModifiedDate) FROM patients").fetchone()[0]
    pid, address = con.execute(
        "SELECT PatientID, Address FROM patients WHERE ModifiedDate = ? AND PatientID IS NOT NULL "
        "ORDER BY PatientID LIMIT 1",
        [top],
    ).fetchone()
    con.execute("UPDATE patients SET Address = '1 Same Day Rd, Springfield, IL 62704' WHERE PatientID = ?", [pid])
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
