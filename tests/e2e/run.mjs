// End-to-end tests: the built package (crates/upload-wasm/pkg) in headless
// Chromium, through the real upload-server, to a real S3-compatible store
// (Garage), with a fault-injecting proxy in front of the store.
//
// Environment: UPLOAD_SERVER_BIN (default target/debug/upload-server);
// TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_S3_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY for a store someone else started (scripts/test.sh),
// or none of them and `garage` on PATH: a private Garage is started.
// Runs on node's test runner: `node --test run.mjs`
// (`--test-name-pattern=<regex>` for some of the tests).
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { freePort, storeFromEnvOrGarage, startProxy, startServer, startStatic } from "./servers.mjs";
import { MiB, assert, assertEq, makeFileIn, sleep, suite } from "./util.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "upload-e2e-"));
const cleanups = [];

const makeFile = (name, size) => makeFileIn(tmp, name, size);

// Set up once for every test (the `setup` hook below).
let proxy, server, page, api;
const pageErrors = [];
const requests = [];
/** What the page's `create` step handed the app (see `appCreate`). */
const appCreated = [];
let small, big, mid, five, tooBig, wrongType;

const { setup } = suite("e2e", tmp, cleanups, {
  check: () => assertEq(pageErrors.length, 0, `page errors ${pageErrors.join("; ")}`),
  onFailure: async () => {
    pageErrors.length = 0;
  },
});

setup(async () => {
  const bin = path.resolve(root, process.env.UPLOAD_SERVER_BIN || "target/debug/upload-server");
  assert(fs.existsSync(bin), `${bin} not found: cargo build -p upload-server`);
  const pkg = path.join(root, "crates/upload-wasm/pkg");
  assert(fs.existsSync(path.join(pkg, "upload_wasm_bg.wasm")), "crates/upload-wasm/pkg missing: scripts/build-wasm.sh");

  let store;
  store = await storeFromEnvOrGarage(path.join(tmp, "garage"), cleanups);
  proxy = await startProxy(store.endpoint);
  cleanups.push(proxy.close);
  const site = await startStatic({ "/pkg/": pkg, "/": path.join(here, "page") });
  cleanups.push(site.close);
  const apiPort = await freePort();
  const env = {
    ...process.env,
    UPLOAD_LISTEN: `127.0.0.1:${apiPort}`,
    UPLOAD_DATA_DIR: path.join(tmp, "server"),
    UPLOAD_S3_BUCKET: store.bucket,
    // Everything the server signs points at the proxy, so the tests see
    // (and can break) every request the browser sends to the store.
    UPLOAD_S3_ENDPOINT: proxy.url,
    UPLOAD_S3_REGION: store.region,
    UPLOAD_S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: store.accessKey,
    AWS_SECRET_ACCESS_KEY: store.secretKey,
    UPLOAD_CORS_ORIGINS: site.origin,
    UPLOAD_MAX_FILE_SIZE: String(200 * MiB),
    UPLOAD_MAX_FILES: "20",
    UPLOAD_MULTIPART_THRESHOLD: String(16 * MiB),
    UPLOAD_PART_SIZE: String(8 * MiB),
    UPLOAD_ACCEPT: ".bin,application/octet-stream",
    UPLOAD_RATE_LIMIT: "0",
  };
  delete env.UPLOAD_JWT_SECRET; // development identity
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  server = await startServer(bin, env, path.join(tmp, "server.log"));
  cleanups.push(server.stop);
  api = async (method, p) => {
    const r = await fetch(`${server.base}${p}`, { method });
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? null : r.json();
  };

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  cleanups.push(() => browser.close());
  page = await browser.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("request", (r) => requests.push({ method: r.method(), url: r.url(), authorization: r.headers().authorization }));
  // The app's server in `new Uploader({create})`: creates the upload with
  // its own credentials (here the development identity) and hands
  // upload-server's answer back unchanged.
  await page.exposeFunction("appCreate", async (request) => {
    appCreated.push(request);
    const r = await fetch(`${server.base}/uploads`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
    return r.json();
  });
  await page.goto(`${site.origin}/`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout: 30000 });

  small = makeFile("small.bin", 1 * MiB + 123);
  big = makeFile("big.bin", 150 * MiB);
  mid = makeFile("mid.bin", 40 * MiB + 7);
  five = makeFile("five.bin", 5 * MiB);
  tooBig = path.join(tmp, "huge.bin");
  fs.writeFileSync(tooBig, "");
  fs.truncateSync(tooBig, 200 * MiB + 1); // sparse: nothing is read before the refusal
  wrongType = path.join(tmp, "notes.txt");
  fs.writeFileSync(wrongType, "not accepted\n");
});

async function newUploader(concurrency = 4) {
  await page.evaluate(([endpoint, concurrency]) => window.e2e.create({ endpoint, concurrency, retryDelay: 200 }), [server.base, concurrency]);
}
async function setFiles(files) {
  await page.setInputFiles("#files", files.map((f) => f.path));
}
const start = (i) => page.evaluate((i) => window.e2e.start(i, { test: "e2e" }), i);
const info = (h) => page.evaluate((h) => window.e2e.info(h), h);
async function settle(h, ms = 300000) {
  await page.waitForFunction((h) => window.e2e.info(h).settled, h, { timeout: ms, polling: 100 });
  return info(h);
}
async function waitLoaded(h, fraction) {
  await page.waitForFunction(([h, f]) => { const i = window.e2e.info(h); return i.settled || i.loaded >= i.total * f; }, [h, fraction], { timeout: 120000, polling: 20 });
}
/** Downloads the stored file through its download URL and compares SHA-256. */
async function assertStored(result, file) {
  assert(result, "upload failed");
  assertEq(result.size, file.size, "recorded size");
  const meta = await api("GET", `/files/${result.id}`);
  const r = await fetch(meta.download_url);
  assert(r.ok, `download: ${r.status}`);
  const hash = crypto.createHash("sha256");
  for await (const chunk of r.body) hash.update(chunk);
  assertEq(hash.digest("hex"), file.sha256, `SHA-256 of ${file.path}`);
}
function assertProgress(i) {
  const ev = i.events;
  assert(ev.length > 0, "no progress events");
  for (let k = 1; k < ev.length; k++) {
    assert(ev[k].loaded >= ev[k - 1].loaded, `progress went back: ${ev[k - 1].loaded} -> ${ev[k].loaded}`);
    assert(ev[k].at - ev[k - 1].at >= 45, `progress events ${ev[k].at - ev[k - 1].at} ms apart: ${JSON.stringify(ev.slice(Math.max(0, k - 2), k + 2))}`);
  }
  const last = ev[ev.length - 1];
  assertEq(last.state, "done", "last event");
  assertEq(last.loaded, i.total, "last event's loaded");
  assertEq(ev.filter((e) => e.state === "done").length, 1, "done events");
}

test("checksums: WebCrypto and the streaming wasm SHA-256 agree with Node's", async () => {
  const sizes = [0, 1, 55, 64, 1 * MiB - 1, 1 * MiB, 3 * MiB + 5];
  const got = await page.evaluate(async (sizes) => {
    const m = await import("/pkg/hash/upload_hash.js");
    await m.default();
    const out = [];
    for (const n of sizes) {
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = (i * 31 + (i >> 8)) & 255;
      const blob = new Blob([bytes]);
      out.push({ secure: isSecureContext, whole: await m.sum(blob), streaming: await m.sumStreaming(blob) });
    }
    return out;
  }, sizes);
  sizes.forEach((n, k) => {
    const bytes = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bytes[i] = (i * 31 + (i >> 8)) & 255;
    const want = crypto.createHash("sha256").update(bytes).digest("base64");
    assert(got[k].secure, "the test page is a secure context, so sum() takes the WebCrypto path");
    assertEq(got[k].whole, want, `sum() of ${n} bytes`);
    assertEq(got[k].streaming, want, `sumStreaming() of ${n} bytes`);
  });
});

test("small file: one form POST to the store", async () => {
  await newUploader();
  await setFiles([small]);
  proxy.state.reset();
  const i = await settle(await start(0));
  assert(!i.error, JSON.stringify(i.error));
  assertEq(proxy.state.posts, 1, "form POSTs to the store");
  assertEq(proxy.state.partPuts.length, 0, "part PUTs");
  assertProgress(i);
  await assertStored(i.result, small);
});

test("150 MiB multipart with 4 parts in flight", async () => {
  await newUploader(4);
  await setFiles([big]);
  proxy.state.reset();
  const i = await settle(await start(0));
  assert(!i.error, JSON.stringify(i.error));
  assertEq(proxy.state.partPuts.length, 19, "part PUTs (150 MiB / 8 MiB)");
  assertEq(proxy.state.maxActive, 4, "parts in flight at most");
  assertProgress(i);
  await assertStored(i.result, big);
});

test("new Uploader({create}): the app creates, the browser sends and completes with the scoped token only", async () => {
  await page.evaluate(() => window.e2e.createThroughApp({ concurrency: 4, retryDelay: 200 }));
  await setFiles([mid]);
  proxy.state.reset();
  const before = requests.length;
  const i = await settle(await start(0));
  assert(!i.error, JSON.stringify(i.error));
  assertEq(appCreated.at(-1).name, "mid.bin", "the app was handed the declaration");
  assertEq(appCreated.at(-1).size, mid.size, "declared size");
  assertEq(proxy.state.partPuts.length, 6, "part PUTs (40 MiB / 8 MiB)");
  assertProgress(i);
  await assertStored(i.result, mid);
  // The browser neither created nor read /config (it has no endpoint); each
  // of its API calls carried the token of this one upload.
  const calls = requests.slice(before).filter((r) => r.url.startsWith(server.base) && r.method !== "OPTIONS");
  assert(calls.length >= 2, "parts and complete");
  for (const r of calls) {
    assert(!r.url.endsWith("/uploads") && !r.url.endsWith("/config"), `${r.method} ${r.url}`);
    const [header, claims] = (r.authorization ?? "").replace(/^Bearer /, "").split(".");
    assertEq(JSON.parse(Buffer.from(header, "base64url")).typ, "upload+jwt", `token of ${r.method} ${r.url}`);
    assertEq(JSON.parse(Buffer.from(claims, "base64url")).upload, i.result.id, `the token's upload for ${r.url}`);
  }
});

test("three files at once", async () => {
  await newUploader(4);
  const files = [small, five, mid];
  await setFiles(files);
  proxy.state.reset();
  const handles = [await start(0), await start(1), await start(2)];
  const results = [];
  for (const h of handles) results.push(await settle(h));
  assert(proxy.state.maxActive <= 4, `global limit: ${proxy.state.maxActive} parts at once`);
  for (let k = 0; k < 3; k++) {
    assert(!results[k].error, JSON.stringify(results[k].error));
    assertProgress(results[k]);
    await assertStored(results[k].result, files[k]);
  }
});

test("refused files fail before any request", async () => {
  await newUploader();
  await setFiles([{ path: tooBig }, { path: wrongType }]);
  const before = requests.length;
  const a = await settle(await start(0));
  const b = await settle(await start(1));
  assertEq(a.error?.code, "file_too_large", "too large");
  assert(a.error.message.includes(String(200 * MiB)), `message names the limit: ${a.error.message}`);
  assertEq(b.error?.code, "type_not_accepted", "wrong type");
  assertEq(requests.length - before, 0, "requests made for refused files");
});

test("cancel in the middle leaves nothing behind", async () => {
  await newUploader();
  await setFiles([mid]);
  proxy.state.reset();
  const h = await start(0);
  await waitLoaded(h, 0.3);
  await page.evaluate((h) => window.e2e.cancel(h), h);
  const i = await settle(h);
  assertEq(i.error?.code, "aborted", "done rejects with");
  assertEq(i.state, "cancelled", "state");
  const puts = proxy.state.partPuts.length;
  await sleep(300);
  assertEq(proxy.state.active, 0, "part PUTs still open");
  assertEq(proxy.state.partPuts.length, puts, "part PUTs after cancel");
  const status = await api("GET", `/uploads/${i.id}`);
  assertEq(status.state, "aborted", "server state");
  assertEq((status.parts || []).length, 0, "parts left in the store");
});

test("pause then resume continues from the stored parts", async () => {
  await newUploader(2);
  await setFiles([mid]);
  proxy.state.reset();
  const h = await start(0);
  await waitLoaded(h, 0.4);
  await page.evaluate((h) => window.e2e.pause(h), h);
  await sleep(200);
  assertEq(proxy.state.active, 0, "part PUTs open while paused");
  const puts = proxy.state.partPuts.length;
  await sleep(500);
  assertEq(proxy.state.partPuts.length, puts, "part PUTs while paused");
  assertEq((await info(h)).state, "paused", "state");
  const stored = (await api("GET", `/uploads/${(await info(h)).id}`)).parts.length;
  assert(stored >= 1, "some parts stored before the pause");
  await page.evaluate((h) => window.e2e.resume(h), h);
  const i = await settle(h);
  assert(!i.error, JSON.stringify(i.error));
  // 6 parts; only those not stored at the pause are sent again.
  assert(proxy.state.partPuts.length <= 6 + 2, `${proxy.state.partPuts.length} part PUTs for 6 parts`);
  assertProgress(i);
  await assertStored(i.result, mid);
});

test("a part failing twice with 503 (and one dropped connection) still ends correct", async () => {
  await newUploader(4);
  await setFiles([mid]);
  proxy.state.reset();
  proxy.state.faults.push({ part: 2, status: 503, times: 2 }, { part: 4, status: "drop", times: 1 });
  const i = await settle(await start(0));
  assert(!i.error, JSON.stringify(i.error));
  assertEq(proxy.state.putsOf(2), 3, "tries of part 2");
  assertEq(proxy.state.putsOf(4), 2, "tries of part 4");
  assertProgress(i);
  await assertStored(i.result, mid);
});

/** `upload_http_request_duration_seconds_count` of `route` (its POSTs, any status), from the server's /metrics. */
async function routeCount(route) {
  const text = await (await fetch(`${new URL(server.base).origin}/metrics`)).text();
  let n = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("upload_http_request_duration_seconds_count{") && line.includes(`route="${route}"`) && line.includes('method="POST"')) {
      n += Number(line.split(" ").at(-1));
    }
  }
  return n;
}

test("a folder of 30 small files: creates and completes go in batches, one refused outcome fails only its file", async () => {
  await newUploader(4);
  const files = Array.from({ length: 30 }, (_, k) => makeFile(`folder-${k}.bin`, 20 * 1024 + k));
  await setFiles(files);
  const metric = async () => ({
    create: await routeCount("/api/v1/uploads"),
    batch: await routeCount("/api/v1/uploads/batch"),
    complete: await routeCount("/api/v1/uploads/{id}/complete"),
    batchComplete: await routeCount("/api/v1/uploads/batch/complete"),
  });
  const before = await metric();
  const seen = requests.length;
  // File 7 asks for a plan the S3 backend has not: the client's own check
  // passes it, the server refuses it (invalid_request) in its batch outcome.
  const refused = 7;
  const handles = await page.evaluate((refused) => window.e2e.startAll({ test: "folder" }, { [refused]: { uploader: "Chunked" } }), refused);
  const results = [];
  for (const h of handles) results.push(await settle(h));
  for (let k = 0; k < files.length; k++) {
    if (k === refused) {
      assertEq(results[k].error?.code, "invalid_request", `file ${k}: ${JSON.stringify(results[k].error)}`);
      assertEq(results[k].error?.status, 400, "the status the single create would have had");
      assertEq(results[k].state, "failed", "state");
      continue;
    }
    assert(!results[k].error, `file ${k}: ${JSON.stringify(results[k].error)}`);
    assertEq(results[k].result.name, `folder-${k}.bin`, "recorded name");
    await assertStored(results[k].result, files[k]);
  }
  // What the server saw: batch requests, and far fewer API requests than
  // the 2 per file (4 with preflights) of single creates and completes.
  const after = await metric();
  const d = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
  assert(d.batch >= 1 && d.batchComplete >= 1, `batch requests: ${JSON.stringify(d)}`);
  const apiCalls = d.create + d.batch + d.complete + d.batchComplete;
  assert(apiCalls < files.length, `${apiCalls} create and complete requests for 30 files: ${JSON.stringify(d)}`);
  console.log(`# 30 files: ${apiCalls} create/complete requests ${JSON.stringify(d)}`);
  // The browser sent nothing else to the API (the configuration was read
  // before, when the Uploader was made).
  const sent = requests.slice(seen).filter((r) => r.url.startsWith(server.base) && r.method !== "OPTIONS");
  assertEq(sent.length, apiCalls, "API requests the browser sent");
});

/**
 * The API as a server from before the batch routes answers them: a proxy in
 * front of ours that passes everything on but POST /uploads/batch (405, as
 * axum answers a POST on /uploads/{id}) and /uploads/batch/complete (404, the
 * single complete route finding no upload "batch"), with the CORS header the
 * browser needs to read the status. Counts what it saw.
 */
async function startOldApi(base) {
  const target = new URL(base);
  const port = await freePort();
  const seen = [];
  const proxy = http.createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname.slice(target.pathname.length);
    seen.push(`${req.method} ${path}`);
    const refused = req.method === "POST" && { "/uploads/batch": [405, "method_not_allowed"], "/uploads/batch/complete": [404, "not_found"] }[path];
    if (refused) {
      req.resume();
      res.writeHead(refused[0], { "Content-Type": "application/json", "Access-Control-Allow-Origin": req.headers.origin ?? "*" });
      return res.end(JSON.stringify({ error: { code: refused[1], message: "not on this server" } }));
    }
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise((r) => proxy.listen(port, "127.0.0.1", r));
  cleanups.push(() => new Promise((r) => proxy.close(r)));
  return { base: `http://127.0.0.1:${port}${target.pathname}`, seen, count: (what) => seen.filter((s) => what.test(s)).length };
}

test("a server without the batch routes: the Uploader falls back to single requests for good", async () => {
  const old = await startOldApi(server.base);
  await page.evaluate((endpoint) => window.e2e.create({ endpoint, concurrency: 4, retryDelay: 200 }), old.base);
  const files = Array.from({ length: 8 }, (_, k) => makeFile(`old-${k}.bin`, 10 * 1024 + k));
  await setFiles(files);
  const run = async () => {
    const handles = await page.evaluate(() => window.e2e.startAll({ test: "old-server" }));
    for (let k = 0; k < handles.length; k++) {
      const i = await settle(handles[k]);
      assert(!i.error, `file ${k}: ${JSON.stringify(i.error)}`);
      await assertStored(i.result, files[k]);
    }
  };
  await run();
  // The first create alone, the seven gathered while it was in flight tried
  // as a batch (405), then sent singly; every complete singly.
  assertEq(old.count(/^POST \/uploads\/batch$/), 1, "batch creates tried");
  assertEq(old.count(/^POST \/uploads$/), 8, "single creates");
  assertEq(old.count(/^POST \/uploads\/batch\/complete$/), 0, "batch completes tried");
  assertEq(old.count(/^POST \/uploads\/[^/]+\/complete$/), 8, "single completes");
  // For good: the same Uploader, the same folder again, asks no batch route.
  await run();
  assertEq(old.count(/^POST \/uploads\/batch/), 1, "batch requests after the first folder");
  assertEq(old.count(/^POST \/uploads$/), 16, "single creates");
});
