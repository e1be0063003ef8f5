//! Checksums and resume records: the package's `hash/` module
//! (`crates/upload-hash`), loaded on first use by the one JS snippet
//! (`load_hash.js`) when an `Uploader` has `checksums` or `resume` on.
//!
//! This side decides (what to hash, when to look for an earlier upload, when
//! to drop a record); the module computes SHA-256 (WebCrypto or Rust's `sha2`)
//! and keeps the records in localStorage.

use std::cell::RefCell;

use js_sys::{Array, Function, Object, Promise, Reflect};
use upload_core::wire::{CreateUpload, UploadPlan, UploadState, UploadStatus};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::api::{GET, from_js};
use crate::fail::{Fail, cat};
use crate::upload::{Client, Started};

#[wasm_bindgen(module = "/src/load_hash.js")]
extern "C" {
    /// Resolves with the hash module, instantiated.
    #[wasm_bindgen(js_name = loadHash)]
    fn load_hash() -> Promise;
}

#[wasm_bindgen]
extern "C" {
    /// The exports of `crates/upload-hash`.
    pub(crate) type HashModule;
    /// Base64 SHA-256 of a Blob; rejects with `invalid_request` when unreadable.
    #[wasm_bindgen(method, structural)]
    fn sum(this: &HashModule, blob: &Blob) -> Promise;
    /// The upload id of the live record under `key`.
    #[wasm_bindgen(method, structural)]
    fn recall(this: &HashModule, key: &str) -> Option<String>;
    /// Keeps `record` under `key` (until its `expires_at`).
    #[wasm_bindgen(method, structural)]
    fn remember(this: &HashModule, key: &str, record: &JsValue);
    /// Drops the record under `key`.
    #[wasm_bindgen(method, structural)]
    pub(crate) fn forget(this: &HashModule, key: &str);
}

#[cfg(test)]
thread_local! {
    /// The unit tests' stand-in for the module (`test_mock.js`'s `hashModule`).
    pub(crate) static FAKE: RefCell<Option<JsValue>> = const { RefCell::new(None) };
}

/// What an Uploader's `checksums` and `resume` options ask for.
pub(crate) struct Extras {
    pub(crate) sums: bool,
    resume: bool,
    on_resume: Option<Function>,
    endpoint: String,
    module: RefCell<Option<Promise>>,
}

impl Extras {
    pub(crate) fn new(sums: bool, resume: bool, on_resume: Option<Function>, endpoint: &str) -> Option<Extras> {
        (sums || resume).then(|| Extras {
            sums,
            resume,
            on_resume,
            endpoint: endpoint.into(),
            module: RefCell::default(),
        })
    }

    /// The module, loaded once.
    pub(crate) async fn module(&self) -> Result<HashModule, Fail> {
        #[cfg(test)]
        if let Some(fake) = FAKE.with(|f| f.borrow().clone()) {
            return Ok(fake.unchecked_into());
        }
        let promise = self.module.borrow_mut().get_or_insert_with(load_hash).clone();
        let loaded = instantiated(promise).await;
        if loaded.is_err() {
            *self.module.borrow_mut() = None;
        }
        loaded
    }

    /// The upload for `file`: with `checksums`, the declaration gets the
    /// file's SHA-256 (single POST) or `part_checksums` (multipart); with
    /// `resume`, a pending multipart upload of the same file left by an
    /// earlier page is taken (the server's `GET /uploads/{id}`), else one is
    /// created and recorded. Answers the record's key too (`resume` only).
    pub(crate) async fn start(
        &self,
        module: &HashModule,
        file: &Blob,
        body: &mut CreateUpload,
        client: &Client,
    ) -> Result<(Started, Option<String>), Fail> {
        if self.sums {
            match client.known_config().await? {
                Some(config) if body.size < config.multipart_threshold => {
                    if body.sha256.is_none() {
                        body.sha256 = Some(sum(module, file).await?);
                    }
                }
                // Multipart; or unknown (only the app's `create` step): the
                // server ignores part checksums for a single POST, and the
                // whole file is not hashed on a guess.
                _ => body.part_checksums = true,
            }
        }
        if !self.resume {
            return Ok((client.create(body).await?, None));
        }
        let key = sum(module, &self.fingerprint(file, body)).await?;
        if let Some(id) = module.recall(&key) {
            match client.api.call(GET, &cat(&["/uploads/", &id]), None).await {
                Ok(json) => {
                    if let Ok(status) = from_js::<UploadStatus>(json, "upload")
                        && let (UploadState::Pending, UploadPlan::S3Multipart { part_count, .. }) =
                            (status.state, &status.upload)
                    {
                        self.tell_resumed(file, &id, *part_count, &status);
                        return Ok((Started::from(status), Some(key)));
                    }
                    module.forget(&key);
                }
                // Gone: the record goes. Out of reach or refused: start afresh.
                Err(fail) if fail.status == 404 || fail.status == 410 => module.forget(&key),
                Err(_) => {}
            }
        }
        let created = client.create(body).await?;
        if matches!(created.plan, UploadPlan::S3Multipart { .. }) {
            let record = Object::new();
            let set = |k: &str, v: JsValue| {
                let _ = Reflect::set(&record, &k.into(), &v);
            };
            set("id", created.id.as_str().into());
            set("name", body.name.as_str().into());
            set("size", (body.size as f64).into());
            set("lastModified", last_modified(file));
            set("endpoint", self.endpoint.as_str().into());
            set("expires_at", created.expires_at.as_str().into());
            module.remember(&key, &record);
        }
        Ok((created, Some(key)))
    }

    /// `onResume(file, {id, stored, parts, next})`: `next` is the first part the store lacks.
    fn tell_resumed(&self, file: &Blob, id: &str, parts: u32, status: &UploadStatus) {
        let Some(on_resume) = &self.on_resume else { return };
        let held = |n: u32| status.parts.iter().any(|p| p.part_number == n);
        let next = (1..).find(|n| !held(*n)).unwrap_or(1);
        let info = Object::new();
        let _ = Reflect::set(&info, &"id".into(), &id.into());
        let _ = Reflect::set(&info, &"stored".into(), &(status.parts.len() as f64).into());
        let _ = Reflect::set(&info, &"parts".into(), &parts.into());
        let _ = Reflect::set(&info, &"next".into(), &next.into());
        // An exception in the application's callback is its own business.
        let _ = on_resume.call2(&JsValue::NULL, file, &info);
    }

    /// What a record is kept under: the SHA-256 of what is declared
    /// (endpoint, name, size, type, last-modified, whether parts carry
    /// checksums) and of the file's first and last 64 KiB, so a different
    /// file of the same name and size is not taken for it.
    fn fingerprint(&self, file: &Blob, body: &CreateUpload) -> Blob {
        let head: Array = [
            self.endpoint.as_str().into(),
            body.name.as_str().into(),
            (body.size as f64).into(),
            body.content_type.as_str().into(),
            last_modified(file),
            body.part_checksums.into(),
        ]
        .iter()
        .collect();
        let head = js_sys::JSON::stringify(&head).map(JsValue::from).unwrap_or_default();
        const EDGE: f64 = 64.0 * 1024.0;
        let size = file.size();
        let parts = Array::of3(
            &head,
            &file.slice_with_f64_and_f64(0.0, EDGE).map(JsValue::from).unwrap_or_default(),
            &file.slice_with_f64(size.max(2.0 * EDGE) - EDGE).map(JsValue::from).unwrap_or_default(),
        );
        // Blob's constructor takes strings and blobs alike.
        Blob::new_with_blob_sequence(&parts).unwrap_or_else(|_| file.clone())
    }
}

/// The module, for an upload created elsewhere whose plan asks for part
/// checksums (a LiveView entry's); the browser fetches it once however often
/// it is imported. Not an `async fn`: that would wrap `instantiated`'s
/// future in one more.
pub(crate) fn module() -> impl Future<Output = Result<HashModule, Fail>> {
    instantiated(load_hash())
}

async fn instantiated(loading: Promise) -> Result<HashModule, Fail> {
    match JsFuture::from(loading).await {
        Ok(module) => Ok(module.unchecked_into()),
        Err(e) => Err(Fail::new("internal", cat(&["the package's hash/ module did not load: ", &message(&e)]))),
    }
}

/// Base64 SHA-256 of `blob`, by the hash module.
pub(crate) async fn sum(module: &HashModule, blob: &Blob) -> Result<String, Fail> {
    match JsFuture::from(module.sum(blob)).await {
        Ok(digest) => digest.as_string().ok_or_else(Fail::unreadable),
        Err(e) => Err(Fail::from_js(&e)),
    }
}

fn last_modified(file: &Blob) -> JsValue {
    let v = Reflect::get(file, &"lastModified".into()).unwrap_or_default();
    if v.is_undefined() { 0.into() } else { v }
}

fn message(e: &JsValue) -> String {
    Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default()
}
