// The plumbing of upload-wasm: fetch, XMLHttpRequest, timers, promises and
// the pool of request slots. Written by hand because a Rust async state
// machine per flow cost the .wasm three times what this file costs.
//
// scripts/build-wasm.sh shortens the names of Task's methods and fields
// listed in its `transport_private`: a new private name may join the list; a
// name used outside this file must never be in it.
//
// Every decision is Rust's (src/policy.rs), asked through `ask(op, ...)`:
// the constraint checks (upload-core's `UploadConstraints::check`), the part
// ranges (upload-core's `PartPlan`), the error codes of the API's and the
// store's failures, whether and when to retry, what progress may show. This
// file moves bytes, reads answers and waits.
//
// `fetch`, `XMLHttpRequest`, `setTimeout` and `performance` are looked up as
// globals at each use, so the client also runs in a Web Worker and the
// browser tests (src/test_mock.js) can stand in for them.

// Operations of `policy::dispatch` (same numbers there).
const CHECK = 0, META = 1, PARTS = 2, API_FAIL = 3, RETRY = 4, VERDICT = 5, SHOWN = 6;
// Verdicts on an answer of the store.
const OK = 0, AGAIN = 1, FORBIDDEN = 2;
// Retry modes: a store request already judged retryable; an idempotent API
// call; POST /uploads (only an explicit "not now" is retried).
const STORE = 0, YES = 1, IF_REFUSED = 2;
// Progress events are at most this far apart (ms).
const INTERVAL = 50;

let rs;
function ask(op, a, b, c, d) {
  const r = rs(op, a, b, c, d);
  if (r instanceof Error) throw r;
  return r;
}

/** The `UploadError` handed to the application (also made here for Rust). */
export const fail = (code, message, status) => Object.assign(new Error(message), status ? { code, status } : { code });
const aborted = () => fail("aborted", "the upload was cancelled");
const unreadable = () => fail("invalid_request", "the file cannot be read");
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(ms, 0)));
const now = () => performance.now();
const isFn = (f) => typeof f == "function";
const isObj = (o) => typeof o == "object" && o !== null;
const str = (v) => (typeof v == "string" ? v : undefined);
/** `o[k]`, or undefined when `o` is not an object. */
const get = (o, k) => (isObj(o) || isFn(o) ? o[k] : undefined);
/** A whole number of at most 2^53 - 1, or undefined. */
const whole = (v) => (Number.isSafeInteger(v) && v >= 0 ? v : undefined);
const bad = (field) => fail("internal", "the server's answer has no valid `" + field + "`");
/** `o[k]` when `ok` says so; else throws `err(k)`. */
function need(o, k, ok, err = bad) {
  const v = get(o, k), r = ok(v);
  if (r === undefined || r === false) throw err(k);
  return v;
}
/** `[name, value]` pairs of an object whose values are all strings; `err(name)` otherwise. */
function pairs(o, err) {
  const out = isObj(o) ? Object.entries(o) : [];
  for (const [k, v] of out) if (typeof v != "string") throw err(k);
  return out;
}
const call = (f, self, arg) => {
  // An exception in the application's callback is its own business.
  try {
    f.call(self, arg);
  } catch {}
};

/** A first-come first-served pool of `n` slots. */
function pool(n) {
  const waiters = [];
  return {
    take: () => (n > 0 ? (n--, Promise.resolve()) : new Promise((r) => waiters.push(r))),
    // A freed slot passes straight to the oldest waiter.
    give: () => (waiters.length ? waiters.shift()() : n++),
  };
}

/**
 * `path` under the endpoint (`/uploads`) or, as the server's complete_url,
 * absolute or rooted (`/api/v1/uploads/1/complete`): a rooted path that
 * already carries the endpoint's own path is resolved against its origin.
 */
export function resolveUrl(endpoint, path) {
  endpoint = endpoint.replace(/\/+$/, "");
  if (/^https?:\/\//.test(path)) return path;
  const m = /^([^:/]+:\/\/[^/]*)(\/.*)$/.exec(endpoint);
  return m && path.startsWith(m[2] + "/") ? m[1] + path : endpoint + path;
}

/** Calls to the upload API: JSON over fetch. */
function api(endpoint, token) {
  const a = {
    token,
    async call(method, path, body) {
      const headers = {};
      if (a.token) headers.Authorization = "Bearer " + a.token;
      const init = { method, headers };
      if (body) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      const url = resolveUrl(endpoint, path);
      let resp, text = "", json = null;
      try {
        resp = await fetch(url, init);
      } catch (e) {
        throw fail("network", `${method} ${url} failed: ${e?.message ?? e}`);
      }
      try {
        text = await resp.text();
        json = text ? JSON.parse(text) : null;
      } catch {}
      if (resp.status >= 200 && resp.status < 300) return json;
      throw ask(API_FAIL, resp.status, json, method + " " + url);
    },
    async retrying(method, path, body, mode, ctx) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await a.call(method, path, body);
        } catch (e) {
          const ms = ask(RETRY, e, mode, attempt, ctx.retry);
          if (ms < 0) throw e;
          await sleep(ms);
        }
      }
    },
  };
  return a;
}

const finished = (s) => s == "done" || s == "failed" || s == "cancelled";

/** One file's upload: state, requests in flight, progress. */
class Task {
  constructor(file, name, ctx, sink) {
    const size = file.size;
    // A Blob reports a whole number of bytes; NaN (not a Blob) becomes 0.
    this.size = size > 0 && size < Infinity ? Math.trunc(size) : 0;
    // Then bytes stored, bytes of requests in flight by key, the highest shown.
    Object.assign(this, { file, name, ctx, sink, id: undefined, state: "queued", xhrs: new Set(), wake: null,
      stored: 0, inflight: new Map(), shown: 0, lastEvent: "", lastEmit: 0, timer: false });
  }

  setState(state) {
    if (!finished(this.state)) {
      this.state = state;
      this.scheduleEmit();
    }
  }
  interrupted() {
    return this.state == "paused" || this.state == "cancelled";
  }
  pause() {
    if (this.state == "queued" || this.state == "uploading") {
      this.state = "paused";
      this.abortRequests();
    }
  }
  resume() {
    if (this.state == "paused") {
      this.state = "uploading";
      this.wakeUp();
    }
  }
  cancel() {
    if (!finished(this.state)) {
      this.state = "cancelled";
      this.abortRequests();
      this.wakeUp();
    }
  }
  fail() {
    if (!finished(this.state)) {
      this.state = "failed";
      this.abortRequests();
    }
  }
  /** The server has answered /complete: only now may progress say "done". */
  finish() {
    this.shown = this.size;
    this.state = "done";
  }
  wakeUp() {
    const w = this.wake;
    this.wake = null;
    if (w) w();
  }
  abortRequests() {
    // `abort` fires its event synchronously; copy the set first.
    const xhrs = [...this.xhrs];
    this.xhrs.clear();
    for (const x of xhrs) x.abort();
  }
  /** Waits while paused; fails with `aborted` once cancelled. */
  async checkpoint() {
    for (;;) {
      const s = this.state;
      if (s == "cancelled" || s == "failed") throw aborted();
      if (s != "paused") return;
      await new Promise((r) => (this.wake = r));
    }
  }

  // --- progress ---------------------------------------------------------
  setStored(bytes) {
    this.stored = bytes;
    this.inflight.clear();
    this.update();
  }
  addStored(key, bytes) {
    this.stored += bytes;
    this.inflight.delete(key);
    this.update();
  }
  setInflight(key, bytes) {
    this.inflight.set(key, bytes);
    this.update();
  }
  update() {
    let sum = this.stored;
    for (const b of this.inflight.values()) sum += b;
    const shown = ask(SHOWN, this.shown, sum, this.size);
    if (shown > this.shown) {
      this.shown = shown;
      this.scheduleEmit();
    }
  }
  /** Emits now, or once INTERVAL has passed since the last event. */
  scheduleEmit() {
    if (this.timer) return;
    const wait = this.lastEmit + INTERVAL - now();
    if (wait <= 0) return this.emit();
    this.timer = true;
    setTimeout(() => {
      this.timer = false;
      this.emit();
    }, wait);
  }
  /** The last event: never skipped, never too soon. */
  async emitFinal() {
    let wait;
    while ((wait = this.lastEmit + INTERVAL - now()) > 0 || this.timer) await sleep(Math.max(wait, 1));
    this.emit();
  }
  emit() {
    const { state, shown: loaded, size: total, sink } = this;
    const event = loaded + state;
    if (this.lastEvent == event) return;
    this.lastEvent = event;
    if (state == "cancelled" || state == "failed") return;
    if (isFn(sink)) call(sink, null, { loaded, total, state });
    else if (isFn(sink?.progress)) {
      // A LiveView entry: 100 means finished, so it is held back until then.
      const percent = total > 0 ? Math.floor((loaded * 100) / total) : 0;
      call(sink.progress, sink, state == "done" ? percent : Math.min(percent, 99));
    }
    // Counted from when the callback returned.
    this.lastEmit = now();
  }

  // --- requests carrying bytes ----------------------------------------
  /**
   * Sends one request with XMLHttpRequest (the only browser API that
   * reports upload progress). Resolves with the XHR once answered, or
   * "network" / "abort". `len`: the file's bytes in the body.
   */
  async send(key, len, method, url, headers, body) {
    if (this.interrupted()) return "abort";
    const xhr = new XMLHttpRequest();
    const up = xhr.upload;
    let sent;
    try {
      xhr.open(method, url, true);
      for (const [k, v] of headers) xhr.setRequestHeader(k, v);
    } catch {
      return "network";
    }
    // A form body is a little larger than the file: scale to the file's bytes.
    if (up) up.onprogress = (e) => this.setInflight(key, e.total > 0 ? (e.loaded / e.total) * len : Math.min(e.loaded, len));
    const ended = new Promise((r) => (xhr.onload = xhr.onerror = xhr.onabort = xhr.ontimeout = r));
    this.xhrs.add(xhr);
    this.setInflight(key, 0);
    try {
      xhr.send(body);
      const type = (await ended)?.type;
      sent = type == "load" ? xhr : type == "abort" ? "abort" : "network";
    } catch {
      sent = "network";
    }
    if (up) up.onprogress = null;
    this.xhrs.delete(xhr);
    if (sent !== xhr) this.inflight.delete(key);
    return this.interrupted() ? "abort" : sent;
  }

  /** send() with a slot of the shared pool held. */
  async sendPooled(key, len, method, url, headers, body, stop) {
    await this.ctx.slots.take();
    try {
      if (stop?.()) throw aborted();
      return await this.send(key, len, method, url, headers, body);
    } finally {
      this.ctx.slots.give();
    }
  }

  /** The verdict on a sent request: [OK, xhr] or [verdict, error]; `attempt`
   *  counts tries, and a retry waits here first. Throws when out of tries. */
  async judge(sent, what, ok308, attempt) {
    if (sent == "abort") throw aborted();
    const xhr = sent == "network" ? {} : sent;
    const [v, err] = ask(VERDICT, xhr.status || 0, xhr.responseText, what, ok308);
    if (v == OK || v == FORBIDDEN) return [v, err];
    if (v != AGAIN) throw err;
    const ms = ask(RETRY, err, STORE, attempt, this.ctx.retry);
    if (ms < 0) throw err;
    await sleep(ms);
    return [v, err];
  }
}

function slice(t, from, to) {
  try {
    return t.file.slice(from, to);
  } catch {
    throw unreadable();
  }
}

/** The S3 plan: a multipart form POST, every field, then the file last. */
async function s3Post(t, url, fields) {
  for (let attempt = 1; ; attempt++) {
    const form = new FormData();
    try {
      for (const [k, v] of fields) form.append(k, v);
      form.append("file", t.file, t.name);
    } catch {
      throw unreadable();
    }
    const sent = await t.sendPooled(0, t.size, "POST", url, [], form);
    const [v, err] = await t.judge(sent, "the form POST", false, attempt);
    if (v == OK) return t.addStored(0, t.size);
    // A refused checksum (bytes changed on the way) is tried again, as a part is.
    if (v == FORBIDDEN && (err.code != "checksum_mismatch" || ask(RETRY, err, STORE, attempt, t.ctx.retry) < 0)) throw err;
  }
}

/**
 * The S3Multipart plan: every part (`parts`, [offset, length] by part
 * number - 1) not yet in `etags`, `concurrency` at a time, recording each
 * part's ETag ("" when the store's CORS rules hide it).
 */
async function multipart(t, signer, parts, etags) {
  etags.length = parts.length;
  const queue = [];
  let stored = 0;
  parts.forEach(([, len], i) => (etags[i] == null ? queue.push(i + 1) : (stored += len)));
  t.setStored(stored);
  const run = { parts, signer, queue, urls: [], sums: [], signing: null, etags, error: null };
  // Wait for every worker, not just the first failure: no part may still be
  // on its way when the caller completes or deletes the upload.
  await Promise.all(Array.from({ length: Math.min(t.ctx.concurrency, queue.length) }, () => worker(t, run)));
  if (run.error) throw run.error;
  if (t.interrupted()) throw aborted();
}

async function worker(t, run) {
  while (!run.error && !t.interrupted() && run.queue.length) {
    try {
      await putPart(t, run, run.queue.shift());
    } catch (e) {
      run.error ||= e;
      // One part failing for good fails the file: stop the others now.
      if (!t.interrupted()) t.abortRequests();
      return;
    }
  }
}

async function putPart(t, run, n) {
  const [offset, len] = run.parts[n - 1];
  const body = slice(t, offset, offset + len);
  for (let attempt = 1; ; attempt++) {
    const signed = await urlFor(t, run, n, body);
    const sent = await t.sendPooled(n, len, "PUT", signed[0], signed[1], body, () => run.error);
    const [v, err] = await t.judge(sent, "part " + n, false, attempt);
    if (v == OK) {
      run.etags[n - 1] = sent.getResponseHeader("ETag") ?? "";
      return t.addStored(n, len);
    }
    if (v == FORBIDDEN) {
      // Most likely the URL expired while the part waited, or the store
      // refused the bytes (checksum_mismatch): read, hash, sign again.
      run.urls[n - 1] = run.sums[n - 1] = null;
      if (run.signer.urls || ask(RETRY, err, STORE, attempt, t.ctx.retry) < 0) throw err;
    }
  }
}

/** Part n's [url, headers]: cached, from a batch another worker is
 *  fetching, or from a new batch of this part and the next ones queued. */
async function urlFor(t, run, n, body) {
  const { urls, api, id, sum } = run.signer;
  // Checksums on: the part's SHA-256 (of `body`) is signed into its URL.
  if (sum) run.sums[n - 1] ||= await sum(body);
  if (urls) {
    if (urls[n - 1] == null) throw fail("invalid_request", "no URL for this part");
    return [urls[n - 1], []];
  }
  for (;;) {
    if (run.urls[n - 1]) return run.urls[n - 1];
    if (run.error || t.interrupted()) throw aborted();
    if (run.signing) {
      await run.signing;
      continue;
    }
    // With checksums, each part is signed alone, once hashed.
    const numbers = [n, ...run.queue.filter((q) => !sum && !run.urls[q - 1])].slice(0, t.ctx.batch);
    let done;
    run.signing = new Promise((r) => (done = r));
    try {
      const answer = await api.retrying("POST", `/uploads/${id}/parts`, { part_numbers: numbers, sha256: sum && { [n]: run.sums[n - 1] } }, YES, t.ctx);
      const signed = need(answer, "parts", Array.isArray).map((p) => [
        need(p, "part_number", whole),
        [need(p, "url", str), pairs(get(p, "headers"), () => bad("headers"))],
      ]);
      for (const [m, s] of signed) if (m >= 1 && m <= run.parts.length) run.urls[m - 1] = s;
    } finally {
      run.signing = null;
      done();
    }
    if (!run.urls[n - 1]) throw bad("parts");
  }
}

/** The Chunked plan: consecutive Content-Range PUTs to one session URL;
 *  a 308's Range header says where the next chunk starts. */
async function chunked(t, plan, resuming) {
  const total = t.size;
  let offset = resuming ? await storedOffset(t, plan) : 0;
  t.setStored(offset);
  for (let attempt = 1; offset < total; ) {
    const end = Math.min(offset + plan.chunk_size, total);
    const headers = [...plan.headers, ["Content-Range", `bytes ${offset}-${end - 1}/${total}`]];
    const sent = await t.sendPooled(0, end - offset, "PUT", plan.url, headers, slice(t, offset, end));
    const [v, err] = await t.judge(sent, "a chunk", true, attempt);
    if (v == FORBIDDEN) throw err;
    if (v == OK) {
      offset = nextOffset(sent, total);
      t.setStored(offset);
      attempt = 1;
    } else {
      attempt++;
      // Part of the chunk may have been stored before the failure.
      offset = await storedOffset(t, plan);
    }
  }
}

/** Where the session continues after an answer: 200/201, everything is
 *  stored; 308 with `Range: bytes=0-N`, N + 1 bytes; 308 without, none. */
function nextOffset(xhr, total) {
  if (xhr.status != 308) return total;
  const end = rangeEnd(xhr.getResponseHeader("Range"));
  return end === undefined ? 0 : Math.min(end + 1, total);
}

/** The last byte N of a `Range: bytes=0-N` header. */
export function rangeEnd(range) {
  const m = /^\s*bytes=\s*0\s*-\s*(\d{1,15})\s*$/.exec(range ?? "");
  return m ? Number(m[1]) : undefined;
}

/** Asks the session what it holds: an empty PUT with `bytes *\/total`. */
async function storedOffset(t, plan) {
  const headers = [...plan.headers, ["Content-Range", `bytes */${t.size}`]];
  for (let attempt = 1; ; attempt++) {
    const sent = await t.send(-1, 0, "PUT", plan.url, headers, null);
    const [v, err] = await t.judge(sent, "the session status", true, attempt);
    if (v == FORBIDDEN) throw err;
    if (v == OK) return nextOffset(sent, t.size);
  }
}

/** Sends the bytes by `plan`; returns, or throws (`aborted` on pause). */
function sendPlan(t, plan, signer, etags, resuming) {
  if (plan.fields) return s3Post(t, plan.url, plan.fields);
  if (plan.headers) return chunked(t, plan, resuming);
  return multipart(t, signer, plan.parts, etags);
}

/**
 * The `upload` object of the contract: `{url, fields}` (S3), `{parts}`
 * (S3Multipart: the part ranges, checked by Rust against the file), or
 * `{url, chunk_size, headers}` (Chunked).
 */
function planFrom(u, size) {
  const uploader = get(u, "uploader");
  const url = () => need(u, "url", str, () => bad("upload.url"));
  const list = (f) => pairs(get(u, f), () => bad(f));
  const n = (f) => need(u, f, whole);
  if (uploader == "S3") return { url: url(), fields: list("fields") };
  if (uploader == "S3Multipart") return { parts: ask(PARTS, size, n("part_size"), n("part_count")) };
  if (uploader == "Chunked") return { url: url(), chunk_size: Math.max(n("chunk_size"), 1), headers: list("headers") };
  throw bad("upload.uploader");
}

/** Records the parts `GET /uploads/{id}` says are stored in `etags`. */
function merge(status, etags) {
  const parts = get(status, "parts");
  if (Array.isArray(parts)) {
    for (const p of parts) {
      const n = whole(get(p, "part_number")), etag = get(p, "etag");
      // At most S3's 10,000 parts.
      if (n >= 1 && (n <= 1e4 || n <= etags.length) && typeof etag == "string") etags[n - 1] = etag;
    }
  }
}

/** The `parts` list of /complete, or `upload_incomplete` naming what is missing. */
function completed(etags) {
  const parts = [];
  for (let i = 0; i < etags.length; i++) {
    if (!etags[i]) throw fail("upload_incomplete", `part ${i + 1} has no ETag; the bucket's CORS rules must expose ETag`);
    parts.push({ part_number: i + 1, etag: etags[i] });
  }
  return parts;
}

/** One file from the check to the File record. */
async function run(t, sh, decl) {
  try {
    return await runInner(t, sh, decl);
  } catch (e) {
    const cancelled = t.state == "cancelled" || e.code == "aborted";
    t.fail();
    // Free the server's slot and the stored bytes; not after a network
    // failure (the server is out of reach, the upload may be resumed by id).
    // Its resume record (upload-hash's ext.js) goes too.
    if (t.id != null && (cancelled || e.code != "network")) {
      t.x?.forget(t.file);
      await sh.api.retrying("DELETE", "/uploads/" + t.id, null, YES, t.ctx).catch(() => {});
    }
    throw e;
  }
}

async function runInner(t, sh, decl) {
  if (decl.error) throw decl.error;
  const { api, ctx } = sh;
  // Same rules, same codes as the server: a refused file costs no request.
  const maxFiles = ask(CHECK, await sh.config(), t.name, t.size, decl.type);
  // The server's pending slots: a batch larger than max_files queues.
  const gate = (sh.files ||= pool(Math.max(maxFiles, 1)));
  await gate.take();
  try {
    await t.checkpoint();
    const body = { name: t.name, size: t.size, type: decl.type };
    if (decl.sha256 != null) body.sha256 = decl.sha256;
    body.meta = decl.meta;
    const create = () => api.retrying("POST", "/uploads", body, IF_REFUSED, ctx);
    // Checksums or resume on: src/ext.js of upload-hash (pkg/hash/) adds the
    // checksums, or answers GET /uploads/{id} of this file's earlier upload.
    const x = (t.x = await sh.x?.());
    const created = await (x ? x.start(t.file, body, sh, create) : create());
    const id = (t.id = need(created, "id", str));
    const completeUrl = str(get(created, "complete_url")) ?? `/uploads/${id}/complete`;
    let plan = planFrom(get(created, "upload"), t.size);
    await t.checkpoint();
    t.setState("uploading");
    const etags = [];
    merge(created, etags);
    const signer = { api, id, sum: x?.sum };
    for (let resuming = false; ; resuming = true) {
      try {
        await sendPlan(t, plan, signer, etags, resuming);
        break;
      } catch (e) {
        if (e.code != "aborted" || t.state != "paused") throw e;
        await t.checkpoint();
        // What is stored is the server's word, not ours: a part may have
        // landed after we stopped listening.
        const status = await api.retrying("GET", "/uploads/" + id, null, YES, ctx);
        merge(status, etags);
        plan = planFrom(get(status, "upload"), t.size);
      }
    }
    t.setState("completing");
    const complete = {};
    if (plan.parts) {
      for (let i = 0; i < etags.length; i++) {
        if (!etags[i]) {
          // The store's CORS rules hide ETag: ask the server, which lists the parts.
          merge(await api.retrying("GET", "/uploads/" + id, null, YES, ctx), etags);
          break;
        }
      }
      complete.parts = completed(etags);
    }
    const file = need(await api.retrying("POST", completeUrl, complete, YES, ctx), "file", isObj);
    x?.forget(t.file);
    t.finish();
    await t.emitFinal();
    return file;
  } finally {
    gate.give();
  }
}

/** A whole number from `o[k]` (default `d`), clamped to `lo..=hi`. */
const opt = (o, k, d, lo = 0, hi = Infinity) => Math.min(Math.max(whole(get(o, k)) ?? d, lo), hi);

/** What `new Uploader(options)` wraps. `maxSign`: most part URLs per signing request. */
export function makeUploader(o, policy, maxSign) {
  rs = policy;
  const endpoint = str(get(o, "endpoint"));
  if (!endpoint) throw fail("invalid_request", "endpoint is required");
  const concurrency = opt(o, "concurrency", 4, 1, 64);
  const ctx = {
    slots: pool(concurrency),
    concurrency,
    // Part URLs in batches of twice the parts in flight: enough to keep
    // going, few enough that URLs are fresh when used.
    batch: Math.min(concurrency * 2, maxSign),
    retry: [opt(o, "retries", 5, 1, 20), opt(o, "retryDelay", 500)],
  };
  const sh = { api: api(endpoint, str(get(o, "token"))), ctx, cfg: null, files: null };
  // The lazily loaded part (upload-hash), once, when asked for.
  if (o.checksums || o.resume) sh.x = () => (sh.xp ||= import("../../../hash/ext.js").then((m) => m.ext(o)));
  // GET /config, asked once; asked again by the next file if it failed.
  sh.config = async () => {
    const p = (sh.cfg ||= sh.api.retrying("GET", "/config", null, YES, ctx));
    try {
      return await p;
    } catch (e) {
      if (sh.cfg === p) sh.cfg = null;
      throw e;
    }
  };
  return {
    setToken: (token) => (sh.api.token = token),
    config: async () => {
      const config = await sh.config();
      ask(CHECK, config);
      return config;
    },
    upload(file, options) {
      const decl = {
        name: str(get(options, "name")) ?? str(get(file, "name")) ?? "blob",
        type: str(get(options, "type")) ?? str(get(file, "type")) ?? "",
        sha256: str(get(options, "sha256")),
      };
      try {
        const bad = (k) => fail("invalid_request", "meta value of `" + k + "` must be a string");
        const meta = pairs(get(options, "meta"), bad);
        ask(META, meta, decl.sha256);
        decl.meta = Object.fromEntries(meta);
      } catch (e) {
        decl.error = e;
      }
      const onProgress = get(options, "onProgress");
      const t = new Task(file, decl.name, ctx, isFn(onProgress) ? onProgress : null);
      let ended;
      const stopped = new Promise((r) => (ended = r));
      const done = run(t, sh, decl).finally(ended);
      return {
        done: () => done,
        id: () => t.id,
        state: () => t.state,
        loaded: () => t.shown,
        total: () => t.size,
        pause: () => t.pause(),
        resume: () => t.resume(),
        // Resolves once the requests are stopped and the server told.
        cancel: () => (t.cancel(), stopped),
      };
    },
  };
}

/** Calls method `m` of `o` (how the Rust classes reach these objects). */
export const invoke = (o, m, a, b) => o[m](a, b);

// One pool for every LiveView upload on the page, as an Uploader has.
let lvCtx;

/** LiveView's / pyview's uploaders: `kind` is "S3" or "S3Multipart". */
export function liveview(kind, entries, onViewError, policy) {
  rs = policy;
  lvCtx ||= { slots: pool(4), concurrency: 4, batch: 8, retry: [5, 500] };
  for (const entry of entries) {
    const file = entry?.file;
    const t = new Task(file, typeof file?.name == "string" ? file.name : "blob", lvCtx, entry);
    // The view crashed or navigated away: stop sending.
    if (isFn(onViewError)) call(onViewError, null, () => t.cancel());
    (async () => {
      t.setState("uploading");
      try {
        const meta = get(entry, "meta");
        const missing = (k) => fail("invalid_request", "entry.meta." + k + " is missing");
        if (kind == "S3") {
          const url = need(meta, "url", str, missing);
          const bad = (k) => fail("invalid_request", `entry.meta.fields.${k} must be a string`);
          await s3Post(t, url, pairs(get(meta, "fields"), bad));
        } else {
          const partSize = need(meta, "part_size", whole, missing);
          const count = whole(get(meta, "part_count")) ?? Math.ceil(t.size / Math.max(partSize, 1));
          const parts = ask(PARTS, t.size, partSize, count);
          const token = str(get(meta, "token"));
          let urls = get(meta, "urls"), a, signer, complete = str(get(meta, "complete_url"));
          if (Array.isArray(urls)) {
            // URLs handed over up front (an app's presigner); a 403 is final.
            signer = { urls: urls.filter((u) => typeof u == "string") };
            if (complete == null) throw missing("complete_url");
            a = api("", token);
          } else {
            const endpoint = str(get(meta, "endpoint"));
            if (endpoint == null) throw fail("invalid_request", "entry.meta needs urls or endpoint");
            const id = need(meta, "id", str, missing);
            complete ??= `/uploads/${id}/complete`;
            signer = { api: (a = api(endpoint, token)), id };
          }
          const etags = [];
          await multipart(t, signer, parts, etags);
          await a.retrying("POST", complete, { parts: completed(etags) }, YES, lvCtx);
        }
        t.finish();
        await t.emitFinal();
      } catch (e) {
        const cancelled = t.state == "cancelled";
        t.fail();
        if (!cancelled && isFn(entry?.error)) call(entry.error, entry, e.message);
      }
    })();
  }
}
