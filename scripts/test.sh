#!/usr/bin/env bash
# Set up rcmlake[dev] in .venv, then lint, type-check and run the whole test suite.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" "[dev]"
cd "$ROOT"
if [ -f "$ROOT/scripts/test-deps.sh" ]; then bash "$ROOT/scripts/test-deps.sh"; fi
ruff check src tests benchmarks scripts
ruff format --check src tests benchmarks scripts
mypy
set +e
pytest -n 2 -q "$@"
rc=$?
# pytest's 5 means "no tests collected": a misconfiguration here, never a pass, but not a CI crash either.
if [ "$rc" -eq 5 ]; then echo "no tests collected"; exit 1; fi
if [ "$rc" -eq 0 ] && [ "$#" -eq 0 ]; then
    # The lake must not depend on the host's clock zone: run the core suites again off UTC.
    echo "again under TZ=America/New_York:"
    TZ=America/New_York pytest -n 2 -q -m "not services and not browser" \
        tests/unit tests/integration/test_silver.py tests/integration/test_gold_kpis.py
    rc=$?
fi
set -e
exit "$rc"
