#!/usr/bin/env bash
# Installs everything OpenDuck needs to build and test, idempotently:
# system tools (from Debian packages when missing), the official prebuilt libduckdb.so, and the
# Python environment of the conformance tests. Safe to run again; fast when nothing is missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

missing=()
command -v cargo >/dev/null || { echo "setup: Rust (cargo, rustc >= 1.85) is required: https://rustup.rs" >&2; exit 1; }
# The test command checks style with rustfmt and clippy.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
command -v npm >/dev/null || missing+=(nodejs npm)
command -v python3 >/dev/null || missing+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
command -v curl >/dev/null || missing+=(curl)
# A C++ compiler: the server's SQL guard and the extension's shim are C++ over DuckDB's headers.
command -v g++ >/dev/null || missing+=(g++)
# PostgreSQL server binaries: the metadata store's tests start a private server.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${OPENDUCK_SKIP_JAVA:-0}" != 1 ]; then
  command -v javac >/dev/null || missing+=(default-jdk-headless)
  command -v mvn >/dev/null || missing+=(maven)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash "$OPENDUCK_ROOT/scripts/libduckdb.sh"
bash "$OPENDUCK_ROOT/scripts/python-env.sh"
bash "$OPENDUCK_ROOT/scripts/duckdb-headers.sh"
