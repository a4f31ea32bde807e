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
set -e
# pytest's 5 means "no tests collected": a misconfiguration here, never a pass, but not a CI crash either.
if [ "$rc" -eq 5 ]; then echo "no tests collected"; exit 1; fi
exit "$rc"
