// Build step of scripts/build-wasm.sh (not shipped): drops the hashes from
// the names wasm-bindgen gives the module's imports and closure exports,
// in the .wasm and in its JS glue alike.
//
// wasm-bindgen names every import `__wbg_<name>_<16 hex digits>` and every
// closure invoker `wasm_bindgen__convert__closures_____invoke__h<16 hex>`:
// the hash keeps names apart across crates, but within one module the names
// need only be distinct. Random hex does not compress: in the package it was
// ~1.5 KB of gzip, the .wasm and the glue each naming every import once.
// Each hashed name becomes the name without its hash (numbered when two
// would meet), whole names only, the same in every file.
//
// Usage: node short-names.mjs module.wasm glue.js [more.js ...]
import { readFileSync, writeFileSync } from "node:fs";

const [wasmPath, ...jsPaths] = process.argv.slice(2);
const HASHED = /^(.*?)_h?[0-9a-f]{16}$/;

// --- the .wasm: its import (2) and export (7) sections ----------------------

const bytes = readFileSync(wasmPath);
let at = 0;
const u32 = () => {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    result |= (b & 0x7f) << shift;
    if (!(b & 0x80)) return result >>> 0;
    shift += 7;
  }
};
const name = () => {
  const len = u32();
  const s = bytes.subarray(at, at + len).toString("utf8");
  at += len;
  return s;
};
const leb = (n) => {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
};
const str = (s) => {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([leb(b.length), b]);
};
const limits = () => {
  const flags = bytes[at++];
  u32();
  if (flags & 1) u32();
};
const reftype = () => {
  // A short reference type (externref, funcref) or `(ref null? heaptype)`.
  const t = bytes[at++];
  if (t === 0x63 || t === 0x64) u32();
};

if (bytes.readUInt32LE(0) !== 0x6d736100) throw new Error(`${wasmPath}: not a wasm module`);
at = 8;
const sections = [];
const found = []; // every import and export name, for the mapping
while (at < bytes.length) {
  const id = bytes[at++];
  const size = u32();
  const start = at;
  const end = start + size;
  if (id === 2 || id === 7) {
    const entries = [];
    const count = u32();
    for (let i = 0; i < count; i++) {
      if (id === 2) {
        const module = name();
        const field = name();
        const descStart = at;
        const kind = bytes[at++];
        if (kind === 0) u32();
        else if (kind === 1) (reftype(), limits());
        else if (kind === 2) limits();
        else if (kind === 3) (reftype(), at++);
        else if (kind === 4) (at++, u32());
        else throw new Error(`import kind ${kind} unknown`);
        entries.push({ module, field, desc: bytes.subarray(descStart, at) });
        found.push(field);
      } else {
        const field = name();
        const descStart = at;
        at++;
        u32();
        entries.push({ field, desc: bytes.subarray(descStart, at) });
        found.push(field);
      }
    }
    if (at !== end) throw new Error(`section ${id}: ${end - at} bytes left over`);
    sections.push({ id, entries });
  } else {
    sections.push({ id, raw: bytes.subarray(start, end) });
  }
  at = end;
}

// --- the new names -----------------------------------------------------------

const jsFiles = jsPaths.map((path) => ({ path, text: readFileSync(path, "utf8") }));
const taken = new Set(found);
for (const { text } of jsFiles) for (const word of text.match(/[A-Za-z_$][\w$]*/g) ?? []) taken.add(word);
const renamed = new Map();
for (const old of found) {
  const m = HASHED.exec(old);
  if (!m || renamed.has(old)) continue;
  let short = m[1];
  for (let n = 2; taken.has(short); n++) short = `${m[1]}${n}`;
  taken.add(short);
  renamed.set(old, short);
}

const out = [bytes.subarray(0, 8)];
for (const s of sections) {
  let payload;
  if (s.raw) {
    payload = s.raw;
  } else {
    const parts = [leb(s.entries.length)];
    for (const e of s.entries) {
      if (e.module !== undefined) parts.push(str(e.module));
      parts.push(str(renamed.get(e.field) ?? e.field), e.desc);
    }
    payload = Buffer.concat(parts);
  }
  out.push(Buffer.from([s.id]), leb(payload.length), payload);
}
writeFileSync(wasmPath, Buffer.concat(out));

// --- the glue: whole words only -------------------------------------------------

for (const { path, text } of jsFiles) {
  const next = text.replace(/[A-Za-z_$][\w$]*/g, (word) => renamed.get(word) ?? word);
  writeFileSync(path, next);
}
console.log(`short-names: ${renamed.size} names in ${wasmPath} and ${jsFiles.length} JS file(s)`);
