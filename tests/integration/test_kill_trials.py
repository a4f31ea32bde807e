"""Runs SIGKILLed at seeded random moments, then re-run, end as a clean run (small N here;
``python scripts/kill_trials.py --trials 50`` runs many)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts.kill_trials import run_trials


@pytest.mark.kill_trials
@pytest.mark.parametrize(("incremental", "trials"), [(True, 1)])
def test_random_kills_then_rerun_equal_a_clean_run(
    tmp_path: Path, incremental: bool, trials: int
) -> None:
    summary = run_trials(trials, seed=20261201, work=tmp_path, incremental=incremental)
    assert summary["trials"] == trials and summary["killed"] >= 1
    assert summary["identical"] == trials, [r for r in summary["results"] if r["differs"]]
