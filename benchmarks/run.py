"""Scale benchmark: each pipeline step in its own process, timed, with its own peak memory.

``--scale 1`` is about 1M transactions (two hospitals), ``--scale 10`` about 10M. Steps:
synth, bronze (SQLite), silver, gold, report, a no-op re-run, ``synth --update`` (a new
month: about a fifth of the rows change) and the run after it, ``synth --touch 0.01`` (1%
of the transactions edited, spread over every month) and the incremental run after it, the
same with the edits on the last month's services only (``--recent-months 1``); and the
floor: DuckDB reading the bronze Parquet files and writing them once. Peak RSS is measured
per step (``wait4`` of that step's process), not as the benchmark's running maximum. Writes a JSON result (``--out``)::

    .venv/bin/python benchmarks/run.py --scale 1 --out benchmarks/results/scale-1.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PER_SCALE = 1_000_000  # transactions at scale 1, shared by the hospitals (two: 500k each)


SERVER: dict[str, int] = {}  # the Spark Connect server's pid, with --engine spark


def _server_peak_reset() -> None:
    """Reset the server's peak RSS (Linux: ``5`` to ``clear_refs``), so each step has its own."""
    if "pid" in SERVER:
        Path(f"/proc/{SERVER['pid']}/clear_refs").write_text("5")


def _server_peak_mb() -> int | None:
    if "pid" not in SERVER:
        return None
    for line in Path(f"/proc/{SERVER['pid']}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return None


def start_spark_server() -> tuple[subprocess.Popen[bytes], str]:
    """Sail's Spark Connect server on a free loopback port, in its own process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sail = Path(sys.executable).parent / "sail"
    proc = subprocess.Popen(
        [str(sail), "spark", "server", "--ip", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
            break
        time.sleep(0.1)
    SERVER["pid"] = proc.pid
    return proc, f"sc://127.0.0.1:{port}"


def run_step(name: str, code: str, cwd: Path, rows: int | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh Python process; its time and its own peak RSS (and with a
    Spark server, the server's peak during the step)."""
    _server_peak_reset()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        raise SystemExit(f"step {name} failed with exit code {proc.returncode}")
    row: dict[str, Any] = {
        "step": name,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }
    server = _server_peak_mb()
    if server is not None:
        row["server_peak_rss_mb"] = server
    if rows is not None:
        row["rows"] = rows
        row["rows_per_s"] = round(rows / seconds) if seconds else None
    print(
        f"{name:<22} {seconds:>8.1f} s  peak {row['peak_rss_mb']:>6} MB"
        + (f" (server {server:>6} MB)" if server is not None else "")
        + (f"  {rows:>12,} rows  {row['rows_per_s']:>10,} rows/s" if rows is not None else ""),
        flush=True,
    )
    return row


def pipeline(layers: list[str], only: str | None = None) -> str:
    layer_list = ", ".join(repr(x) for x in layers)
    only_set = f"{{{only!r}}}" if only else "None"
    return (
        "import json, sys\n"
        "from rcmlake.project import Project\n"
        f"r = Project.load('rcmlake.yaml').run([{layer_list}], only={only_set})\n"
        # the synthetic set has malformed 835 files on purpose: rejecting them is the job
        "hard = [(x.table, x.error) for x in r.failed if x.status != 'rejected']\n"
        "json.dump({'rows': sum(x.rows_written for x in r.records),"
        " 'rejected': sum(x.status == 'rejected' for x in r.records),"
        " 'failed': hard}, open('.step.json', 'w'))\n"
        "sys.exit(1 if hard else 0)\n"
    )


def step_rows(work: Path) -> int:
    done = json.loads((work / ".step.json").read_text())
    if done["failed"]:
        raise SystemExit(f"failed loads: {done['failed']}")
    return int(done["rows"])


def parquet_floor(work: Path) -> dict[str, Any]:
    """DuckDB reads every bronze Parquet file and writes it once: the I/O floor."""
    code = (
        "import duckdb, glob, time\n"
        "con = duckdb.connect()\n"
        'con.execute("SET preserve_insertion_order = false")\n'
        'con.execute("SET enable_progress_bar = false")\n'
        "for table in sorted(glob.glob('lake/bronze/*/*')):\n"
        "    files = glob.glob(table + '/**/*.parquet', recursive=True)\n"
        "    if files:\n"
        "        out = 'floor/' + table.replace('/', '_') + '.parquet'\n"
        "        con.execute(f\"COPY (SELECT * FROM read_parquet({files!r}, union_by_name=true)) TO '{out}'\")\n"
    )
    (work / "floor").mkdir(exist_ok=True)
    return run_step("parquet floor", code, work)


def reuse(work: Path) -> None:
    """The work folder as ``synth`` left it: archived and rejected landing files back in
    their feed folders, no lake, the config rewritten."""
    landing = work / "landing"
    for kept in ("archive", "rejected"):
        for path in sorted((landing / kept).rglob("*")) if (landing / kept).exists() else []:
            if path.is_file() and not path.name.endswith(".reason.txt"):
                target = landing / path.relative_to(landing / kept)
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)
        shutil.rmtree(landing / kept, ignore_errors=True)
    for derived in ("lake", "floor", "rcmlake.yaml", "dashboard.html"):
        p = work / derived
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    from rcmlake.demo import demo_config

    spec = json.loads((work / "synth_manifest.json").read_text())["spec"]
    config = demo_config(datasources=tuple(spec["datasources"]))
    (work / "rcmlake.yaml").write_text(config, encoding="utf-8")


def summary(
    args: argparse.Namespace, steps: list[dict[str, Any]], transactions: int, patients: int
) -> dict[str, Any]:
    """The result JSON: the full build, each run's share of it, the floor, the peak."""
    by = {s["step"]: s for s in steps}
    full = sum(by[x]["seconds"] for x in ("bronze", "silver", "gold"))
    silver_gold = by["silver"]["seconds"] + by["gold"]["seconds"]

    def share(name: str, step: str) -> dict[str, float | None]:
        seconds = by[step]["seconds"] if step in by else None
        return {
            f"{name}_s": seconds,
            f"{name}_share_of_full": round(seconds / full, 3) if seconds is not None else None,
        }

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "hospitals": args.hospitals,
        "engine": args.engine,
        "memory_limit": args.memory_limit,
        "transactions": transactions,
        "patients": patients,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "full_build_s": round(full, 2),
        "silver_gold_s": round(silver_gold, 2),
        **share("incremental", "incremental run (1%)"),
        **share("incremental_recent", "incremental run (1% recent)"),
        **share("update_run", "update run"),
        "parquet_floor_s": by["parquet floor"]["seconds"],
        "silver_gold_over_floor": round(silver_gold / by["parquet floor"]["seconds"], 2),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in steps if s["step"] != "synth"),
        "steps": steps,
    }


def incremental_steps(work: Path, *, month_update: bool) -> list[dict[str, Any]]:
    """A no-op re-run, ``synth --update`` and its run (with ``month_update``), then 1% of the
    transactions edited: first spread over every month (the worst case for a build by
    month), then only services of the last month (payments post to recent claims)."""
    steps = [run_step("re-run (no-op)", pipeline(["bronze", "silver", "gold"]), work)]
    if month_update:
        steps.append(
            run_step(
                "synth --update",
                "from pathlib import Path\nfrom rcmlake.synth import synthesize\n"
                "synthesize(Path('.'), update=True)\n",
                work,
            )
        )
        inc = run_step("update run", pipeline(["bronze", "silver", "gold"]), work)
        inc["rows"] = step_rows(work)
        steps.append(inc)
    for label, recent in (("", None), (" recent", 1)):
        steps.append(
            run_step(
                f"synth --touch 0.01{label}",
                "from pathlib import Path\nfrom rcmlake.synth import touch\n"
                f"touch(Path('.'), 0.01, recent_months={recent})\n",
                work,
            )
        )
        one = run_step(f"incremental run (1%{label})", pipeline(["bronze", "silver", "gold"]), work)
        one["rows"] = step_rows(work)
        steps.append(one)
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=1.0, help="1 = about 1M transactions")
    ap.add_argument(
        "--hospitals",
        type=int,
        default=2,
        help="hospitals sharing the transactions (scale 30 as 6 of 5M each: the generator "
        "holds one hospital's history in memory at a time)",
    )
    ap.add_argument("--out", type=Path, required=True, help="JSON result file")
    ap.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        default="duckdb",
        help="spark: silver and gold on a Sail Spark Connect server started here",
    )
    ap.add_argument("--memory-limit", default="4GB", help="run.memory_limit for the engine")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    ap.add_argument(
        "--reuse-synth",
        action="store_true",
        help="with --work: keep the synthetic sources generated there before (landing files "
        "back from archive/ and rejected/, the lake deleted); synth is not timed",
    )
    ap.add_argument(
        "--no-month-update",
        action="store_true",
        help="skip `synth --update` and its run (at scale 10 the generator alone takes ~7 min)",
    )
    ap.add_argument(
        "--build-only",
        action="store_true",
        help="the full build, report and floor only: no re-run, update or 1%% runs (scale 30: "
        "does it complete, and in how much memory)",
    )
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="rcmlake-bench-"))
    per_hospital = int(PER_SCALE * args.scale / args.hospitals)
    if args.reuse_synth and (work / "synth_manifest.json").exists():
        reuse(work)
        steps: list[dict[str, Any]] = [
            {"step": "synth", "seconds": None, "peak_rss_mb": None, "reused": True}
        ]
    else:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        steps = [
            run_step(
                "synth",
                "from pathlib import Path\nfrom rcmlake.demo import hospital_names, prepare\n"
                "from rcmlake.synth import SynthSpec\n"
                f"prepare(Path('.'), SynthSpec(transactions={per_hospital}, "
                f"datasources=hospital_names({args.hospitals})))\n",
                work,
            )
        ]
    manifest = json.loads((work / "synth_manifest.json").read_text())
    transactions = sum(r["transactions"] for r in manifest["rows"].values())
    patients = sum(r["patients"] for r in manifest["rows"].values())
    steps[0]["rows"] = transactions
    config = (work / "rcmlake.yaml").read_text()
    settings = f"  memory_limit: {args.memory_limit}\n"
    server = None
    if args.engine == "spark":
        server, remote = start_spark_server()
        settings += f"  engine: spark\n  spark_remote: {remote}\n"
    (work / "rcmlake.yaml").write_text(
        config + "\nrun:\n" + settings
        if "\nrun:" not in config
        else config.replace("\nrun:\n", "\nrun:\n" + settings)
    )
    for layer in ("bronze", "silver", "gold"):
        row = run_step(layer, pipeline([layer]), work)
        row["rows"] = step_rows(work)
        row["rows_per_s"] = round(row["rows"] / row["seconds"]) if row["seconds"] else None
        steps.append(row)
    steps.append(
        run_step(
            "report",
            "from rcmlake.project import Project\nProject.load('rcmlake.yaml').report()\n",
            work,
        )
    )
    if not args.build_only:
        steps += incremental_steps(work, month_update=not args.no_month_update)
    steps.append(parquet_floor(work))
    result = summary(args, steps, transactions, patients)
    if server is not None:
        server.terminate()
        server.wait()
        # the machine's peak: the client's and the server's memory during the same step
        result["peak_rss_mb"] = max(
            s["peak_rss_mb"] + s.get("server_peak_rss_mb", 0) for s in steps if s["step"] != "synth"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    print(f"wrote {args.out}")
    if not args.keep and not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
