#!/usr/bin/env bash
# Runs every fuzz target of upload-core for SECONDS each (default 20; CI
# passes a short time, run longer by hand: scripts/fuzz.sh 600).
# cargo fuzz drives libFuzzer; the machine's toolchain is stable, so the
# nightly-only flags it needs are unlocked with RUSTC_BOOTSTRAP, and no
# sanitizer is used (safe Rust only; the targets assert invariants instead).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds=${1:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
done
echo "fuzz: no crash"
