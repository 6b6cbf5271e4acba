#!/usr/bin/env bash
# Benchmark: in-process DuckDB vs OpenDuck (Flight SQL/ADBC, and its DuckDB extension) vs DuckDB Quack:
# bulk scans, INSERT … SELECT into a remote table, and a selective filter with and without pushdown.
# Usage: conformance/bench/run.sh [--sf 2] [--runs 3] [--data DIR] [--only inprocess,openduck,quack,attach,insert,filter]
#        [--insert-rows 10000000] [--filter "l_quantity = 7"]
# The OpenDuck binary is $OPENDUCK_BIN, else the release build, else the debug build.
# The extension is $OPENDUCK_EXTENSION_PATH, else $OPENDUCK_CACHE/extension-release/v1.5.5 (built with
# OPENDUCK_PROFILE=release OPENDUCK_EXTENSION_DIR=$OPENDUCK_CACHE/extension-release/v1.5.5 scripts/build-extension.sh)
# if present, else $OPENDUCK_EXTENSION_DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
# The project's Python environment (created once); bench.py installs the Quack extras itself.
bash "$OPENDUCK_ROOT/scripts/python-env.sh"
exec "$OPENDUCK_VENV/bin/python" "$here/bench.py" "$@"
