// The raw baseline: the same multipart upload as the browser clients (our
// API, the server's part size, `concurrency` parts in flight, part URLs asked
// for in batches of 2 x concurrency), done by Node's fetch straight against
// the presigned part URLs, each part read from disk into one Buffer.
import fs from "node:fs";

async function api(base, method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

export async function rawUpload(base, filePath, concurrency, name = "raw.bin") {
  const size = fs.statSync(filePath).size;
  const t0 = performance.now();
  const created = await api(base, "POST", "/uploads", { name, size, type: "application/octet-stream" });
  const plan = created.upload;
  if (plan.uploader !== "S3Multipart") throw new Error(`expected a multipart plan, got ${plan.uploader}`);
  const fh = await fs.promises.open(filePath, "r");
  const urls = new Map();
  const etags = [];
  let next = 1;
  async function urlFor(n) {
    if (!urls.has(n)) {
      const nums = [];
      for (let k = n; k < n + 2 * concurrency && k <= plan.part_count; k++) nums.push(k);
      const batch = api(base, "POST", `/uploads/${created.id}/parts`, { part_numbers: nums });
      for (const k of nums) urls.set(k, batch.then((r) => r.parts.find((p) => p.part_number === k)));
    }
    return urls.get(n);
  }
  async function worker() {
    while (next <= plan.part_count) {
      const n = next++;
      const start = (n - 1) * plan.part_size;
      const len = Math.min(plan.part_size, size - start);
      const buf = Buffer.allocUnsafe(len);
      await fh.read(buf, 0, len, start);
      const p = await urlFor(n);
      const r = await fetch(p.url, { method: p.method, headers: p.headers, body: buf });
      if (!r.ok) throw new Error(`part ${n}: ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
      etags.push({ part_number: n, etag: r.headers.get("etag") });
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  await fh.close();
  etags.sort((a, b) => a.part_number - b.part_number);
  const done = await api(base, "POST", `/uploads/${created.id}/complete`, { parts: etags });
  return { ms: performance.now() - t0, id: done.file.id, size: done.file.size };
}
