// Where the page's own CPU goes while our client uploads: a CPU profile of
// the renderer's main thread (JS and wasm, by V8's sampling profiler) around
// one upload, with the Chromium process tree's CPU beside it (bench/notes.md).
//
//   node bench/browser_profile.mjs PKG_DIR [--size-mib 1024] [--concurrency 4] [--progress]
//
// PKG_DIR: a `--target web` build of the package; for function names in the
// profile, one whose .wasm keeps its name section (see bench/notes.md).
// `--progress` passes an onProgress callback (the bench page passes none).
// Env as bench/browser.mjs: TEST_S3_* and AWS_* (scripts/garage.sh), UPLOAD_SERVER_BIN, BENCH_TMP.
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { freePort, startServer, startStatic } from "../tests/e2e/servers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const pkg = path.resolve(args[0]);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const sizeMiB = Number(opt("--size-mib", "1024"));
const concurrency = Number(opt("--concurrency", "4"));
const progress = args.includes("--progress");
const tmp = process.env.BENCH_TMP || "/tmp/bench";
fs.mkdirSync(path.join(tmp, "profile-site"), { recursive: true });

function cpuSeconds(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}
function tree(pid, seen = new Set()) {
  if (seen.has(pid)) return seen;
  seen.add(pid);
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").filter(Boolean)) tree(Number(c), seen);
    }
  } catch {}
  return seen;
}
const cmdline = (pid) => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
};
/** CPU seconds of every process of the tree, by role (browser, renderer, network, gpu, other). */
function cpuByRole(rootPid) {
  const out = {};
  for (const pid of tree(rootPid)) {
    const c = cmdline(pid);
    const role = /--type=renderer/.test(c) ? "renderer" : /network\.mojom/.test(c) ? "network"
      : /--type=gpu/.test(c) ? "gpu" : /--type=/.test(c) ? "other" : "browser";
    out[role] = (out[role] || 0) + cpuSeconds(pid);
  }
  return out;
}

const cleanups = [];
try {
  const site = path.join(tmp, "profile-site");
  fs.writeFileSync(path.join(site, "index.html"), `<!doctype html><input type="file" id="f"><pre id="s">loading</pre>
<script type="module">
import init, { Uploader } from "/pkg/upload_wasm.js";
await init();
window.up = async (endpoint, concurrency, progress) => {
  const uploader = new Uploader({ endpoint, concurrency });
  await uploader.config();
  let events = 0;
  const t0 = performance.now();
  const options = progress ? { onProgress: () => { events++; } } : {};
  const record = await uploader.upload(document.getElementById("f").files[0], options).done;
  return { ms: performance.now() - t0, size: record.size, events };
};
document.getElementById("s").textContent = "ready";
</script>`);
  const stat = await startStatic({ "/pkg/": pkg, "/": site });
  cleanups.push(stat.close);
  const apiPort = await freePort();
  const env = {
    ...process.env,
    UPLOAD_LISTEN: `127.0.0.1:${apiPort}`,
    UPLOAD_DATA_DIR: path.join(tmp, `profile-server-${Date.now()}`),
    UPLOAD_S3_BUCKET: process.env.TEST_S3_BUCKET,
    UPLOAD_S3_ENDPOINT: process.env.TEST_S3_ENDPOINT,
    UPLOAD_S3_REGION: process.env.TEST_S3_REGION || "us-east-1",
    UPLOAD_S3_FORCE_PATH_STYLE: "true",
    UPLOAD_CORS_ORIGINS: stat.origin,
    UPLOAD_MAX_FILE_SIZE: String(4096 * MiB),
    UPLOAD_RATE_LIMIT: "0",
  };
  delete env.UPLOAD_JWT_SECRET;
  fs.mkdirSync(env.UPLOAD_DATA_DIR, { recursive: true });
  const bin = process.env.UPLOAD_SERVER_BIN || path.join(root, "target/release/upload-server");
  const server = await startServer(bin, env, path.join(tmp, "profile-server.log"));
  cleanups.push(server.stop);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  cleanups.push(() => browser.close());
  let chromiumPid = 0;
  for (const c of fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").split(" ").filter(Boolean)) {
    if (cmdline(c).includes("chromium")) chromiumPid = Number(c);
  }
  const file = path.join(tmp, "profile.bin");
  spawnSync("dd", ["if=/dev/urandom", `of=${file}`, "bs=1M", `count=${sizeMiB}`, "status=none"]);
  cleanups.push(() => fs.rmSync(file, { force: true }));

  const page = await browser.newPage();
  await page.goto(`${stat.origin}/`);
  await page.waitForFunction(() => document.getElementById("s").textContent === "ready", null, { timeout: 30000 });
  await page.setInputFiles("#f", file);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 500 });
  const before = cpuByRole(chromiumPid);
  await cdp.send("Profiler.start");
  const r = await page.evaluate(([e, n, p]) => window.up(e, n, p), [server.base, concurrency, progress]);
  const { profile } = await cdp.send("Profiler.stop");
  const after = cpuByRole(chromiumPid);
  if (r.size !== sizeMiB * MiB) throw new Error(`recorded size ${r.size}`);

  // Self time by function: samples x their intervals.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const n = byId.get(profile.samples[i]);
    const { functionName, url } = n.callFrame;
    const where = url ? ` ${path.basename(url)}:${n.callFrame.lineNumber + 1}` : "";
    const key = `${functionName || "(anonymous)"}${where}`;
    self.set(key, (self.get(key) || 0) + dt);
    total += dt;
  }
  const busy = [...self].filter(([k]) => k !== "(idle)").reduce((a, [, v]) => a + v, 0);
  const gib = sizeMiB / 1024;
  const cpu = Object.fromEntries(Object.keys(after).map((k) => [k, +((after[k] - (before[k] || 0)) / gib).toFixed(2)]));
  console.log(`${sizeMiB} MiB in ${(r.ms / 1000).toFixed(2)} s (${(sizeMiB / (r.ms / 1000)).toFixed(1)} MiB/s), ${r.events} progress events`);
  console.log(`Chromium CPU s per GiB by process: ${JSON.stringify(cpu)}, total ${Object.values(cpu).reduce((a, b) => a + b, 0).toFixed(2)}`);
  console.log(`renderer main thread, profiled: ${(total / 1000).toFixed(2)} s, of it busy ${(busy / 1000).toFixed(3)} s (${((busy / 1000) / gib).toFixed(3)} s per GiB)`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`  ${v.toFixed(1).padStart(9)} ms  ${k}`);
  }
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {}
  }
}
process.exit(0);
