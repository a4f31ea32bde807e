"""A run SIGKILLed after any layer's commit, then re-run, ends as a clean run does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rcmlake.project import Project
from tests.conftest import make_project

CHECKED = {
    "silver/patients": ["patient_key", "effective_from"],
    "silver/transactions": ["transaction_key"],
    "silver/claims": ["claim_key"],
    "gold/fact_claim": ["claim_key"],
    "gold/mart_kpi_monthly": ["datasource", "month"],
}
VOLATILE = (
    "_batch_id",
    "_ingested_at",
    "_updated_at",
)


def snapshot(project: Project, path: str, keys: list[str]):  # type: ignore[no-untyped-def]
    table = project.lake.read(path)
    table = table.drop_columns([c for c in VOLATILE if c in table.column_names])
    return table.sort_by([(k, "ascending") for k in keys])


@pytest.mark.parametrize(
    "fault", ["silver.after_commit:1", "silver.after_commit:6", "gold.after_commit:9"]
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
    for path, keys in CHECKED.items():
        got, want = snapshot(crashed, path, keys), snapshot(clean, path, keys)
        assert got.num_rows == want.num_rows, path
        assert got.select(want.column_names).equals(want), path
    # every commit of every layer has its audit row, the crashed one rebuilt from the Delta log
    audited = set(crashed.audit.read().column("batch_id").to_pylist())
    for layer, table in [
        ("silver", "transactions"),
        ("silver", "patients"),
        ("gold", "fact_claim"),
        ("gold", "mart_kpi_monthly"),
        ("gold", "dim_patient"),
    ]:
        for commit in crashed.lake.commits(f"{layer}/{table}"):
            batch = commit["rcmlake"].get("batch_id")
            assert batch is None or batch in audited, (layer, table, commit["version"])
