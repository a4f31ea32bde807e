"""Kill ``rcmlake run`` at random moments, run again, and check the lake equals a clean run.

    python scripts/kill_trials.py --trials 30 --seed 7             # kills during a first build
    python scripts/kill_trials.py --trials 30 --seed 7 --incremental  # kills during an update run

Each trial copies the same synthetic hospitals, starts ``rcmlake run`` in a subprocess and
SIGKILLs it after a seeded random delay within the clean run's duration (so kills land
anywhere: mid-extraction, mid-Delta-write, between a commit and its audit row), then runs
again to completion and compares every checked table, content for content, with the lake a
clean run built. It prints one line per trial and a summary, and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from rcmlake.project import Project
from rcmlake.synth import SynthSpec, synthesize

# table -> sort keys: bronze (nothing lost or doubled), silver histories, gold facts and KPIs
CHECKED = {
    "bronze/hospital_a/transactions": ["TransactionID", "ModifiedDate", "Amount"],
    "bronze/hospital_b/patients": ["ID", "Updated_Date"],
    "silver/patients": ["patient_key", "effective_from"],
    "silver/transactions": ["transaction_key"],
    "silver/claims": ["claim_key"],
    "gold/fact_claim": ["claim_key"],
    "gold/dim_patient": ["patient_sk"],
    "gold/mart_kpi_monthly": ["datasource", "month"],
}
VOLATILE = ("_batch_id", "_ingested_at", "_updated_at", "_source")
SPEC = SynthSpec(seed=11, transactions=1_200, months=4, defect_rate=0.01, remittance_defects=False)


def snapshot(project: Project, path: str, keys: list[str]) -> pa.Table:
    """The table without the columns that name a run or a moment, in key order."""
    table = project.lake.read(path)
    if table is None:
        return pa.table({})
    table = table.drop_columns([c for c in VOLATILE if c in table.column_names])
    # the keys first, then every other plain column: rows that tie on the keys (versions of
    # one key at one time) come out in one order in both lakes
    rest = [
        f.name
        for f in table.schema
        if f.name not in keys and not pa.types.is_nested(f.type) and not pa.types.is_null(f.type)
    ]
    order = [(k, "ascending") for k in [*keys, *rest]]
    return table.sort_by(order).select(sorted(table.column_names))


def differing(got: Project, want: Project) -> list[str]:
    return [
        p
        for p, keys in CHECKED.items()
        if not snapshot(got, p, keys).equals(snapshot(want, p, keys))
    ]


def _rcmlake(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rcmlake", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RCMLAKE_FAULTS": ""},
    )


def prepare(template: Path, into: Path, incremental: bool) -> Path:
    """A copy of the hospitals and config; for incremental trials, built once and updated."""
    shutil.copytree(template, into)
    if incremental:
        assert _rcmlake(into, "run").wait() == 0
        synthesize(into, update=True)
    return into


def run_trials(trials: int, seed: int, work: Path, *, incremental: bool = False) -> dict[str, Any]:
    """Run ``trials`` kill-and-rerun trials; returns the figures (``identical`` == trials
    when every crashed lake ended as the clean one)."""
    from rcmlake.demo import demo_config

    work.mkdir(parents=True, exist_ok=True)
    template = work / "template"
    if not template.exists():
        synthesize(template, SPEC)
        (template / "rcmlake.yaml").write_text(demo_config(None), encoding="utf-8")
    clean_dir = prepare(template, work / "clean", incremental)
    started = time.monotonic()
    assert _rcmlake(clean_dir, "run").wait() == 0
    duration = time.monotonic() - started
    clean = Project.load(clean_dir / "rcmlake.yaml")
    rng = random.Random(seed)
    results = []
    for i in range(trials):
        d = prepare(template, work / f"trial-{i}", incremental)
        delay = rng.uniform(0, 0.9 * duration)  # a kill, not a race with the end of the run
        proc = _rcmlake(d, "run")
        try:
            proc.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
        rerun = _rcmlake(d, "run").wait()
        diff = (
            differing(Project.load(d / "rcmlake.yaml"), clean) if rerun == 0 else ["rerun failed"]
        )
        results.append(
            {"trial": i, "kill_after_s": round(delay, 3), "killed": killed, "differs": diff}
        )
        print(
            f"trial {i:3d}: kill after {delay:6.2f}s {'killed' if killed else 'finished first'}; "
            + ("identical" if not diff else f"DIFFERS: {', '.join(diff)}"),
            flush=True,
        )
        shutil.rmtree(d)
    identical = sum(not r["differs"] for r in results)
    summary = {
        "mode": "incremental" if incremental else "fresh",
        "seed": seed,
        "trials": trials,
        "killed": sum(r["killed"] for r in results),
        "identical": identical,
        "clean_run_s": round(duration, 2),
        "results": results,
    }
    print(f"{identical}/{trials} identical to a clean run ({summary['killed']} killed mid-run)")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--incremental", action="store_true", help="kill during an update run")
    ap.add_argument("--work", type=Path, default=Path("kill-trials"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    summary = run_trials(args.trials, args.seed, args.work, incremental=args.incremental)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    sys.exit(0 if summary["identical"] == summary["trials"] else 1)


if __name__ == "__main__":
    main()
