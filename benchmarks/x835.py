"""Parse speed of 835 remittances: one file of N copies of a public example (9 claims each).

    python benchmarks/x835.py --copies 2000 --out benchmarks/results/x835.json

Times oxedi's parse alone and rcmlake's whole read (parse, strings, parent keys, remarks),
and prints claims/s and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import oxedi

from rcmlake.sources.x835 import read_835

SAMPLE = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "data"
    / "x12"
    / "835"
    / "X221-multiple-claims-single-check.edi"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=2000)
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    one = args.sample.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.835"
        big.write_bytes(b"\n".join([one] * args.copies))
        started = time.perf_counter()
        parsed = oxedi.parse_file(big)
        parse_s = time.perf_counter() - started
        started = time.perf_counter()
        tables = read_835(big)
        read_s = time.perf_counter() - started
        claims = tables["claims"].num_rows
        result = {
            "file_mb": round(big.stat().st_size / 1e6, 2),
            "interchanges": args.copies,
            "claims": claims,
            "diagnostics": len(parsed.diagnostics),
            "oxedi_parse_s": round(parse_s, 3),
            "read_835_s": round(read_s, 3),
            "claims_per_s": round(claims / read_s),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
