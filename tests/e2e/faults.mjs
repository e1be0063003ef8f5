// Fault tests: the built package (crates/upload-wasm/pkg) in headless
// Chromium, through the real upload-server, to a private Garage, with the
// test crate's TCP fault proxy (target/debug/fault-proxy, from
// `cargo build -p upload-tests --bins`) between the browser and the store.
// The server's UPLOAD_S3_ENDPOINT points at the proxy, which forwards raw
// TCP, so the SigV4 signatures over its Host hold.
//
// - resets and delays: a 200 MiB multipart upload with every 2nd connection
//   reset mid-body and every 3rd held for a second ends with the right
//   SHA-256 and monotonic progress (Chromium retries some resets on a reused
//   connection by itself; the others reach the client, which retries);
// - the store down for a few seconds mid-upload (Garage killed and started
//   again with the same configuration, keys and data; the proxy answers 503
//   meanwhile): the upload completes once it is back;
// - a corrupted part (one byte flipped on the way): the store refuses it
//   thanks to the signed checksum, the client reads, hashes and sends it
//   again, the final object is correct;
// - a small file (one form POST) goes with its SHA-256 signed into the form;
// - resume after a reload: a multipart upload is interrupted by reloading
//   the page; the same file chosen again sends only the missing parts.
//
// Each test gets its own proxy (its own faults) and server; Garage, the test
// page and Chromium are shared. Environment: UPLOAD_SERVER_BIN (default
// target/debug/upload-server), FAULT_PROXY_BIN (default
// target/debug/fault-proxy), `garage` on PATH (a private one is always
// started, by scripts/garage.sh: one test stops it). Runs on node's test
// runner: `node --test faults.mjs` (`--test-name-pattern=<regex>` for some
// of the tests).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import readline from "node:readline";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { freePort, startGarage, startStatic, stopProcess } from "./servers.mjs";
import { MiB, assert, assertEq, makeFileIn, sleep, suite } from "./util.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const PART = 8 * MiB;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "upload-faults-"));
const cleanups = [];

const makeFile = (name, size) => makeFileIn(tmp, name, size);

/** target/debug/fault-proxy with `args`; resolves once it listens. Counts what it did from its stderr. */
async function startFaultProxy(bin, target, args) {
  const proc = spawn(bin, ["--target", target, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const seen = { resets: 0, corrupted: 0, unavailable: 0, log: [] };
  readline.createInterface({ input: proc.stderr }).on("line", (line) => {
    seen.log.push(line);
    if (line.includes("reset connection")) seen.resets++;
    if (line.includes("corrupted a PUT body")) seen.corrupted++;
    if (line.includes("answered 503")) seen.unavailable++;
  });
  const addr = await new Promise((resolve, reject) => {
    proc.on("exit", (code) => reject(new Error(`fault-proxy exited with ${code}: ${seen.log.join("\n")}`)));
    readline.createInterface({ input: proc.stdout }).on("line", (line) => {
      const m = /^listening on (\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  return { url: `http://${addr}`, seen, stop: () => stopProcess(proc) };
}

async function waitFor(check, what, ms = 30000) {
  const start = Date.now();
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// Set up once for every test (the `setup` hook below); each test makes its own rig.
let bin, proxyBin, store, storeAddr, site, storeEnv, browser;
let huge, big, mid, small;

const { setup } = suite("fault tests", tmp, cleanups);

setup(async () => {
  bin = path.resolve(root, process.env.UPLOAD_SERVER_BIN || "target/debug/upload-server");
  proxyBin = path.resolve(root, process.env.FAULT_PROXY_BIN || "target/debug/fault-proxy");
  assert(fs.existsSync(bin), `${bin} not found: cargo build -p upload-server`);
  assert(fs.existsSync(proxyBin), `${proxyBin} not found: cargo build -p upload-tests --bins`);
  const pkg = path.join(root, "crates/upload-wasm/pkg");
  assert(fs.existsSync(path.join(pkg, "hash/upload_hash.js")), "crates/upload-wasm/pkg/hash missing: scripts/build-wasm.sh");

  store = await startGarage(path.join(tmp, "garage"));
  cleanups.push(() => store.stop());
  storeAddr = new URL(store.endpoint).host;
  site = await startStatic({ "/pkg/": pkg, "/": path.join(here, "page") });
  cleanups.push(site.close);
  storeEnv = {
    ...process.env,
    UPLOAD_S3_BUCKET: store.bucket,
    UPLOAD_S3_REGION: store.region,
    UPLOAD_S3_FORCE_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: store.accessKey,
    AWS_SECRET_ACCESS_KEY: store.secretKey,
    UPLOAD_CORS_ORIGINS: site.origin,
  };
  delete storeEnv.UPLOAD_JWT_SECRET; // development identity
  // The bucket's CORS rules, straight to the store (not through a proxy
  // that would corrupt the PUT of the rules).
  const bucketSetup = spawn(bin, ["bucket", "setup"], { env: { ...storeEnv, UPLOAD_S3_ENDPOINT: store.endpoint, UPLOAD_DATA_DIR: path.join(tmp, "setup") }, stdio: ["ignore", "pipe", "pipe"] });
  let setupOut = "";
  bucketSetup.stdout.on("data", (d) => (setupOut += d));
  bucketSetup.stderr.on("data", (d) => (setupOut += d));
  const setupCode = await new Promise((r) => bucketSetup.on("exit", r));
  assert(setupCode === 0, `upload-server bucket setup exited with ${setupCode}: ${setupOut}`);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  cleanups.push(() => browser.close());

  huge = makeFile("huge.bin", 200 * MiB);
  big = makeFile("big.bin", 96 * MiB);
  mid = makeFile("mid.bin", 40 * MiB + 7);
  small = makeFile("small.bin", 1 * MiB + 3);
});

let serial = 0;
/** A fault proxy with `args`, a server signing URLs for it, and a fresh page (own localStorage). */
async function rig(args) {
  const proxy = await startFaultProxy(proxyBin, storeAddr, args);
  cleanups.push(() => proxy.stop()); // in case the test fails before r.close()
  const port = await freePort();
  const env = {
    ...storeEnv,
    UPLOAD_LISTEN: `127.0.0.1:${port}`,
    UPLOAD_DATA_DIR: path.join(tmp, `server-${++serial}`),
    UPLOAD_S3_ENDPOINT: proxy.url,
    UPLOAD_MAX_FILE_SIZE: String(256 * MiB),
    UPLOAD_MAX_FILES: "20",
    UPLOAD_MULTIPART_THRESHOLD: String(16 * MiB),
    UPLOAD_PART_SIZE: String(PART),
    UPLOAD_ACCEPT: ".bin,application/octet-stream",
    UPLOAD_RATE_LIMIT: "0",
  };
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  const log = fs.openSync(path.join(tmp, `server-${serial}.log`), "w");
  const server = spawn(bin, [], { env, stdio: ["ignore", log, log] });
  cleanups.push(() => stopProcess(server));
  let exited = null;
  server.on("exit", (code) => (exited = code));
  const base = `http://${env.UPLOAD_LISTEN}/api/v1`;
  await waitFor(async () => {
    if (exited !== null) throw new Error(`upload-server exited with ${exited}`);
    return (await fetch(`${base}/config`)).ok;
  }, "upload-server");
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Part PUTs the browser sent, with their answers (0: no answer).
  const puts = [];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (r.method() === "PUT" && u.searchParams.has("partNumber")) {
      const p = { part: Number(u.searchParams.get("partNumber")), status: 0 };
      puts.push(p);
      r.response().then((resp) => (p.status = resp?.status() ?? 0), () => {});
    }
  });
  const r = {
    proxy,
    base,
    page,
    puts,
    errors,
    async open() {
      await page.goto(`${site.origin}/`);
      await page.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout: 30000 });
    },
    /** A new Uploader on the page; `resumed` collects its onResume calls. */
    async uploader(options) {
      await page.evaluate(
        ([endpoint, options]) => {
          window.resumed = [];
          return window.e2e.create({ endpoint, retryDelay: 200, ...options, onResume: (file, info) => window.resumed.push(info) });
        },
        [base, options],
      );
    },
    async start(file) {
      await page.setInputFiles("#files", [file.path]);
      return page.evaluate(() => window.e2e.start(0, { test: "faults" }));
    },
    info: (h) => page.evaluate((h) => window.e2e.info(h), h),
    async settle(h, ms = 600000) {
      await page.waitForFunction((h) => window.e2e.info(h).settled, h, { timeout: ms, polling: 200 });
      return r.info(h);
    },
    async waitLoaded(h, fraction) {
      await page.waitForFunction(([h, f]) => { const i = window.e2e.info(h); return i.settled || i.loaded >= i.total * f; }, [h, fraction], { timeout: 300000, polling: 20 });
    },
    async api(method, p) {
      const resp = await fetch(`${base}${p}`, { method });
      if (!resp.ok) throw new Error(`${method} ${p}: ${resp.status} ${await resp.text()}`);
      return resp.status === 204 ? null : resp.json();
    },
    /** Downloads the stored file through its download URL and compares SHA-256. */
    async assertStored(result, file) {
      assert(result, "upload failed");
      assertEq(result.size, file.size, "recorded size");
      const meta = await r.api("GET", `/files/${result.id}`);
      const resp = await fetch(meta.download_url);
      assert(resp.ok, `download: ${resp.status}`);
      const hash = crypto.createHash("sha256");
      for await (const chunk of resp.body) hash.update(chunk);
      assertEq(hash.digest("hex"), file.sha256, `SHA-256 of ${path.basename(file.path)}`);
    },
    async close() {
      await context.close().catch(() => {});
      await stopProcess(server);
      await proxy.stop();
    },
  };
  await r.open();
  return r;
}

function assertProgress(i) {
  const ev = i.events;
  assert(ev.length > 0, "no progress events");
  for (let k = 1; k < ev.length; k++) {
    assert(ev[k].loaded >= ev[k - 1].loaded, `progress went back: ${ev[k - 1].loaded} -> ${ev[k].loaded}`);
  }
  const last = ev[ev.length - 1];
  assertEq(last.state, "done", "last event");
  assertEq(last.loaded, i.total, "last event's loaded");
}
const ok = (i) => assert(!i.error, `upload failed: ${JSON.stringify(i.error)}`);

test("200 MiB multipart through resets and delays: right SHA-256, monotonic progress", async () => {
  const r = await rig(["--reset-every", "2", "--delay-every", "3", "--delay-ms", "1000"]);
  try {
    await r.uploader({ concurrency: 4, checksums: true, retries: 8 });
    const i = await r.settle(await r.start(huge));
    ok(i);
    assert(r.proxy.seen.resets >= 2, `the proxy reset ${r.proxy.seen.resets} connections: ${r.proxy.seen.log.slice(-5).join(" | ")}`);
    const answered = r.puts.filter((p) => p.status === 200).map((p) => p.part);
    assertEq(new Set(answered).size, 25, "parts stored (200 MiB / 8 MiB)");
    assertProgress(i);
    await r.assertStored(i.result, huge);
    console.log(`  # ${r.proxy.seen.resets} resets, ${r.puts.length} part PUTs for 25 parts`);
  } finally {
    await r.close();
  }
});

test("the store down for a few seconds mid-upload: completes once it is back", async () => {
  const r = await rig(["--unavailable-when-down"]);
  try {
    await r.uploader({ concurrency: 4, checksums: true, retries: 10, retryDelay: 300 });
    const h = await r.start(big);
    await r.waitLoaded(h, 0.25);
    await store.kill("SIGKILL");
    const downAt = Date.now();
    await sleep(3000);
    const during = r.proxy.seen.unavailable;
    await store.restart();
    const downFor = Date.now() - downAt;
    const i = await r.settle(h);
    ok(i);
    assert(during >= 1, "the browser saw no 503 while the store was down");
    assert(r.puts.some((p) => p.status === 503), "no part PUT answered 503");
    assertProgress(i);
    await r.assertStored(i.result, big);
    console.log(`  # store down ${downFor} ms, ${during} requests answered 503 meanwhile`);
  } finally {
    await r.close();
  }
});

test("a corrupted part is refused by the store (signed checksum), sent again, the object is correct", async () => {
  const r = await rig(["--corrupt-puts", "1"]);
  try {
    await r.uploader({ concurrency: 2, checksums: true });
    const i = await r.settle(await r.start(mid));
    ok(i);
    assertEq(r.proxy.seen.corrupted, 1, "bodies corrupted by the proxy");
    const refused = r.puts.filter((p) => p.status === 400);
    assertEq(refused.length, 1, "part PUTs refused");
    assertEq(r.puts.length, 7, `part PUTs (6 parts, one sent twice): ${JSON.stringify(r.puts)}`);
    assertEq(r.puts.filter((p) => p.part === refused[0].part).length, 2, "tries of the corrupted part");
    assertProgress(i);
    await r.assertStored(i.result, mid);
  } finally {
    await r.close();
  }
});

test("a small file (one form POST) carries its whole-file SHA-256, recorded on the file", async () => {
  const r = await rig([]);
  try {
    await r.uploader({ checksums: true });
    const i = await r.settle(await r.start(small));
    ok(i);
    assertEq(r.puts.length, 0, "part PUTs");
    assertEq(i.result.sha256, Buffer.from(small.sha256, "hex").toString("base64"), "File.sha256");
    await r.assertStored(i.result, small);
  } finally {
    await r.close();
  }
});

test("resume after a reload: the same file chosen again sends only the missing parts", async () => {
  const r = await rig([]);
  try {
    await r.uploader({ concurrency: 2, checksums: true, resume: true });
    const first = await r.start(big);
    await r.waitLoaded(first, 0.4);
    const id = (await r.info(first)).id;
    assert(id, "no upload id before the reload");
    await r.page.reload();
    await r.page.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout: 30000 });
    const records = await r.page.evaluate(() => localStorage.getItem("upload-wasm:uploads"));
    assert(records && records.includes(id), `no resume record for ${id}: ${records}`);
    // What the store holds now; parts cut off by the reload are not in it.
    await sleep(500);
    const stored = (await r.api("GET", `/uploads/${id}`)).parts.length;
    assert(stored >= 1 && stored < 12, `${stored} of 12 parts stored at the reload`);
    const before = r.puts.length;
    await r.uploader({ concurrency: 2, checksums: true, resume: true });
    const second = await r.start(big);
    const i = await r.settle(second);
    ok(i);
    assertEq(i.id, id, "the upload resumed (same id)");
    const resumed = await r.page.evaluate(() => window.resumed);
    assertEq(resumed.length, 1, "onResume calls");
    assertEq(resumed[0].stored, stored, "parts reported stored");
    const after = r.puts.slice(before);
    assertEq(after.length, 12 - stored, "part PUTs after the reload");
    assertEq(new Set(after.map((p) => p.part)).size, after.length, "parts sent twice after the reload");
    assertProgress(i);
    await r.assertStored(i.result, big);
    const left = await r.page.evaluate(() => localStorage.getItem("upload-wasm:uploads"));
    assertEq(left, null, "resume records left after completion");
    console.log(`  # ${stored} of 12 parts stored at the reload; ${after.length} sent after it`);
  } finally {
    await r.close();
  }
});
