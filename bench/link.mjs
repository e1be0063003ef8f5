// Uploads over a shaped link (issue 16): Chromium reaches the API, Uppy
// Companion and the store only through link-shaper (tests/src/bin/link-shaper.rs),
// one link for all of them: RTT and bandwidth per direction. Side by side in
// one run: ours (the package), Uppy 5 @uppy/aws-s3 with Companion as its
// signer, and a raw fetch client in the same page doing our API's plan.
//
//   node bench/link.mjs OUT.json [--quick] [--rtt-ms 40] [--mbit 50] [--concurrency 6] [--cases small,medium,large]
//     [--clients ours,uppy-companion,raw]
//
// Env: TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_S3_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY (Garage from scripts/garage.sh), UPLOAD_SERVER_BIN,
// LINK_SHAPER_BIN (default target/release/link-shaper), BENCH_TMP, BENCH_PKG.
//
// The store is named `localhost:PORT` in every signed URL (the servers reach
// Garage at that name directly); Chromium alone maps that name to the
// shaper's store listener (--host-resolver-rules), so the Host header the
// signatures cover is the same on both paths.
import fs from "node:fs";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, startServer, startStatic, stopProcess } from "../tests/e2e/servers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const KiB = 1024;
const MiB = 1024 * KiB;
const args = process.argv.slice(2);
const out = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes("--quick");
const rttMs = Number(opt("--rtt-ms", "40"));
const mbit = Number(opt("--mbit", "50"));
const concurrency = Number(opt("--concurrency", "6"));
const only = opt("--cases", "small,medium,large").split(",");
const tmp = process.env.BENCH_TMP || "/tmp/bench";
const pkg = process.env.BENCH_PKG || path.join(root, "crates/upload-wasm/pkg");
const shaperBin = process.env.LINK_SHAPER_BIN || path.join(root, "target/release/link-shaper");
fs.mkdirSync(tmp, { recursive: true });

const CASES = [
  { id: "small", label: "200 files of 200 KiB", count: 200, size: 200 * KiB, rounds: quick ? 1 : 3 },
  { id: "medium", label: "20 files of 20 MiB", count: 20, size: 20 * MiB, rounds: 1 },
  quick
    ? { id: "large", label: "1 file of 64 MiB (--quick; 1 GiB without it)", count: 1, size: 64 * MiB, rounds: 1 }
    : { id: "large", label: "1 file of 1 GiB", count: 1, size: 1024 * MiB, rounds: 1 },
].filter((c) => only.includes(c.id));
const CLIENTS = opt("--clients", "ours,uppy-companion,raw").split(",");

function cpuSeconds(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}
function treeCpuSeconds(pid) {
  let total = 0;
  const todo = [pid];
  const seen = new Set();
  while (todo.length) {
    const p = todo.pop();
    if (!p || seen.has(p)) continue;
    seen.add(p);
    const c = cpuSeconds(p);
    if (!Number.isNaN(c)) total += c;
    try {
      for (const t of fs.readdirSync(`/proc/${p}/task`)) {
        todo.push(...fs.readFileSync(`/proc/${p}/task/${t}/children`, "utf8").split(" ").filter(Boolean).map(Number));
      }
    } catch {}
  }
  return total;
}
const loadavg = () => fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

function makeFiles(dir, count, size) {
  fs.mkdirSync(dir, { recursive: true });
  const paths = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `f-${String(i).padStart(3, "0")}.bin`);
    // Fresh random bytes for every file and client: Garage deduplicates blocks.
    const r = size % MiB === 0
      ? spawnSync("dd", ["if=/dev/urandom", `of=${file}`, "bs=1M", `count=${size / MiB}`, "status=none"])
      : spawnSync("dd", ["if=/dev/urandom", `of=${file}`, "bs=1K", `count=${size / KiB}`, "status=none"]);
    if (r.status !== 0) throw new Error(`dd: ${r.stderr}`);
    paths.push(file);
  }
  return paths;
}

// A child process whose stdout lines we wait on.
function spawnWithLines(cmd, argv, env, logFile, ready) {
  const log = fs.openSync(logFile, "w");
  const proc = spawn(cmd, argv, { env, stdio: ["ignore", "pipe", log] });
  const lines = [];
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`${cmd}: not ready in 30 s: ${lines.join(" | ")}`)), 30000);
    proc.on("exit", (code) => reject(new Error(`${cmd} exited ${code}: ${lines.join(" | ")}`)));
    proc.stdout.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        fs.writeSync(log, line + "\n");
        if (ready(lines)) {
          clearTimeout(timer);
          resolve({ proc, lines });
        }
      }
    });
  });
}

async function shaperStats(addr) {
  return (await (await fetch(`http://${addr}/`)).json()).routes;
}
// A client that stops moving bytes would hang the run for ever: a run fails
// once no byte has crossed the link for this long (the slowest legitimate
// gap is a part's signing request plus a new connection: well under a second).
const STALL_MS = 60000;
/** Rejects once the link has carried no bytes for STALL_MS (checked every 5 s). */
function stallWatch(addr) {
  let timer;
  let last = -1;
  let quietSince = Date.now();
  const watching = new Promise((_, reject) => {
    timer = setInterval(async () => {
      const routes = await shaperStats(addr).catch(() => ({}));
      const bytes = Object.values(routes).reduce((a, r) => a + r.bytes_up + r.bytes_down, 0);
      if (bytes !== last) {
        last = bytes;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= STALL_MS) {
        const requests = Object.fromEntries(Object.entries(routes).map(([k, r]) => [k, r.methods]));
        reject(new Error(`stalled: no bytes crossed the link for ${STALL_MS / 1000} s; requests so far ${JSON.stringify(requests)}`));
      }
    }, 5000);
  });
  return { watching, stop: () => clearInterval(timer) };
}
function statsDelta(a, b) {
  const d = {};
  for (const [route, s1] of Object.entries(b)) {
    const s0 = a[route];
    const methods = {};
    for (const [m, n] of Object.entries(s1.methods)) {
      const k = n - (s0.methods[m] || 0);
      if (k) methods[m] = k;
    }
    d[route] = {
      connections: s1.connections - s0.connections,
      requests: s1.requests - s0.requests,
      methods,
      bytes_up: s1.bytes_up - s0.bytes_up,
      bytes_down: s1.bytes_down - s0.bytes_down,
      unframed_connections: s1.unframed_connections - s0.unframed_connections,
    };
  }
  return d;
}

const cleanups = [];
const results = { link: { rtt_ms: rttMs, up_mbit: mbit, down_mbit: mbit }, concurrency, cases: CASES, runs: [], notes: [] };
try {
  const store = new URL(process.env.TEST_S3_ENDPOINT);
  const storePort = Number(store.port);
  const storeName = `localhost:${storePort}`;

  // Uppy 5 bundled for the page, as bench/browser.mjs does.
  const site = path.join(tmp, "link-site");
  fs.mkdirSync(site, { recursive: true });
  const esb = spawnSync(path.join(here, "node_modules/.bin/esbuild"), [
    path.join(here, "uppy5/entry.js"), "--bundle", "--minify", "--format=esm", "--platform=browser",
    `--outfile=${path.join(site, "uppy5.js")}`, "--log-level=warning",
  ], { cwd: path.join(here, "uppy5") });
  if (esb.status !== 0) throw new Error(`esbuild uppy5: ${esb.stderr}`);
  fs.copyFileSync(path.join(here, "browser/index.html"), path.join(site, "index.html"));
  fs.copyFileSync(path.join(here, "browser/app.js"), path.join(site, "app.js"));
  const page0 = await startStatic({ "/pkg/": pkg, "/": site });
  cleanups.push(page0.close);

  const apiPort = await freePort();
  const companionPort = await freePort();
  // The link: one shaper process, one pair of buckets, three routes.
  const shaper = await spawnWithLines(shaperBin, [
    "--rtt-ms", String(rttMs), "--up-mbit", String(mbit), "--down-mbit", String(mbit),
    "--route", `api=127.0.0.1:0=127.0.0.1:${apiPort}`,
    "--route", `companion=127.0.0.1:0=127.0.0.1:${companionPort}`,
    "--route", `store=127.0.0.1:0=127.0.0.1:${storePort}`,
  ], process.env, path.join(tmp, "link-shaper.log"), (lines) => lines.some((l) => l.startsWith("stats ")));
  cleanups.push(() => stopProcess(shaper.proc));
  const listen = {};
  for (const l of shaper.lines) {
    const [word, name, addr] = l.split(" ");
    if (word === "listening") listen[name] = addr;
    if (word === "stats") listen.stats = name;
  }
  results.link.shaper = (await (await fetch(`http://${listen.stats}/`)).json()).link;

  const env = {
    ...process.env,
    UPLOAD_LISTEN: `127.0.0.1:${apiPort}`,
    UPLOAD_PUBLIC_URL: `http://${listen.api}`,
    UPLOAD_DATA_DIR: path.join(tmp, `link-server-${Date.now()}`),
    UPLOAD_S3_BUCKET: process.env.TEST_S3_BUCKET,
    UPLOAD_S3_ENDPOINT: `http://${storeName}`,
    UPLOAD_S3_REGION: process.env.TEST_S3_REGION || "us-east-1",
    UPLOAD_S3_FORCE_PATH_STYLE: "true",
    UPLOAD_CORS_ORIGINS: page0.origin,
    UPLOAD_MAX_FILE_SIZE: String(4096 * MiB),
    UPLOAD_MAX_FILES: "1000",
    UPLOAD_RATE_LIMIT: "0",
  };
  delete env.UPLOAD_JWT_SECRET;
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  const bin = process.env.UPLOAD_SERVER_BIN || path.join(root, "target/release/upload-server");
  const server = await startServer(bin, env, path.join(tmp, "link-server.log"));
  cleanups.push(server.stop);
  const config = await (await fetch(`${server.base}/config`)).json();
  results.part_size = config.part_size;
  results.multipart_threshold = config.multipart_threshold;

  const companionData = path.join(tmp, "companion-data");
  fs.mkdirSync(companionData, { recursive: true });
  const companion = await spawnWithLines("node", [path.join(here, "companion/server.mjs")], {
    ...process.env,
    COMPANION_PORT: String(companionPort),
    COMPANION_ORIGINS: page0.origin,
    COMPANION_DATA: companionData,
    COMPANION_S3_ENDPOINT: `http://${storeName}`,
  }, path.join(tmp, "companion.log"), (lines) => lines.some((l) => l.startsWith("companion listening")));
  cleanups.push(() => stopProcess(companion.proc));
  results.companion = { workers: companion.lines.find((l) => l.startsWith("companion listening")) };
  results.companion_version = JSON.parse(fs.readFileSync(path.join(here, "companion/node_modules/@uppy/companion/package.json"))).version;

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", `--host-resolver-rules=MAP ${storeName} ${listen.store}`],
  });
  cleanups.push(() => browser.close());
  results.chromium = browser.version();
  let chromiumPid = 0;
  for (const c of fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").split(" ").filter(Boolean)) {
    try {
      if (fs.readFileSync(`/proc/${c}/cmdline`, "utf8").includes("chromium")) chromiumPid = Number(c);
    } catch {}
  }
  const endpoints = { ours: `http://${listen.api}/api/v1`, raw: `http://${listen.api}/api/v1`, "uppy-companion": `http://${listen.companion}` };

  async function once(kase, client, round) {
    const entry = { case: kase.id, client, round, count: kase.count, size: kase.size, load_before: loadavg() };
    const dir = path.join(tmp, `link-${kase.id}-${client}-${round}`);
    const page = await browser.newPage();
    try {
      const paths = makeFiles(dir, kase.count, kase.size);
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      // What a client logs as an error, reported if its run stalls.
      const logged = [];
      page.on("console", (m) => m.type() === "error" && logged.length < 5 && logged.push(m.text().slice(0, 200)));
      await page.goto(`${page0.origin}/`);
      await page.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout: 30000 });
      await page.setInputFiles("#files", paths);
      await page.evaluate(([c, e, n, p]) => window.bench.prepare(c, e, n, p), [client, endpoints[client], concurrency, config.part_size]);
      const s0 = await shaperStats(listen.stats);
      const cpu0 = treeCpuSeconds(chromiumPid);
      const stall = stallWatch(listen.stats);
      let r;
      try {
        r = await Promise.race([
          page.evaluate(([c, e, n]) => window.bench.run(c, e, n), [client, endpoints[client], concurrency]),
          stall.watching,
        ]);
      } catch (e) {
        throw new Error(`${e.message}${logged.length ? `; console errors: ${logged.join(" | ")}` : ""}`);
      } finally {
        stall.stop();
      }
      entry.client_cpu_s = treeCpuSeconds(chromiumPid) - cpu0;
      // Let the last answers' bytes be counted (the page resolves on them).
      const s1 = await shaperStats(listen.stats);
      if (errors.length) throw new Error(errors.join("; "));
      if (r.files !== kase.count || r.bytes !== kase.count * kase.size) throw new Error(`uploaded ${r.files} files, ${r.bytes} bytes`);
      const traffic = statsDelta(s0, s1);
      const requests = Object.values(traffic).reduce((a, t) => a + t.requests, 0);
      const preflights = Object.values(traffic).reduce((a, t) => a + (t.methods.OPTIONS || 0), 0);
      const connections = Object.values(traffic).reduce((a, t) => a + t.connections, 0);
      Object.assign(entry, {
        ms: r.ms,
        files_s: kase.count / (r.ms / 1000),
        mib_s: (kase.count * kase.size) / MiB / (r.ms / 1000),
        traffic,
        requests_per_file: requests / kase.count,
        preflights_per_file: preflights / kase.count,
        connections,
        load_after: loadavg(),
      });
      console.log(`  ${kase.id.padEnd(6)} ${client.padEnd(15)} round ${round}: ${entry.files_s.toFixed(2)} files/s, ` +
        `${entry.mib_s.toFixed(2)} MiB/s (${(r.ms / 1000).toFixed(2)} s), ${entry.requests_per_file.toFixed(2)} requests/file ` +
        `(${entry.preflights_per_file.toFixed(2)} preflights), ${connections} connections, Chromium CPU ${entry.client_cpu_s.toFixed(1)} s`);
    } catch (e) {
      entry.failed = String(e.message || e).slice(0, 500);
      console.log(`  ${kase.id} ${client} round ${round}: FAILED ${entry.failed}`);
    } finally {
      await page.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    results.runs.push(entry);
  }

  for (const kase of CASES) {
    for (let round = 1; round <= kase.rounds; round++) {
      // Rotate the order so no client always goes first.
      const order = CLIENTS.map((_, i) => CLIENTS[(i + round - 1) % CLIENTS.length]);
      for (const client of order) await once(kase, client, round);
    }
  }
} catch (e) {
  results.notes.push(`aborted: ${String(e.stack || e).slice(0, 800)}`);
  console.error(e);
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {}
  }
  fs.writeFileSync(out, JSON.stringify(results, null, 1));
}
process.exit(0);
