#!/usr/bin/env bash
# Regenerates proto/src/generated/ from proto/openduck/v1/*.proto (needs protoc: installed here
# from Debian's protobuf-compiler when missing). The build itself never runs protoc.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -qq protobuf-compiler >/dev/null
fi
CARGO_TARGET_DIR="$OPENDUCK_CACHE/target-proto-gen" cargo run --quiet --manifest-path "$OPENDUCK_ROOT/proto/gen/Cargo.toml"
cargo fmt -p openduck-proto
