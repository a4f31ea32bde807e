"""A run SIGKILLed after any layer's commit, then re-run, ends as a clean run does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from scripts.kill_trials import differing

from rcmlake.project import Project
from rcmlake.storage.audit import AUDIT_PATH, AuditLog
from rcmlake.storage.delta import Lake
from tests.conftest import make_project


@pytest.mark.parametrize(
    # silver's 3rd commit is patients, whose same-time versions a replay must not add again
    "fault",
    [
        "bronze.after_commit:3",
        "silver.after_commit:1",
        "silver.after_commit:3",
        "silver.after_commit:6",
        "gold.after_commit:9",
    ],
)
def test_killed_run_then_rerun_equals_clean_run(
    tmp_path: Path, synth_template: Path, fault: str
) -> None:
    crashed_dir, clean_dir = tmp_path / "crashed", tmp_path / "clean"
    for d in (crashed_dir, clean_dir):
        shutil.copytree(synth_template, d)
        make_project(d)
    killed = subprocess.run(
        [sys.executable, "-m", "rcmlake", "run"],
        cwd=crashed_dir,
        capture_output=True,
        env={**os.environ, "RCMLAKE_FAULTS": fault},
        check=False,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr
    crashed = Project.load(crashed_dir / "rcmlake.yaml")
    assert crashed.run().exit_code == 0
    clean = Project.load(clean_dir / "rcmlake.yaml")
    assert clean.run().exit_code == 0
    assert differing(crashed, clean) == []
    # a layer's audit rows are one commit, written when the layer ends
    assert len(clean.lake.commits(AUDIT_PATH)) == 3
    # every commit of every layer has its audit row, the crashed one rebuilt from the Delta log
    audited = set(crashed.audit.read().column("batch_id").to_pylist())
    bronze = sorted(
        p.relative_to(crashed_dir / "lake" / "bronze").as_posix()
        for p in (crashed_dir / "lake" / "bronze").glob("*/*")
        if (p / "_delta_log").is_dir()
    )
    assert bronze
    for layer, table in [
        *(("bronze", t) for t in bronze),
        ("silver", "transactions"),
        ("silver", "patients"),
        ("gold", "fact_claim"),
        ("gold", "mart_kpi_monthly"),
        ("gold", "dim_patient"),
    ]:
        for commit in crashed.lake.commits(f"{layer}/{table}"):
            batch = commit["rcmlake"].get("batch_id")
            assert batch is None or batch in audited, (layer, table, commit["version"])


def test_a_commit_without_row_counts_is_recovered_with_the_logs_count(tmp_path: Path) -> None:
    # gold counts its rows after the write, so its commits carry no rows_written: an audit
    # row rebuilt after a crash takes the count delta-rs recorded for the commit
    lake = Lake(str(tmp_path / "lake"))
    lake.write(
        "gold/fact",
        pa.table({"claim_key": ["c1", "c2", "c3"]}),
        mode="overwrite",
        metadata={"run_id": "run-1", "batch_id": "b-1", "load_type": "rebuild"},
    )
    audit = AuditLog(lake)
    [rec] = audit.recover("gold/fact", layer="gold", datasource="*", table="fact")
    assert (rec.status, rec.batch_id, rec.rows_written, rec.rows_read) == (
        "recovered",
        "b-1",
        3,
        3,
    )
    assert audit.recover("gold/fact", layer="gold", datasource="*", table="fact") == []
