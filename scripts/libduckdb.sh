#!/usr/bin/env bash
# Fetch the official prebuilt libduckdb.so (DuckDB 1.5.5) once, into $DUCKDB_LIB_DIR.
# DuckDB is never compiled here: the duckdb crate links this library.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -f "$DUCKDB_LIB_DIR/libduckdb.so" ]; then exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $DUCKDB_NPM_PACKAGE (official libduckdb.so)" >&2
(cd "$tmp" && npm pack --silent "$DUCKDB_NPM_PACKAGE" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
mkdir -p "$DUCKDB_LIB_DIR"
cp "$tmp/package/libduckdb.so" "$DUCKDB_LIB_DIR/libduckdb.so.tmp"
mv "$DUCKDB_LIB_DIR/libduckdb.so.tmp" "$DUCKDB_LIB_DIR/libduckdb.so"
