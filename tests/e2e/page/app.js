// The test page: imports the built package (crates/upload-wasm/pkg) the way
// an app does, and keeps uploads in a registry the tests drive with
// page.evaluate (JS objects do not survive between evaluate calls).
import init, { Uploader } from "/pkg/upload_wasm.js";

await init();

const uploads = new Map();
let nextHandle = 1;

window.e2e = {
  uploader: null,
  create(options) {
    this.uploader = new Uploader(options);
    return this.uploader.config();
  },
  /** An Uploader with only the app's own creation step: `window.appCreate`, which the test provides. */
  createThroughApp(options) {
    this.uploader = new Uploader({ ...options, create: (request) => window.appCreate(request) });
  },
  /** Starts uploading input file `index` (`options`: more of `upload()`'s options); returns a handle. */
  start(index, meta = {}, options = {}) {
    const file = document.getElementById("files").files[index];
    const rec = { events: [], result: null, error: null, settled: false };
    rec.upload = this.uploader.upload(file, { ...options, meta, onProgress: (p) => rec.events.push({ ...p, at: performance.now(), date: Date.now() }) });
    rec.upload.done.then(
      (file) => Object.assign(rec, { result: file, settled: true }),
      (e) => Object.assign(rec, { error: { code: e.code, message: e.message, status: e.status }, settled: true }),
    );
    const handle = nextHandle++;
    uploads.set(handle, rec);
    return handle;
  },
  /** Starts every input file in one loop, as an app does with a folder; `options[i]` for file i. */
  startAll(meta = {}, options = {}) {
    const n = document.getElementById("files").files.length;
    return Array.from({ length: n }, (_, i) => this.start(i, meta, options[i] ?? {}));
  },
  info(handle) {
    const rec = uploads.get(handle);
    const u = rec.upload;
    return { id: u.id, state: u.state, loaded: u.loaded, total: u.total, settled: rec.settled, result: rec.result, error: rec.error, events: rec.events };
  },
  pause(handle) {
    uploads.get(handle).upload.pause();
  },
  resume(handle) {
    uploads.get(handle).upload.resume();
  },
  cancel(handle) {
    return uploads.get(handle).upload.cancel();
  },
};
document.getElementById("status").textContent = "ready";
