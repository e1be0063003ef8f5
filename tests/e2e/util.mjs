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
