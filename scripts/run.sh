#!/usr/bin/env bash
# Runs the server with the upload page on http://127.0.0.1:8080.
#
# With UPLOAD_S3_BUCKET set, it uses that bucket (AWS or any S3-compatible
# store; see docs/configuration.md). Without it, it starts a local Garage (a
# real S3-compatible store, built once with cargo) under ./data/garage and
# points the server at it, so no cloud account is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ -x scripts/build-wasm.sh ] && [ ! -f crates/upload-wasm/pkg/upload_wasm.js ]; then
  scripts/build-wasm.sh
fi
cargo build --release -p upload-server

if [ -z "${UPLOAD_S3_BUCKET:-}" ]; then
  if ! garage --version 2>/dev/null | grep -q '2\.5\.0'; then
    cargo install --locked garage --version 2.5.0 --no-default-features --features bundled-libs,sqlite
  fi
  dir=$(realpath -m data/garage)
  scripts/garage.sh stop "$dir"
  eval "$(scripts/garage.sh start "$dir")"
  trap 'scripts/garage.sh stop "$dir"' EXIT
  export UPLOAD_S3_BUCKET=$TEST_S3_BUCKET UPLOAD_S3_ENDPOINT=$TEST_S3_ENDPOINT UPLOAD_S3_FORCE_PATH_STYLE=true
  export UPLOAD_S3_REGION=$TEST_S3_REGION
fi
export UPLOAD_LISTEN=${UPLOAD_LISTEN:-127.0.0.1:8080}
target/release/upload-server bucket setup
target/release/upload-server serve
