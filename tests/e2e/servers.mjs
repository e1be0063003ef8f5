// The processes and small servers the end-to-end tests run against:
// a static server for the test page and the built package (its own origin,
// so the API and the store are cross-origin, as in a real app), a proxy in
// front of the object store that can inject faults, Garage (when the caller
// did not start one) and upload-server itself.
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { spawn } from "node:child_process";

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
  return { origin: `http://127.0.0.1:${port}`, close: () => server.close() };
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
  return { url: `http://127.0.0.1:${port}`, state, close: () => server.close() };
}

function waitFor(check, what, ms = 30000) {
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

/** A single-node Garage with one bucket and one key, for runs without TEST_S3_ENDPOINT. */
export async function startGarage(dir) {
  const [s3Port, rpcPort] = [await freePort(), await freePort()];
  const hex = (n) => crypto.randomBytes(n).toString("hex");
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, "garage.toml");
  fs.writeFileSync(
    conf,
    `metadata_dir = "${dir}/meta"
data_dir = "${dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:${rpcPort}"
rpc_public_addr = "127.0.0.1:${rpcPort}"
rpc_secret = "${hex(32)}"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:${s3Port}"
root_domain = ".s3.localhost"
`,
  );
  const env = {
    ...process.env,
    GARAGE_DEFAULT_ACCESS_KEY: `GK${hex(12)}`,
    GARAGE_DEFAULT_SECRET_KEY: hex(32),
    GARAGE_DEFAULT_BUCKET: "e2e-bucket",
  };
  const log = fs.openSync(path.join(dir, "garage.log"), "a");
  const endpoint = `http://127.0.0.1:${s3Port}`;
  let proc;
  const start = async () => {
    proc = spawn("garage", ["-c", conf, "server", "--single-node", "--default-bucket"], { env, stdio: ["ignore", log, log] });
    await waitFor(async () => (await fetch(`${endpoint}/e2e-bucket`)).status === 403, "garage");
  };
  await start();
  return {
    endpoint,
    bucket: "e2e-bucket",
    region: "us-east-1",
    accessKey: env.GARAGE_DEFAULT_ACCESS_KEY,
    secretKey: env.GARAGE_DEFAULT_SECRET_KEY,
    stop: () => proc.kill("SIGTERM"),
    /** Kills Garage (`signal`) and waits until it has exited: the store is down. */
    async kill(signal = "SIGKILL") {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill(signal);
      await exited;
    },
    /** Starts it again with the same configuration, keys and data. */
    restart: start,
  };
}

/** Runs `upload-server bucket setup`, then the server; resolves once /config answers. */
export async function startServer(bin, env, logFile) {
  // Asynchronously: the proxy it talks through runs in this very process.
  const setup = spawn(bin, ["bucket", "setup"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  setup.stdout.on("data", (d) => (out += d));
  setup.stderr.on("data", (d) => (out += d));
  const code = await new Promise((r) => setup.on("exit", r));
  if (code !== 0) throw new Error(`upload-server bucket setup exited with ${code}: ${out}`);
  const log = fs.openSync(logFile, "w");
  const proc = spawn(bin, [], { env, stdio: ["ignore", log, log] });
  let exited = null;
  proc.on("exit", (code) => (exited = code));
  const base = `http://${env.UPLOAD_LISTEN}/api/v1`;
  await waitFor(async () => {
    if (exited !== null) throw new Error(`upload-server exited with ${exited}; see ${logFile}`);
    return (await fetch(`${base}/config`)).ok;
  }, "upload-server");
  return { base, stop: () => proc.kill("SIGTERM") };
}
