#!/usr/bin/env bash
# Runs every test: unit and property tests, the server against a real Garage
# and a real PostgreSQL, the browser client in headless Chromium, and the
# end-to-end flows. Installs what is missing first (Rust targets, Garage, wasm
# tools, Chromium), starts Garage and a throw-away PostgreSQL cluster on
# 127.0.0.1 with free ports, and stops them at the end. Stops at the first
# failure; on any exit (failure, Ctrl-C, kill) it stops Garage and
# PostgreSQL and removes their temporary directories. The servers and browsers the
# tests start are the tests' own children and stop with them.
#
# `cargo test` alone runs everything that needs no outside service and lists
# each Garage or PostgreSQL test as ignored ("needs Garage", "needs Garage
# and PostgreSQL"); here they run (`cargo test -- --ignored` once both are
# up), so a store or database that is missing fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

garage_dir=
postgres_dir=
cleanup() {
  if [ -n "$garage_dir" ]; then
    scripts/garage.sh stop "$garage_dir" || true
    rm -rf "$garage_dir"
  fi
  if [ -n "$postgres_dir" ]; then
    scripts/postgres.sh stop "$postgres_dir" || true
    rm -rf "$postgres_dir"
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

# Every native cargo command below selects the same packages (the default
# members) and builds the tests: cargo then resolves one feature set and builds
# each dependency once. Selecting other packages (-p, --workspace, a plain
# `cargo build` without tests) resolves other features and builds a second copy
# of aws-sdk-s3 and its tree, a few GiB of target/ that filled a CI disk.
step "build"
cargo build --all-targets
cargo build -p upload-core --target wasm32-unknown-unknown

step "tests that need no outside service (unit, property, API on the embedded store)"
cargo test

step "start Garage"
garage_dir=$(mktemp -d "${TMPDIR:-/tmp}/upload-garage.XXXXXX")
# Not `eval "$(scripts/garage.sh start ...)"`: eval of the empty output of a
# failed start succeeds, and the tests would go on without a store.
garage_env=$(scripts/garage.sh start "$garage_dir")
eval "$garage_env"

step "start PostgreSQL"
postgres_dir=$(mktemp -d "${TMPDIR:-/tmp}/upload-postgres.XXXXXX")
postgres_env=$(scripts/postgres.sh start "$postgres_dir")
eval "$postgres_env"

step "tests against Garage and PostgreSQL (the ones \`cargo test\` lists as ignored)"
cargo test -- --ignored

step "browser client: unit tests in headless Chromium"
wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --mode no-install crates/upload-wasm
wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver --mode no-install crates/upload-hash

step "browser client: npm package build and size"
scripts/build-wasm.sh
scripts/wasm-size.sh

step "end to end: Chromium, the real server, Garage"
# target/debug/upload-server and target/debug/fault-proxy (tests/e2e/faults.mjs)
# are from the build step above.
bash tests/e2e/run.sh

step "past one machine: three Garage nodes, three servers on one database, haproxy; Chromium and a plain client"
# tests/e2e/cluster.mjs starts its own Garage cluster (scripts/garage.sh
# start-cluster), servers and haproxy, and stops them on any exit; it kills an
# instance and stops a Garage node on purpose. Its database is one of its own
# in the PostgreSQL started above (TEST_POSTGRES_URL). About a minute.
# Node's test runner as run.sh runs it; the package and node_modules are there from the steps above.
node --test --test-reporter=spec --test-force-exit tests/e2e/cluster.mjs

