// A stand-in for the upload API and an object store, for the browser unit
// tests (src/tests.rs). It replaces `fetch` and `XMLHttpRequest` on
// globalThis, so the client's real request code runs unchanged; the
// end-to-end tests (tests/e2e) run the same client against the real server.

const API = "http://api.test/api/v1";
const STORE = "http://store.test";

export function makeFile(size, name, type) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
  return new File([bytes], name, { type });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export function installMock(options = {}) {
  const m = {
    config: {
      constraints: { max_file_size: 1 << 20, max_files: 10, accept: [] },
      multipart_threshold: 1 << 30,
      part_size: 100,
      ...(options.config || {}),
    },
    plan: options.plan || "S3",
    partSize: options.partSize || 100,
    chunkSize: options.chunkSize || 256,
    // Chunked: the store keeps at most this many bytes of a chunk, once.
    chunkShortBy: options.chunkShortBy || 0,
    stepMs: options.stepMs ?? 2,
    // How long a complete (single or batch) takes to answer: longer makes
    // the ones that arrive meanwhile gather whatever the machine's load.
    completeMs: options.completeMs ?? 1,
    log: [],
    faults: [], // {part, status | "network", times, code? (the store's <Code>)}
    expired: new Set(options.expireParts || []), // parts whose first URL the store refuses (403)
    sign: {}, // part number -> times signed
    uploads: {},
    inflight: 0,
    maxInflight: 0,
    completeAnsweredAt: 0,
    createStatus: options.createStatus || null,
    events: [],
    appCreated: [], // what an app's create step was handed (appCreate)
    noBatch: !!options.noBatch, // a server without the batch routes
    refuse: options.refuse || {}, // name -> {status, code, times}: create refused
    batches: [], // {route, size} of every batch request answered
    batchUnavailable: options.batchUnavailable || 0, // batch creates answered 503 as a whole first
  };
  let nextId = 1;
  const store = {}; // key -> { parts: {n: {size, etag}}, object: size, chunk: bytes }

  const json = (status, body) =>
    new Response(body === null ? null : JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json" },
    });
  const err = (status, code) => json(status, { error: { code, message: `mock ${code}` } });

  function planFor(u) {
    if (u.plan === "S3") return { uploader: "S3", method: "POST", url: `${STORE}/bucket`, fields: { key: u.key, policy: "p", "Content-Type": u.type } };
    if (u.plan === "Chunked") return { uploader: "Chunked", url: `${STORE}/session/${u.id}`, chunk_size: m.chunkSize, headers: { "x-session": u.id } };
    const plan = { uploader: "S3Multipart", upload_id: `mp-${u.id}`, part_size: m.partSize, part_count: Math.ceil(u.size / m.partSize) };
    return u.sums ? { ...plan, part_checksums: true } : plan;
  }
  function storedParts(u) {
    const parts = store[u.key]?.parts || {};
    return Object.keys(parts).map(Number).sort((a, b) => a - b).map((n) => ({ part_number: n, etag: parts[n].etag, size: parts[n].size }));
  }

  // One create or complete as [status, body]: the single routes answer it,
  // the batch routes put the body in their list.
  const errBody = (code, status = 400) => [status, { error: { code, message: `mock ${code}` } }];
  const answer = ([status, body]) => json(status, body);
  function createOne(body) {
    if (m.createStatus) return errBody(m.createStatus[1], m.createStatus[0]);
    // Refused by name, as the server refuses what the client's own check let through.
    const refused = m.refuse[body.name];
    if (refused && refused.times-- > 0) return errBody(refused.code, refused.status);
    const id = `u${nextId++}`;
    const u = { id, key: `k/${id}/${body.name}`, name: body.name, size: body.size, type: body.type ?? "", meta: body.meta ?? {}, plan: body.uploader || m.plan, sums: !!body.part_checksums, state: "pending" };
    m.uploads[id] = u;
    store[u.key] = { parts: {}, object: 0, chunk: 0 };
    const upload = planFor(u);
    return [201, {
      uploader: upload.uploader, id, key: u.key, expires_at: "2099-01-01T00:00:00Z", upload,
      complete_url: `/api/v1/uploads/${id}/complete`, endpoint: API, token: `scoped-${id}`, token_expires_at: "2099-01-01T01:00:00Z",
    }];
  }
  function completeOne(u, body) {
    const s = store[u.key];
    let size = s.object;
    if (u.plan === "S3Multipart") {
      const count = Math.ceil(u.size / m.partSize);
      const given = body.parts || [];
      const ok = given.length === count && given.every((p, i) => p.part_number === i + 1 && s.parts[p.part_number]?.etag === p.etag);
      if (!ok) return errBody("upload_incomplete", 409);
      size = given.reduce((a, p) => a + s.parts[p.part_number].size, 0);
    } else if (u.plan === "Chunked") size = s.chunk;
    if (size !== u.size) return errBody("upload_mismatch", 422);
    u.state = "completed";
    m.completeAnsweredAt = performance.now();
    return [200, { file: { id: u.id, name: u.name, size, type: u.type, key: u.key, sha256: null, meta: u.meta, created_at: "now", owner: "anonymous" } }];
  }

  async function api(method, path, body) {
    await sleep(method === "POST" && path.endsWith("/complete") ? m.completeMs : 1);
    let mt;
    if (method === "GET" && path === "/config") return json(200, m.config);
    if (method === "POST" && path === "/uploads") return answer(createOne(body));
    // The batch routes (absent with `noBatch`, as on a server from before
    // them: axum answers 405 for POST on /uploads/{id}, and the single
    // complete route 404 for an upload named "batch").
    if (method === "POST" && path === "/uploads/batch") {
      if (m.noBatch) return err(405, "method_not_allowed");
      m.batches.push({ route: "create", size: body.files.length });
      if (m.batchUnavailable-- > 0) return err(503, "storage_unavailable");
      return json(200, { uploads: body.files.map((f) => createOne(f)[1]) });
    }
    if (method === "POST" && path === "/uploads/batch/complete") {
      if (m.noBatch) return err(404, "not_found");
      m.batches.push({ route: "complete", size: body.uploads.length });
      const one = (c) => (m.uploads[c.id] ? completeOne(m.uploads[c.id], c) : errBody("not_found", 404));
      return json(200, { files: body.uploads.map((c) => one(c)[1]) });
    }
    if ((mt = path.match(/^\/uploads\/(\w+)(\/parts|\/complete)?$/))) {
      const u = m.uploads[mt[1]];
      if (!u) return err(404, "not_found");
      if (method === "POST" && mt[2] === "/parts") {
        // As the server: an upload created with part_checksums needs every part's SHA-256.
        if (u.sums && !body.part_numbers.every((n) => body.sha256?.[n])) return err(400, "invalid_request");
        return json(200, {
          parts: body.part_numbers.map((n) => {
            m.sign[n] = (m.sign[n] || 0) + 1;
            return { part_number: n, method: "PUT", url: `${STORE}/mp/${u.id}?partNumber=${n}&v=${m.sign[n]}`, headers: { "x-signed": "1" }, expires_at: "2099-01-01T00:00:00Z" };
          }),
        });
      }
      if (method === "POST" && mt[2] === "/complete") return answer(completeOne(u, body || {}));
      if (method === "GET") return json(200, { id: u.id, state: u.state, name: u.name, size: u.size, type: u.type, key: u.key, expires_at: "", upload: planFor(u), parts: storedParts(u) });
      if (method === "DELETE") {
        u.state = "aborted";
        store[u.key] = { parts: {}, object: 0, chunk: 0 };
        return new Response(null, { status: 204 });
      }
    }
    return err(400, "invalid_request");
  }

  globalThis.fetch = async (url, init = {}) => {
    // The client hands fetch a Request (gloo-net builds one); read it as
    // fetch itself would.
    if (url instanceof Request) {
      const body = url.method === "GET" || url.method === "HEAD" ? "" : await url.text();
      init = { method: url.method, headers: { Authorization: url.headers.get("Authorization") ?? undefined }, body };
      url = url.url;
    }
    const method = init.method || "GET";
    if (!url.startsWith(API) && !url.startsWith("http://api.test/api/v1")) throw new TypeError("Failed to fetch");
    const path = url.slice(API.length);
    m.log.push({ kind: "api", method, path, auth: init.headers?.Authorization, at: performance.now() });
    const resp = await api(method, path, init.body ? JSON.parse(init.body) : null);
    return resp;
  };

  // The store's side of one request: [status, headers, body, storedBytes].
  function storeAnswer(x, body) {
    const url = new URL(x.url);
    if (x.method === "POST" && url.pathname === "/bucket") {
      const keys = [...body.keys()];
      if (keys[keys.length - 1] !== "file") return [400, {}, "<Error><Code>InvalidArgument</Code></Error>"];
      const file = body.get("file");
      const key = body.get("key");
      store[key].object = file.size;
      return [204, {}, ""];
    }
    let mt;
    if (x.method === "PUT" && (mt = url.pathname.match(/^\/mp\/(\w+)$/))) {
      const n = Number(url.searchParams.get("partNumber"));
      const v = Number(url.searchParams.get("v"));
      if (m.expired.has(n) && v === 1) return [403, {}, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"];
      if (x.headers["x-signed"] !== "1") return [403, {}, "<Error><Code>SignatureDoesNotMatch</Code></Error>"];
      const u = m.uploads[mt[1]];
      const etag = `"etag-${n}-${body.size}"`;
      store[u.key].parts[n] = { size: body.size, etag };
      return [200, { etag }, ""];
    }
    if (x.method === "PUT" && (mt = url.pathname.match(/^\/session\/(\w+)$/))) {
      const u = m.uploads[mt[1]];
      const s = store[u.key];
      const range = x.headers["content-range"] || "";
      const r = range.match(/^bytes (\d+)-(\d+)\/(\d+)$/);
      if (r) {
        const [a, b] = [Number(r[1]), Number(r[2])];
        if (a !== s.chunk || b - a + 1 !== body.size) return [400, {}, "bad range"];
        let end = b + 1;
        if (m.chunkShortBy && end < u.size) {
          end -= m.chunkShortBy; // keep less than was sent, once
          m.chunkShortBy = 0;
        }
        s.chunk = end;
      } else if (!/^bytes \*\/\d+$/.test(range)) return [400, {}, "bad range"];
      if (s.chunk >= u.size) return [201, {}, ""];
      return [308, s.chunk > 0 ? { range: `bytes=0-${s.chunk - 1}` } : {}, ""];
    }
    return [404, {}, "<Error><Code>NoSuchKey</Code></Error>"];
  }

  class FakeXhr {
    constructor() {
      this.headers = {};
      this.status = 0;
      this.responseText = "";
      this.respHeaders = {};
      this.upload = { onprogress: null };
      this.timers = [];
      this.done = false;
    }
    open(method, url) {
      this.method = method;
      this.url = url;
    }
    setRequestHeader(k, v) {
      this.headers[k.toLowerCase()] = v;
    }
    getResponseHeader(k) {
      return this.respHeaders[k.toLowerCase()] ?? null;
    }
    send(body) {
      const size = body == null ? 0 : body instanceof FormData ? body.get("file").size : body.size;
      const url = new URL(this.url);
      const entry = { kind: "store", method: this.method, path: url.pathname, part: Number(url.searchParams.get("partNumber")) || 0, size, headers: { ...this.headers }, at: performance.now() };
      m.log.push(entry);
      m.inflight++;
      m.maxInflight = Math.max(m.maxInflight, m.inflight);
      const fault = m.faults.find((f) => f.times > 0 && f.part === entry.part && (f.method || "PUT") === this.method);
      const steps = 4;
      for (let i = 1; i <= steps; i++) {
        this.timers.push(setTimeout(() => {
          if (this.done) return;
          this.upload.onprogress?.({ loaded: (size * i) / steps, total: size, lengthComputable: true });
          if (i < steps) return;
          this.finish(() => {
            if (fault) {
              fault.times--;
              if (fault.status === "network") return "error";
              this.status = fault.status;
              this.responseText = `<Error><Code>${fault.code || "ServiceUnavailable"}</Code></Error>`;
              return "load";
            }
            const [status, headers, text] = storeAnswer(this, body);
            this.status = status;
            this.respHeaders = headers;
            this.responseText = text;
            return "load";
          });
        }, m.stepMs * i));
      }
    }
    finish(outcome) {
      if (this.done) return;
      this.done = true;
      m.inflight--;
      const type = outcome();
      const handler = this["on" + type];
      handler?.({ type });
    }
    abort() {
      this.timers.forEach(clearTimeout);
      this.finish(() => "abort");
    }
  }
  globalThis.XMLHttpRequest = FakeXhr;

  m.storeRequests = () => m.log.filter((e) => e.kind === "store");
  m.apiRequests = (method, re) => m.log.filter((e) => e.kind === "api" && e.method === method && re.test(e.path));
  m.putsOf = (n) => m.log.filter((e) => e.kind === "store" && e.part === n).length;
  m.storedPartNumbers = (id) => (m.uploads[id] ? storedParts(m.uploads[id]).map((p) => p.part_number) : []);
  // Progress callback that records every event with its time.
  m.onProgress = (p) => m.events.push({ loaded: p.loaded, total: p.total, state: p.state, at: performance.now() });
  return m;
}

// A stand-in for the package's hash/ module (crates/upload-hash): `sum`
// answers a made-up digest after `ms`, and every call is kept in `m.sums`
// ({size, start, end}), with the most running at once in `m.maxHashing`.
export function hashModule(m, ms) {
  m.sums = [];
  m.hashing = 0;
  m.maxHashing = 0;
  return {
    async sum(blob) {
      const call = { size: blob.size, start: performance.now(), end: 0 };
      m.sums.push(call);
      m.hashing++;
      m.maxHashing = Math.max(m.maxHashing, m.hashing);
      await sleep(ms);
      m.hashing--;
      call.end = performance.now();
      return "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    },
    recall: () => undefined,
    remember() {},
    forget() {},
  };
}

// A LiveView upload entry as Phoenix hands it to an uploader.
// What an app's server gets from POST /uploads for `file` (with its user's
// token) and passes on to the page as a LiveView entry's meta.
export async function createAnswer(file, extra = {}) {
  const r = await fetch(`${API}/uploads`, {
    method: "POST",
    headers: { Authorization: "Bearer user-token", "Content-Type": "application/json" },
    body: JSON.stringify({ name: file.name, size: file.size, type: file.type, ...extra }),
  });
  return r.json();
}

// An app's `create` step for `new Uploader({create})`: its server (here,
// this function with the app's session) creates the upload and hands
// upload-server's answer back unchanged, errors included.
export function appCreate(m) {
  return async (request) => {
    m.appCreated.push(request);
    const r = await fetch(`${API}/uploads`, {
      method: "POST",
      headers: { Authorization: "Bearer app-session", "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    return r.json();
  };
}

export function makeEntry(file, meta) {
  const entry = {
    file,
    meta,
    progresses: [],
    errors: [],
    progress(p) {
      this.progresses.push(p);
    },
    error(e) {
      this.errors.push(e);
    },
  };
  return entry;
}

// Resolves once `pred()` holds (checked every 2 ms), or rejects after `ms`.
export async function until(pred, ms = 5000) {
  const start = performance.now();
  while (!pred()) {
    if (performance.now() - start > ms) throw new Error("timed out waiting");
    await sleep(2);
  }
}
