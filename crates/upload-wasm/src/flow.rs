//! The path of one file through the API: check, create, send, complete
//! (and on pause, resume from what the server says is stored).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Object, Promise};
use upload_core::wire::{check_meta_entries, is_base64_sha256};
use upload_core::{PartPlan, UploadConstraints};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::api::{Api, Idempotent};
use crate::js::{Fail, NETWORK, get, get_str, get_u64, set, string_entries};
use crate::plans::{Signer, bad_answer, chunked, multipart, s3_post};
use crate::sched::Semaphore;
use crate::task::{State, Task};

/// What one `Uploader` keeps between files.
pub(crate) struct Shared {
    pub(crate) api: Rc<Api>,
    /// `GET /config`, asked once; cleared again if it failed.
    config: RefCell<Option<Promise>>,
    /// Files pending on the server at once (`max_files`), so a batch larger
    /// than the limit queues instead of failing with `too_many_files`.
    files: RefCell<Option<Rc<Semaphore>>>,
}

/// The file's declaration, checked before any request.
pub(crate) struct Declared {
    pub(crate) content_type: String,
    pub(crate) meta: Vec<(String, String)>,
    pub(crate) sha256: Option<String>,
}

impl Shared {
    pub(crate) fn new(api: Rc<Api>) -> Shared {
        Shared { api, config: RefCell::new(None), files: RefCell::new(None) }
    }

    /// The answer of `GET /config` (asked once, shared by every caller).
    pub(crate) async fn config_json(self: &Rc<Self>, retry: crate::task::Retry) -> Result<JsValue, Fail> {
        let existing = self.config.borrow().clone();
        let promise = match existing {
            Some(p) => p,
            None => {
                let api = self.api.clone();
                let p = future_to_promise(async move {
                    api.call_retrying("GET", "/config", None, Idempotent::Yes, &retry).await.map_err(|f| f.to_js())
                });
                *self.config.borrow_mut() = Some(p.clone());
                p
            }
        };
        match JsFuture::from(promise.clone()).await {
            Ok(json) => Ok(json),
            Err(e) => {
                // Let the next file ask again instead of failing forever.
                let same = self.config.borrow().as_ref().is_some_and(|p| JsValue::from(p) == JsValue::from(&promise));
                if same {
                    *self.config.borrow_mut() = None;
                }
                Err(Fail::new(&get_str(&e, "code").unwrap_or_else(|| NETWORK.to_owned()), crate::api::describe(&e))
                    .with_status(get_u64(&e, "status").unwrap_or(0) as u16))
            }
        }
    }

    fn files_gate(&self, max_files: u32) -> Rc<Semaphore> {
        self.files.borrow_mut().get_or_insert_with(|| Semaphore::new(max_files.max(1) as usize)).clone()
    }
}

/// `constraints` of a `GET /config` answer.
pub(crate) fn constraints_from(config: &JsValue) -> Result<UploadConstraints, Fail> {
    let c = get(config, "constraints");
    let accept = match get(&c, "accept").dyn_into::<Array>() {
        Ok(list) => list.iter().filter_map(|v| v.as_string()).collect(),
        Err(_) => Vec::new(),
    };
    Ok(UploadConstraints {
        max_file_size: get_u64(&c, "max_file_size").ok_or_else(|| bad_answer("constraints.max_file_size"))?,
        max_files: get_u64(&c, "max_files").unwrap_or(u64::from(u32::MAX)).min(u64::from(u32::MAX)) as u32,
        accept,
    })
}

/// Checks what the browser can check without asking: meta and checksum shape.
pub(crate) fn declare(file_type: &str, meta: &JsValue, sha256: Option<String>) -> Result<Declared, Fail> {
    let meta = string_entries(meta).map_err(|key| Fail::invalid(format!("meta value of `{key}` must be a string")))?;
    check_meta_entries(meta.len(), meta.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(Fail::invalid)?;
    if let Some(sum) = &sha256
        && !is_base64_sha256(sum)
    {
        return Err(Fail::invalid("sha256 must be the base64 SHA-256 of the file (44 characters)"));
    }
    Ok(Declared { content_type: file_type.to_owned(), meta, sha256 })
}

/// One file from start to the File record.
pub(crate) async fn run(task: Rc<Task>, shared: Rc<Shared>, declared: Result<Declared, Fail>) -> Result<JsValue, Fail> {
    let result = run_inner(&task, &shared, declared).await;
    match &result {
        Ok(_) => {}
        Err(fail) => {
            let cancelled = task.state() == State::Cancelled || fail.is_aborted();
            task.fail();
            // Free the server's slot and the stored bytes. Not after a network
            // failure: the server is out of reach anyway, and the upload may be
            // resumed by id later.
            let id = task.id.borrow().clone();
            if let Some(id) = id
                && (cancelled || fail.code != NETWORK)
            {
                let path = format!("/uploads/{id}");
                let _ = shared.api.call_retrying("DELETE", &path, None, Idempotent::Yes, &task.ctx.retry).await;
            }
        }
    }
    result
}

async fn run_inner(task: &Rc<Task>, shared: &Rc<Shared>, declared: Result<Declared, Fail>) -> Result<JsValue, Fail> {
    let declared = declared?;
    let api = shared.api.clone();
    let config = shared.config_json(task.ctx.retry).await?;
    let constraints = constraints_from(&config)?;
    // Same rules, same codes as the server: a refused file costs no request.
    constraints.check(&task.name, task.size, &declared.content_type)?;
    let _pending = shared.files_gate(constraints.max_files).acquire().await;
    task.checkpoint().await?;

    let body = Object::new();
    set(&body, "name", &JsValue::from_str(&task.name));
    set(&body, "size", &JsValue::from(task.size as f64));
    set(&body, "type", &JsValue::from_str(&declared.content_type));
    if let Some(sum) = &declared.sha256 {
        set(&body, "sha256", &JsValue::from_str(sum));
    }
    let meta = Object::new();
    for (k, v) in &declared.meta {
        set(&meta, k, &JsValue::from_str(v));
    }
    set(&body, "meta", &meta);
    let created =
        api.call_retrying("POST", "/uploads", Some(&body), Idempotent::OnlyIfRefused, &task.ctx.retry).await?;
    let id = get_str(&created, "id").ok_or_else(|| bad_answer("id"))?;
    *task.id.borrow_mut() = Some(id.clone());
    let complete_path = get_str(&created, "complete_url").unwrap_or_else(|| format!("/uploads/{id}/complete"));
    let mut plan = plan_from(&get(&created, "upload"))?;
    task.checkpoint().await?;
    task.set_state(State::Uploading);

    let etags = Rc::new(RefCell::new(Vec::new()));
    let signer = Rc::new(Signer::Api { api: api.clone(), id: id.clone() });
    let mut resuming = false;
    loop {
        let sent = match &plan {
            Plan::S3 { url, fields } => s3_post(task, url, fields).await,
            Plan::S3Multipart { part_size, part_count } => {
                let parts = part_plan(task.size, *part_size, *part_count)?;
                multipart(task, signer.clone(), parts, etags.clone()).await
            }
            Plan::Chunked { url, chunk_size, headers } => chunked(task, url, *chunk_size, headers, resuming).await,
        };
        match sent {
            Ok(()) => break,
            Err(f) if f.is_aborted() && task.state() == State::Paused => {
                task.checkpoint().await?;
                // What is stored is the server's (and the store's) word, not
                // ours: a part may have landed after we stopped listening.
                let status =
                    api.call_retrying("GET", &format!("/uploads/{id}"), None, Idempotent::Yes, &task.ctx.retry).await?;
                merge_stored_parts(&status, &etags);
                plan = plan_from(&get(&status, "upload"))?;
                resuming = true;
            }
            Err(f) => return Err(f),
        }
    }

    task.set_state(State::Completing);
    let complete = Object::new();
    if let Plan::S3Multipart { .. } = &plan {
        if etags.borrow().iter().any(|e| e.as_deref().is_none_or(str::is_empty)) {
            // The store's CORS rules do not expose ETag: ask the server, which lists the parts.
            let status =
                api.call_retrying("GET", &format!("/uploads/{id}"), None, Idempotent::Yes, &task.ctx.retry).await?;
            merge_stored_parts(&status, &etags);
        }
        set(&complete, "parts", &completed_parts(&etags.borrow())?);
    }
    let answer = api.call_retrying("POST", &complete_path, Some(&complete), Idempotent::Yes, &task.ctx.retry).await?;
    let file = get(&answer, "file");
    if !file.is_object() {
        return Err(bad_answer("file"));
    }
    task.finish();
    task.emit_final().await;
    Ok(file)
}

/// `etags` indexed by part number - 1: `None` not stored, `Some("")`
/// stored but the store hid its ETag.
pub(crate) type Etags = Rc<RefCell<Vec<Option<String>>>>;

fn merge_stored_parts(status: &JsValue, etags: &Etags) {
    let Ok(parts) = get(status, "parts").dyn_into::<Array>() else { return };
    let mut etags = etags.borrow_mut();
    for part in parts.iter() {
        if let (Some(n), Some(etag)) = (get_u64(&part, "part_number"), get_str(&part, "etag")) {
            let index = (n as usize).wrapping_sub(1);
            if index >= etags.len() && index < upload_core::MAX_PART_COUNT as usize {
                etags.resize(index + 1, None);
            }
            if let Some(slot) = etags.get_mut(index) {
                *slot = Some(etag);
            }
        }
    }
}

/// The `parts` list of `/complete`, or `upload_incomplete` naming what is missing.
pub(crate) fn completed_parts(etags: &[Option<String>]) -> Result<JsValue, Fail> {
    let parts = Array::new();
    for (i, etag) in etags.iter().enumerate() {
        let etag = etag.as_deref().filter(|e| !e.is_empty()).ok_or_else(|| {
            Fail::new(
                "upload_incomplete",
                format!("part {} has no ETag; the bucket's CORS rules must expose ETag", i + 1),
            )
        })?;
        let part = Object::new();
        set(&part, "part_number", &JsValue::from(i as u32 + 1));
        set(&part, "etag", &JsValue::from_str(etag));
        parts.push(&part);
    }
    Ok(parts.into())
}

pub(crate) fn part_plan(size: u64, part_size: u64, part_count: u32) -> Result<PartPlan, Fail> {
    if part_size == 0 || size.div_ceil(part_size) != u64::from(part_count) {
        return Err(Fail::new(
            "internal",
            format!("{part_count} parts of {part_size} bytes do not cover {size} bytes"),
        ));
    }
    Ok(PartPlan { total: size, part_size, part_count })
}

/// The `upload` object of the contract (`upload_core::wire::UploadPlan`),
/// read field by field: its `BTreeMap`s and serde would cost the wasm more
/// than this whole function.
pub(crate) enum Plan {
    S3 { url: String, fields: Vec<(String, String)> },
    S3Multipart { part_size: u64, part_count: u32 },
    Chunked { url: String, chunk_size: u64, headers: Vec<(String, String)> },
}

pub(crate) fn plan_from(upload: &JsValue) -> Result<Plan, Fail> {
    let pairs = |field: &str| string_entries(&get(upload, field)).map_err(|_| bad_answer(field));
    let url = || get_str(upload, "url").ok_or_else(|| bad_answer("upload.url"));
    let number = |field: &str| get_u64(upload, field).ok_or_else(|| bad_answer(field));
    match get_str(upload, "uploader").as_deref() {
        Some("S3") => Ok(Plan::S3 { url: url()?, fields: pairs("fields")? }),
        Some("S3Multipart") => {
            Ok(Plan::S3Multipart { part_size: number("part_size")?, part_count: number("part_count")? as u32 })
        }
        Some("Chunked") => {
            Ok(Plan::Chunked { url: url()?, chunk_size: number("chunk_size")?, headers: pairs("headers")? })
        }
        _ => Err(bad_answer("upload.uploader")),
    }
}
