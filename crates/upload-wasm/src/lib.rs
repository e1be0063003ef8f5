//! Browser client for direct-to-storage uploads: the `upload-wasm` npm package.
//!
//! The browser asks the upload API (`/api/v1`) for a plan, sends the bytes
//! straight to the object store (S3 form POST, S3 multipart parts, or a
//! chunked resumable session), and tells the API when they are stored.
//! See `README.md` for the JS API.
//!
//! All of it is Rust: API calls with gloo-net, answers read into
//! upload-core's wire types by upload-core's readers, bodies written from
//! them with serde ([`api`]); the store's requests with
//! web-sys's `XMLHttpRequest` and `FormData` ([`task`]); an upload up to
//! its creation ([`upload`]), then one explicit state machine per upload for
//! the bytes, retries, pause, resume and complete ([`flow`]); the decisions ([`policy`]);
//! timers and the shared pool of request slots ([`wait`]). The one JS snippet,
//! `load_hash.js`, is the dynamic `import()` of the checksum module ([`hash`]).
//!
//! Architecture invariant: this is the only crate that touches `JsValue`; the
//! rules (constraints, part ranges, codes) and the wire types come from
//! `upload-core`, never a copy, so the browser refuses exactly what the server
//! would and reads exactly what it writes.

mod api;
mod batch;
mod fail;
mod flow;
mod hash;
mod json;
mod liveview;
mod policy;
mod task;
#[cfg(all(test, target_arch = "wasm32"))]
mod tests;
mod upload;
mod wait;

use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use upload_core::wire::UploaderKind;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::Blob;

use crate::api::Api;
use crate::fail::{Fail, cat};
use crate::hash::Extras;
pub use crate::liveview::liveview_upload;
use crate::policy::Retry;
use crate::task::{Shared, Sink, Task};
use crate::upload::{Client, Creation, Declaration};
use crate::wait::{Pool, signal};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `new Uploader(...)`. */
export interface UploaderOptions {
  /** Base URL of the upload API, e.g. "https://app.example/api/v1". Required unless `create` is given. */
  endpoint?: string;
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
  /**
   * The app's own creation step: called with the body of `POST /uploads`
   * (name, size, type, meta, ...), it asks the app's server (with the app's
   * session), which creates the upload at upload-server on the user's behalf
   * and returns upload-server's answer unchanged. The upload's later calls
   * (part URLs, status, complete, abort) go to the answer's `endpoint` with
   * its upload-scoped `token`; the browser needs no token of its own. An
   * answer that is upload-server's error (`{error: {code, message}}`), or a
   * thrown `UploadError`, fails the upload with that code. With `create`,
   * `endpoint` is optional: when given, `GET /config` is read from it and
   * files are checked before any request; `resume` is not available.
   */
  create?: (request: CreateUploadRequest) => Promise<unknown> | unknown;
  /** The plan to ask the server for (`S3`, `S3Multipart` or `Chunked`); by default the server picks by size. */
  uploader?: UploaderName;
}

/** The plans of upload-server, as `uploader` names them. */
export type UploaderName = "S3" | "S3Multipart" | "Chunked";

/** The body of `POST /uploads`, as handed to `UploaderOptions.create`. */
export interface CreateUploadRequest {
  name: string;
  size: number;
  type: string;
  meta: Record<string, string>;
  sha256?: string;
  part_checksums?: boolean;
  uploader?: UploaderName;
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
  /** The plan to ask for, for this file (overrides the Uploader's `uploader`). */
  uploader?: UploaderName;
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
  /** The type the server detected in the file's first bytes (null when the format has no signature, or sniffing is off). */
  detected_type: string | null;
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
    client: Rc<Client>,
}

#[wasm_bindgen]
impl Uploader {
    /// Creates an uploader; nothing is requested until the first upload.
    /// Throws an `UploadError` (`invalid_request`) when neither `endpoint`
    /// nor `create` is given, or `uploader` names no plan.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "UploaderOptions")] options: JsValue,
    ) -> Result<Uploader, JsValue> {
        let create = get(&options, "create").dyn_into::<Function>().ok();
        let endpoint = string(&options, "endpoint").filter(|e| !e.is_empty());
        if endpoint.is_none() && create.is_none() {
            return Err(Fail::invalid("endpoint is required (or a create function)").to_js());
        }
        let endpoint = endpoint.unwrap_or_default();
        let uploader = uploader_kind(&get(&options, "uploader")).map_err(|f| f.to_js())?;
        let concurrency = whole(&options, "concurrency", 4, 1, 64);
        let shared = Rc::new(Shared {
            slots: Pool::new(concurrency as usize),
            concurrency,
            // Part URLs in batches of twice the parts in flight: enough to
            // keep going, few enough that URLs are fresh when used; at most
            // the contract's limit per signing request.
            batch: (concurrency * 2).min(upload_core::wire::MAX_PARTS_PER_SIGN_REQUEST as u32),
            retry: Retry {
                attempts: whole(&options, "retries", 5, 1, 20),
                base_ms: f64::from(whole(&options, "retryDelay", 500, 0, u32::MAX)),
            },
        });
        let extras = Extras::new(
            get(&options, "checksums").is_truthy(),
            // Resume records keep the user's API in mind, not an app's create step.
            get(&options, "resume").is_truthy() && create.is_none(),
            get(&options, "onResume").dyn_into::<Function>().ok(),
            &endpoint,
        );
        let api = Rc::new(Api::new(endpoint, string(&options, "token")));
        let creation = Creation { create, uploader };
        Ok(Uploader { client: Rc::new(Client::new(api, shared, extras).with_creation(creation)) })
    }

    /// Replaces the bearer token (after a refresh); later requests use it.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, #[wasm_bindgen(unchecked_optional_param_type = "string | null")] token: Option<JsValue>) {
        *self.client.api.token.borrow_mut() = token.and_then(|t| t.as_string());
    }

    /// The server's `GET /config` (asked once per uploader and cached).
    #[wasm_bindgen(unchecked_return_type = "Promise<UploadConfig>")]
    pub fn config(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move { client.config_json().await.map_err(|f| f.to_js()) })
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
        let name = string(&options, "name").or_else(|| string(&file, "name")).unwrap_or_else(|| "blob".into());
        let sha256 = string(&options, "sha256");
        let meta = meta(&get(&options, "meta"));
        let uploader = uploader_kind(&get(&options, "uploader"));
        let error = match (&meta, &uploader) {
            (Err(fail), _) | (_, Err(fail)) => Some(fail.clone()),
            (Ok(pairs), Ok(_)) => policy::check_declaration(pairs, sha256.as_deref()).err(),
        };
        let decl = Declaration {
            content_type: string(&options, "type").or_else(|| string(&file, "type")).unwrap_or_default(),
            sha256,
            meta: meta.unwrap_or_default(),
            uploader: uploader.ok().flatten(),
            error,
        };
        let sink = match get(&options, "onProgress").dyn_into::<Function>() {
            Ok(f) => Sink::Callback(f),
            Err(_) => Sink::None,
        };
        let task = Task::new(file, name, self.client.shared.clone(), sink);
        let (stopped, ended) = signal();
        let (t, client) = (task.clone(), self.client.clone());
        let done = future_to_promise(async move {
            let result = upload::run(t, client, decl).await;
            let _ = ended.call0(&JsValue::UNDEFINED);
            result.map_err(|f| f.to_js())
        });
        Upload { task, done, stopped }
    }
}

/// One file on its way.
#[wasm_bindgen]
pub struct Upload {
    task: Rc<Task>,
    done: Promise,
    /// Resolves once `done` has settled (the requests stopped, the server told).
    stopped: Promise,
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
        self.task.state().as_str().into()
    }

    /// Bytes shown as loaded so far (never decreases).
    #[wasm_bindgen(getter)]
    pub fn loaded(&self) -> f64 {
        self.task.loaded()
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
        self.stopped.clone()
    }
}

// --- reading the application's option objects --------------------------------

/// `obj[key]`, or `undefined` when `obj` is not an object.
pub(crate) fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() || obj.is_function() {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

pub(crate) fn string(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}

/// A whole number from `obj[key]` (`default` when absent or not one), clamped to `lo..=hi`.
fn whole(obj: &JsValue, key: &str, default: u32, lo: u32, hi: u32) -> u32 {
    let n = get(obj, key).as_f64().filter(|n| *n >= 0.0 && n.fract() == 0.0);
    n.map_or(default, |n| n.min(f64::from(u32::MAX)) as u32).clamp(lo, hi)
}

/// An `uploader` option: absent, or the name of one of the server's plans
/// (read as upload-core's `UploaderKind`, so the names are the contract's).
fn uploader_kind(value: &JsValue) -> Result<Option<UploaderKind>, Fail> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    json::from_value(value.clone()).map(Some).map_err(|_| Fail::invalid("uploader must be S3, S3Multipart or Chunked"))
}

/// `meta` as `[key, value]` pairs; every value must be a string.
fn meta(meta: &JsValue) -> Result<Vec<(String, String)>, Fail> {
    if !meta.is_object() {
        return Ok(Vec::new());
    }
    Object::entries(meta.unchecked_ref())
        .iter()
        .map(|entry| {
            let entry: js_sys::Array = entry.unchecked_into();
            let key = entry.get(0).as_string().unwrap_or_default();
            match entry.get(1).as_string() {
                Some(value) => Ok((key, value)),
                None => Err(Fail::invalid(cat(&["meta value of `", &key, "` must be a string"]))),
            }
        })
        .collect()
}
