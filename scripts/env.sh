# Sourced by every script: one place for the paths the build and tests share.
# Everything heavy lives outside the clone so that rebuilds and fresh clones reuse it.
OPENDUCK_CACHE="${OPENDUCK_CACHE:-$HOME/.cache/openduck}"
export OPENDUCK_CACHE
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$OPENDUCK_CACHE/target}"
export DUCKDB_VERSION="1.5.5"
# The official prebuilt libduckdb.so for DuckDB 1.5.5 ships in this npm package.
export DUCKDB_NPM_PACKAGE="@duckdb/node-bindings-linux-x64@1.5.5-r.5"
export DUCKDB_LIB_DIR="${DUCKDB_LIB_DIR:-$OPENDUCK_CACHE/libduckdb-$DUCKDB_VERSION}"
# DuckDB's C++ headers (scripts/duckdb-headers.sh): the server's SQL guard compiles against them.
export DUCKDB_INCLUDE_DIR="${DUCKDB_INCLUDE_DIR:-$OPENDUCK_CACHE/duckdb-$DUCKDB_VERSION-include}"
export OPENDUCK_VENV="${OPENDUCK_VENV:-$OPENDUCK_CACHE/venv}"
# DuckDB 2.0.0 exists for Python only: a second environment runs the extension tests against it.
export OPENDUCK_VENV2="${OPENDUCK_VENV2:-$OPENDUCK_CACHE/venv-duckdb2}"
export PATH="$HOME/.cargo/bin:$PATH"
OPENDUCK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export OPENDUCK_ROOT
export OPENDUCK_EXTENSION_DIR="${OPENDUCK_EXTENSION_DIR:-$OPENDUCK_CACHE/extension/v1.5.5}"
# The build for DuckDB 2.0.0 (OPENDUCK_DUCKDB_VERSION=2.0.0 scripts/build-extension.sh) goes here.
export OPENDUCK_EXTENSION_DIR_V2="${OPENDUCK_EXTENSION_DIR_V2:-$OPENDUCK_CACHE/extension/v2.0.0}"
