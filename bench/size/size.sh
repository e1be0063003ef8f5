#!/usr/bin/env bash
# Client size: each peer bundled with esbuild --bundle --minify (ES module,
# browser platform), raw and gzip -9; our wasm + glue as scripts/wasm-size.sh
# counts it. Prints "name raw gzip" lines.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/../out/size}
mkdir -p "$out"
esbuild=$here/../node_modules/.bin/esbuild
for peer in upchunk tus uppy; do
  "$esbuild" "$here/$peer.js" --bundle --minify --format=esm --platform=browser --log-level=warning --outfile="$out/$peer.min.js"
  printf '%s %d %d\n' "$peer" "$(stat -c %s "$out/$peer.min.js")" "$(gzip -9 -c "$out/$peer.min.js" | wc -c)"
done
# Uppy 5 (@uppy/core 5.2.0 + @uppy/aws-s3 5.1.0), the version the browser benchmark drives.
(cd "$here/../uppy5" && "$esbuild" entry.js --bundle --minify --format=esm --platform=browser --log-level=warning --outfile="$out/uppy5.min.js")
printf '%s %d %d\n' uppy5 "$(stat -c %s "$out/uppy5.min.js")" "$(gzip -9 -c "$out/uppy5.min.js" | wc -c)"
