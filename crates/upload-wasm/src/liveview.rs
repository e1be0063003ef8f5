//! External uploaders for Phoenix LiveView and pyview.
//!
//! Both frameworks call `uploaders[entry.meta.uploader](entries, onViewError)`
//! with entries whose `meta` is what the server's presign function returned,
//! and expect `entry.progress(percent)` (100 = finished) and `entry.error(msg)`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::Blob;

use crate::api::{Api, Idempotent};
use crate::flow::{completed_parts, part_plan};
use crate::js::{Fail, get, get_str, get_u64, set, string_entries};
use crate::plans::{Signer, multipart, s3_post};
use crate::sched::Semaphore;
use crate::task::{Ctx, Retry, Sink, Task};

thread_local! {
    // One pool for every LiveView upload on the page, as an `Uploader` has.
    static CTX: Rc<Ctx> = Rc::new(Ctx {
        slots: Semaphore::new(4),
        concurrency: 4,
        retry: Retry { attempts: 5, base_ms: 500.0 },
    });
}

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
        for entry in entries.iter() {
            start(entry, &on_view_error, |task, meta| async move {
                let url = get_str(&meta, "url").ok_or_else(|| Fail::invalid("entry.meta.url is missing"))?;
                let fields = string_entries(&get(&meta, "fields"))
                    .map_err(|k| Fail::invalid(format!("entry.meta.fields.{k} must be a string")))?;
                s3_post(&task, &url, &fields).await
            });
        }
    }

    /// An `S3Multipart` uploader with the same calling convention.
    #[wasm_bindgen(js_name = S3Multipart)]
    pub fn s3_multipart(entries: Array, on_view_error: JsValue) {
        for entry in entries.iter() {
            start(entry, &on_view_error, |task, meta| async move { multipart_entry(&task, &meta).await });
        }
    }
}

fn start<F, Fut>(entry: JsValue, on_view_error: &JsValue, send: F)
where
    F: FnOnce(Rc<Task>, JsValue) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), Fail>> + 'static,
{
    let file: Blob = get(&entry, "file").unchecked_into();
    let name = get_str(&file, "name").unwrap_or_else(|| "blob".to_owned());
    let meta = get(&entry, "meta");
    let task = Task::new(file, name, CTX.with(Rc::clone), Sink::Entry(entry.clone()));
    if let Some(on_view_error) = on_view_error.dyn_ref::<Function>() {
        // The view crashed or navigated away: stop sending.
        let t = task.clone();
        let _ = on_view_error.call1(&JsValue::NULL, &Closure::once_into_js(move || t.cancel()));
    }
    spawn_local(async move {
        task.set_state(crate::task::State::Uploading);
        match send(task.clone(), meta).await {
            Ok(()) => {
                task.finish();
                task.emit_final().await;
            }
            Err(fail) => {
                let cancelled = task.state() == crate::task::State::Cancelled;
                task.fail();
                if !cancelled && let Some(error) = get(&entry, "error").dyn_ref::<Function>() {
                    let _ = error.call1(&entry, &JsValue::from_str(&fail.message));
                }
            }
        }
    });
}

async fn multipart_entry(task: &Rc<Task>, meta: &JsValue) -> Result<(), Fail> {
    let part_size = get_u64(meta, "part_size").ok_or_else(|| Fail::invalid("entry.meta.part_size is missing"))?;
    let part_count = u32::try_from(task.size.div_ceil(part_size.max(1))).unwrap_or(u32::MAX);
    let parts = part_plan(task.size, part_size, get_u64(meta, "part_count").map_or(part_count, |n| n as u32))?;
    let token = get_str(meta, "token");
    let (signer, api, complete_path) = match get(meta, "urls").dyn_into::<Array>() {
        Ok(urls) => {
            let urls: Vec<String> = urls.iter().filter_map(|u| u.as_string()).collect();
            let complete =
                get_str(meta, "complete_url").ok_or_else(|| Fail::invalid("entry.meta.complete_url is missing"))?;
            (Signer::Fixed(urls), Rc::new(Api::new("", token)), complete)
        }
        Err(_) => {
            let endpoint =
                get_str(meta, "endpoint").ok_or_else(|| Fail::invalid("entry.meta needs urls or endpoint"))?;
            let id = get_str(meta, "id").ok_or_else(|| Fail::invalid("entry.meta.id is missing"))?;
            let api = Rc::new(Api::new(&endpoint, token));
            let complete = get_str(meta, "complete_url").unwrap_or_else(|| format!("/uploads/{id}/complete"));
            (Signer::Api { api: api.clone(), id }, api, complete)
        }
    };
    let etags = Rc::new(RefCell::new(Vec::new()));
    multipart(task, Rc::new(signer), parts, etags.clone()).await?;
    let body = Object::new();
    set(&body, "parts", &completed_parts(&etags.borrow())?);
    api.call_retrying("POST", &complete_path, Some(&body), Idempotent::Yes, &task.ctx.retry).await?;
    Ok(())
}
