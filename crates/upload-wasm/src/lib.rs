//! Browser client for direct-to-storage uploads: the `upload-wasm` npm package.
//!
//! The browser asks the upload API (`/api/v1`) for a plan, sends the bytes
//! straight to the object store (S3 form POST, S3 multipart parts, or a
//! chunked resumable session), and tells the API when they are stored.
//! See `README.md` for the JS API.
//!
//! The work is split: `transport.js` (hand-written) does the plumbing -
//! fetch, XMLHttpRequest, timers, promises, the pool of request slots - and
//! asks [`policy`] for every decision (constraint checks with upload-core,
//! part ranges, error codes, retries, chunk offsets, progress). The exported
//! classes here wrap its objects. A Rust async state machine per flow cost
//! the .wasm three times what the JS costs.
//!
//! Architecture invariant: this is the only crate that touches `JsValue`; the
//! rules (constraints, part ranges, codes) come from `upload-core`, so the
//! browser refuses exactly what the server would.

mod js;
mod liveview;
mod policy;
#[cfg(all(test, target_arch = "wasm32"))]
mod sched;
#[cfg(all(test, target_arch = "wasm32"))]
mod tests;

use js_sys::Promise;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::Blob;

pub use crate::liveview::Uploaders;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[wasm_bindgen(module = "/src/transport.js")]
extern "C" {
    /// The object behind an `Uploader` (see transport.js); throws the
    /// `UploadError` of bad options.
    #[wasm_bindgen(catch, js_name = makeUploader)]
    fn make_uploader(options: &JsValue, policy: &JsValue, max_sign: u32) -> Result<JsValue, JsValue>;
    /// `o[method](a, b)`.
    fn invoke(o: &JsValue, method: &str, a: &JsValue, b: &JsValue) -> JsValue;
    pub(crate) fn liveview(kind: &str, entries: &JsValue, on_view_error: &JsValue, policy: &JsValue);
}

/// The one function through which transport.js asks for decisions
/// ([`policy::dispatch`]); JS owns it (and collects it with the last user).
pub(crate) fn policy() -> JsValue {
    Closure::<dyn Fn(u32, JsValue, JsValue, JsValue, JsValue) -> JsValue>::new(policy::dispatch).into_js_value()
}

fn call0(o: &JsValue, method: &str) -> JsValue {
    invoke(o, method, &JsValue::UNDEFINED, &JsValue::UNDEFINED)
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `new Uploader(...)`. */
export interface UploaderOptions {
  /** Base URL of the upload API, e.g. "https://app.example/api/v1". */
  endpoint: string;
  /** Bearer token (a JWT) sent to the API; never sent to the object store. */
  token?: string;
  /** Requests carrying bytes at once, across all files (and parts in flight per file). Default 4. */
  concurrency?: number;
  /** Tries per request before giving up (network error, 5xx, 429). Default 5. */
  retries?: number;
  /** Base of the exponential backoff between tries, in ms. Default 500. */
  retryDelay?: number;
  /**
   * SHA-256 of every part (multipart) or of the whole file (single POST),
   * computed in the browser and verified by the store; a part the store
   * refuses is read, hashed and sent again. Loads the package's `hash/`
   * module on first use. Default false.
   */
  checksums?: boolean;
  /**
   * Keep a record per multipart upload in localStorage, and continue an
   * upload of the same file (after a reload or a crash) with only the parts
   * the store lacks. Loads the package's `hash/` module on first use. Default false.
   */
  resume?: boolean;
  /** Called when `resume` found an earlier upload of `file`: `stored` of `parts` parts are already in the store, `next` is the first one missing. */
  onResume?: (file: Blob, info: { id: string; stored: number; parts: number; next: number }) => void;
}

/** Options of `uploader.upload(file, ...)`. */
export interface UploadOptions {
  /** Strings stored with the file (at most 32 entries). */
  meta?: Record<string, string>;
  /** Called with progress at most every 50 ms; never goes backwards. */
  onProgress?: (progress: UploadProgress) => void;
  /** File name to declare (a `Blob` has none). Defaults to `file.name`. */
  name?: string;
  /** Content type to declare. Defaults to `file.type`. */
  type?: string;
  /** Base64 SHA-256 of the whole file, if already known; the server verifies it. */
  sha256?: string;
}

export type UploadState = "queued" | "uploading" | "paused" | "completing" | "done" | "failed" | "cancelled";

export interface UploadProgress {
  /** Bytes of the file stored or on their way. */
  loaded: number;
  /** Size of the file. */
  total: number;
  /** "done" only on the last event, sent after the server recorded the file. */
  state: UploadState;
}

/** The server's record of a stored file (`File` in the API contract). */
export interface FileRecord {
  id: string;
  name: string;
  size: number;
  type: string;
  key: string;
  sha256: string | null;
  meta: Record<string, string>;
  created_at: string;
  owner: string;
}

/** Client-side view of `GET /config`. */
export interface UploadConfig {
  constraints: { max_file_size: number; max_files: number; accept: string[] };
  multipart_threshold: number;
  part_size: number;
}

/**
 * How uploads fail: `code` is one of the API's codes (`file_too_large`,
 * `type_not_accepted`, `unauthorized`, ...) or `network`, `aborted`,
 * `checksum_mismatch`; `status` is the HTTP status when there was one.
 */
export interface UploadError extends Error {
  code: string;
  status?: number;
}
"#;

/// Uploads files through one upload API.
#[wasm_bindgen]
pub struct Uploader {
    inner: JsValue,
}

#[wasm_bindgen]
impl Uploader {
    /// Creates an uploader; nothing is requested until the first upload.
    /// Throws an `UploadError` (`invalid_request`) when `endpoint` is missing.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "UploaderOptions")] options: JsValue,
    ) -> Result<Uploader, JsValue> {
        // Part URLs are asked for in batches of at most the contract's limit.
        let max_sign = upload_core::wire::MAX_PARTS_PER_SIGN_REQUEST as u32;
        Ok(Uploader { inner: make_uploader(&options, &policy(), max_sign)? })
    }

    /// Replaces the bearer token (after a refresh); later requests use it.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, #[wasm_bindgen(unchecked_optional_param_type = "string | null")] token: Option<JsValue>) {
        invoke(&self.inner, "setToken", &token.unwrap_or(JsValue::UNDEFINED), &JsValue::UNDEFINED);
    }

    /// The server's `GET /config` (asked once per uploader and cached).
    #[wasm_bindgen(unchecked_return_type = "Promise<UploadConfig>")]
    pub fn config(&self) -> Promise {
        call0(&self.inner, "config").unchecked_into()
    }

    /// Starts uploading `file` and returns at once. Files beyond the
    /// concurrency limit wait their turn; a file the server's constraints
    /// refuse fails before any request of its own.
    pub fn upload(
        &self,
        file: Blob,
        #[wasm_bindgen(unchecked_optional_param_type = "UploadOptions")] options: Option<JsValue>,
    ) -> Upload {
        Upload { inner: invoke(&self.inner, "upload", &file, &options.unwrap_or(JsValue::UNDEFINED)) }
    }
}

/// One file on its way.
#[wasm_bindgen]
pub struct Upload {
    inner: JsValue,
}

#[wasm_bindgen]
impl Upload {
    /// Resolves with the server's File record once `/complete` has answered;
    /// rejects with an `UploadError`.
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<FileRecord>")]
    pub fn done(&self) -> Promise {
        call0(&self.inner, "done").unchecked_into()
    }

    /// The upload's id once the server has created it (the File id after completion).
    #[wasm_bindgen(getter, unchecked_return_type = "string | undefined")]
    pub fn id(&self) -> JsValue {
        call0(&self.inner, "id")
    }

    /// `queued`, `uploading`, `paused`, `completing`, `done`, `failed` or `cancelled`.
    #[wasm_bindgen(getter, unchecked_return_type = "UploadState")]
    pub fn state(&self) -> JsValue {
        call0(&self.inner, "state")
    }

    /// Bytes shown as loaded so far (never decreases).
    #[wasm_bindgen(getter, unchecked_return_type = "number")]
    pub fn loaded(&self) -> JsValue {
        call0(&self.inner, "loaded")
    }

    /// Size of the file.
    #[wasm_bindgen(getter, unchecked_return_type = "number")]
    pub fn total(&self) -> JsValue {
        call0(&self.inner, "total")
    }

    /// Stops sending: requests in flight are aborted. Parts already stored stay.
    pub fn pause(&self) {
        call0(&self.inner, "pause");
    }

    /// Continues a paused upload from what the server says is already stored.
    pub fn resume(&self) {
        call0(&self.inner, "resume");
    }

    /// Aborts requests in flight, rejects `done` with `aborted` and deletes the
    /// upload on the server (`DELETE /uploads/{id}`). The promise resolves once
    /// that has happened.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn cancel(&self) -> Promise {
        call0(&self.inner, "cancel").unchecked_into()
    }
}
