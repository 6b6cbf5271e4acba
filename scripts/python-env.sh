#!/usr/bin/env bash
# Create (once) the Python virtual environments the conformance tests and benchmarks use:
# $OPENDUCK_VENV with DuckDB 1.5.5 (conformance/requirements.txt) and $OPENDUCK_VENV2 with
# DuckDB 2.0.0 (conformance/requirements-duckdb2.txt) for the extension tests against 2.0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# make_venv <dir> <requirements file>: (re)creates the environment when the requirements change.
make_venv() {
  local venv="$1" req="$2"
  local stamp="$venv/.requirements.sha"
  # The stamp also covers this checkout's path: the openduck package is installed editable from it.
  local want
  want="$( (cat "$req" "$OPENDUCK_ROOT/clients/python/pyproject.toml"; echo "$OPENDUCK_ROOT") | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  # --no-deps: the package pins the DuckDB it is released with; the environment chooses the version.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$OPENDUCK_ROOT/clients/python"
  echo "$want" > "$stamp"
}

make_venv "$OPENDUCK_VENV" "$OPENDUCK_ROOT/conformance/requirements.txt"
make_venv "$OPENDUCK_VENV2" "$OPENDUCK_ROOT/conformance/requirements-duckdb2.txt"
