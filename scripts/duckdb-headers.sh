#!/usr/bin/env bash
# Fetches (once) the C++ headers of a DuckDB version from its PyPI sdist, into
# $OPENDUCK_CACHE/duckdb-<version>-include; DuckDB is never compiled. Usage: duckdb-headers.sh
# [VERSION] (default 1.5.5). The server's SQL guard and the extension compile against them.
# 1.5.5: <dir>/duckdb.hpp. 2.0.0 also needs fmt: <dir>/src/include and <dir>/third_party/fmt/include.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
version="${1:-$DUCKDB_VERSION}"
headers="$OPENDUCK_CACHE/duckdb-$version-include"
if [ "$version" = 2.0.0 ]; then
  [ -f "$headers/src/include/duckdb.hpp" ] && [ -f "$headers/third_party/fmt/include/fmt/format.h" ] && exit 0
else
  [ -f "$headers/duckdb.hpp" ] && exit 0
fi
bash "$OPENDUCK_ROOT/scripts/python-env.sh"
echo "fetching DuckDB $version headers (sdist)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# --no-binary for duckdb only: the sdist is just downloaded, never built.
"$OPENDUCK_VENV/bin/pip" download --quiet --no-binary duckdb --no-deps "duckdb==$version" -d "$tmp"
src="duckdb-$version/external/duckdb"
if [ "$version" = 2.0.0 ]; then
  tar -xzf "$tmp"/duckdb-"$version".tar.gz -C "$tmp" "$src/src/include" "$src/third_party/fmt/include"
  rm -rf "$headers.tmp" && mkdir -p "$headers.tmp/src" "$headers.tmp/third_party/fmt"
  mv "$tmp/$src/src/include" "$headers.tmp/src/include"
  mv "$tmp/$src/third_party/fmt/include" "$headers.tmp/third_party/fmt/include"
else
  tar -xzf "$tmp"/duckdb-"$version".tar.gz -C "$tmp" "$src/src/include"
  rm -rf "$headers.tmp" && mv "$tmp/$src/src/include" "$headers.tmp"
fi
rm -rf "$headers" && mv "$headers.tmp" "$headers"
