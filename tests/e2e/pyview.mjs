// End to end: the pyview example (examples/pyview, real pyview-web from PyPI
// with its bundled phoenix_live_view client) in headless Chromium, through
// upload-server, to a real Garage. The app presigns on its user's behalf and
// passes upload-server's answer as the LiveView entry's meta; the package's
// `uploaders` send the bytes and complete with the upload-scoped token. A
// second stack, upload-server on its embedded store and the app asking for
// `Chunked`, runs the Chunked uploader the same way.
//
// Needs: examples/pyview/.venv (examples/pyview/setup.sh), the built package,
// target/debug/upload-server, Chromium, and TEST_S3_* + AWS_* or `garage`.
// Run: node --test tests/e2e/pyview.mjs
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { freePort, storeFromEnvOrGarage, startServer } from "./servers.mjs";
import { MiB, makeFileIn } from "./util.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const example = path.join(root, "examples/pyview");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "upload-e2e-pyview-"));
const cleanups = [];
const USER = "e2e-user";
const SECRET = crypto.randomBytes(32).toString("hex");

let store, server, browser, page;
/** The second stack: upload-server on its embedded store, the app asking for Chunked. */
let local, localPage;
/** Everything the page received: response bodies and headers, websocket frames. */
const received = [];
/** Phoenix messages the page sent on its websocket, parsed, with the time. */
const sent = [];
/** Requests the pages made: method, url, Authorization header, JSON body, time of the answer. */
const requests = [];

const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** A user token as the app mints them (the browser must never see one). */
function userToken() {
  const now = Math.floor(Date.now() / 1000);
  const signed = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ sub: USER, exp: now + 300 })}`;
  return `${signed}.${crypto.createHmac("sha256", SECRET).update(signed).digest("base64url")}`;
}

async function api(on, method, p) {
  const r = await fetch(`${on.base}${p}`, { method, headers: { Authorization: `Bearer ${userToken()}` } });
  if (!r.ok) assert.fail(`${method} ${p}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

async function waitHttp(url, proc, what) {
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}; see ${tmp}`);
    try {
      if ((await fetch(url, { redirect: "manual" })).status < 500) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

before(async () => {
  const bin = path.resolve(root, process.env.UPLOAD_SERVER_BIN || "target/debug/upload-server");
  assert.ok(fs.existsSync(bin), `${bin} not found: cargo build -p upload-server`);
  const pkg = path.join(root, "crates/upload-wasm/pkg");
  assert.ok(fs.existsSync(path.join(pkg, "upload_wasm.js")), "crates/upload-wasm/pkg missing: scripts/build-wasm.sh");
  const uvicorn = path.join(example, ".venv/bin/uvicorn");
  assert.ok(fs.existsSync(uvicorn), "examples/pyview/.venv missing: bash examples/pyview/setup.sh");

  store = await storeFromEnvOrGarage(path.join(tmp, "garage"), cleanups);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  cleanups.push(() => browser.close());

  const garageEnv = {
    UPLOAD_S3_BUCKET: store.bucket,
    UPLOAD_S3_ENDPOINT: store.endpoint,
    UPLOAD_S3_REGION: store.region,
    UPLOAD_S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: store.accessKey,
    AWS_SECRET_ACCESS_KEY: store.secretKey,
  };
  ({ server, page } = await startStack("garage", bin, pkg, uvicorn, garageEnv, {}));
  ({ server: local, page: localPage } = await startStack("local", bin, pkg, uvicorn, {}, { UPLOAD_PLAN: "Chunked" }));
});

/**
 * upload-server (on `storeEnv`; none: its embedded store), the pyview app in
 * front of it (with `appEnv`), and a page signed in to the app.
 */
async function startStack(name, bin, pkg, uvicorn, storeEnv, appEnv) {
  const [apiPort, appPort] = [await freePort(), await freePort()];
  const appOrigin = `http://127.0.0.1:${appPort}`;
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("UPLOAD_") || k.startsWith("AWS_")) delete env[k];
  Object.assign(env, {
    UPLOAD_LISTEN: `127.0.0.1:${apiPort}`,
    UPLOAD_DATA_DIR: path.join(tmp, `${name}-server`),
    ...storeEnv,
    UPLOAD_JWT_SECRET: SECRET,
    // The browser calls the API (parts, complete) and the embedded store from the app's origin.
    UPLOAD_CORS_ORIGINS: appOrigin,
    UPLOAD_MULTIPART_THRESHOLD: String(5 * MiB),
    UPLOAD_PART_SIZE: String(5 * MiB),
    UPLOAD_RATE_LIMIT: "0",
  });
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  const api = await startServer(bin, env, path.join(tmp, `${name}-server.log`));
  cleanups.push(api.stop);

  const log = fs.openSync(path.join(tmp, `${name}-pyview.log`), "w");
  const app = spawn(uvicorn, ["app:app", "--host", "127.0.0.1", "--port", String(appPort)], {
    cwd: example,
    env: {
      ...process.env,
      UPLOAD_API_URL: api.base,
      UPLOAD_JWT_SECRET: SECRET,
      UPLOAD_WASM_PKG: pkg,
      PYVIEW_SECRET: crypto.randomBytes(16).toString("hex"),
      SESSION_SECRET: crypto.randomBytes(16).toString("hex"),
      ...appEnv,
    },
    stdio: ["ignore", log, log],
  });
  cleanups.push(() => app.kill("SIGTERM"));
  await waitHttp(`${appOrigin}/`, app, `the pyview app (${name})`);

  const page = await browser.newPage();
  page.on("pageerror", (e) => received.push({ what: "pageerror", text: String(e) }));
  page.on("console", (m) => fs.appendFileSync(path.join(tmp, `${name}-console.log`), `${m.type()}: ${m.text()}\n`));
  page.on("request", (r) => {
    let body = null;
    try {
      body = r.postDataJSON();
    } catch {} // a form or a blob
    const entry = { method: r.method(), url: r.url(), authorization: r.headers().authorization, headers: r.headers(), body, answeredAt: 0 };
    requests.push(entry);
    r.response().then(() => (entry.answeredAt = Date.now()), () => {});
  });
  page.on("response", async (r) => {
    received.push({ what: `headers of ${r.url()}`, text: JSON.stringify(r.headers()) });
    try {
      received.push({ what: `body of ${r.url()}`, text: (await r.body()).toString("latin1") });
    } catch {} // redirects and aborted requests have no body
  });
  page.on("websocket", (ws) => {
    // Tagged with the stack: both pages' LiveViews number their entries alike.
    ws.on("framereceived", (f) => received.push({ what: "websocket frame", text: String(f.payload), from: api.base }));
    ws.on("framesent", (f) => {
      try {
        sent.push({ at: Date.now(), message: JSON.parse(String(f.payload)), from: api.base });
      } catch {}
    });
  });
  await page.goto(`${appOrigin}/login?user=${USER}`);
  await page.waitForSelector("[data-phx-main].phx-connected", { timeout: 30000 });
  assert.equal(await page.textContent("#user"), USER);
  return { server: api, page };
}

after(async () => {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {}
  }
  if (!process.env.E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  else console.error(`pyview e2e: logs kept in ${tmp}`);
});

/** The LiveView entry ref whose meta (the create answer pyview relayed) is upload `id`, on the stack of `on`. */
function refOf(on, id) {
  for (const { what, text, from } of received) {
    if (what !== "websocket frame" || from !== on.base) continue;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      continue;
    }
    const entries = message?.[4]?.response?.entries ?? {};
    for (const [ref, meta] of Object.entries(entries)) if (meta?.id === id) return ref;
  }
  throw new Error(`no allow_upload reply carried upload ${id}`);
}

/** Chooses `file` in the LiveView's input and waits until the app lists it as recorded. */
async function uploadThroughLiveView(page, file) {
  const count = await page.locator("#recorded li").count();
  await page.setInputFiles("input[name=files]", file.path);
  await page.waitForFunction(
    (n) => document.querySelectorAll("#recorded li").length > n || document.querySelector("#errors li"),
    count,
    { timeout: 120000 },
  );
  assert.deepEqual(await page.locator("#errors li").allTextContents(), [], "the app recorded failures");
  const li = page.locator("#recorded li").nth(count);
  assert.equal((await li.textContent()).trim(), file.name);
  return li.getAttribute("data-id");
}

/** Recorded once by upload-server, and downloaded intact. */
async function assertRecordedOnce(on, id, file) {
  const listed = await api(on, "GET", "/files?limit=100");
  assert.equal(listed.files.filter((f) => f.name === file.name).length, 1, `${file.name} recorded once`);
  const meta = await api(on, "GET", `/files/${id}`);
  assert.equal(meta.size, file.size);
  const r = await fetch(meta.download_url);
  assert.ok(r.ok, `download: ${r.status}`);
  const hash = crypto.createHash("sha256");
  for await (const chunk of r.body) hash.update(chunk);
  assert.equal(hash.digest("hex"), file.sha256, `SHA-256 of ${file.name}`);
}

/**
 * LiveView's progress contract for the entry of upload `id`: whole
 * percentages going up, 100 once and last, sent only after the browser's
 * own /complete (with the scoped token) was answered.
 */
function assertProgress(on, id) {
  const ref = refOf(on, id);
  const pushes = sent.filter(({ message, from }) => from === on.base && message[3] === "progress" && message[4]?.entry_ref === ref);
  const values = pushes.map(({ message }) => message[4].progress);
  assert.ok(values.length > 0, "no progress pushed");
  for (const v of values) assert.ok(Number.isInteger(v) && v >= 0 && v <= 100, `progress ${JSON.stringify(v)} is a whole percentage`);
  for (let k = 1; k < values.length; k++) assert.ok(values[k] > values[k - 1], `progress went ${values[k - 1]} -> ${values[k]}`);
  assert.equal(values.at(-1), 100, "the last push is 100");
  assert.equal(values.filter((v) => v === 100).length, 1, "100 pushed once");
  const complete = requests.filter((r) => r.method === "POST" && r.url === `${on.base}/uploads/${id}/complete`);
  assert.equal(complete.length, 1, `the browser completed upload ${id} once`);
  assert.ok(complete[0].answeredAt > 0 && pushes.at(-1).at >= complete[0].answeredAt, "100 pushed after /complete answered");
}

const storeRequests = (method) => requests.filter((r) => r.method === method && r.url.startsWith(store.endpoint));

test("a small file goes by one form POST, is recorded once and reported with success", async () => {
  const file = makeFileIn(tmp, "small-photo.bin", 300 * 1024 + 7);
  const posts = storeRequests("POST").length;
  const id = await uploadThroughLiveView(page, file);
  assert.equal(storeRequests("POST").length - posts, 1, "form POSTs to the store");
  assertProgress(server, id);
  await assertRecordedOnce(server, id, file);
});

test("a 12 MiB file goes multipart (3 part PUTs, each with its SHA-256), is recorded once and reported with success", async () => {
  const file = makeFileIn(tmp, "clip.bin", 12 * MiB + 5);
  const puts = storeRequests("PUT").length;
  const id = await uploadThroughLiveView(page, file);
  assert.equal(storeRequests("PUT").length - puts, 3, "part PUTs to the store");
  // The app created it with part_checksums: the uploader signed every part
  // with its SHA-256 (the server refuses a part URL without), and each PUT
  // carried it for Garage to verify.
  const signed = requests.filter((r) => r.method === "POST" && r.url === `${server.base}/uploads/${id}/parts`);
  const sums = Object.assign({}, ...signed.map((r) => r.body?.sha256 ?? {}));
  assert.deepEqual(Object.keys(sums).sort(), ["1", "2", "3"], "every part signed with its checksum");
  for (const r of storeRequests("PUT").slice(puts)) {
    const n = new URL(r.url).searchParams.get("partNumber");
    assert.equal(r.headers["x-amz-checksum-sha256"], sums[n], `part ${n} sent with its checksum`);
  }
  assertProgress(server, id);
  await assertRecordedOnce(server, id, file);
});

test("the Chunked uploader (the app asks for it, the embedded store offers it) sends Content-Range PUTs", async () => {
  const file = makeFileIn(tmp, "chunked-scan.bin", 11 * MiB + 3);
  const id = await uploadThroughLiveView(localPage, file);
  const chunks = requests.filter((r) => r.method === "PUT" && r.url.startsWith(`${new URL(local.base).origin}/storage/v1/`));
  const ranges = chunks.map((r) => r.headers["content-range"]);
  const total = file.size;
  assert.deepEqual(ranges, [`bytes 0-${5 * MiB - 1}/${total}`, `bytes ${5 * MiB}-${10 * MiB - 1}/${total}`, `bytes ${10 * MiB}-${total - 1}/${total}`]);
  assertProgress(local, id);
  await assertRecordedOnce(local, id, file);
});

test("the user's token is absent from everything the browser received", () => {
  const jwt = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g;
  let scoped = 0;
  for (const { what, text } of received) {
    for (const [token] of text.matchAll(jwt)) {
      const [header, claims, signature] = token.split(".");
      const mac = crypto.createHmac("sha256", SECRET).update(`${header}.${claims}`).digest("base64url");
      assert.notEqual(signature, mac, `a token signed with the user secret reached the browser in ${what}`);
      assert.equal(JSON.parse(Buffer.from(header, "base64url")).typ, "upload+jwt", `an unexpected token in ${what}`);
      scoped++;
    }
    assert.ok(!text.includes(SECRET), `the secret itself in ${what}`);
  }
  assert.ok(scoped >= 2, `the scan saw the upload-scoped tokens (${scoped})`);
  // Every API call the browser made, on both stacks, carried an upload-scoped token.
  const calls = requests.filter((r) => (r.url.startsWith(server.base) || r.url.startsWith(local.base)) && r.method !== "OPTIONS");
  assert.ok(calls.length >= 2, "the browser called the API");
  for (const r of calls) {
    const token = (r.authorization ?? "").replace(/^Bearer /, "");
    assert.equal(JSON.parse(Buffer.from(token.split(".")[0], "base64url")).typ, "upload+jwt", `${r.method} ${r.url}`);
  }
});
