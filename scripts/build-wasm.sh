#!/usr/bin/env bash
# Builds the browser client's npm package from crates/upload-wasm:
#   crates/upload-wasm/pkg          --target web      (ES module + init(), for <script type=module> and the e2e tests)
#   crates/upload-wasm/pkg-bundler  --target bundler  (for webpack, Vite, Rollup...)
# with the size profile `wasm-release` (opt-level z, LTO, 1 codegen unit,
# panic abort) and wasm-opt -Oz from the npm package binaryen@132 (Debian's
# binaryen is too old to read current rustc output); the hashes taken out of
# wasm-bindgen's generated names (crates/upload-wasm/tools/short-names.mjs);
# the JS (wasm-bindgen's glue and the one snippet, src/load_hash.js) is
# minified with terser, from crates/upload-wasm/tools (installed here with
# `npm ci` when missing).
# Tools: scripts/install-tools.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

wasm_opt=${WASM_OPT:-$root/tests/e2e/node_modules/.bin/wasm-opt}
if [[ ! -x $wasm_opt ]]; then
  echo "build-wasm: $wasm_opt not found; run scripts/install-tools.sh (npm ci in tests/e2e)" >&2
  exit 1
fi
if ! "$wasm_opt" --version | grep -q 'version 132'; then
  echo "build-wasm: $wasm_opt is not binaryen 132: $("$wasm_opt" --version)" >&2
  exit 1
fi
# wasm-pack would otherwise try to download a wasm-bindgen matching the crate's.
want=$(grep -E '^wasm-bindgen = "=' crates/upload-wasm/Cargo.toml | sed -E 's/.*"=([0-9.]+)".*/\1/')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')
if [[ $have != "$want" ]]; then
  echo "build-wasm: wasm-bindgen CLI is '${have:-missing}', the crate pins $want; run scripts/install-tools.sh" >&2
  exit 1
fi

tools=crates/upload-wasm/tools
if [[ ! -x $tools/node_modules/.bin/terser ]]; then
  (cd "$tools" && npm ci --no-audit --no-fund)
fi
terser=$root/$tools/node_modules/.bin/terser
for target in web bundler; do
  out=pkg
  [[ $target == bundler ]] && out=pkg-bundler
  # --no-opt: wasm-pack would pick whichever wasm-opt comes first on PATH;
  # we run the pinned one ourselves below.
  wasm-pack build --mode no-install --no-opt --profile wasm-release --target "$target" --out-dir "$out" crates/upload-wasm
  wasm="crates/upload-wasm/$out/upload_wasm_bg.wasm"
  # --low-memory-unused: rustc's wasm32 layout puts the 1 MiB stack first,
  # growing down to address 0, so the low 1 KiB is touched only by a stack
  # 1 MiB deep, which would overflow a moment later anyway; knowing it
  # lets wasm-opt fold address arithmetic into load/store offsets.
  "$wasm_opt" -Oz --converge --low-memory-unused --strip-debug --strip-producers --strip-target-features -o "$wasm.opt" "$wasm"
  mv "$wasm.opt" "$wasm"
  # wasm-bindgen's import and closure names without their hashes, in the
  # .wasm and its glue alike (tools/short-names.mjs says why).
  node "$tools/short-names.mjs" "$wasm" "crates/upload-wasm/$out"/upload_wasm*.js "crates/upload-wasm/$out"/*.d.ts
  # Minified as any shipped JS is (the sizes Uppy and others quote are
  # min + gzip); the .d.ts keeps the documentation. Class names are kept.
  # The lazily loaded part (checksums, resume): crates/upload-hash in $out/hash,
  # imported by src/load_hash.js as ../../../hash/upload_hash.js only when an
  # Uploader has `checksums` or `resume` on. Built for speed (opt-level 3, wasm-opt -O3):
  # SHA-256 at opt-level "z" runs at half the speed for ~600 bytes less.
  hash="crates/upload-wasm/$out/hash"
  rm -rf "$hash"
  CARGO_PROFILE_WASM_RELEASE_OPT_LEVEL=3 wasm-pack build --mode no-install --no-opt --profile wasm-release --target "$target" --out-dir "$root/$hash" crates/upload-hash
  "$wasm_opt" -O3 --strip-debug --strip-producers --strip-target-features -o "$hash/upload_hash_bg.wasm.opt" "$hash/upload_hash_bg.wasm"
  mv "$hash/upload_hash_bg.wasm.opt" "$hash/upload_hash_bg.wasm"
  rm -f "$hash/package.json" "$hash/.gitignore" "$hash/README.md"
  # The LiveView/pyview `uploaders` (a plain object that loads the module on
  # first use; see src/uploaders.js and uploaders.d.ts), exported by the entry module.
  cp crates/upload-wasm/src/uploaders.js "crates/upload-wasm/$out/uploaders.js"
  echo 'export { uploaders } from "./uploaders.js";' >>"crates/upload-wasm/$out/upload_wasm.js"
  cat crates/upload-wasm/src/uploaders.d.ts >>"crates/upload-wasm/$out/upload_wasm.d.ts"
  # npm publishes only the listed files: add the hash directory and uploaders.js.
  node -e 'const f=process.argv[1],p=JSON.parse(require("fs").readFileSync(f));for(const n of ["hash","uploaders.js"])p.files.includes(n)||p.files.push(n);require("fs").writeFileSync(f,JSON.stringify(p,null,2)+"\n")' "crates/upload-wasm/$out/package.json"
  while IFS= read -r js; do
    "$terser" "$js" --module --compress passes=2 --mangle --keep-classnames --comments '/@ts-self-types/' -o "$js.min"
    mv "$js.min" "$js"
  done < <(find "crates/upload-wasm/$out" -name '*.js')
done
echo "build-wasm: built crates/upload-wasm/pkg and crates/upload-wasm/pkg-bundler (with hash/)"
