#!/usr/bin/env bash
# Set up rcmlake in .venv and run the demo in ./demo (or $1): synthetic hospitals → lake → KPIs → dashboard.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""
DIR="${1:-$ROOT/demo}"
mkdir -p "$DIR"
cd "$DIR"
rcmlake demo
