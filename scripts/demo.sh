#!/usr/bin/env bash
# Installs queuewatch into .venv and runs the demo: embedded Redis, RQ workers, collector, dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/queuewatch demo "$@"
