// `uploaders` for Phoenix LiveView and pyview: a plain object, so
// `{ ...window.Uploaders, ...uploaders }` keeps its functions, with one
// uploader per plan of upload-server's answers (S3, S3Multipart, Chunked).
// Each loads the package's module on first use (no `await init()` needed,
// so a <script type="module"> before the LiveView bundle can register them)
// and hands its entries to the Rust engine (src/liveview.rs). Hand-written
// because wasm-bindgen can neither export a plain object nor initialise a
// `--target web` module by itself; scripts/build-wasm.sh copies it into the
// package and re-exports it from the entry module.
let engine;
const load = () =>
  (engine ??= import("./upload_wasm.js").then(async (m) => (await m.default?.(), m)).catch((e) => {
    engine = undefined;
    throw e;
  }));

const uploader = (name) => (entries, onViewError) => {
  load().then(
    (m) => m.liveviewUpload(name, entries, onViewError),
    (e) => entries.forEach((entry) => entry.error(`the upload module did not load: ${e?.message ?? e}`)),
  );
};

export const uploaders = { S3: uploader("S3"), S3Multipart: uploader("S3Multipart"), Chunked: uploader("Chunked") };
