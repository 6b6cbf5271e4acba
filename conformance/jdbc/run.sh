#!/usr/bin/env bash
# JDBC conformance: runs the Flight SQL JDBC driver against a real `openduck serve`.
# Needs the debug binary to be built already; the test starts and stops the server itself.
# Extra arguments go to Maven.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/env.sh
source "$here/../../scripts/env.sh"
export OPENDUCK_BIN="$CARGO_TARGET_DIR/debug/openduck"
if [[ ! -x "$OPENDUCK_BIN" ]]; then
  echo "run.sh: $OPENDUCK_BIN is missing; build openduck first" >&2
  exit 1
fi

cd "$here"
status=0
# -q hides Maven's chatter but still prints failures; the summary is printed from the reports below.
mvn -q -B test "$@" || status=$?

# Surefire's per-class summary lines ("Tests run: N, Failures: ..."), then one total.
reports=(target/surefire-reports/*Test.txt)
if [[ -e "${reports[0]}" ]]; then
  grep -h "Tests run:" "${reports[@]}"
fi
if [[ $status -ne 0 ]]; then
  echo "run.sh: JDBC conformance FAILED (server log: $here/target/openduck-server.log)" >&2
fi
exit "$status"
