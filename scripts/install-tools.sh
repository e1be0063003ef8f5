#!/usr/bin/env bash
# Installs what the browser client's build and tests need; every step is
# skipped when the right version is already there, so CI can run it each time.
#   - rustup target wasm32-unknown-unknown
#   - wasm-bindgen-cli 0.2.130 (must equal the crate's pinned wasm-bindgen)
#   - wasm-pack 0.15.1
#   - Debian chromium and chromium-driver (headless browser tests)
#   - Debian haproxy (the load balancer of tests/e2e/cluster.mjs)
#   - tests/e2e node_modules (npm ci): playwright-core, and binaryen 132 for wasm-opt
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "install-tools: $*"; }

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "wasm32-unknown-unknown: present"
else
  rustup target add wasm32-unknown-unknown
fi

if [[ $(wasm-bindgen --version 2>/dev/null) == "wasm-bindgen 0.2.130" ]]; then
  say "wasm-bindgen 0.2.130: present"
else
  # No --locked: its lockfile wants a crate version the registry here lacks.
  cargo install wasm-bindgen-cli --version 0.2.130
fi

if [[ $(wasm-pack --version 2>/dev/null) == "wasm-pack 0.15.1" ]]; then
  say "wasm-pack 0.15.1: present"
else
  cargo install wasm-pack --version 0.15.1 --locked
fi

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  say "chromium, chromedriver: present"
else
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  "${sudo_cmd[@]}" apt-get install -y chromium chromium-driver
fi

if command -v haproxy >/dev/null; then
  say "haproxy: present"
else
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  # The package lists may be missing or stale on a fresh machine: update only then.
  "${sudo_cmd[@]}" apt-get install -y haproxy || { "${sudo_cmd[@]}" apt-get update && "${sudo_cmd[@]}" apt-get install -y haproxy; }
fi

e2e=$root/tests/e2e
if [[ -x $e2e/node_modules/.bin/wasm-opt ]] && "$e2e/node_modules/.bin/wasm-opt" --version | grep -q 'version 132' \
  && [[ -f $e2e/node_modules/playwright-core/package.json ]]; then
  say "tests/e2e node_modules (binaryen 132, playwright-core): present"
else
  (cd "$e2e" && npm ci --no-audit --no-fund)
fi
