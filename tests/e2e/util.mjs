// Small helpers shared by the end-to-end suites (run.mjs, page.mjs, faults.mjs).
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { after, afterEach, before } from "node:test";

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
 * The shared setup and teardown of a suite, as node:test hooks. The
 * returned `setup(fn)` registers `fn` as the `before` hook. After each test:
 * `check()` when it passed (a throw fails it), `onFailure(name)` when it
 * failed (screenshots, resetting the page). After the last test: the
 * `cleanups` in reverse order, then `tmp` removed (kept when a test failed
 * and E2E_KEEP is set).
 */
export function suite(label, tmp, cleanups, { check = () => {}, onFailure = async () => {} } = {}) {
  let failed = false;
  afterEach(async (t) => {
    if (t.passed) {
      try {
        check();
        return;
      } catch (e) {
        failed = true;
        await onFailure(t.name);
        throw e;
      }
    }
    failed = true;
    await onFailure(t.name);
  });
  after(async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        console.error(`${label}: cleanup: ${e.message}`);
      }
    }
    if (!failed || !process.env.E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
    else console.error(`${label}: logs kept in ${tmp}`);
  });
  return {
    setup(fn) {
      before(async () => {
        try {
          await fn();
        } catch (e) {
          failed = true;
          throw e;
        }
      });
    },
  };
}
