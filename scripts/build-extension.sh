#!/usr/bin/env bash
# Builds the OpenDuck DuckDB extension for DuckDB 1.5.5 from the version's headers (PyPI sdist)
# and the official prebuilt libduckdb.so — DuckDB itself is never compiled.
# Output: $OPENDUCK_EXTENSION_DIR/openduck.duckdb_extension with libduckdb.so beside it.
# OPENDUCK_PROFILE=release builds the Rust client optimized (default: debug, for tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$OPENDUCK_ROOT"
bash scripts/libduckdb.sh
bash scripts/python-env.sh

version="1.5.5"
headers="$OPENDUCK_CACHE/duckdb-$version-include"
if [ ! -f "$headers/duckdb.hpp" ]; then
  echo "fetching DuckDB $version headers (sdist)" >&2
  tmp="$(mktemp -d)"
  "$OPENDUCK_VENV/bin/pip" download --quiet --no-binary duckdb --no-deps "duckdb==$version" -d "$tmp"
  tar -xzf "$tmp"/duckdb-"$version".tar.gz -C "$tmp" "duckdb-$version/external/duckdb/src/include"
  rm -rf "$headers.tmp" && mv "$tmp/duckdb-$version/external/duckdb/src/include" "$headers.tmp"
  mv "$headers.tmp" "$headers"
  rm -rf "$tmp"
fi

profile="${OPENDUCK_PROFILE:-debug}"
if [ "$profile" = release ]; then
  cargo build --release -p openduck-extension --lib
else
  cargo build -p openduck-extension --lib
fi
staticlib="$CARGO_TARGET_DIR/$profile/libopenduck_extension.a"

out="$OPENDUCK_EXTENSION_DIR"
obj="$OPENDUCK_CACHE/extension-obj"
mkdir -p "$out" "$obj"
objects=()
for src in extension/cpp/*.cpp; do
  o="$obj/$(basename "$src" .cpp).o"
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ extension/cpp/openduck.hpp -nt "$o" ] || [ extension/include/openduck_client.h -nt "$o" ]; then
    g++ -std=c++17 -O1 -g0 -fPIC -fvisibility=hidden -DNDEBUG -I"$headers" -Iextension/include -c "$src" -o "$o"
  fi
  objects+=("$o")
done
g++ -shared -o "$obj/openduck.so" "${objects[@]}" "$staticlib" \
  -L"$DUCKDB_LIB_DIR" -lduckdb -Wl,-rpath,'$ORIGIN' -Wl,--exclude-libs,ALL -Wl,--gc-sections \
  -lpthread -ldl -lm
cp "$DUCKDB_LIB_DIR/libduckdb.so" "$out/libduckdb.so.tmp" && mv "$out/libduckdb.so.tmp" "$out/libduckdb.so"
python3 extension/append_metadata.py "$obj/openduck.so" "$out/openduck.duckdb_extension" linux_amd64 "v$version" "v0.1.0"
echo "built $out/openduck.duckdb_extension" >&2
