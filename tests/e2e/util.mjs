// Small helpers shared by the end-to-end suites (run.mjs, page.mjs, faults.mjs).
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";

export const MiB = 1024 * 1024;

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export function assertEq(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Writes `size` random bytes to `dir`/`name`; returns its path, name, size and SHA-256 (hex). */
export function makeFileIn(dir, name, size) {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, "w");
  const hash = crypto.createHash("sha256");
  for (let left = size; left > 0; ) {
    const chunk = crypto.randomBytes(Math.min(left, 4 * MiB));
    hash.update(chunk);
    fs.writeSync(fd, chunk);
    left -= chunk.length;
  }
  fs.closeSync(fd);
  return { path: file, name, size, sha256: hash.digest("hex") };
}

/**
 * Runs named tests `[name, async fn]` in order (`E2E_ONLY=text` runs the
 * matching ones), printing `ok - ...` / `not ok - ...` and the closing
 * `N passed, N failed`. `check` runs after each test's own assertions;
 * `onFailure(n)` after a failure (screenshots, resetting the page).
 * Returns true when every test that ran passed and at least one ran.
 */
export async function runTests(tests, { prefix = "", check = () => {}, onFailure = async () => {}, firstLine = false } = {}) {
  let passed = 0;
  let failed = 0;
  const only = process.env.E2E_ONLY;
  for (const [name, fn] of tests) {
    if (only && !name.includes(only)) continue;
    const t0 = Date.now();
    try {
      await fn();
      check();
      passed++;
      console.log(`ok - ${prefix}${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      const message = firstLine ? e.message.split("\n")[0] : e.message;
      console.log(`not ok - ${prefix}${name}: ${message}`);
      await onFailure(passed + failed);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0;
}

/**
 * Runs a suite's `main` (true when it passed), then its cleanups in reverse
 * order, removes `tmp` (kept on failure when E2E_KEEP is set), and exits
 * with the suite's status. A failure before any test counts as one failed.
 */
export async function runSuite(label, main, tmp, cleanups) {
  let ok = false;
  try {
    ok = await main();
  } catch (e) {
    console.error(`${label}: setup failed: ${e.stack || e}`);
    console.log("0 passed, 1 failed");
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {}
    }
    if (ok || !process.env.E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
    else console.error(`${label}: logs kept in ${tmp}`);
  }
  process.exit(ok ? 0 : 1);
}
