// The one hand-written JS of the package: wasm-bindgen cannot express a
// dynamic `import()`, which keeps the hash module (crates/upload-hash, the
// package's hash/ directory) out of the page until an Uploader with
// `checksums` or `resume` starts its first upload. `default` is the
// `--target web` build's init (a bundler instantiates the module itself).
export const loadHash = () => import("../../../hash/upload_hash.js").then(async (m) => (await m.default?.(), m));
