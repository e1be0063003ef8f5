#!/usr/bin/env bash
# Prints the size of the browser client as shipped (crates/upload-wasm/pkg,
# built by scripts/build-wasm.sh): the .wasm and the JS glue, raw and gzip -9.
# `--check` exits non-zero when wasm + glue exceed the budget (gzip bytes,
# BUDGET, default 23000: Uppy's core plus its S3 plugin).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pkg=${1:-}
[[ $pkg == --check ]] && pkg=
pkg=${pkg:-$root/crates/upload-wasm/pkg}
budget=${BUDGET:-23000}
check=false
for a in "$@"; do [[ $a == --check ]] && check=true; done
if [[ ! -f $pkg/upload_wasm_bg.wasm ]]; then
  echo "wasm-size: $pkg/upload_wasm_bg.wasm missing; run scripts/build-wasm.sh" >&2
  exit 1
fi
total_raw=0
total_gz=0
printf '%-28s %10s %10s\n' file raw gzip-9
# The glue is the entry module plus any inline JS snippets wasm-bindgen emitted.
while IFS= read -r f; do
  raw=$(stat -c %s "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw))
  total_gz=$((total_gz + gz))
  printf '%-28s %10d %10d\n' "${f#"$pkg"/}" "$raw" "$gz"
done < <(find "$pkg" -name 'upload_wasm_bg.wasm' -o -name 'upload_wasm.js' -o -path '*/snippets/*.js' | sort)
printf '%-28s %10d %10d  (budget %d gzip)\n' total "$total_raw" "$total_gz" "$budget"
if $check && ((total_gz > budget)); then
  echo "wasm-size: $total_gz bytes gzip is over the budget of $budget" >&2
  exit 1
fi
