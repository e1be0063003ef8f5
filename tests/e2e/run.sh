#!/usr/bin/env bash
# End-to-end tests of the browser client (see run.mjs). Needs: the built
# package (scripts/build-wasm.sh), the server binary (UPLOAD_SERVER_BIN,
# default target/debug/upload-server), node_modules here (npm ci), Chromium
# at /usr/bin/chromium, and either TEST_S3_* + AWS_* for a running store or
# `garage` on PATH. scripts/install-tools.sh installs the tools.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
if [[ ! -d $here/node_modules/playwright-core ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi
if [[ ! -f crates/upload-wasm/pkg/upload_wasm_bg.wasm || ! -f crates/upload-wasm/pkg/hash/upload_hash.js ]]; then
  bash scripts/build-wasm.sh
fi
# node's test runner, one file at a time (each starts its own servers and
# Chromium): a line per test, a summary per file, non-zero on any failure.
# Pass node options through, e.g. `bash tests/e2e/run.sh --test-name-pattern=cancel`.
run() { node --test --test-reporter=spec --test-force-exit "$@"; }
run "$@" "$here/run.mjs"
run "$@" "$here/page.mjs" # the upload page (www/) against the embedded default
# Faults: target/debug/fault-proxy (cargo build -p upload-tests --bins) between
# Chromium and a private Garage: resets, delays, the store down, a corrupted
# part, resume after a reload.
run "$@" "$here/faults.mjs"
# The pyview example (examples/pyview; pyview-web and its bundled LiveView
# client installed from PyPI into its .venv) through upload-server to Garage.
bash "$root/examples/pyview/setup.sh"
run "$@" "$here/pyview.mjs"
