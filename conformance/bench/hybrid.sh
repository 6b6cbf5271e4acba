#!/usr/bin/env bash
# Benchmark of hybrid plans (conformance/bench/hybrid.py): local ⋈ remote joins and TPC-H with
# lineitem and orders remote, hybrid vs off vs all-local, wall time and bytes on the wire.
# Usage: conformance/bench/hybrid.sh [--rows 10000000] [--sf 1] [--runs 3] [--only join,tpch]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
bash "$OPENDUCK_ROOT/scripts/python-env.sh"
exec "$OPENDUCK_VENV/bin/python" "$here/hybrid.py" "$@"
