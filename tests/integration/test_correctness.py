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
