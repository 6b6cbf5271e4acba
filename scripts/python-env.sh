#!/usr/bin/env bash
# Create (once) the Python virtual environment the conformance tests and benchmarks use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
req="$OPENDUCK_ROOT/conformance/requirements.txt"
stamp="$OPENDUCK_VENV/.requirements.sha"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
python3 -m venv "$OPENDUCK_VENV"
"$OPENDUCK_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
