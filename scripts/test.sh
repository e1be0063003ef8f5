#!/usr/bin/env bash
# Runs every test: unit and property tests, the server against a real Garage,
# the browser client in headless Chromium, and the end-to-end flows.
# Installs what is missing first (Rust targets, Garage, wasm tools, Chromium),
# starts Garage on 127.0.0.1 with free ports, and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "tools"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# Garage: a real S3-compatible store for the tests (6-8 min to build, once per machine).
if ! garage --version 2>/dev/null | grep -q '2\.5\.0'; then
  cargo install --locked garage --version 2.5.0 --no-default-features --features bundled-libs,sqlite
fi
if [ -x scripts/install-tools.sh ]; then scripts/install-tools.sh; fi

step "build"
cargo build --workspace --all-targets
cargo build -p upload-core --target wasm32-unknown-unknown

step "unit and property tests (upload-core, upload-server)"
cargo test -p upload-core -p upload-server

step "start Garage"
garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/upload-garage.XXXXXX")
trap 'scripts/garage.sh stop "$garage_dir"; rm -rf "$garage_dir"' EXIT
eval "$(scripts/garage.sh start "$garage_dir")"

step "integration tests against Garage"
cargo test -p upload-tests

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
