//! Browser client for direct-to-storage uploads: the `upload-wasm` npm package.
//!
//! The browser asks the upload API (`/api/v1`) for a plan, sends the bytes
//! straight to the object store (S3 form POST, S3 multipart parts, or a
//! chunked resumable session), and tells the API when they are stored.
//! See `README.md` for the JS API.
//!
//! Architecture invariant: this is the only crate that touches `JsValue`; the
//! rules (constraints, part ranges, codes) come from `upload-core`, so the
//! browser refuses exactly what the server would.

mod api;
mod flow;
mod js;
mod liveview;
mod plans;
mod sched;
mod task;
#[cfg(all(test, target_arch = "wasm32"))]
mod tests;

use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::Blob;

use crate::api::Api;
use crate::flow::{Shared, constraints_from, declare};
use crate::js::{Fail, get, get_str, get_u64, promise_with_resolver};
use crate::sched::Semaphore;
use crate::task::{Ctx, Retry, Sink, Task};

pub use crate::liveview::Uploaders;

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
    shared: Rc<Shared>,
    ctx: Rc<Ctx>,
}

#[wasm_bindgen]
impl Uploader {
    /// Creates an uploader; nothing is requested until the first upload.
    /// Throws an `UploadError` (`invalid_request`) when `endpoint` is missing.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "UploaderOptions")] options: JsValue,
    ) -> Result<Uploader, JsValue> {
        let endpoint = get_str(&options, "endpoint")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Fail::invalid("endpoint is required").to_js())?;
        let concurrency = get_u64(&options, "concurrency").unwrap_or(4).clamp(1, 64) as usize;
        let retry = Retry {
            attempts: get_u64(&options, "retries").unwrap_or(5).clamp(1, 20) as u32,
            base_ms: get_u64(&options, "retryDelay").unwrap_or(500) as f64,
        };
        let api = Rc::new(Api::new(&endpoint, get_str(&options, "token")));
        Ok(Uploader {
            shared: Rc::new(Shared::new(api)),
            ctx: Rc::new(Ctx { slots: Semaphore::new(concurrency), concurrency, retry }),
        })
    }

    /// Replaces the bearer token (after a refresh); later requests use it.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: Option<String>) {
        self.shared.api.set_token(token);
    }

    /// The server's `GET /config` (asked once per uploader and cached).
    #[wasm_bindgen(unchecked_return_type = "Promise<UploadConfig>")]
    pub fn config(&self) -> Promise {
        let (shared, retry) = (self.shared.clone(), self.ctx.retry);
        future_to_promise(async move {
            let json = shared.config_json(retry).await.map_err(|f| f.to_js())?;
            constraints_from(&json).map_err(|f| f.to_js())?;
            Ok(json)
        })
    }

    /// Starts uploading `file` and returns at once. Files beyond the
    /// concurrency limit wait their turn; a file the server's constraints
    /// refuse fails before any request of its own.
    pub fn upload(
        &self,
        file: Blob,
        #[wasm_bindgen(unchecked_optional_param_type = "UploadOptions")] options: Option<JsValue>,
    ) -> Upload {
        let options = options.unwrap_or(JsValue::UNDEFINED);
        let name = get_str(&options, "name").or_else(|| get_str(&file, "name")).unwrap_or_else(|| "blob".to_owned());
        let file_type = get_str(&options, "type").unwrap_or_else(|| file.type_());
        let sink = match get(&options, "onProgress").dyn_into::<Function>() {
            Ok(f) => Sink::Callback(f),
            Err(_) => Sink::None,
        };
        let declared = declare(&file_type, &get(&options, "meta"), get_str(&options, "sha256"));
        let task = Task::new(file, name, self.ctx.clone(), sink);
        let (finished, resolve_finished) = promise_with_resolver();
        let (t, shared) = (task.clone(), self.shared.clone());
        let done = future_to_promise(async move {
            let result = flow::run(t, shared, declared).await;
            let _ = resolve_finished.call0(&JsValue::UNDEFINED);
            result.map_err(|f| f.to_js())
        });
        Upload { task, done, finished }
    }
}

/// One file on its way.
#[wasm_bindgen]
pub struct Upload {
    task: Rc<Task>,
    done: Promise,
    /// Resolves (never rejects) once the upload has stopped for good.
    finished: Promise,
}

#[wasm_bindgen]
impl Upload {
    /// Resolves with the server's File record once `/complete` has answered;
    /// rejects with an `UploadError`.
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<FileRecord>")]
    pub fn done(&self) -> Promise {
        self.done.clone()
    }

    /// The upload's id once the server has created it (the File id after completion).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Option<String> {
        self.task.id.borrow().clone()
    }

    /// `queued`, `uploading`, `paused`, `completing`, `done`, `failed` or `cancelled`.
    #[wasm_bindgen(getter, unchecked_return_type = "UploadState")]
    pub fn state(&self) -> String {
        self.task.state().as_str().to_owned()
    }

    /// Bytes shown as loaded so far (never decreases).
    #[wasm_bindgen(getter)]
    pub fn loaded(&self) -> f64 {
        self.task.shown()
    }

    /// Size of the file.
    #[wasm_bindgen(getter)]
    pub fn total(&self) -> f64 {
        self.task.size as f64
    }

    /// Stops sending: requests in flight are aborted. Parts already stored stay.
    pub fn pause(&self) {
        self.task.pause();
    }

    /// Continues a paused upload from what the server says is already stored.
    pub fn resume(&self) {
        self.task.resume();
    }

    /// Aborts requests in flight, rejects `done` with `aborted` and deletes the
    /// upload on the server (`DELETE /uploads/{id}`). The promise resolves once
    /// that has happened.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn cancel(&self) -> Promise {
        self.task.cancel();
        let finished = self.finished.clone();
        future_to_promise(async move {
            let _ = JsFuture::from(finished).await;
            Ok(JsValue::UNDEFINED)
        })
    }
}
