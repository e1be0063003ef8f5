// The bench page: our client (the npm package built from crates/upload-wasm,
// served at /pkg/) and Uppy 5 @uppy/aws-s3 multipart with a few lines of glue
// to our own signing endpoints. Driven by bench/browser.mjs with page.evaluate.
import init, { Uploader } from "/pkg/upload_wasm.js";

const wasm = await init();
const file = () => document.getElementById("files").files[0];

// Peak of what the page holds while an upload runs, sampled every 20 ms.
const peak = { heap: 0, wasm: 0, timer: null };
function sample() {
  peak.heap = Math.max(peak.heap, performance.memory ? performance.memory.usedJSHeapSize : 0);
  peak.wasm = Math.max(peak.wasm, wasm.memory.buffer.byteLength);
}

window.bench = {
  memory() {
    return { heap: performance.memory ? performance.memory.usedJSHeapSize : null, wasm: wasm.memory.buffer.byteLength };
  },
  startSampling() {
    peak.heap = 0;
    peak.wasm = 0;
    sample();
    peak.timer = setInterval(sample, 20);
  },
  stopSampling() {
    clearInterval(peak.timer);
    sample();
    return { heap: peak.heap, wasm: peak.wasm };
  },

  async ours(endpoint, concurrency, checksums = false) {
    const f = file();
    const uploader = new Uploader(checksums ? { endpoint, concurrency, checksums: true } : { endpoint, concurrency });
    await uploader.config();
    const t0 = performance.now();
    const record = await uploader.upload(f, { meta: { bench: "ours" } }).done;
    return { ms: performance.now() - t0, id: record.id, size: record.size };
  },

  async uppy(endpoint, concurrency) {
    const { Uppy, AwsS3 } = await import("/uppy5.js");
    const api = async (method, path, body) => {
      const r = await fetch(endpoint + path, {
        method,
        headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
      return r.status === 204 ? null : r.json();
    };
    const config = await api("GET", "/config");
    const f = file();
    const uppy = new Uppy({ autoProceed: false });
    // The glue: Uppy's multipart hooks mapped onto our API.
    uppy.use(AwsS3, {
      shouldUseMultipart: true,
      limit: concurrency,
      getChunkSize: () => config.part_size,
      async createMultipartUpload(file) {
        const r = await api("POST", "/uploads", { name: file.name, size: file.size, type: file.type || "application/octet-stream" });
        return { uploadId: r.upload.upload_id, key: r.id };
      },
      async signPart(file, { key, partNumber }) {
        const r = await api("POST", `/uploads/${key}/parts`, { part_numbers: [partNumber] });
        return { method: "PUT", url: r.parts[0].url, headers: r.parts[0].headers };
      },
      async listParts(file, { key }) {
        const r = await api("GET", `/uploads/${key}`);
        return (r.parts || []).map((p) => ({ PartNumber: p.part_number, ETag: p.etag, Size: p.size }));
      },
      async completeMultipartUpload(file, { key, parts }) {
        const r = await api("POST", `/uploads/${key}/complete`, { parts: parts.map((p) => ({ part_number: p.PartNumber, etag: p.ETag })) });
        return { location: r.file.key, key: r.file.key, id: r.file.id, size: r.file.size };
      },
      async abortMultipartUpload(file, { key }) {
        await api("DELETE", `/uploads/${key}`);
      },
    });
    uppy.addFile({ name: f.name, type: f.type || "application/octet-stream", data: f });
    const t0 = performance.now();
    const result = await uppy.upload();
    const ms = performance.now() - t0;
    if (!result || result.failed?.length) throw new Error(`uppy failed: ${result?.failed?.[0]?.error}`);
    const body = result.successful[0].response.body;
    return { ms, id: body.id, size: body.size };
  },
};
document.getElementById("status").textContent = "ready";
