//! External uploaders for Phoenix LiveView and pyview.
//!
//! Both frameworks call `uploaders[entry.meta.uploader](entries, onViewError)`
//! with entries whose `meta` is what the app's presign function returned:
//! here, upload-server's answer to `POST /uploads`, passed on unchanged (it
//! names its uploader at the top level and carries the endpoint and a token
//! for that one upload). Each entry is sent by the same engine as an
//! `Uploader`'s files ([`upload::deliver`]: retries, parallel parts, the
//! request pool, every part's SHA-256 when the plan asks for it), completed
//! with the scoped token, and reported as LiveView
//! expects: whole percentages, 100 only once `/complete` has answered,
//! `entry.error(message)` on failure. `onViewError` aborts the requests and
//! deletes the upload. All LiveView uploads on a page share one pool of 4
//! request slots.
//!
//! The package's `uploaders` object (`src/uploaders.js`) loads the module on
//! first use and calls [`liveview_upload`]; wasm-bindgen can neither export a
//! plain (spreadable) object nor initialise a `--target web` module by itself.

use std::rc::Rc;

use js_sys::{Array, Function};
use upload_core::wire::{CreatedUpload, UploadPlan};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::Blob;

use crate::api::{Api, DELETE};
use crate::fail::{ABORTED, Fail, NETWORK, cat};
use crate::policy::Retry;
use crate::task::{Shared, Sink, State, Task};
use crate::upload::{Client, Started};
use crate::wait::Pool;

thread_local! {
    // One pool for every LiveView upload on the page, as an Uploader has.
    static SHARED: Rc<Shared> = Rc::new(Shared {
        slots: Pool::new(4),
        concurrency: 4,
        batch: 8,
        retry: Retry { attempts: 5, base_ms: 500.0 },
    });
}

/// Starts the LiveView `entries` that LiveView handed to `uploaders[name]`
/// (`S3`, `S3Multipart` or `Chunked`); used by the package's `uploaders`.
#[wasm_bindgen(js_name = liveviewUpload, skip_typescript)]
pub fn liveview_upload(name: &str, entries: Array, on_view_error: JsValue) {
    let shared = SHARED.with(Rc::clone);
    for entry in entries.iter() {
        let file: Blob = crate::get(&entry, "file").unchecked_into();
        let file_name = crate::string(&file, "name").unwrap_or_else(|| "blob".into());
        let t = Task::new(file, file_name, shared.clone(), Sink::Entry(entry.clone()));
        // The view crashed or navigated away: stop sending (and delete the upload below).
        if let Some(on_view_error) = on_view_error.dyn_ref::<Function>() {
            let task = t.clone();
            let _ =
                on_view_error.call1(&JsValue::NULL, &Closure::<dyn Fn()>::new(move || task.cancel()).into_js_value());
        }
        let started = read_meta(name, &crate::get(&entry, "meta"));
        spawn_local(async move {
            let (client, started) = match started {
                Ok(ready) => ready,
                Err(fail) => {
                    t.fail();
                    return t.report_error(&fail);
                }
            };
            let id = started.id.clone();
            match send(&t, &client, started).await {
                Ok(_) => {
                    t.finish();
                    t.emit_final().await;
                }
                Err(fail) => {
                    let cancelled = t.state() == State::Cancelled || fail.is(ABORTED);
                    t.fail();
                    if !cancelled {
                        t.report_error(&fail);
                    }
                    // Free the owner's pending slot and what was stored; not
                    // when the server is out of reach.
                    if cancelled || !fail.is(NETWORK) {
                        let _ = client.api.call(DELETE, &cat(&["/uploads/", &id]), None).await;
                    }
                }
            }
        });
    }
}

/// Sends and completes an entry's upload; with the hash module when its plan
/// asks for every part's SHA-256 (the app created it with `part_checksums`).
async fn send(t: &Rc<Task>, client: &Rc<Client>, started: Started) -> Result<(), Fail> {
    let module = match started.plan {
        UploadPlan::S3Multipart { part_checksums: true, .. } => Some(crate::hash::module().await?),
        _ => None,
    };
    crate::flow::deliver(t, client, started, module).await.map(drop)
}

/// The upload an entry's `meta` describes, with a client for its endpoint and
/// scoped token.
fn read_meta(name: &str, meta: &JsValue) -> Result<(Rc<Client>, Started), Fail> {
    let created: CreatedUpload = crate::json::from_value(meta.clone())
        .map_err(|_| Fail::invalid("entry.meta is not upload-server's answer to POST /uploads"))?;
    let kind = created.upload.kind();
    if created.uploader.is_some_and(|named| named != kind) || kind.as_str() != name {
        return Err(Fail::invalid(cat(&[
            "entry.meta is a ",
            kind.as_str(),
            " upload, given to the ",
            name,
            " uploader",
        ])));
    }
    let endpoint = created
        .endpoint
        .clone()
        .ok_or_else(|| Fail::invalid("entry.meta has no endpoint: pass upload-server's answer on unchanged"))?;
    let api = Rc::new(Api::new(endpoint, created.token.clone()));
    let client = Rc::new(Client::new(api, SHARED.with(Rc::clone), None));
    Ok((client, Started::from(created)))
}
