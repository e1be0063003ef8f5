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
# Stops at the first failure; on any exit (the server stopping, Ctrl-C, a
# kill) it stops the server and the Garage it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

server_pid=
garage_dir=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$garage_dir" ]; then scripts/garage.sh stop "$garage_dir" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/install-tools.sh
scripts/build-wasm.sh
cargo build --release -p upload-server

if [ "${1:-}" = "--garage" ] && [ -z "${UPLOAD_S3_BUCKET:-}" ]; then
  scripts/garage.sh install
  garage_dir=$(realpath -m data/garage)
  # Not `eval "$(scripts/garage.sh start ...)"`: that goes on after a failed start.
  garage_env=$(scripts/garage.sh start "$garage_dir")
  eval "$garage_env"
  export UPLOAD_S3_BUCKET=$TEST_S3_BUCKET UPLOAD_S3_ENDPOINT=$TEST_S3_ENDPOINT UPLOAD_S3_FORCE_PATH_STYLE=true
  export UPLOAD_S3_REGION=$TEST_S3_REGION
fi
if [ -n "${UPLOAD_S3_BUCKET:-}" ]; then
  target/release/upload-server bucket setup
fi
# Not `exec`: the trap above must still run when the server stops. In the
# background (which ignores Ctrl-C) so that the traps forward it as SIGTERM,
# the server's graceful shutdown.
target/release/upload-server serve &
server_pid=$!
wait "$server_pid"
