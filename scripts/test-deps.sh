#!/usr/bin/env bash
# System packages the tests use: Debian's chromium for the dashboard's headless-browser test.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (Debian package) for the dashboard test…"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium not found and cannot apt-get install it; the browser test will skip (or fail in CI)" >&2
  fi
fi
