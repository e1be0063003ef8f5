//! External uploaders for Phoenix LiveView and pyview.
//!
//! Both frameworks call `uploaders[entry.meta.uploader](entries, onViewError)`
//! with entries whose `meta` is what the server's presign function returned,
//! and expect `entry.progress(percent)` (100 = finished) and `entry.error(msg)`.
//! All LiveView uploads on a page share one pool of 4 request slots.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use gloo_net::http::Method;
use js_sys::{Array, Function};
use serde::Deserialize;
use upload_core::wire::CompleteUpload;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::Blob;

use crate::api::{Api, to_js};
use crate::fail::{Fail, cat};
use crate::policy::{self, Retry, Retryable};
use crate::task::{Shared, Sink, State, Task};
use crate::upload::{self, Signer};
use crate::wait::Pool;

/// `uploaders` for LiveView's `LiveSocket` option (`new LiveSocket(url,
/// Socket, {uploaders})`) and pyview's. Each entry's `meta` says where to send:
///
/// - `S3`: `{uploader: "S3", url, fields}`: a form POST of `fields` then the file.
/// - `S3Multipart`: `{uploader: "S3Multipart", part_size, ...}` with either
///   `endpoint` + `id` (+ `token`): part URLs from this project's API, completed
///   at `{endpoint}/uploads/{id}/complete`; or `urls` (one presigned PUT URL per
///   part, in order) and `complete_url`, which gets `POST {"parts": [{part_number,
///   etag}]}` (with `token` as bearer, if given) so the app's server can finish
///   the multipart upload.
#[wasm_bindgen(js_name = uploaders)]
pub struct Uploaders {
    _private: (),
}

#[wasm_bindgen(js_class = uploaders)]
impl Uploaders {
    /// LiveView's `S3` uploader.
    #[wasm_bindgen(js_name = S3)]
    pub fn s3(entries: Array, on_view_error: JsValue) {
        start(Kind::S3, &entries, &on_view_error);
    }

    /// An `S3Multipart` uploader with the same calling convention.
    #[wasm_bindgen(js_name = S3Multipart)]
    pub fn s3_multipart(entries: Array, on_view_error: JsValue) {
        start(Kind::S3Multipart, &entries, &on_view_error);
    }
}

#[derive(Clone, Copy)]
enum Kind {
    S3,
    S3Multipart,
}

/// An entry's `meta`, as the app's presign function made it (not an answer
/// of this project's API, hence not one of upload-core's types).
#[derive(Deserialize)]
struct EntryMeta {
    url: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    part_size: Option<u64>,
    part_count: Option<u32>,
    urls: Option<Vec<String>>,
    complete_url: Option<String>,
    endpoint: Option<String>,
    id: Option<String>,
    token: Option<String>,
}

thread_local! {
    // One pool for every LiveView upload on the page, as an Uploader has.
    static SHARED: Rc<Shared> = Rc::new(Shared {
        slots: Pool::new(4),
        concurrency: 4,
        batch: 8,
        retry: Retry { attempts: 5, base_ms: 500.0 },
    });
}

fn start(kind: Kind, entries: &Array, on_view_error: &JsValue) {
    let shared = SHARED.with(Rc::clone);
    for entry in entries.iter() {
        let file: Blob = crate::get(&entry, "file").unchecked_into();
        let name = crate::string(&file, "name").unwrap_or_else(|| "blob".into());
        let t = Task::new(file, name, shared.clone(), Sink::Entry(entry.clone()));
        // The view crashed or navigated away: stop sending.
        if let Some(on_view_error) = on_view_error.dyn_ref::<Function>() {
            let task = t.clone();
            let _ =
                on_view_error.call1(&JsValue::NULL, &Closure::<dyn Fn()>::new(move || task.cancel()).into_js_value());
        }
        spawn_local(async move {
            t.set_state(State::Uploading);
            let result = send(kind, &t, &crate::get(&entry, "meta")).await;
            match result {
                Ok(()) => {
                    t.finish();
                    t.emit_final().await;
                }
                Err(fail) => {
                    let cancelled = t.state() == State::Cancelled;
                    t.fail();
                    if !cancelled {
                        t.report_error(&fail);
                    }
                }
            }
        });
    }
}

async fn send(kind: Kind, t: &Rc<Task>, meta: &JsValue) -> Result<(), Fail> {
    let meta: EntryMeta =
        crate::json::from_value(meta.clone()).map_err(|_| Fail::invalid("entry.meta is not valid"))?;
    let missing = |k: &str| Fail::invalid(cat(&["entry.meta.", k, " is missing"]));
    if let Kind::S3 = kind {
        let url = meta.url.ok_or_else(|| missing("url"))?;
        let fields: Vec<(String, String)> = meta.fields.into_iter().collect();
        return upload::s3_post(t, &url, &fields).await;
    }
    let part_size = meta.part_size.ok_or_else(|| missing("part_size"))?;
    let count = meta.part_count.unwrap_or_else(|| t.size.div_ceil(part_size.max(1)) as u32);
    let plan = policy::part_plan(t.size, part_size, count)?;
    let parts = (1..=plan.part_count).filter_map(|n| plan.part_range(n)).collect();
    let (api, signer, complete) = match (meta.urls, meta.endpoint) {
        // URLs handed over up front (an app's presigner); a 403 is final.
        (Some(urls), _) => {
            let complete = meta.complete_url.ok_or_else(|| missing("complete_url"))?;
            (Rc::new(Api::new(String::new(), meta.token)), Signer::Urls(urls), complete)
        }
        (None, Some(endpoint)) => {
            let id = meta.id.ok_or_else(|| missing("id"))?;
            let complete = meta.complete_url.unwrap_or_else(|| cat(&["/uploads/", &id, "/complete"]));
            let api = Rc::new(Api::new(endpoint, meta.token));
            let client = Rc::new(upload::Client::new(api.clone(), t.shared.clone(), None));
            (api, Signer::Api { client, id, module: None }, complete)
        }
        (None, None) => return Err(Fail::invalid("entry.meta needs urls or endpoint")),
    };
    let etags = Rc::new(RefCell::new(Vec::new()));
    upload::multipart(t, Rc::new(signer), parts, etags.clone()).await?;
    let body = CompleteUpload { parts: Some(upload::completed(&etags.borrow())?) };
    api.retrying(Method::POST, &complete, Some(&to_js(&body)), Retryable::Idempotent, &t.shared.retry).await?;
    Ok(())
}
