#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, Python packages) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)  # also runs the sentinel and TLS tests' servers
command -v redis-cli >/dev/null || missing+=(redis-tools)  # creates the Redis Cluster of the cluster tests
command -v openssl >/dev/null || missing+=(openssl)  # certificates of the TLS tests
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
scripts/setup.sh test
npm ci --prefix tests/collector/node --no-audit --no-fund --silent  # a real Node BullMQ worker for the tests
if [ $# -eq 0 ]; then
    # The RQ reader against RQ 3.x too (key prefix, executions), in an environment of its own.
    [ -x .venv-rq3/bin/python ] || "${PYTHON:-python3}" -m venv .venv-rq3
    .venv-rq3/bin/python -m pip install --quiet -e ".[test]" "rq==3.0.0"
    .venv-rq3/bin/python -m pytest -q -p no:cacheprovider tests/collector/test_rq_reader.py tests/collector/test_loop.py
fi
exec .venv/bin/python -m pytest "$@"
