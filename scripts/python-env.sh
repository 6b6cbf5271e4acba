#!/usr/bin/env bash
# Create (once) the Python virtual environment the conformance tests and benchmarks use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
req="$OPENDUCK_ROOT/conformance/requirements.txt"
stamp="$OPENDUCK_VENV/.requirements.sha"
# The stamp also covers this checkout's path: the openduck package is installed editable from it.
want="$( (cat "$req" "$OPENDUCK_ROOT/clients/python/pyproject.toml"; echo "$OPENDUCK_ROOT") | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
python3 -m venv "$OPENDUCK_VENV"
"$OPENDUCK_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
"$OPENDUCK_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$OPENDUCK_ROOT/clients/python"
echo "$want" > "$stamp"
