#!/usr/bin/env bash
# Installs what is needed, builds `openduck` and serves ./openduck-data/mydb.duckdb on port 7878.
# Token: $OPENDUCK_TOKEN, or a random one printed below. Stop with Ctrl-C.
# OPENDUCK_PROFILE=debug builds faster but runs slower.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$OPENDUCK_ROOT"
OPENDUCK_SKIP_JAVA=1 bash scripts/setup.sh
profile="${OPENDUCK_PROFILE:-release}"
if [ "$profile" = release ]; then cargo build --release --bin openduck; else cargo build --bin openduck; fi
if [ -z "${OPENDUCK_TOKEN:-}" ]; then
  OPENDUCK_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  echo "openduck: no OPENDUCK_TOKEN set; using the generated token: $OPENDUCK_TOKEN"
fi
export OPENDUCK_TOKEN
exec "$CARGO_TARGET_DIR/$profile/openduck" serve -d "${OPENDUCK_DATABASE:-mydb}" --port "${OPENDUCK_PORT:-7878}" "$@"
