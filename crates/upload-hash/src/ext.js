// The part of upload-wasm that is loaded only when an Uploader has
// `checksums: true` or `resume: true` (transport.js imports it with a
// dynamic `import()` from the package's `hash/` directory), so the main
// package stays small:
//
// - `sum(blob)`: the base64 SHA-256 of a Blob: WebCrypto's for blobs up to
//   64 MiB in a secure context, else computed by Rust (this crate's
//   `Sha256`, in upload_hash_bg.wasm) over 1 MiB slices (`sumStreaming`), so
//   memory stays bounded whatever the size;
// - `ext(options, endpoint).start(...)`: adds the checksums to the
//   `POST /uploads` body (`sha256` of the whole file for a single POST,
//   `part_checksums: true` for multipart) and, with `resume`, finds an upload
//   of the same file left by an earlier page (a record per file in
//   localStorage) and answers the server's `GET /uploads/{id}` for it instead
//   of creating a new one; `forget(file)` drops the record once the upload
//   is over.
import * as glue from "./upload_hash.js";

const CHUNK = 1 << 20;
/** The localStorage item holding the records, by fingerprint. */
const ITEM = "upload-wasm:uploads";
let ready;

const unreadable = () => Object.assign(new Error("the file cannot be read"), { code: "invalid_request" });

/** Blobs up to this size are hashed whole by the browser's WebCrypto. */
const WHOLE = 64 << 20;
const subtle = globalThis.crypto?.subtle;

/**
 * Base64 SHA-256 of `blob`. WebCrypto where the page has it (a secure
 * context: https or localhost) and the blob is at most 64 MiB: the browser's
 * native SHA-256 (SHA-NI where the CPU has it), outside the main thread,
 * about ten times less CPU than the wasm one; it needs the blob whole in
 * memory, hence the bound. Otherwise `sumStreaming`.
 */
export async function sum(blob) {
  if (!subtle || blob.size > WHOLE) return sumStreaming(blob);
  let bytes;
  try {
    bytes = await blob.arrayBuffer();
  } catch {
    throw unreadable();
  }
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  return btoa(String.fromCharCode(...digest));
}

/** Base64 SHA-256 of `blob` by this crate's Rust, read 1 MiB at a time. */
export async function sumStreaming(blob) {
  // --target web: fetch and instantiate the .wasm once (a bundler does it itself).
  await (ready ||= glue.default?.());
  const h = new glue.Sha256();
  try {
    for (let at = 0; at < blob.size; at += CHUNK) {
      h.update(new Uint8Array(await blob.slice(at, at + CHUNK).arrayBuffer()));
    }
  } catch {
    h.free();
    throw unreadable();
  }
  return h.digest();
}

function load() {
  try {
    const all = JSON.parse(localStorage.getItem(ITEM));
    return all && typeof all == "object" ? all : {};
  } catch {
    return {};
  }
}
function save(all) {
  try {
    if (Object.keys(all).length) localStorage.setItem(ITEM, JSON.stringify(all));
    else localStorage.removeItem(ITEM);
  } catch {}
}

/** The records that are still of use (their signing window is open). */
function live() {
  const all = load(), now = Date.now();
  for (const [k, r] of Object.entries(all)) if (!(Date.parse(r?.expires_at) > now)) delete all[k];
  return all;
}

/**
 * The record's key: the SHA-256 of what is declared (endpoint, name, size,
 * type, last-modified, whether parts carry checksums) and of the file's first
 * and last 64 KiB, so a different file of the same name and size is not
 * taken for it.
 */
function fingerprint(file, body, endpoint) {
  const head = [endpoint, body.name, body.size, body.type, file.lastModified ?? 0, !!body.part_checksums];
  const k = 64 * 1024;
  return sum(new Blob([JSON.stringify(head), file.slice(0, k), file.slice(Math.max(file.size - k, k))]));
}

/** What transport.js uses, for one Uploader's `options`. */
export function ext(options) {
  const endpoint = options.endpoint;
  const sums = !!options.checksums, resume = !!options.resume;
  const keys = new WeakMap();
  const onResume = typeof options.onResume == "function" ? options.onResume : null;
  return {
    sum: sums ? sum : undefined,
    /**
     * The upload for `file`: a pending multipart upload of the same file
     * (the server's `GET /uploads/{id}` answer, `parts` included), or what
     * `create()` (`POST /uploads` with `body`) answers. `sh`: transport.js's
     * shared state of the Uploader (`config()`, `api.call`).
     */
    async start(file, body, sh, create) {
      if (sums) {
        const config = await sh.config();
        if (body.size < config?.multipart_threshold) body.sha256 ??= await sum(file);
        else body.part_checksums = true;
      }
      if (!resume) return create();
      const key = await fingerprint(file, body, endpoint);
      keys.set(file, key);
      const all = live(), r = all[key];
      if (r) {
        let status;
        try {
          status = await sh.api.call("GET", "/uploads/" + r.id);
        } catch (e) {
          // Out of reach or refused: start afresh; only a gone upload loses its record.
          if (e.status != 404 && e.status != 410) r.id = null;
        }
        if (get(status, "state") == "pending" && get(status.upload, "uploader") == "S3Multipart") {
          const held = new Set((Array.isArray(status.parts) ? status.parts : []).map((p) => get(p, "part_number")));
          let next = 1;
          while (held.has(next)) next++;
          if (onResume) {
            try {
              // `next`: the first part the store lacks.
              onResume(file, { id: r.id, stored: held.size, parts: status.upload.part_count, next });
            } catch {}
          }
          return status;
        }
        if (r.id) {
          delete all[key];
          save(all);
        }
      }
      const created = await create();
      if (get(created?.upload, "uploader") == "S3Multipart") {
        const all = live();
        all[key] = {
          id: created.id,
          name: body.name,
          size: body.size,
          lastModified: file.lastModified,
          endpoint,
          expires_at: created.expires_at,
        };
        save(all);
      }
      return created;
    },
    /** The upload of `file` is over (done, cancelled, failed for good). */
    forget(file) {
      const key = keys.get(file);
      if (!key) return;
      keys.delete(file);
      const all = live();
      delete all[key];
      save(all);
    },
  };
}

const get = (o, k) => (o && typeof o == "object" ? o[k] : undefined);
