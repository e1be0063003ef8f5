// End-to-end tests of the upload page (www/) as a newcomer meets it:
// upload-server in its embedded default (no S3 variables: local disk, its own
// signed storage URLs under /storage/v1, the page at / and the wasm package
// at /pkg/, all one origin), headless Chromium driving the page only through
// what a person uses: the file picker, buttons, links.
//
// Two servers: A with the defaults and the development identity (the main
// flow: three files, one 80 MiB so multipart at the default 64 MiB
// threshold); B with UPLOAD_JWT_SECRET, a 1 MiB limit and an accept list (the
// token field and refusals). Screenshots go to tests/e2e/artifacts/.
//
// Environment: UPLOAD_SERVER_BIN (default target/debug/upload-server),
// CHROMIUM (default /usr/bin/chromium), E2E_KEEP (keep the temp dir of a
// failed run). Runs on node's test runner: `node --test page.mjs`
// (`--test-name-pattern=<regex>` for some of the tests).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { freePort, stopProcess } from "./servers.mjs";
import { MiB, assert, assertEq, makeFileIn, sleep, suite } from "./util.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const artifacts = path.join(here, "artifacts");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "upload-page-e2e-"));
const cleanups = [];

const makeFile = (name, size) => makeFileIn(tmp, name, size);

async function sha256File(file) {
  const hash = crypto.createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk);
  return hash.digest("hex");
}

/** An HS256 JWT as the server expects it (docs/api.md, Identity). */
function jwt(secret, sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${crypto.createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** The page's byte formatting, restated, so expected texts derive from the server's config. */
function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${Number.isInteger(v) ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/**
 * Starts upload-server with no S3 variables (the embedded default), the
 * repository root as working directory (so `www` and the package resolve as
 * they do for `cargo run`), and resolves once /healthz answers.
 */
async function startServer(name, extra, cwd = root) {
  const bin = path.resolve(root, process.env.UPLOAD_SERVER_BIN || "target/debug/upload-server");
  const port = await freePort();
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("UPLOAD_") || k.startsWith("AWS_")) delete env[k];
  Object.assign(env, {
    UPLOAD_LISTEN: `127.0.0.1:${port}`,
    UPLOAD_DATA_DIR: path.join(tmp, name),
    UPLOAD_STATIC_DIR: "www",
    // No UPLOAD_PKG_DIR: the package is found at its default place,
    // crates/upload-wasm/pkg, as for a newcomer's `cargo run`.
    ...extra,
  });
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  const logFile = path.join(tmp, `${name}.log`);
  const log = fs.openSync(logFile, "w");
  const proc = spawn(bin, [], { cwd, env, stdio: ["ignore", log, log] });
  let exited = null;
  proc.on("exit", (code) => (exited = code));
  const origin = `http://${env.UPLOAD_LISTEN}`;
  for (const start = Date.now(); ; await sleep(100)) {
    if (exited !== null) throw new Error(`upload-server (${name}) exited with ${exited}: ${fs.readFileSync(logFile, "utf8").slice(-2000)}`);
    try {
      if ((await fetch(`${origin}/healthz`)).ok) break;
    } catch {}
    if (Date.now() - start > 30000) throw new Error(`upload-server (${name}) did not answer; see ${logFile}`);
  }
  cleanups.push(() => stopProcess(proc));
  const api = async (method, p, token) => {
    const r = await fetch(`${origin}/api/v1${p}`, { method, headers: token ? { Authorization: `Bearer ${token}` } : {} });
    const body = r.status === 204 ? null : await r.json();
    return { status: r.status, body };
  };
  return { origin, api, logFile };
}

// Set up once for every test (the `setup` hook below).
let a, b, page, cdp, token;
const pageErrors = [];
let big, small1, small2, mid, flaky, tooBig, wrongType, okForB, again, three;

const { setup } = suite("page e2e", tmp, cleanups, {
  check: () => assertEq(pageErrors.length, 0, `page errors ${pageErrors.join("; ")}`),
  onFailure: async (name) => {
    pageErrors.length = 0;
    try {
      await page.screenshot({ path: path.join(artifacts, `failed-${name.replace(/[^\w-]+/g, "-").slice(0, 60)}.png`), fullPage: true });
    } catch {}
    await throttle(null).catch(() => {});
    await page.unrouteAll().catch(() => {});
  },
});

setup(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  // Screenshots of failures from an earlier run would mislead.
  for (const f of fs.readdirSync(artifacts)) if (/^(page-|failed-).*\.png$/.test(f)) fs.rmSync(path.join(artifacts, f));
  const bin = path.resolve(root, process.env.UPLOAD_SERVER_BIN || "target/debug/upload-server");
  assert(fs.existsSync(bin), `${bin} not found: cargo build -p upload-server`);
  assert(fs.existsSync(path.join(root, "crates/upload-wasm/pkg/upload_wasm_bg.wasm")), "crates/upload-wasm/pkg missing: scripts/build-wasm.sh");

  a = await startServer("a", {});
  const secret = crypto.randomBytes(32).toString("hex");
  b = await startServer("b", { UPLOAD_JWT_SECRET: secret, UPLOAD_MAX_FILE_SIZE: String(1 * MiB), UPLOAD_ACCEPT: ".bin,image/*" });
  // The page must be reachable the way the README says; a 404 here means the
  // server does not serve www/ or the package, and every test below would fail for it.
  for (const p of ["/", "/app.js", "/style.css", "/pkg/upload_wasm.js", "/pkg/upload_wasm_bg.wasm"]) {
    const r = await fetch(`${a.origin}${p}`);
    assert(r.ok, `GET ${p}: ${r.status}`);
  }

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  // Requests carrying bytes to the storage, counted at once, inside the page
  // (Playwright's request events arrive late enough to overlap the next
  // request): the page asks for four uploading at a time, the Uploader's
  // shared pool of 4 slots.
  await context.addInitScript(() => {
    const s = (window.__storage = { active: 0, max: 0 });
    const isWrite = (method, url) => method !== "GET" && String(url).includes("/storage/v1/");
    const open = XMLHttpRequest.prototype.open;
    XMLHttpRequest.prototype.open = function (method, url, ...rest) {
      this.__write = isWrite(String(method).toUpperCase(), url);
      return open.call(this, method, url, ...rest);
    };
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (...args) {
      if (this.__write) {
        s.max = Math.max(s.max, ++s.active);
        // Over at readyState 4, which comes before "load" and "loadend";
        // the client rightly starts the next request from there.
        let open = true;
        const done = () => open && !(open = false) && s.active--;
        this.addEventListener("readystatechange", () => this.readyState === 4 && done());
        this.addEventListener("loadend", done);
        // A request aborted between open() and send() (a pause landing
        // there) makes send() throw, and no event follows: not in flight.
        try {
          return send.apply(this, args);
        } catch (e) {
          done();
          throw e;
        }
      }
      return send.apply(this, args);
    };
    const fetch0 = window.fetch;
    window.fetch = function (input, init) {
      const url = input instanceof Request ? input.url : input;
      const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
      if (!isWrite(method, url)) return fetch0.call(this, input, init);
      s.max = Math.max(s.max, ++s.active);
      return fetch0.call(this, input, init).finally(() => s.active--);
    };
  });
  cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");

  big = makeFile("big-80MiB.bin", 80 * MiB);
  small1 = makeFile("small-one.bin", 300 * 1024 + 17);
  small2 = makeFile("small-two.bin", 2 * MiB + 5);
  mid = makeFile("cancel-me.bin", 24 * MiB);
  flaky = makeFile("flaky.bin", 512 * 1024);
  tooBig = makeFile("too-big.bin", 1 * MiB + 1);
  wrongType = path.join(tmp, "notes.txt");
  fs.writeFileSync(wrongType, "not accepted here\n");
  okForB = makeFile("with-token.bin", 200 * 1024);
  again = makeFile("resume-me.bin", 72 * MiB);
  three = [big, small1, small2];
  token = jwt(secret, "e2e-user");
});

const storageMax = () => page.evaluate(() => window.__storage.max);

/** Opens the page and waits until it has the server's config; records what the live region says. */
async function open(url) {
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30000 });
  await page.evaluate(() => {
    window.__announced = [];
    const region = document.getElementById("announce");
    new MutationObserver(() => window.__announced.push(region.textContent)).observe(region, { childList: true, characterData: true, subtree: true });
  });
}
const announced = () => page.evaluate(() => window.__announced.join("\n"));
const item = (name) => page.locator(`#queue li[data-name="${name}"]`);
const row = (name) => page.locator("#file-rows tr", { has: page.locator("td.name", { hasText: new RegExp(`^${name.replace(/\./g, "\\.")}$`) }) });
const rowIds = () => page.$$eval("#file-rows tr", (trs) => trs.map((tr) => tr.dataset.id));
async function waitSettled(names, ms = 300000) {
  await page.waitForFunction(
    (names) => names.every((n) => ["done", "failed", "cancelled"].includes(document.querySelector(`#queue li[data-name="${n}"]`)?.dataset.state)),
    names,
    { timeout: ms, polling: 100 },
  );
}
const stateOf = (name) => item(name).getAttribute("data-state");
const progressOf = (name) => item(name).locator("progress").evaluate((p) => ({ value: p.value, max: p.max }));
/** Slows the browser's network (DevTools throttling), so an upload is still running when the test acts on it. */
async function throttle(bytesPerSecond) {
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond ?? -1,
  });
}

test("A: the limits and accepted types are shown before picking", async () => {
  await open(`${a.origin}/`);
  const config = (await a.api("GET", "/config")).body;
  const limits = await page.locator("#limits").textContent();
  assert(limits.includes(formatBytes(config.constraints.max_file_size)), `limits text "${limits}" names ${formatBytes(config.constraints.max_file_size)}`);
  assertEq(config.constraints.accept.length, 0, "default accept list");
  assert(limits.includes("any type"), `limits text "${limits}" says any type is accepted`);
  // Keyboard: the picker is reachable with Tab and its focus is visible on the drop area.
  await page.locator("body").focus();
  for (let k = 0; k < 10 && !(await page.evaluate(() => document.activeElement?.id === "files")); k++) await page.keyboard.press("Tab");
  assert(await page.evaluate(() => document.activeElement?.id === "files"), "Tab reaches the file input");
  const outline = await page.locator(".drop-label").evaluate((el) => getComputedStyle(el).outlineStyle);
  assertEq(outline, "solid", "focus outline on the drop area");
  const labelled = await page.evaluate(() => document.getElementById("files").labels.length);
  assertEq(labelled, 1, "labels of the file input");
});

test("A: three files from the picker (one 80 MiB, multipart) upload with progress, pause and resume", async () => {
  await open(`${a.origin}/`);
  // 40 MiB/s: the 80 MiB file takes about two seconds, time enough to
  // pause it mid-way, whatever the machine's loopback speed.
  await throttle(40 * MiB);
  await page.setInputFiles("#files", three.map((f) => f.path));
  for (const f of three) await item(f.name).waitFor();
  await page.waitForFunction(() => {
    const p = document.querySelector('#queue li[data-name="big-80MiB.bin"] progress');
    return p.value > 0 && p.value < p.max;
  }, null, { timeout: 60000, polling: 20 });
  await page.getByRole("button", { name: `Pause ${big.name}` }).click();
  await page.waitForFunction((n) => document.querySelector(`#queue li[data-name="${n}"]`).dataset.state === "paused", big.name, { timeout: 10000 });
  assertEq(await item(big.name).locator(".state").textContent(), "Paused", "state text");
  // Paused means paused: the bar does not move.
  const before = await progressOf(big.name);
  await sleep(700);
  const after = await progressOf(big.name);
  assertEq(after.value, before.value, "progress while paused");
  assert(before.value > 0 && before.value < big.size, `paused mid-way: ${before.value} of ${big.size}`);
  const bytes = await item(big.name).locator(".bytes").textContent();
  assert(bytes.includes(`of ${formatBytes(big.size)}`), `bytes text "${bytes}" names the total`);
  await page.screenshot({ path: path.join(artifacts, "page-paused.png"), fullPage: true });
  await page.getByRole("button", { name: `Resume ${big.name}` }).click();
  // Speed is shown while it runs.
  await page.waitForFunction((n) => /\/s/.test(document.querySelector(`#queue li[data-name="${n}"] .bytes`).textContent), big.name, { timeout: 20000, polling: 50 });
  await page.screenshot({ path: path.join(artifacts, "page-mid-upload.png"), fullPage: true });
  await waitSettled(three.map((f) => f.name));
  await throttle(null);
  assertEq(await storageMax(), 4, "storage requests in flight at most");
  // 80 MiB is over the default 64 MiB threshold: the server chose multipart.
  const bigUpload = (await a.api("GET", `/uploads/${await item(big.name).getAttribute("data-upload-id")}`)).body;
  assertEq(bigUpload.upload.uploader, "S3Multipart", "plan of the 80 MiB file");
  assertEq(bigUpload.state, "completed", "state of the 80 MiB upload");
  for (const f of three) {
    assertEq(await stateOf(f.name), "done", `state of ${f.name}`);
    const p = await progressOf(f.name);
    assertEq(p.value, p.max, `bar of ${f.name} full`);
  }
  // The list shows all three (rows are added as uploads finish; the
  // server's order is checked after a load, in the paging test).
  const files = (await a.api("GET", "/files")).body.files;
  assertEq(files.length, 3, "files on the server");
  assertEq(JSON.stringify((await rowIds()).sort()), JSON.stringify(files.map((f) => f.id).sort()), "rows for the server's files");
  for (const f of three) {
    const r = row(f.name);
    assertEq(await r.count(), 1, `rows for ${f.name}`);
    assertEq(await r.locator("td.num").textContent(), formatBytes(f.size), `size shown for ${f.name}`);
    assertEq(await r.locator("td.type").textContent(), "application/octet-stream", `type shown for ${f.name}`);
    assert((await r.locator("time").getAttribute("datetime")).length > 0, "date");
  }
  // Announcements are batched for 150 ms; wait for the last ones.
  await page
    .waitForFunction((names) => names.every((n) => window.__announced.join("\n").includes(`${n} uploaded.`)), three.map((f) => f.name), { timeout: 5000, polling: 50 })
    .catch(() => {});
  const said = await announced();
  for (const f of three) assert(said.includes(`${f.name} uploaded.`), `live region announced ${f.name}: ${said}`);
  assert(said.includes(`${big.name}: 25%`), `live region announced a milestone: ${said}`);
  await page.screenshot({ path: path.join(artifacts, "page-after-upload.png"), fullPage: true });
});

test("A: every download link gives back the same bytes (SHA-256)", async () => {
  await open(`${a.origin}/`);
  for (const f of three) {
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 60000 }), row(f.name).getByRole("link", { name: `Download ${f.name}` }).click()]);
    assertEq(download.suggestedFilename(), f.name, "file name of the download");
    const saved = await download.path();
    assertEq(await sha256File(saved), f.sha256, `SHA-256 of ${f.name}`);
  }
});

test("A: the list is paged with More", async () => {
  await open(`${a.origin}/?limit=2`);
  await page.waitForSelector("#file-rows tr");
  assertEq(await page.locator("#file-rows tr").count(), 2, "rows on the first page");
  assert(await page.locator("#more").isVisible(), "More is shown");
  await page.getByRole("button", { name: "More" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#file-rows tr").length === 3);
  assert(!(await page.locator("#more").isVisible()), "More is gone after the last page");
  const files = (await a.api("GET", "/files")).body.files;
  assertEq(JSON.stringify(await rowIds()), JSON.stringify(files.map((f) => f.id)), "rows across pages in the server's order");
  // The same page on a phone-sized screen, for a look.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(artifacts, "page-narrow.png"), fullPage: true });
  await page.setViewportSize({ width: 1100, height: 900 });
});

test("A: delete removes a file, and it stays gone after a reload", async () => {
  await open(`${a.origin}/`);
  const victim = small1;
  const id = await row(victim.name).getAttribute("data-id");
  page.once("dialog", (d) => d.accept()); // the confirm() before deleting
  await row(victim.name).getByRole("button", { name: `Delete ${victim.name}` }).click();
  await row(victim.name).waitFor({ state: "detached", timeout: 10000 });
  assertEq((await a.api("GET", `/files/${id}`)).status, 404, "server answer for the deleted file");
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.waitForSelector("#file-rows tr");
  assertEq(await row(victim.name).count(), 0, "rows for the deleted file after reload");
  for (const f of three.filter((f) => f !== victim)) assertEq(await row(f.name).count(), 1, `rows for ${f.name} after reload`);
});

test("A: cancel stops an upload and leaves nothing behind", async () => {
  await open(`${a.origin}/`);
  await throttle(4 * MiB);
  await page.setInputFiles("#files", [mid.path]);
  await page.waitForFunction((n) => document.querySelector(`#queue li[data-name="${n}"] progress`)?.value > 0, mid.name, { timeout: 30000, polling: 20 });
  await page.getByRole("button", { name: `Cancel ${mid.name}` }).click();
  await waitSettled([mid.name], 30000);
  await throttle(null);
  assertEq(await stateOf(mid.name), "cancelled", "state");
  assertEq(await item(mid.name).locator(".state").textContent(), "Cancelled", "state text");
  const uploadId = await item(mid.name).getAttribute("data-upload-id");
  assert(uploadId, "the upload was created on the server before the cancel");
  assertEq((await a.api("GET", `/uploads/${uploadId}`)).body.state, "aborted", "server state");
  const names = (await a.api("GET", "/files")).body.files.map((f) => f.name);
  assert(!names.includes(mid.name), `cancelled file listed: ${names}`);
  // "Remove" takes the row out of the queue.
  await page.getByRole("button", { name: `Remove ${mid.name} from this list` }).click();
  assertEq(await item(mid.name).count(), 0, "queue rows after Remove");
});

test("A: a network failure is said in words, and Try again succeeds", async () => {
  await open(`${a.origin}/`);
  // Every request to the storage fails as an unreachable host would.
  await page.route("**/storage/v1/**", (r) => r.abort("connectionrefused"));
  await page.setInputFiles("#files", [flaky.path]);
  await waitSettled([flaky.name], 120000);
  assertEq(await stateOf(flaky.name), "failed", "state");
  const text = await item(flaky.name).locator(".error").textContent();
  assert(text.startsWith("Network problem"), `error text: ${text}`);
  await page.unroute("**/storage/v1/**");
  await page.getByRole("button", { name: `Try ${flaky.name} again` }).click();
  await waitSettled([flaky.name], 60000);
  assertEq(await stateOf(flaky.name), "done", "state after Try again");
  assert(await item(flaky.name).locator(".error").isHidden(), "error hidden after success");
  assertEq(await row(flaky.name).count(), 1, "listed after Try again");
});

test("A: files dropped on the drop area upload too", async () => {
  await open(`${a.origin}/`);
  // A DataTransfer built in the page, as a drag from the desktop delivers it.
  const size = 150 * 1024 + 3;
  const bytes = Buffer.alloc(size, 0);
  for (let k = 0; k < size; k++) bytes[k] = (k * 31 + 7) & 0xff;
  const expected = crypto.createHash("sha256").update(bytes).digest("hex");
  const dataTransfer = await page.evaluateHandle((size) => {
    const b = new Uint8Array(size);
    for (let k = 0; k < size; k++) b[k] = (k * 31 + 7) & 0xff;
    const dt = new DataTransfer();
    dt.items.add(new File([b], "dropped.bin", { type: "application/octet-stream" }));
    return dt;
  }, size);
  await page.dispatchEvent(".drop-label", "dragenter", { dataTransfer });
  assert(await page.locator("#drop.over").count(), "the drop area highlights while dragging");
  await page.dispatchEvent(".drop-label", "drop", { dataTransfer });
  await waitSettled(["dropped.bin"], 30000);
  assertEq(await stateOf("dropped.bin"), "done", "state");
  assertEq(await page.locator("#drop.over").count(), 0, "highlight after the drop");
  const [download] = await Promise.all([page.waitForEvent("download"), row("dropped.bin").getByRole("link", { name: "Download dropped.bin" }).click()]);
  assertEq(await sha256File(await download.path()), expected, "SHA-256 of the dropped file");
});

test("A: a file chosen again after a reload resumes where it stopped", async () => {
  await open(`${a.origin}/`);
  await throttle(30 * MiB);
  await page.setInputFiles("#files", [again.path]);
  await page.waitForFunction((n) => {
    const p = document.querySelector(`#queue li[data-name="${n}"] progress`);
    // Over the 4 parts in flight (44%): some parts are stored.
    return p && p.value > p.max * 0.65;
  }, again.name, { timeout: 60000, polling: 20 });
  const id = await item(again.name).getAttribute("data-upload-id");
  assert(id, "upload id on the row");
  await open(`${a.origin}/`); // the reload: requests in flight are lost
  await throttle(null);
  const stored = (await a.api("GET", `/uploads/${id}`)).body.parts.length;
  assert(stored >= 1, "parts stored before the reload");
  await page.setInputFiles("#files", [again.path]);
  await waitSettled([again.name]);
  assertEq(await stateOf(again.name), "done", "state");
  assertEq(await item(again.name).getAttribute("data-upload-id"), id, "the same upload continued");
  const config = (await a.api("GET", "/config")).body;
  const note = await item(again.name).locator(".note").textContent();
  const ok = new RegExp(`^Resumed from part \\d+ of ${Math.ceil(again.size / config.part_size)}: ${stored} already uploaded\\.$`);
  assert(ok.test(note), `note "${note}" (${stored} parts stored)`);
  assert(await item(again.name).locator(".note").isVisible(), "the note is shown");
  const [download] = await Promise.all([page.waitForEvent("download"), row(again.name).getByRole("link", { name: `Download ${again.name}` }).click()]);
  assertEq(await sha256File(await download.path()), again.sha256, "SHA-256 of the resumed file");
  await page.screenshot({ path: path.join(artifacts, "page-resumed.png"), fullPage: true });
});

test("B: with UPLOAD_JWT_SECRET and no token, the page asks for one", async () => {
  await open(`${b.origin}/`);
  await page.waitForFunction(() => document.getElementById("files-status").textContent.length > 0);
  const status = await page.locator("#files-status").textContent();
  assert(/token/i.test(status), `status asks for a token: ${status}`);
  assert(await page.locator("#access").evaluate((d) => d.open), "the token field is opened");
  assert(await page.getByLabel(/Paste a token/).isVisible(), "token field visible and labelled");
});

test("B: a pasted token is used for the list and the upload", async () => {
  await open(`${b.origin}/`);
  await page.getByLabel(/Paste a token/).fill(token);
  await page.getByRole("button", { name: "Use token" }).click();
  await page.waitForFunction(() => /No files yet/.test(document.getElementById("files-status").textContent), null, { timeout: 10000 });
  await page.setInputFiles("#files", [okForB.path]);
  await waitSettled([okForB.name], 60000);
  assertEq(await stateOf(okForB.name), "done", "state");
  const files = (await b.api("GET", "/files", token)).body.files;
  assertEq(files.length, 1, "files of the token's owner");
  assertEq(files[0].owner, "e2e-user", "owner");
  // The token survives a reload (sessionStorage) and still lists the file.
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await row(okForB.name).waitFor({ timeout: 10000 });
});

test("B: refused files show the reason next to them", async () => {
  await open(`${b.origin}/`);
  const config = (await b.api("GET", "/config")).body;
  const limits = await page.locator("#limits").textContent();
  assert(limits.includes(formatBytes(config.constraints.max_file_size)) && limits.includes(config.constraints.accept.join(", ")), `limits text: ${limits}`);
  await page.setInputFiles("#files", [tooBig.path, wrongType]);
  await waitSettled([tooBig.name, "notes.txt"], 30000);
  const large = await item(tooBig.name).locator(".error").textContent();
  assertEq(large, `Too large: the limit is ${formatBytes(config.constraints.max_file_size)}.`, "error of the large file");
  const type = await item("notes.txt").locator(".error").textContent();
  assertEq(type, `This type is not accepted (accepted: ${config.constraints.accept.join(", ")}).`, "error of the text file");
  assertEq(await item(tooBig.name).locator(".state").textContent(), "Not accepted", "state text of a refusal");
  // Trying the same file again cannot help, so it is not offered.
  assert(await item(tooBig.name).getByRole("button", { name: /Try .* again/ }).isHidden(), "no Try again for a refusal");
  await page.screenshot({ path: path.join(artifacts, "page-refused.png"), fullPage: true });
});

test("C: a server started before the package is built says how to build it, and so does the page", async () => {
  // As on a fresh clone: www/ is there, crates/upload-wasm/pkg is not (the
  // server runs from a directory without it).
  const c = await startServer("c", { UPLOAD_STATIC_DIR: path.join(root, "www") }, tmp);
  const log = fs.readFileSync(c.logFile, "utf8");
  assert(log.includes("bash scripts/build-wasm.sh"), `the server's log names the build command: ${log.slice(-1500)}`);
  await page.goto(`${c.origin}/`);
  await page.waitForFunction(() => !document.getElementById("limits").textContent.startsWith("Loading"), null, { timeout: 10000 });
  const text = await page.locator("#limits").textContent();
  assert(text.includes("not built") && text.includes("bash scripts/build-wasm.sh"), `the page says so: "${text}"`);
  assert(await page.locator("#files").isDisabled(), "nothing can be picked");
});
