"""End-to-end benchmark: synthetic hospitals → bronze → silver → gold, at a chosen scale.

Prints rows/s and peak memory per step and writes a JSON result to
benchmarks/results/. Example (2 cores, the CI machine size)::

    .venv/bin/python benchmarks/pipeline.py --transactions 500000 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from rcmlake.config import load_config
from rcmlake.demo import prepare
from rcmlake.project import Project
from rcmlake.synth import SynthSpec


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--transactions", type=int, default=200_000, help="per hospital (two hospitals)"
    )
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("/tmp/rcmlake-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the output folder")
    args = ap.parse_args()

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    steps: list[dict[str, object]] = []

    def step(name: str, rows: int, seconds: float) -> None:
        row = {
            "step": name,
            "rows": rows,
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds) if seconds else None,
            "peak_rss_mb": round(peak_rss_mb()),
        }
        steps.append(row)
        print(
            f"{name:<16} {rows:>12,} rows {seconds:>8.1f} s {row['rows_per_s'] or 0:>12,} rows/s "
            f"peak {row['peak_rss_mb']:>6} MB",
            flush=True,
        )

    t = time.monotonic()
    prepare(args.out, SynthSpec(transactions=args.transactions, months=args.months))
    manifest = json.loads((args.out / "synth_manifest.json").read_text())
    total_tx = sum(r["transactions"] for r in manifest["rows"].values())
    step("synth", total_tx, time.monotonic() - t)

    project = Project(load_config(args.out / "rcmlake.yaml"))
    for layer in ("bronze", "silver", "gold"):
        t = time.monotonic()
        result = project.run([layer])
        assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
        step(layer, sum(r.rows_written for r in result.records), time.monotonic() - t)
    t = time.monotonic()
    result = project.run()
    step("rerun (no-op)", 0, time.monotonic() - t)

    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "transactions": total_tx,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "steps": steps,
    }
    target = Path(__file__).parent / "results" / f"pipeline-{total_tx}.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {target}")
    if not args.keep:
        shutil.rmtree(args.out)


if __name__ == "__main__":
    main()
