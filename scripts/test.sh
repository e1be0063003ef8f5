#!/usr/bin/env bash
# Runs every test: unit and property tests, the server against a real Garage,
# the browser client in headless Chromium, and the end-to-end flows.
# Installs what is missing first (Rust targets, Garage, wasm tools, Chromium),
# starts Garage on 127.0.0.1 with free ports, and stops it at the end.
# Stops at the first failure; on any exit (failure, Ctrl-C, kill) it stops
# Garage and removes its temporary directory. The servers and browsers the
# tests start are the tests' own children and stop with them.
#
# `cargo test` alone runs everything that needs no outside service and lists
# each Garage test as "ignored, needs Garage"; here they run
# (`--include-ignored`), so a store that is missing fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

garage_dir=
cleanup() {
  if [ -n "$garage_dir" ]; then
    scripts/garage.sh stop "$garage_dir" || true
    rm -rf "$garage_dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "tools"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# Garage: a real S3-compatible store for the tests (6-8 min to build, once per machine).
scripts/garage.sh install
if [ -x scripts/install-tools.sh ]; then scripts/install-tools.sh; fi

step "build"
cargo build --workspace --all-targets
cargo build -p upload-core --target wasm32-unknown-unknown

step "unit and property tests (upload-core, upload-server)"
cargo test -p upload-core -p upload-server

step "start Garage"
garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/upload-garage.XXXXXX")
# Not `eval "$(scripts/garage.sh start ...)"`: eval of the empty output of a
# failed start succeeds, and the tests would go on without a store.
garage_env=$(scripts/garage.sh start "$garage_dir")
eval "$garage_env"

step "integration tests: the embedded store and Garage"
cargo test -p upload-tests -- --include-ignored

step "browser client: unit tests in headless Chromium"
wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --mode no-install crates/upload-wasm
wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --mode no-install crates/upload-hash

step "browser client: npm package build and size"
scripts/build-wasm.sh
scripts/wasm-size.sh

step "end to end: Chromium, the real server, Garage"
cargo build -p upload-server
cargo build -p upload-tests --bins # target/debug/fault-proxy for tests/e2e/faults.mjs
bash tests/e2e/run.sh
