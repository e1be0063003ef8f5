// The processes and small servers the end-to-end tests run against:
// a static server for the test page and the built package (its own origin,
// so the API and the store are cross-origin, as in a real app), a proxy in
// front of the object store that can inject faults, Garage (when the caller
// did not start one; through scripts/garage.sh) and upload-server itself.
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * SIGTERM to `proc`, SIGKILL if it has not exited after `ms`; resolves once
 * it has exited (a child left running keeps the test process alive).
 */
export function stopProcess(proc, ms = 10000) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill("SIGKILL"), ms);
    proc.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}

/** Stops `server` and drops its open connections (keep-alive ones would keep the test process alive). */
function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".ts": "text/plain" };

/** Serves `routes` ({"/pkg/": dir, "/": dir}) on a free port. */
export async function startStatic(routes) {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    for (const [prefix, dir] of Object.entries(routes)) {
      if (!url.pathname.startsWith(prefix)) continue;
      let rel = decodeURIComponent(url.pathname.slice(prefix.length)) || "index.html";
      const file = path.join(dir, path.normalize(rel).replace(/^(\.\.[/\\])+/, ""));
      if (!file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) continue;
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream", "Cache-Control": "no-store" });
      fs.createReadStream(file).pipe(res);
      return;
    }
    res.writeHead(404).end("not found");
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return { origin: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}

/**
 * A transparent HTTP proxy to the object store. The Host header is passed
 * through untouched, so URLs the server signed for the proxy's address verify
 * at the store. It counts part PUTs (and how many run at once) and can answer
 * a part PUT with an error status or drop its connection, `times` times.
 */
export async function startProxy(target) {
  const t = new URL(target);
  const port = await freePort();
  const state = {
    faults: [], // {part, status | "drop", times}
    active: 0,
    maxActive: 0,
    partPuts: [], // {part, at, status}
    posts: 0,
    reset() {
      this.faults = [];
      this.maxActive = this.active;
      this.partPuts = [];
      this.posts = 0;
    },
    putsOf(n) {
      return this.partPuts.filter((p) => p.part === n).length;
    },
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const part = req.method === "PUT" && url.searchParams.has("uploadId") ? Number(url.searchParams.get("partNumber")) : 0;
    if (req.method === "POST" && !url.search) state.posts++;
    if (part) {
      state.active++;
      state.maxActive = Math.max(state.maxActive, state.active);
      const record = { part, at: Date.now(), status: 0 };
      state.partPuts.push(record);
      res.on("close", () => {
        state.active--;
        record.status = res.statusCode;
      });
      const fault = state.faults.find((f) => f.times > 0 && f.part === part);
      if (fault) {
        fault.times--;
        if (fault.status === "drop") {
          req.once("data", () => req.socket.destroy());
          return;
        }
        // Read the whole body first: answering early makes the browser see
        // a reset connection instead of the status.
        req.resume();
        req.on("end", () => {
          res.writeHead(fault.status, {
            "Access-Control-Allow-Origin": req.headers.origin || "*",
            "Content-Type": "application/xml",
          });
          res.end("<Error><Code>ServiceUnavailable</Code><Message>injected by the e2e proxy</Message></Error>");
        });
        return;
      }
    }
    const upstream = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${port}`, state, close: () => closeServer(server) };
}

export function waitFor(check, what, ms = 30000) {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = async () => {
      try {
        if (await check()) return resolve();
      } catch {}
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 100);
    };
    tick();
  });
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Runs scripts/garage.sh (the one place that configures Garage) with `args`; resolves with its stdout. */
export function garageScript(args) {
  return new Promise((resolve, reject) => {
    execFile("bash", [path.join(root, "scripts/garage.sh"), ...args], (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/garage.sh ${args.join(" ")}: ${err.message}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** True while `pid` runs (a zombie left for init to reap does not). */
function alive(pid) {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * The store named by TEST_S3_ENDPOINT, TEST_S3_BUCKET, TEST_S3_REGION and
 * AWS_* when set, else a private Garage in `dir` whose stop is pushed onto
 * `cleanups`.
 */
export async function storeFromEnvOrGarage(dir, cleanups) {
  if (process.env.TEST_S3_ENDPOINT) {
    return {
      endpoint: process.env.TEST_S3_ENDPOINT,
      bucket: process.env.TEST_S3_BUCKET,
      region: process.env.TEST_S3_REGION || "us-east-1",
      accessKey: process.env.AWS_ACCESS_KEY_ID,
      secretKey: process.env.AWS_SECRET_ACCESS_KEY,
    };
  }
  const garage = await startGarage(dir);
  cleanups.push(garage.stop);
  return garage;
}

/**
 * A single-node Garage with one bucket and one key in `dir`, started by
 * scripts/garage.sh, for runs without TEST_S3_ENDPOINT.
 */
export async function startGarage(dir) {
  const start = async () => {
    const vars = {};
    for (const m of (await garageScript(["start", dir])).matchAll(/^export (\w+)=(.*)$/gm)) vars[m[1]] = m[2];
    return vars;
  };
  const vars = await start();
  const pid = () => Number(fs.readFileSync(path.join(dir, "garage.pid"), "utf8"));
  return {
    endpoint: vars.TEST_S3_ENDPOINT,
    bucket: vars.TEST_S3_BUCKET,
    region: vars.TEST_S3_REGION,
    accessKey: vars.AWS_ACCESS_KEY_ID,
    secretKey: vars.AWS_SECRET_ACCESS_KEY,
    stop: () => garageScript(["stop", dir]),
    /** Kills Garage (`signal`) and waits until it has exited: the store is down. */
    async kill(signal = "SIGKILL") {
      const p = pid();
      process.kill(p, signal);
      await waitFor(() => !alive(p), "garage to exit");
    },
    /** Starts it again with the same configuration, keys and data. */
    restart: start,
  };
}

/**
 * Runs `upload-server bucket setup` (with an S3 store, unless `bucketSetup`
 * is false: the embedded one needs none, and several instances on one bucket
 * need it once), then the server; resolves once /config answers. The log
 * file is appended to, so an instance started again keeps one log.
 */
export async function startServer(bin, env, logFile, { bucketSetup = true } = {}) {
  if (env.UPLOAD_S3_BUCKET && bucketSetup) {
    // Asynchronously: the proxy it talks through runs in this very process.
    const setup = spawn(bin, ["bucket", "setup"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    setup.stdout.on("data", (d) => (out += d));
    setup.stderr.on("data", (d) => (out += d));
    const code = await new Promise((r) => setup.on("exit", r));
    if (code !== 0) throw new Error(`upload-server bucket setup exited with ${code}: ${out}`);
  }
  const log = fs.openSync(logFile, "a");
  const proc = spawn(bin, [], { env, stdio: ["ignore", log, log] });
  fs.closeSync(log); // the child holds its own copy
  let exited = null;
  proc.on("exit", (code) => (exited = code));
  const base = `http://${env.UPLOAD_LISTEN}/api/v1`;
  await waitFor(async () => {
    if (exited !== null) throw new Error(`upload-server exited with ${exited}; see ${logFile}`);
    return (await fetch(`${base}/config`)).ok;
  }, "upload-server");
  return {
    base,
    stop: () => stopProcess(proc),
    /** Sends `signal` (a crash: SIGKILL) and resolves once the process has exited. */
    kill(signal = "SIGKILL") {
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        proc.once("exit", () => resolve());
        proc.kill(signal);
      });
    },
  };
}
