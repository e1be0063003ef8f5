// Browser upload throughput (issue 6, item 2) and client memory (item 3).
//
//   node bench/browser.mjs OUT.json [--rounds N] [--size-mib N] [--memory 256,2048] [--skip-throughput] [--clients a,b]
//
// Env: TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_S3_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY (Garage from scripts/garage.sh), UPLOAD_SERVER_BIN
// (default target/release/upload-server), BENCH_TMP, BENCH_PKG (the package
// directory, default crates/upload-wasm/pkg).
//
// Every upload gets its own file of random bytes: Garage deduplicates blocks,
// so a second upload of the same bytes would be cheaper than the first.
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, startServer, startStatic } from "../tests/e2e/servers.mjs";
import { rawUpload } from "./raw_upload.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const out = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const rounds = Number(opt("--rounds", "2"));
const sizeMiB = Number(opt("--size-mib", "1024"));
const memorySizes = opt("--memory", "256,2048").split(",").filter(Boolean).map(Number);
const skipThroughput = args.includes("--skip-throughput");
const concurrency = Number(opt("--concurrency", "4"));
// Only these clients (comma-separated), e.g. `--clients ours,ours-checksums` to compare two builds run by run.
const only = opt("--clients", "").split(",").filter(Boolean);
const tmp = process.env.BENCH_TMP || "/tmp/bench";
const pkg = process.env.BENCH_PKG || path.join(root, "crates/upload-wasm/pkg");
fs.mkdirSync(tmp, { recursive: true });

// CPU seconds (user + system) of a process, to see who is busy during an upload.
function cpuSeconds(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}
// CPU seconds of a process and all its descendants (Chromium's renderer, network service, GPU...).
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
let chromiumPid = 0;
const garagePid = process.env.GARAGE_DIR && fs.existsSync(`${process.env.GARAGE_DIR}/garage.pid`)
  ? Number(fs.readFileSync(`${process.env.GARAGE_DIR}/garage.pid`, "utf8")) : 0;

function makeFile(name, mib) {
  const file = path.join(tmp, name);
  // /dev/urandom through dd: fast, and the page cache keeps it for the read.
  const r = spawnSync("dd", ["if=/dev/urandom", `of=${file}`, "bs=1M", `count=${mib}`, "status=none"]);
  if (r.status !== 0) throw new Error(`dd: ${r.stderr}`);
  return file;
}

const cleanups = [];
const results = { throughput: [], memory: [], notes: [] };
try {
  // Uppy 5 bundled for the page.
  const uppyBundle = path.join(tmp, "site", "uppy5.js");
  fs.mkdirSync(path.dirname(uppyBundle), { recursive: true });
  const esb = spawnSync(path.join(here, "node_modules/.bin/esbuild"), [
    path.join(here, "uppy5/entry.js"), "--bundle", "--minify", "--format=esm", "--platform=browser",
    `--outfile=${uppyBundle}`, "--log-level=warning",
  ], { cwd: path.join(here, "uppy5") });
  if (esb.status !== 0) throw new Error(`esbuild uppy5: ${esb.stderr}`);
  fs.copyFileSync(path.join(here, "browser/index.html"), path.join(tmp, "site/index.html"));
  fs.copyFileSync(path.join(here, "browser/app.js"), path.join(tmp, "site/app.js"));
  const site = await startStatic({ "/pkg/": pkg, "/": path.join(tmp, "site") });
  cleanups.push(site.close);

  const apiPort = await freePort();
  const env = {
    ...process.env,
    UPLOAD_LISTEN: `127.0.0.1:${apiPort}`,
    UPLOAD_DATA_DIR: path.join(tmp, `browser-server-${Date.now()}`),
    UPLOAD_S3_BUCKET: process.env.TEST_S3_BUCKET,
    UPLOAD_S3_ENDPOINT: process.env.TEST_S3_ENDPOINT,
    UPLOAD_S3_REGION: process.env.TEST_S3_REGION || "us-east-1",
    UPLOAD_S3_FORCE_PATH_STYLE: "true",
    UPLOAD_CORS_ORIGINS: site.origin,
    UPLOAD_MAX_FILE_SIZE: String(4096 * MiB),
    UPLOAD_MAX_FILES: "1000",
    UPLOAD_RATE_LIMIT: "0",
  };
  delete env.UPLOAD_JWT_SECRET;
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  const bin = process.env.UPLOAD_SERVER_BIN || path.join(root, "target/release/upload-server");
  const server = await startServer(bin, env, path.join(tmp, "browser-server.log"));
  cleanups.push(server.stop);
  const config = await (await fetch(`${server.base}/config`)).json();
  results.part_size = config.part_size;
  results.concurrency = concurrency;

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"],
  });
  cleanups.push(() => browser.close());
  results.chromium = browser.version();
  // playwright-core launches Chromium as a child of this process: find it.
  for (const c of fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").split(" ").filter(Boolean)) {
    try {
      if (fs.readFileSync(`/proc/${c}/cmdline`, "utf8").includes("chromium")) chromiumPid = Number(c);
    } catch {}
  }

  async function freshPage() {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${site.origin}/`);
    await page.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout: 30000 });
    const cdp = await page.context().newCDPSession(page);
    return { page, cdp, errors };
  }

  async function inBrowser(client, file, extra = false) {
    const { page, cdp, errors } = await freshPage();
    try {
      await page.setInputFiles("#files", file);
      await cdp.send("HeapProfiler.collectGarbage");
      const before = await page.evaluate(() => window.bench.memory());
      const cdpBefore = await cdp.send("Runtime.getHeapUsage");
      await page.evaluate(() => window.bench.startSampling());
      let cdpPeak = cdpBefore.usedSize;
      let running = true;
      const poll = (async () => {
        while (running) {
          try {
            cdpPeak = Math.max(cdpPeak, (await cdp.send("Runtime.getHeapUsage")).usedSize);
          } catch {}
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const cpu0 = treeCpuSeconds(chromiumPid);
      const r = await page.evaluate(([c, endpoint, n, x]) => window.bench[c](endpoint, n, x), [client, server.base, concurrency, extra]);
      r.client_cpu_s = chromiumPid ? treeCpuSeconds(chromiumPid) - cpu0 : null;
      running = false;
      await poll;
      const peak = await page.evaluate(() => window.bench.stopSampling());
      if (errors.length) throw new Error(errors.join("; "));
      return {
        ...r,
        memory: {
          heap_before: before.heap, heap_peak: peak.heap, wasm_before: before.wasm, wasm_peak: peak.wasm,
          cdp_heap_before: cdpBefore.usedSize, cdp_heap_peak: cdpPeak,
        },
      };
    } finally {
      await page.close();
    }
  }

  const uploaders = {
    ours: (file) => inBrowser("ours", file),
    // The same client with `checksums: true`: SHA-256 of every part in the browser, verified by the store.
    "ours-checksums": (file) => inBrowser("ours", file, true),
    uppy: (file) => inBrowser("uppy", file),
    raw: async (file) => {
      const c0 = process.cpuUsage();
      const r = await rawUpload(server.base, file, concurrency);
      const d = process.cpuUsage(c0);
      return { ...r, client_cpu_s: (d.user + d.system) / 1e6 };
    },
  };

  if (!skipThroughput) {
    for (let round = 1; round <= rounds; round++) {
      // Alternate the order between rounds so no client always goes first.
      const order = round % 2 ? ["ours", "uppy", "raw", "ours-checksums"] : ["ours-checksums", "raw", "uppy", "ours"];
      for (const client of order.filter((c) => !only.length || only.includes(c))) {
        const file = makeFile(`tp-${client}-${round}.bin`, sizeMiB);
        const entry = { client, round, size: sizeMiB * MiB, load_before: fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ") };
        try {
          const g0 = cpuSeconds(garagePid);
          // The client's CPU (in r): Chromium's whole process tree around the upload, or this Node process for raw.
          const r = await uploaders[client](file);
          const garageCpu = cpuSeconds(garagePid) - g0;
          const clientCpu = r.client_cpu_s ?? NaN;
          if (r.size !== sizeMiB * MiB) throw new Error(`recorded size ${r.size}`);
          Object.assign(entry, r, { mib_s: sizeMiB / (r.ms / 1000), garage_cpu_s: Number.isNaN(garageCpu) ? null : garageCpu });
          console.log(`  ${client.padEnd(14)} round ${round}: ${entry.mib_s.toFixed(1)} MiB/s (${(r.ms / 1000).toFixed(2)} s), ` +
            `Garage CPU ${garageCpu.toFixed(1)} s, client CPU ${clientCpu.toFixed(1)} s`);
        } catch (e) {
          entry.failed = String(e.message || e).slice(0, 500);
          console.log(`  ${client} round ${round}: FAILED ${entry.failed}`);
        }
        fs.rmSync(file, { force: true });
        results.throughput.push(entry);
      }
    }
  }

  for (const mib of memorySizes) {
    const file = makeFile(`mem-${mib}.bin`, mib);
    const entry = { client: "ours", size: mib * MiB };
    try {
      const r = await uploaders.ours(file);
      Object.assign(entry, r, { mib_s: mib / (r.ms / 1000) });
      const m = r.memory;
      console.log(`  memory ${mib} MiB: JS heap ${(m.heap_before / MiB).toFixed(1)} -> peak ${(m.heap_peak / MiB).toFixed(1)} MiB, ` +
        `wasm ${(m.wasm_before / MiB).toFixed(2)} -> ${(m.wasm_peak / MiB).toFixed(2)} MiB, CDP heap peak ${(m.cdp_heap_peak / MiB).toFixed(1)} MiB`);
    } catch (e) {
      entry.failed = String(e.message || e).slice(0, 500);
      console.log(`  memory ${mib} MiB: FAILED ${entry.failed}`);
    }
    fs.rmSync(file, { force: true });
    results.memory.push(entry);
  }
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {}
  }
  fs.writeFileSync(out, JSON.stringify(results, null, 1));
}
process.exit(0);
