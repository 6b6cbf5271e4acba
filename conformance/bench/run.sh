#!/usr/bin/env bash
# Bulk-scan benchmark: in-process DuckDB vs OpenDuck (Flight SQL/ADBC) vs DuckDB Quack.
# Usage: conformance/bench/run.sh [--sf 2] [--runs 3] [--data DIR] [--only inprocess,openduck,quack]
# The OpenDuck binary is $OPENDUCK_BIN, else the release build, else the debug build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
# The project's Python environment (created once); bench.py installs the Quack extras itself.
bash "$OPENDUCK_ROOT/scripts/python-env.sh"
exec "$OPENDUCK_VENV/bin/python" "$here/bench.py" "$@"
