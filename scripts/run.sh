#!/usr/bin/env bash
# Runs the server with the upload page, on a fresh clone, with no cloud
# account: builds the browser package and the server, then serves the page
# and the API on http://127.0.0.1:8080 (UPLOAD_LISTEN to change it).
#
# With no UPLOAD_S3_BUCKET it runs the embedded default: objects on local
# disk and metadata in SQLite under ./data (UPLOAD_DATA_DIR), development
# identity. With UPLOAD_S3_BUCKET (and credentials, see
# docs/configuration.md) it uses that bucket, after `bucket setup`.
# `scripts/run.sh --garage` runs against a local Garage instead (a real
# S3-compatible store, built once with cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-tools.sh
scripts/build-wasm.sh
cargo build --release -p upload-server

if [ "${1:-}" = "--garage" ] && [ -z "${UPLOAD_S3_BUCKET:-}" ]; then
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
if [ -n "${UPLOAD_S3_BUCKET:-}" ]; then
  target/release/upload-server bucket setup
fi
exec target/release/upload-server serve
