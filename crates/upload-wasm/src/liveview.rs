//! External uploaders for Phoenix LiveView and pyview.
//!
//! Both frameworks call `uploaders[entry.meta.uploader](entries, onViewError)`
//! with entries whose `meta` is what the server's presign function returned,
//! and expect `entry.progress(percent)` (100 = finished) and `entry.error(msg)`.
//! The uploads run in transport.js (`liveview`), which asks `policy` to read
//! each entry's `meta`; all LiveView uploads on a page share one pool of 4
//! request slots.

use js_sys::Array;
use wasm_bindgen::prelude::*;

use crate::{liveview, policy};

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
        liveview("S3", &entries, &on_view_error, &policy());
    }

    /// An `S3Multipart` uploader with the same calling convention.
    #[wasm_bindgen(js_name = S3Multipart)]
    pub fn s3_multipart(entries: Array, on_view_error: JsValue) {
        liveview("S3Multipart", &entries, &on_view_error, &policy());
    }
}
