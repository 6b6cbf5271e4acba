#!/usr/bin/env bash
# Builds the OpenDuck DuckDB extension from the DuckDB version's headers (PyPI sdist) — DuckDB
# itself is never compiled. OPENDUCK_DUCKDB_VERSION chooses the DuckDB version:
#   1.5.5 (default): linked to the official prebuilt libduckdb.so, which works in the DuckDB CLI
#     and in Python. Output: $OPENDUCK_EXTENSION_DIR/openduck.duckdb_extension with
#     libduckdb.so beside it.
#   2.0.0: there is no prebuilt libduckdb.so (and no CLI) for 2.0.0, only the Python package.
#     The extension is linked without DuckDB and takes DuckDB's symbols from the Python module
#     at load time, through a loader stub (extension/loader/loader.cpp). Output:
#     $OPENDUCK_EXTENSION_DIR_V2/openduck.duckdb_extension (the stub) with openduck_impl.so
#     (the extension) beside it. The sources see OPENDUCK_DUCKDB_V2=1.
# OPENDUCK_PROFILE=release builds the Rust client optimized (default: debug, for tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$OPENDUCK_ROOT"

version="${OPENDUCK_DUCKDB_VERSION:-1.5.5}"
case "$version" in
  1.5.5 | 2.0.0) ;;
  *) echo "build-extension: OPENDUCK_DUCKDB_VERSION must be 1.5.5 or 2.0.0, not $version" >&2; exit 1 ;;
esac

# The prebuilt library is only needed (and only exists) for 1.5.5; pip comes from the Python environment.
if [ "$version" = 1.5.5 ]; then
  bash scripts/libduckdb.sh
fi
bash scripts/python-env.sh

bash scripts/duckdb-headers.sh "$version"
headers="$OPENDUCK_CACHE/duckdb-$version-include"
if [ "$version" = 1.5.5 ]; then
  includes=(-I"$headers")
else
  # 2.0's headers also include fmt (third_party/fmt/include); the sdist's relative paths are kept.
  includes=(-I"$headers/src/include" -I"$headers/third_party/fmt/include" -DOPENDUCK_DUCKDB_V2=1)
fi

profile="${OPENDUCK_PROFILE:-debug}"
if [ "$profile" = release ]; then
  cargo build --release -p openduck-extension --lib
else
  cargo build -p openduck-extension --lib
fi
staticlib="$CARGO_TARGET_DIR/$profile/libopenduck_extension.a"

# Objects of different DuckDB versions never mix: each version has its own object directory.
if [ "$version" = 1.5.5 ]; then
  out="$OPENDUCK_EXTENSION_DIR"
  obj="$OPENDUCK_CACHE/extension-obj"
else
  out="$OPENDUCK_EXTENSION_DIR_V2"
  obj="$OPENDUCK_CACHE/extension-obj-v$version"
fi
mkdir -p "$out" "$obj"
objects=()
for src in extension/cpp/*.cpp; do
  o="$obj/$(basename "$src" .cpp).o"
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ extension/cpp/openduck.hpp -nt "$o" ] || [ extension/include/openduck_client.h -nt "$o" ]; then
    g++ -std=c++17 -O1 -g0 -fPIC -fvisibility=hidden -DNDEBUG "${includes[@]}" -Iextension/include -c "$src" -o "$o"
  fi
  objects+=("$o")
done

if [ "$version" = 1.5.5 ]; then
  g++ -shared -o "$obj/openduck.so" "${objects[@]}" "$staticlib" \
    -L"$DUCKDB_LIB_DIR" -lduckdb -Wl,-rpath,'$ORIGIN' -Wl,--exclude-libs,ALL -Wl,--gc-sections \
    -lpthread -ldl -lm
  cp "$DUCKDB_LIB_DIR/libduckdb.so" "$out/libduckdb.so.tmp" && mv "$out/libduckdb.so.tmp" "$out/libduckdb.so"
  python3 extension/append_metadata.py "$obj/openduck.so" "$out/openduck.duckdb_extension" linux_amd64 "v$version" "v0.1.0"
else
  # No -lduckdb: DuckDB's symbols stay undefined and resolve against the running DuckDB when the
  # loader stub opens this file.
  g++ -shared -o "$obj/openduck_impl.so" "${objects[@]}" "$staticlib" \
    -Wl,--exclude-libs,ALL -Wl,--gc-sections -lpthread -ldl -lm
  # Without -lduckdb the linker cannot report a DuckDB symbol the Python module does not export
  # (an internal one, or one from a header-only change); check here rather than at LOAD time.
  module="$("$OPENDUCK_VENV2/bin/python" -c 'import _duckdb; print(_duckdb.__file__)')"
  missing="$(comm -23 \
    <(nm -D --undefined-only "$obj/openduck_impl.so" | awk '{print $2}' | grep duckdb | sort -u) \
    <(nm -D --defined-only "$module" | awk '{print $3}' | sort -u))"
  if [ -n "$missing" ]; then
    echo "build-extension: DuckDB $version ($module) does not export these symbols the extension uses:" >&2
    c++filt <<<"$missing" >&2
    exit 1
  fi
  stub="$obj/loader.so"
  if [ ! -f "$stub" ] || [ extension/loader/loader.cpp -nt "$stub" ]; then
    g++ -std=c++17 -O2 -g0 -fPIC -fvisibility=hidden -shared -o "$stub" extension/loader/loader.cpp -ldl
  fi
  # Replaced by rename, so a process that has the old file loaded keeps a consistent copy.
  cp "$obj/openduck_impl.so" "$out/openduck_impl.so.tmp" && mv "$out/openduck_impl.so.tmp" "$out/openduck_impl.so"
  # The metadata footer is the same as in 1.5.5: DuckDB 2.0.0 checks the platform and, for the C++
  # ABI, that the DuckDB version field equals its own ("v2.0.0").
  python3 extension/append_metadata.py "$stub" "$out/openduck.duckdb_extension" linux_amd64 "v$version" "v0.1.0"
fi
echo "built $out/openduck.duckdb_extension" >&2
