"""A run SIGKILLed after any layer's commit, then re-run, ends as a clean run does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scripts.kill_trials import differing

from rcmlake.project import Project
from rcmlake.storage.audit import AUDIT_PATH
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
