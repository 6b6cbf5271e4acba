#!/usr/bin/env bash
# Layered-storage benchmark (prints tables): commit cost of a small change in a large database,
# cold and warm snapshot reads, single-row INSERT transactions per second at 1 and 8 clients
# (OpenDuck layered, OpenDuck --plain, DuckDB Quack). See layers.py for what each measures.
# Usage: conformance/bench/layers.sh [--db-mib 1024] [--change-mib 1] [--seconds 10] [--clients 1,8]
#        [--runs 3] [--only commit,inserts] [--no-quack] [--heads local,fuse]
# The OpenDuck binary is $OPENDUCK_BIN, else the release build, else the debug build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
bash "$OPENDUCK_ROOT/scripts/python-env.sh"
exec "$OPENDUCK_VENV/bin/python" "$here/layers.py" "$@"
