//! The flows of an upload: check, create, send by the server's plan
//! (form POST, multipart parts, chunked session), pause/resume/cancel,
//! complete; and what the uploads of one `Uploader` share (the API, the
//! configuration, the pools of request slots and of the server's pending slots).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use gloo_net::http::Method;
use js_sys::{Array, Promise};
use upload_core::ErrorCode;
use upload_core::wire::{
    ClientConfig, CompleteUpload, Completed, CompletedPart, CreateUpload, CreatedUpload, SignParts, SignedParts,
    StoredPart, UploadPlan, UploaderKind,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::{Blob, FormData};

use crate::api::{Api, from_js, to_js};
use crate::fail::{ABORTED, CHECKSUM_MISMATCH, Fail, NETWORK, cat, num};
use crate::hash::{Extras, HashModule, sum};
use crate::policy::{self, Retryable, Verdict, range_end};
use crate::task::{Body, Request, Sent, Shared, State, Task};
use crate::wait::Pool;

/// What the uploads of one `Uploader` share.
pub(crate) struct Client {
    pub(crate) api: Rc<Api>,
    pub(crate) shared: Rc<Shared>,
    /// `GET /config` (the answer's JSON), asked once; asked again by the
    /// next file if it failed.
    config: RefCell<Option<Promise>>,
    /// The server's `max_files` pending slots, once the configuration is known.
    files: RefCell<Option<Rc<Pool>>>,
    pub(crate) extras: Option<Extras>,
    creation: Creation,
}

/// How uploads are created: by `POST /uploads` with the Uploader's token,
/// or by the app's own `create` step; and the plan to ask for.
#[derive(Default)]
pub(crate) struct Creation {
    /// `UploaderOptions.create`: the app's server creates the upload and
    /// answers upload-server's answer, whose endpoint and scoped token then
    /// carry the upload's own calls.
    pub(crate) create: Option<js_sys::Function>,
    /// `UploaderOptions.uploader`, for files that do not name their own.
    pub(crate) uploader: Option<UploaderKind>,
}

/// An upload as created (or found again): where to send and what is stored.
pub(crate) struct Started {
    pub(crate) id: String,
    pub(crate) complete_url: String,
    pub(crate) expires_at: String,
    pub(crate) plan: UploadPlan,
    pub(crate) parts: Vec<StoredPart>,
    /// The create answer's API base and upload-scoped token.
    pub(crate) endpoint: Option<String>,
    pub(crate) token: Option<String>,
}

impl From<CreatedUpload> for Started {
    fn from(c: CreatedUpload) -> Started {
        Started {
            id: c.id,
            complete_url: c.complete_url,
            expires_at: c.expires_at,
            plan: c.upload,
            parts: Vec::new(),
            endpoint: c.endpoint,
            token: c.token,
        }
    }
}

impl From<upload_core::wire::UploadStatus> for Started {
    fn from(s: upload_core::wire::UploadStatus) -> Started {
        let complete_url = cat(&["/uploads/", &s.id, "/complete"]);
        Started {
            id: s.id,
            complete_url,
            expires_at: s.expires_at,
            plan: s.upload,
            parts: s.parts,
            endpoint: None,
            token: None,
        }
    }
}

/// Calls the app's `create` step with the body of `POST /uploads`: its
/// answer (awaited when a promise), or the failure it reports, either thrown
/// or as upload-server's error body passed on.
async fn app_create(create: &js_sys::Function, body: &CreateUpload) -> Result<JsValue, Fail> {
    let returned = create.call1(&JsValue::NULL, &to_js(body)).map_err(|e| Fail::from_js(&e))?;
    let answer = JsFuture::from(Promise::resolve(&returned)).await.map_err(|e| Fail::from_js(&e))?;
    match crate::json::from_value::<upload_core::wire::ErrorBody>(answer.clone()) {
        Ok(refused) => Err(Fail::of(refused.error.code, refused.error.message)),
        Err(_) => Ok(answer),
    }
}

/// What `upload(file, options)` declared.
pub(crate) struct Declaration {
    pub(crate) content_type: String,
    pub(crate) sha256: Option<String>,
    pub(crate) meta: Vec<(String, String)>,
    /// The plan to ask for (`UploadOptions.uploader`).
    pub(crate) uploader: Option<UploaderKind>,
    /// A bad `meta`, `sha256` or `uploader`: the upload fails with it before any request.
    pub(crate) error: Option<Fail>,
}

impl Client {
    pub(crate) fn new(api: Rc<Api>, shared: Rc<Shared>, extras: Option<Extras>) -> Client {
        Client {
            api,
            shared,
            config: RefCell::default(),
            files: RefCell::default(),
            extras,
            creation: Creation::default(),
        }
    }

    pub(crate) fn with_creation(mut self, creation: Creation) -> Client {
        self.creation = creation;
        self
    }

    /// The JSON of `GET /config` (checked to read as upload-core's `ClientConfig`).
    pub(crate) async fn config_json(&self) -> Result<JsValue, Fail> {
        if self.api.endpoint().is_empty() {
            return Err(Fail::invalid("this Uploader has no endpoint to read the configuration from"));
        }
        let promise = self
            .config
            .borrow_mut()
            .get_or_insert_with(|| {
                let (api, retry) = (self.api.clone(), self.shared.retry);
                future_to_promise(async move {
                    api.retrying(Method::GET, "/config", None, Retryable::Idempotent, &retry)
                        .await
                        .map_err(|f| f.to_js())
                })
            })
            .clone();
        match JsFuture::from(promise.clone()).await {
            Ok(json) => {
                from_js::<ClientConfig>(json.clone(), "configuration")?;
                Ok(json)
            }
            Err(e) => {
                let mut cached = self.config.borrow_mut();
                if cached.as_ref().is_some_and(|p| JsValue::from(p) == JsValue::from(&promise)) {
                    *cached = None;
                }
                Err(Fail::from_js(&e))
            }
        }
    }

    pub(crate) async fn config(&self) -> Result<ClientConfig, Fail> {
        from_js(self.config_json().await?, "configuration")
    }

    /// The server's configuration, or `None` for an Uploader that only has
    /// the app's `create` step (no endpoint to ask): the server then checks
    /// the file when the app creates the upload.
    pub(crate) async fn known_config(&self) -> Result<Option<ClientConfig>, Fail> {
        if self.api.endpoint().is_empty() { Ok(None) } else { self.config().await.map(Some) }
    }

    /// `POST /uploads`, or the app's `create` step.
    pub(crate) async fn create(&self, body: &CreateUpload) -> Result<Started, Fail> {
        let json = match &self.creation.create {
            Some(create) => app_create(create, body).await?,
            None => {
                let body = Some(to_js(body));
                self.api
                    .retrying(Method::POST, "/uploads", body.as_ref(), Retryable::IfRefused, &self.shared.retry)
                    .await?
            }
        };
        Ok(from_js::<CreatedUpload>(json, "upload")?.into())
    }

    /// The client for one upload's own calls: with the app's `create` step,
    /// the answer's endpoint and upload-scoped token (the Uploader has no
    /// token of its own); else this one.
    fn for_upload(self: &Rc<Self>, started: &Started) -> Result<Rc<Client>, Fail> {
        if self.creation.create.is_none() {
            return Ok(self.clone());
        }
        let endpoint = started.endpoint.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| self.api.endpoint().into());
        if endpoint.is_empty() {
            return Err(Fail::invalid(
                "the create answer has no endpoint: pass upload-server's answer on unchanged, or give the Uploader an endpoint",
            ));
        }
        let api = Rc::new(Api::new(endpoint, started.token.clone()));
        Ok(Rc::new(Client::new(api, self.shared.clone(), None)))
    }

    async fn call(&self, method: Method, path: &str, body: Option<&JsValue>) -> Result<JsValue, Fail> {
        self.api.retrying(method, path, body, Retryable::Idempotent, &self.shared.retry).await
    }
}

/// One file from the check to the File record (as the JS object the
/// application gets).
pub(crate) async fn run(t: Rc<Task>, client: Rc<Client>, decl: Declaration) -> Result<JsValue, Fail> {
    let resume_key = RefCell::new(None);
    // The client of the upload's own calls, once created (see `Client::for_upload`).
    let upload_client = RefCell::new(client.clone());
    let result = run_inner(&t, &client, decl, &resume_key, &upload_client).await;
    let own = upload_client.into_inner();
    if let Err(fail) = &result {
        let cancelled = t.state() == State::Cancelled || fail.is(ABORTED);
        t.fail();
        // Free the server's slot and the stored bytes; not after a network
        // failure (the server is out of reach, the upload may be resumed by
        // id). Its resume record goes too.
        let id = t.id.borrow().clone();
        if let Some(id) = id
            && (cancelled || !fail.is(NETWORK))
        {
            forget(&client, &resume_key).await;
            let _ = own.call(Method::DELETE, &cat(&["/uploads/", &id]), None).await;
        }
    }
    result
}

async fn forget(client: &Client, resume_key: &RefCell<Option<String>>) {
    let key = resume_key.borrow_mut().take();
    if let (Some(extras), Some(key)) = (&client.extras, key) {
        extras.forget(&key).await;
    }
}

async fn run_inner(
    t: &Rc<Task>,
    client: &Rc<Client>,
    decl: Declaration,
    resume_key: &RefCell<Option<String>>,
    upload_client: &RefCell<Rc<Client>>,
) -> Result<JsValue, Fail> {
    if let Some(fail) = decl.error {
        return Err(fail);
    }
    // Same rules, same codes as the server: a refused file costs no request.
    let config = client.known_config().await?;
    let _file_slot = match &config {
        Some(config) => {
            policy::check(&config.constraints, &t.name, t.size, &decl.content_type)?;
            // The server's pending slots: a batch larger than max_files queues.
            let files = client
                .files
                .borrow_mut()
                .get_or_insert_with(|| Pool::new(config.constraints.max_files.max(1) as usize))
                .clone();
            Some(files.take().await)
        }
        None => None,
    };
    t.checkpoint().await?;
    let mut body = CreateUpload {
        name: t.name.clone(),
        size: t.size,
        content_type: decl.content_type,
        sha256: decl.sha256,
        meta: Default::default(),
        part_checksums: false,
        uploader: decl.uploader.or(client.creation.uploader),
    };
    // One by one: `collect()` into a BTreeMap sorts first, a sort's code the
    // .wasm does not otherwise need.
    for (k, v) in decl.meta {
        body.meta.insert(k, v);
    }
    // Checksums or resume on: the hash module adds the checksums, or finds
    // this file's earlier upload.
    let (module, started) = match &client.extras {
        Some(extras) => {
            let module = extras.module().await?;
            let (started, key) = extras.start(&module, &t.file, &mut body, client).await?;
            *resume_key.borrow_mut() = key;
            (extras.sums.then_some(module), started)
        }
        None => (None, client.create(&body).await?),
    };
    let own = client.for_upload(&started)?;
    *upload_client.borrow_mut() = own.clone();
    let file = deliver(t, &own, started, module).await?;
    forget(client, resume_key).await;
    t.finish();
    t.emit_final().await;
    Ok(file)
}

/// Sends the bytes of an upload already created (`started`: the answer of
/// `POST /uploads`, or of `GET /uploads/{id}` for one found again) by its
/// plan, goes on from what the store holds after a pause, and completes it:
/// the File record (the answer's own JSON, once read as upload-core's
/// `Completed`: not written out again from the wire type). The seam for uploaders whose upload is created elsewhere
/// (a framework's server, say); progress goes to the task's sink.
pub(crate) async fn deliver(
    t: &Rc<Task>,
    client: &Rc<Client>,
    started: Started,
    module: Option<HashModule>,
) -> Result<JsValue, Fail> {
    let Started { id, complete_url, mut plan, parts, .. } = started;
    *t.id.borrow_mut() = Some(id.clone());
    t.checkpoint().await?;
    t.set_state(State::Uploading);
    let etags = Rc::new(RefCell::new(Vec::new()));
    merge(&parts, &etags);
    let signer = Rc::new(Signer::Api { client: client.clone(), id: id.clone(), module });
    let mut resuming = false;
    loop {
        match send_plan(t, &plan, &signer, &etags, resuming).await {
            Ok(()) => break,
            Err(fail) if fail.is(ABORTED) && t.state() == State::Paused => {
                t.checkpoint().await?;
                // What is stored is the server's word, not ours: a part may
                // have landed after we stopped listening.
                let status = client.call(Method::GET, &cat(&["/uploads/", &id]), None).await?;
                let status: upload_core::wire::UploadStatus = from_js(status, "upload")?;
                merge(&status.parts, &etags);
                plan = status.upload;
                resuming = true;
            }
            Err(fail) => return Err(fail),
        }
    }
    t.set_state(State::Completing);
    let mut complete = CompleteUpload::default();
    if matches!(plan, UploadPlan::S3Multipart { .. }) {
        if etags.borrow().iter().any(|e| e.as_deref().is_none_or(str::is_empty)) {
            // The store's CORS rules hide ETag: ask the server, which lists the parts.
            let status = client.call(Method::GET, &cat(&["/uploads/", &id]), None).await?;
            let status: upload_core::wire::UploadStatus = from_js(status, "upload")?;
            merge(&status.parts, &etags);
        }
        complete.parts = Some(completed(&etags.borrow())?);
    }
    let answer = client.call(Method::POST, &complete_url, Some(&to_js(&complete))).await?;
    from_js::<Completed>(answer.clone(), "File record")?;
    Ok(crate::get(&answer, "file"))
}

/// Records the parts the server says are stored.
fn merge(parts: &[StoredPart], etags: &RefCell<Vec<Option<String>>>) {
    let mut etags = etags.borrow_mut();
    for p in parts {
        let n = p.part_number as usize;
        // At most S3's 10,000 parts.
        if (1..=10_000).contains(&n) {
            if etags.len() < n {
                etags.resize(n, None);
            }
            etags[n - 1] = Some(p.etag.clone());
        }
    }
}

/// The `parts` list of /complete, or `upload_incomplete` naming what is missing.
pub(crate) fn completed(etags: &[Option<String>]) -> Result<Vec<CompletedPart>, Fail> {
    etags
        .iter()
        .zip(1..)
        .map(|(etag, n)| match etag.as_deref() {
            Some(etag) if !etag.is_empty() => Ok(CompletedPart { part_number: n, etag: etag.into() }),
            _ => Err(Fail::of(
                ErrorCode::UploadIncomplete,
                cat(&["part ", &num(n.into()), " has no ETag; the bucket's CORS rules must expose ETag"]),
            )),
        })
        .collect()
}

/// Sends the bytes by `plan`; returns, or fails (`aborted` on pause).
async fn send_plan(
    t: &Rc<Task>,
    plan: &UploadPlan,
    signer: &Rc<Signer>,
    etags: &Rc<RefCell<Vec<Option<String>>>>,
    resuming: bool,
) -> Result<(), Fail> {
    match plan {
        UploadPlan::S3 { url, fields, .. } => {
            let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            s3_post(t, url, &fields).await
        }
        UploadPlan::S3Multipart { part_size, part_count, .. } => {
            let plan = policy::part_plan(t.size, *part_size, *part_count)?;
            let parts = (1..=plan.part_count).filter_map(|n| plan.part_range(n)).collect();
            multipart(t, signer.clone(), parts, etags.clone()).await
        }
        UploadPlan::Chunked { url, chunk_size, headers } => {
            let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            chunked(t, url, (*chunk_size).max(1), &headers, resuming).await
        }
    }
}

/// The S3 plan: a multipart form POST, every field, then the file last.
pub(crate) async fn s3_post(t: &Rc<Task>, url: &str, fields: &[(String, String)]) -> Result<(), Fail> {
    let size = t.size as f64;
    let mut attempt = 1;
    loop {
        let form = FormData::new().map_err(|_| Fail::unreadable())?;
        for (k, v) in fields {
            form.append_with_str(k, v).map_err(|_| Fail::unreadable())?;
        }
        form.append_with_blob_and_filename("file", &t.file, &t.name).map_err(|_| Fail::unreadable())?;
        let request = Request { key: 0, len: size, method: "POST", url, headers: &[], body: Body::Form(&form) };
        let sent = t.send_pooled(request, &|| false).await?;
        match t.judge(&sent, "the form POST", false, attempt).await? {
            Verdict::Stored => {
                t.add_stored(0, size);
                return Ok(());
            }
            // A refused checksum (bytes changed on the way) is tried again, as a part is.
            Verdict::Refused(fail)
                if !fail.is(CHECKSUM_MISMATCH) || t.shared.retry.after(&fail, Retryable::Store, attempt).is_none() =>
            {
                return Err(fail);
            }
            _ => {}
        }
        attempt += 1;
    }
}

/// Where part URLs come from.
pub(crate) enum Signer {
    /// This project's API (`POST /uploads/{id}/parts`); with the hash
    /// module, each part's SHA-256 is signed into its URL.
    Api { client: Rc<Client>, id: String, module: Option<HashModule> },
}

/// A part's signed request.
struct SignedUrl {
    url: String,
    headers: Vec<(String, String)>,
}

/// One multipart upload in progress, shared by its workers.
struct Run {
    t: Rc<Task>,
    /// `(offset, length)` by part number - 1.
    parts: Vec<(u64, u64)>,
    signer: Rc<Signer>,
    queue: RefCell<VecDeque<u32>>,
    urls: RefCell<Vec<Option<Rc<SignedUrl>>>>,
    sums: RefCell<Vec<Option<String>>>,
    /// Resolves when the signing request under way has answered.
    signing: RefCell<Option<Promise>>,
    etags: Rc<RefCell<Vec<Option<String>>>>,
    error: RefCell<Option<Fail>>,
}

/// The S3Multipart plan: every part not yet in `etags`, `concurrency` at a
/// time, recording each part's ETag ("" when the store's CORS rules hide it).
pub(crate) async fn multipart(
    t: &Rc<Task>,
    signer: Rc<Signer>,
    parts: Vec<(u64, u64)>,
    etags: Rc<RefCell<Vec<Option<String>>>>,
) -> Result<(), Fail> {
    let count = parts.len();
    etags.borrow_mut().resize(count, None);
    let mut queue = VecDeque::new();
    let mut stored = 0;
    for (n, (_, len)) in (1..).zip(&parts) {
        if etags.borrow()[n as usize - 1].is_none() {
            queue.push_back(n);
        } else {
            stored += len;
        }
    }
    t.set_stored(stored as f64);
    let workers = (t.shared.concurrency as usize).min(queue.len());
    let run = Rc::new(Run {
        t: t.clone(),
        parts,
        signer,
        queue: RefCell::new(queue),
        urls: RefCell::new(vec![None; count]),
        sums: RefCell::new(vec![None; count]),
        signing: RefCell::new(None),
        etags,
        error: RefCell::new(None),
    });
    // Wait for every worker, not just the first failure: no part may still be
    // on its way when the caller completes or deletes the upload.
    let all: Array = (0..workers)
        .map(|_| {
            let run = run.clone();
            JsValue::from(future_to_promise(async move {
                worker(&run).await;
                Ok(JsValue::UNDEFINED)
            }))
        })
        .collect();
    let _ = JsFuture::from(Promise::all(&all)).await;
    if let Some(fail) = run.error.borrow_mut().take() {
        return Err(fail);
    }
    if t.interrupted() {
        return Err(Fail::aborted());
    }
    Ok(())
}

async fn worker(run: &Rc<Run>) {
    loop {
        if run.error.borrow().is_some() || run.t.interrupted() {
            return;
        }
        let Some(n) = run.queue.borrow_mut().pop_front() else { return };
        if let Err(fail) = put_part(run, n).await {
            run.error.borrow_mut().get_or_insert(fail);
            // One part failing for good fails the file: stop the others now.
            if !run.t.interrupted() {
                run.t.abort_requests();
            }
            return;
        }
    }
}

async fn put_part(run: &Rc<Run>, n: u32) -> Result<(), Fail> {
    let t = &run.t;
    let (offset, len) = run.parts[n as usize - 1];
    let body = t.slice(offset as f64, (offset + len) as f64)?;
    let what = cat(&["part ", &num(n.into())]);
    let mut attempt = 1;
    loop {
        let signed = url_for(run, n, &body).await?;
        let stop = || run.error.borrow().is_some();
        let (url, headers) = (&signed.url, &signed.headers);
        let request = Request { key: n as i32, len: len as f64, method: "PUT", url, headers, body: Body::Blob(&body) };
        let sent = t.send_pooled(request, &stop).await?;
        match t.judge(&sent, &what, false, attempt).await? {
            Verdict::Stored => {
                let etag = match &sent {
                    Sent::Answer(xhr) => xhr.get_response_header("ETag").ok().flatten().unwrap_or_default(),
                    _ => String::new(),
                };
                run.etags.borrow_mut()[n as usize - 1] = Some(etag);
                t.add_stored(n as i32, len as f64);
                return Ok(());
            }
            Verdict::Refused(fail) => {
                // Most likely the URL expired while the part waited, or the
                // store refused the bytes (checksum_mismatch): read, hash, sign again.
                run.urls.borrow_mut()[n as usize - 1] = None;
                run.sums.borrow_mut()[n as usize - 1] = None;
                if t.shared.retry.after(&fail, Retryable::Store, attempt).is_none() {
                    return Err(fail);
                }
            }
            _ => {}
        }
        attempt += 1;
    }
}

/// Part n's signed request: cached, from a batch another worker is
/// fetching, or from a new batch of this part and the next ones queued.
async fn url_for(run: &Rc<Run>, n: u32, body: &Blob) -> Result<Rc<SignedUrl>, Fail> {
    let i = n as usize - 1;
    let Signer::Api { client, id, module } = &*run.signer;
    // Checksums on: the part's SHA-256 is signed into its URL.
    if let Some(module) = module
        && run.sums.borrow()[i].is_none()
    {
        let digest = sum(module, body).await?;
        run.sums.borrow_mut()[i] = Some(digest);
    }
    loop {
        if let Some(signed) = run.urls.borrow()[i].clone() {
            return Ok(signed);
        }
        if run.error.borrow().is_some() || run.t.interrupted() {
            return Err(Fail::aborted());
        }
        let pending = run.signing.borrow().clone();
        if let Some(pending) = pending {
            let _ = JsFuture::from(pending).await;
            continue;
        }
        // With checksums, each part is signed alone, once hashed.
        let mut numbers = vec![n];
        if module.is_none() {
            let urls = run.urls.borrow();
            let batch = run.t.shared.batch as usize;
            numbers.extend(
                run.queue.borrow().iter().filter(|q| urls[**q as usize - 1].is_none()).take(batch.saturating_sub(1)),
            );
        }
        let mut request = SignParts { part_numbers: numbers, sha256: Default::default() };
        if let Some(digest) = run.sums.borrow()[i].clone() {
            request.sha256.insert(n, digest);
        }
        let (promise, done) = crate::wait::signal();
        *run.signing.borrow_mut() = Some(promise);
        let answer = client.call(Method::POST, &cat(&["/uploads/", id, "/parts"]), Some(&to_js(&request))).await;
        *run.signing.borrow_mut() = None;
        let _ = done.call0(&JsValue::UNDEFINED);
        let signed: SignedParts = from_js(answer?, "part list")?;
        {
            let mut urls = run.urls.borrow_mut();
            for p in signed.parts {
                if let Some(slot) = urls.get_mut((p.part_number as usize).wrapping_sub(1)) {
                    *slot = Some(Rc::new(SignedUrl { url: p.url, headers: p.headers.into_iter().collect() }));
                }
            }
        }
        if run.urls.borrow()[i].is_none() {
            return Err(Fail::bad_answer("part list"));
        }
    }
}

/// The Chunked plan: consecutive Content-Range PUTs to one session URL; a
/// 308's Range header says where the next chunk starts.
async fn chunked(
    t: &Rc<Task>,
    url: &str,
    chunk_size: u64,
    headers: &[(String, String)],
    resuming: bool,
) -> Result<(), Fail> {
    let total = t.size;
    let mut offset = if resuming { stored_offset(t, url, headers).await? } else { 0 };
    t.set_stored(offset as f64);
    let mut attempt = 1;
    while offset < total {
        let end = (offset + chunk_size).min(total);
        let mut with_range = headers.to_vec();
        with_range.push(("Content-Range".into(), cat(&["bytes ", &num(offset), "-", &num(end - 1), "/", &num(total)])));
        let chunk = t.slice(offset as f64, end as f64)?;
        let len = (end - offset) as f64;
        let request = Request { key: 0, len, method: "PUT", url, headers: &with_range, body: Body::Blob(&chunk) };
        let sent = t.send_pooled(request, &|| false).await?;
        match t.judge(&sent, "a chunk", true, attempt).await? {
            Verdict::Stored => {
                offset = next_offset(&sent, total);
                t.set_stored(offset as f64);
                attempt = 1;
            }
            Verdict::Refused(fail) | Verdict::Fatal(fail) => return Err(fail),
            Verdict::Again(_) => {
                attempt += 1;
                // Part of the chunk may have been stored before the failure.
                offset = stored_offset(t, url, headers).await?;
            }
        }
    }
    Ok(())
}

/// Where the session continues after an answer: 200/201, everything is
/// stored; 308 with `Range: bytes=0-N`, N + 1 bytes; 308 without, none.
fn next_offset(sent: &Sent, total: u64) -> u64 {
    let Sent::Answer(xhr) = sent else { return 0 };
    if xhr.status().unwrap_or(0) != 308 {
        return total;
    }
    let range = xhr.get_response_header("Range").ok().flatten().unwrap_or_default();
    range_end(&range).map_or(0, |end| (end + 1).min(total))
}

/// Asks the session what it holds: an empty PUT with `bytes */total`.
async fn stored_offset(t: &Rc<Task>, url: &str, headers: &[(String, String)]) -> Result<u64, Fail> {
    let mut with_range = headers.to_vec();
    with_range.push(("Content-Range".into(), cat(&["bytes */", &num(t.size)])));
    let mut attempt = 1;
    loop {
        let request = Request { key: -1, len: 0.0, method: "PUT", url, headers: &with_range, body: Body::Empty };
        let sent = t.send(request).await;
        match t.judge(&sent, "the session status", true, attempt).await? {
            Verdict::Stored => return Ok(next_offset(&sent, t.size)),
            Verdict::Refused(fail) | Verdict::Fatal(fail) => return Err(fail),
            Verdict::Again(_) => attempt += 1,
        }
    }
}
