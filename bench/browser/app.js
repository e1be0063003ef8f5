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

// The link benchmark (bench/link.mjs): every file selected, uploaded at once
// by each client with `concurrency` requests carrying bytes. `prepare` does
// what an app does at page load (our client's GET /config, loading Uppy), so
// the requests counted around `run` are the uploads' own.
const files = () => [...document.getElementById("files").files];
const prepared = {};
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

window.bench.prepare = async function (client, endpoint, concurrency, partSize) {
  if (client === "ours") {
    prepared.uploader = new Uploader({ endpoint, concurrency });
    await prepared.uploader.config();
  } else if (client === "uppy-companion") {
    const { Uppy, AwsS3 } = await import("/uppy5.js");
    const uppy = new Uppy({ autoProceed: false });
    // Companion as the signer, as Uppy's docs set it up; its defaults
    // (multipart above 100 MiB) except the parallelism and the part size,
    // which are every client's.
    uppy.use(AwsS3, { endpoint, limit: concurrency, getChunkSize: () => partSize });
    for (const f of files()) uppy.addFile({ name: f.name, type: f.type || "application/octet-stream", data: f });
    prepared.uppy = uppy;
  }
};

window.bench.run = async function (client, endpoint, concurrency) {
  const t0 = performance.now();
  if (client === "ours") {
    const records = await Promise.all(files().map((f) => prepared.uploader.upload(f, { meta: { bench: "ours" } }).done));
    return { ms: performance.now() - t0, files: records.length, bytes: sum(records.map((r) => r.size)) };
  }
  if (client === "uppy-companion") {
    const result = await prepared.uppy.upload();
    const ms = performance.now() - t0;
    if (!result || result.failed?.length) throw new Error(`uppy failed: ${result?.failed?.length} files, ${result?.failed?.[0]?.error}`);
    return { ms, files: result.successful.length, bytes: sum(result.successful.map((f) => f.size)) };
  }
  if (client === "raw") {
    const records = await rawFiles(endpoint, concurrency);
    return { ms: performance.now() - t0, files: records.length, bytes: sum(records.map((r) => r.size)) };
  }
  throw new Error(`unknown client ${client}`);
};

// The raw baseline in the page: our API's plan done with plain fetch, no
// library: `concurrency` files at once; a multipart file with `concurrency`
// parts in flight and part URLs asked for in batches of 2 x concurrency.
async function rawFiles(endpoint, concurrency) {
  const api = async (method, path, body) => {
    const r = await fetch(endpoint + path, {
      method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  };
  async function one(f) {
    const created = await api("POST", "/uploads", { name: f.name, size: f.size, type: f.type || "application/octet-stream" });
    const plan = created.upload;
    let body = {};
    if (plan.uploader === "S3") {
      const form = new FormData();
      for (const [k, v] of Object.entries(plan.fields)) form.append(k, v);
      form.append("file", f);
      const r = await fetch(plan.url, { method: plan.method || "POST", body: form });
      if (!r.ok) throw new Error(`form POST: ${r.status} ${await r.text()}`);
    } else if (plan.uploader === "S3Multipart") {
      const urls = new Map();
      const etags = [];
      let next = 1;
      const urlFor = (n) => {
        if (!urls.has(n)) {
          const nums = [];
          for (let k = n; k < n + 2 * concurrency && k <= plan.part_count; k++) nums.push(k);
          const batch = api("POST", `/uploads/${created.id}/parts`, { part_numbers: nums });
          for (const k of nums) urls.set(k, batch.then((r) => r.parts.find((p) => p.part_number === k)));
        }
        return urls.get(n);
      };
      const worker = async () => {
        while (next <= plan.part_count) {
          const n = next++;
          const start = (n - 1) * plan.part_size;
          const p = await urlFor(n);
          const r = await fetch(p.url, { method: p.method, headers: p.headers, body: f.slice(start, start + plan.part_size) });
          if (!r.ok) throw new Error(`part ${n}: ${r.status} ${await r.text()}`);
          etags.push({ part_number: n, etag: r.headers.get("etag") });
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      etags.sort((a, b) => a.part_number - b.part_number);
      body = { parts: etags };
    } else {
      throw new Error(`raw: no plan ${plan.uploader}`);
    }
    return (await api("POST", `/uploads/${created.id}/complete`, body)).file;
  }
  const list = files();
  const out = [];
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, async () => {
    while (i < list.length) out.push(await one(list[i++]));
  }));
  return out;
}
