"""Extraction benchmark: transactions out of a MariaDB EMR into Arrow, through bronze's path.

Writes the synthetic hospitals into MariaDB (``rcmlake synth --target mysql://…``), then
times, each in its own process (own peak RSS; rows/s of the read alone, without starting
Python and importing): ``SqlSource.extract`` of the
``transactions`` table (what ``rcmlake run`` does), as one connectorx stream and as 2 and 3
queries at once (the table's ``partitions:``, split by a hash of the primary key). Prints rows/s and peak
memory; writes JSON (``--out``). Drops its databases at the end::

    .venv/bin/python benchmarks/extract.py --transactions 250000 --out /tmp/extract.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from benchmarks.run import run_step

SERVER = "mysql://root@127.0.0.1:3306"

EXTRACT = """
from pathlib import Path
import yaml
from rcmlake.config import parse_config
from rcmlake.demo import demo_config
from rcmlake.sources.sql import SqlSource
config = parse_config(yaml.safe_load(demo_config({{"hospital_a": ("mysql", {url!r})}})), base_dir=Path("."))
source = SqlSource("hospital_a", config.sources["hospital_a"], Path("."))
table = next(t for t in source.config.tables if t.name == "transactions")
table = table.model_copy(update={{"partitions": {parts}}})  # as `partitions:` in the config
import time
started = time.monotonic()
reader = source.extract(table, None, source.check()["transactions"], config.run.batch_rows)
n = sum(b.num_rows for b in reader)
Path("timed.txt").write_text(str(time.monotonic() - started))
assert n == {rows}, n
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--transactions", type=int, default=250_000, help="per hospital")
    ap.add_argument("--out", type=Path, required=True, help="JSON result file")
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    databases = [f"bench_{tag}_hospital_a", f"bench_{tag}_hospital_b"]
    engine = sa.create_engine(f"{SERVER.replace('mysql:', 'mysql+pymysql:')}/")
    try:
        with tempfile.TemporaryDirectory() as work:
            steps = [
                run_step(
                    "synth into MariaDB",
                    "from rcmlake.cli import main; import sys; sys.argv=['rcmlake','synth',"
                    f"'--out','.','--transactions','{args.transactions}',"
                    f"'--target','{SERVER}/bench_{tag}_{{datasource}}']; main()",
                    Path(work),
                )
            ]
            url = f"{SERVER}/{databases[0]}"
            with engine.connect() as con:
                rows = con.execute(sa.text(f"SELECT count(*) FROM {databases[0]}.transactions"))
                count = int(rows.scalar_one())
            for parts in (1, 2, 3):
                name = f"extract, {parts} part{'s' if parts > 1 else ''}"
                code = EXTRACT.format(url=url, rows=count, parts=parts)
                step = run_step(name, code, Path(work), count)
                step["partitions"] = parts
                # the process's time includes starting Python and importing; this is the read
                read_s = float((Path(work) / "timed.txt").read_text())
                step.update(read_s=round(read_s, 3), read_rows_per_s=round(count / read_s))
                print(f"{'':<22} read alone {read_s:.2f} s: {step['read_rows_per_s']:,} rows/s")
                steps.append(step)
    finally:
        with engine.connect() as con:
            for db in databases:
                con.execute(sa.text(f"DROP DATABASE IF EXISTS `{db}`"))
        engine.dispose()
    server = subprocess.run(
        ["mysql", "-h127.0.0.1", "-uroot", "-N", "-e", "SELECT version()"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    result = {
        "benchmark": "extract",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "server": server,
        "transactions": count,
        "extract_rows_per_s": max(s.get("read_rows_per_s", 0) for s in steps),
        "steps": steps,
    }
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
