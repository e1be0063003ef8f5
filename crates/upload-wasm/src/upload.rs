//! An upload up to its creation: the check, the server's pending slots,
//! create (by the API or the app's own `create` step), then the bytes and
//! `/complete` by [`crate::flow`], and the `DELETE` of a cancelled or failed
//! upload; and what the uploads of one `Uploader` share (the API, the
//! configuration, the pools of request slots and of the server's pending slots).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use upload_core::wire::{ClientConfig, CreateUpload, CreatedUpload, StoredPart, UploadPlan, UploaderKind};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::api::{Api, DELETE, GET, Method, POST, from_js, to_js};
use crate::batch::Batches;
use crate::fail::{ABORTED, Fail, NETWORK, cat};
use crate::hash::{Extras, HashModule};
use crate::policy::{self, Retryable};
use crate::task::{Shared, State, Task};
use crate::wait::{Pool, signal};

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
    /// Creates and completes gathered into batch requests: only for an
    /// Uploader that talks to the API with its user's token (see [`crate::batch`]).
    pub(crate) batches: Option<Batches>,
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
            batches: None,
        }
    }

    /// How uploads are created; without the app's `create` step, this
    /// Uploader creates and completes with its user's token, so in batches.
    pub(crate) fn with_creation(mut self, creation: Creation) -> Client {
        if creation.create.is_none() {
            self.batches = Some(Batches::new(self.api.clone(), self.shared.retry));
        }
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
                    api.retrying(GET, "/config", None, Retryable::Idempotent, &retry).await.map_err(|f| f.to_js())
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

    /// The server's configuration, or `None` for an Uploader that only has
    /// the app's `create` step (no endpoint to ask): the server then checks
    /// the file when the app creates the upload.
    pub(crate) async fn known_config(&self) -> Result<Option<ClientConfig>, Fail> {
        if self.api.endpoint().is_empty() {
            return Ok(None);
        }
        from_js(self.config_json().await?, "configuration").map(Some)
    }

    /// `POST /uploads`, or the app's `create` step.
    pub(crate) async fn create(&self, body: &CreateUpload) -> Result<Started, Fail> {
        let json = match &self.creation.create {
            Some(create) => app_create(create, body).await?,
            None => match &self.batches {
                Some(batches) => {
                    let (created, resolve) = signal();
                    let outcome = Rc::new(RefCell::new(None));
                    let out = outcome.clone();
                    let done = Box::new(move |answer| {
                        *out.borrow_mut() = Some(answer);
                        let _ = resolve.call0(&JsValue::UNDEFINED);
                    });
                    batches.creates.submit("/uploads".into(), to_js(body), None, done);
                    let _ = JsFuture::from(created).await;
                    let answer = outcome.borrow_mut().take();
                    answer.unwrap_or_else(|| Err(Fail::aborted()))?
                }
                None => {
                    let body = Some(to_js(body));
                    self.api.retrying(POST, "/uploads", body.as_ref(), Retryable::IfRefused, &self.shared.retry).await?
                }
            },
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

    /// An idempotent call (tried again on network errors, 429, 5xx). Not an
    /// `async fn`: that would wrap `retrying`'s future in one more.
    pub(crate) fn call<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        body: Option<&'a JsValue>,
    ) -> impl Future<Output = Result<JsValue, Fail>> + 'a {
        self.api.retrying(method, path, body, Retryable::Idempotent, &self.shared.retry)
    }
}

/// One file from the check to the File record (as the JS object the
/// application gets).
pub(crate) async fn run(t: Rc<Task>, client: Rc<Client>, decl: Declaration) -> Result<JsValue, Fail> {
    let resume_record = RefCell::new(None);
    // The client of the upload's own calls, once created (see `Client::for_upload`).
    let upload_client = RefCell::new(client.clone());
    let result = run_inner(&t, &client, decl, &resume_record, &upload_client).await;
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
            forget(&resume_record);
            let _ = own.call(DELETE, &cat(&["/uploads/", &id]), None).await;
        }
    }
    result
}

/// The upload's resume record (the hash module that keeps it, and its key)
/// goes: the upload is done, cancelled or failed for good.
fn forget(resume: &RefCell<Option<(HashModule, String)>>) {
    let record = resume.borrow_mut().take();
    if let Some((module, key)) = record {
        module.forget(&key);
    }
}

async fn run_inner(
    t: &Rc<Task>,
    client: &Rc<Client>,
    decl: Declaration,
    resume_record: &RefCell<Option<(HashModule, String)>>,
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
            // Kept with the module's handle (a second handle: imported types are
            // not `Clone`), so that forgetting it needs no wait.
            *resume_record.borrow_mut() = key.map(|key| (JsValue::from(&*module).unchecked_into(), key));
            (extras.sums.then_some(module), started)
        }
        None => (None, client.create(&body).await?),
    };
    let own = client.for_upload(&started)?;
    *upload_client.borrow_mut() = own.clone();
    let file = crate::flow::deliver(t, &own, started, module).await?;
    forget(resume_record);
    t.finish();
    t.emit_final().await;
    Ok(file)
}
