//! One upload from its creation to the File record, as an explicit state
//! machine: the bytes by the server's plan (form POST; multipart parts,
//! `concurrency` at a time, their URLs asked in batches; chunked session
//! with `308` + `Range`), retries with backoff, pause/resume from what the
//! store holds, and `/complete`. With checksums, multipart parts are hashed
//! (and signed) ahead of their workers ([`Flow::hash_ahead`]), so hashing
//! overlaps the sending instead of coming between a worker's parts.
//!
//! Not an `async fn` per flow: every step is a method that starts a request
//! (an XMLHttpRequest to the store, a timer, an API call) and returns; the
//! request's callback calls the next step with what happened (one `match`
//! per event: [`Flow::on_sent`] for the store's answers, [`Flow::on_answer`]
//! for the API's). API calls go through gloo-net in small spawned futures
//! that only hand their answer back. The futures' state machines and their
//! drop glue were half of the .wasm (README, "Size").
//!
//! Rule of the callbacks: no `RefCell` borrow is held across a call that may
//! call back at once (`Task::abort_requests` fires the aborted requests'
//! events synchronously, a free slot is handed over at once).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::Function;
use upload_core::ErrorCode;
use upload_core::wire::{
    CompleteUpload, Completed, CompletedPart, SignParts, SignedParts, StoredPart, UploadPlan, UploadStatus,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, FormData};

use crate::api::{GET, Method, POST, from_js, to_js};
use crate::fail::{ABORTED, CHECKSUM_MISMATCH, Fail, cat, num};
use crate::hash::{HashModule, sum};
use crate::policy::{self, Retryable, Verdict, judge, range_end};
use crate::task::{Body, Request, Sent, State, Task};
use crate::upload::{Client, Started};
use crate::wait::{Slot, Work, after, signal};

/// Sends the bytes of an upload already created (`started`: the answer of
/// `POST /uploads`, or of `GET /uploads/{id}` for one found again) by its
/// plan, goes on from what the store holds after a pause, and completes it:
/// the File record (the answer's own JSON, once read as upload-core's
/// `Completed`: not written out again from the wire type). The seam for
/// uploaders whose upload is created elsewhere (a framework's server, say);
/// progress goes to the task's sink.
pub(crate) async fn deliver(
    t: &Rc<Task>,
    client: &Rc<Client>,
    started: Started,
    module: Option<HashModule>,
) -> Result<JsValue, Fail> {
    let Started { id, complete_url, plan, parts, .. } = started;
    *t.id.borrow_mut() = Some(id.clone());
    t.checkpoint().await?;
    t.set_state(State::Uploading);
    let (over, resolve) = signal();
    let flow = Rc::new(Flow {
        t: t.clone(),
        client: client.clone(),
        id,
        complete_url,
        module,
        s: RefCell::new(Progress {
            plan,
            resuming: false,
            etags: Vec::new(),
            parts: Vec::new(),
            queue: VecDeque::new(),
            urls: Vec::new(),
            sums: Vec::new(),
            hashing: 0,
            signing: false,
            waiting: Vec::new(),
            workers: 0,
            error: None,
            offset: 0,
        }),
        outcome: RefCell::new(None),
        resolve,
    });
    flow.merge(&parts);
    flow.send_plan();
    let _ = JsFuture::from(over).await;
    let outcome = flow.outcome.borrow_mut().take();
    outcome.unwrap_or_else(|| Err(Fail::aborted()))
}

/// One upload on its way.
struct Flow {
    t: Rc<Task>,
    client: Rc<Client>,
    id: String,
    complete_url: String,
    /// The hash module when every part carries its SHA-256.
    module: Option<HashModule>,
    s: RefCell<Progress>,
    /// The File record or the failure, once over; `resolve` says so.
    outcome: RefCell<Option<Result<JsValue, Fail>>>,
    resolve: Function,
}

/// Where the sending stands.
struct Progress {
    plan: UploadPlan,
    /// Sending again after a pause (a chunked session asks where it stands).
    resuming: bool,
    /// Multipart: the ETag of every part stored ("" when the store's CORS
    /// rules hide it), by part number - 1.
    etags: Vec<Option<String>>,
    /// `(offset, length)` by part number - 1.
    parts: Vec<(u64, u64)>,
    /// Parts not yet taken by a worker.
    queue: VecDeque<u32>,
    urls: Vec<Option<Rc<SignedUrl>>>,
    /// Checksums: each part's SHA-256 (kept over a pause), and how many
    /// parts are being hashed.
    sums: Vec<Sum>,
    hashing: usize,
    /// A signing request is under way; `waiting` parts ask again once it answered.
    signing: bool,
    waiting: Vec<(u32, u32)>,
    /// Workers still going: each takes the next part once its part is stored.
    workers: usize,
    /// The first part failure: the others stop, and it fails the upload.
    error: Option<Fail>,
    /// Chunked: the bytes the session holds.
    offset: u64,
}

/// Parts hashed at once (checksums on): the browser reads each part into
/// memory to hash it, so this also bounds the bytes held for hashing.
const HASHING: usize = 2;

/// A part's SHA-256.
#[derive(Clone)]
enum Sum {
    Todo,
    /// Being hashed; the try of the worker waiting for it (0: none yet,
    /// hashed ahead).
    Hashing(u32),
    Ready(String),
}

/// A part's signed request.
struct SignedUrl {
    url: String,
    headers: Vec<(String, String)>,
}

/// A step that sends to the store, with its try (counted from 1).
#[derive(Clone, Copy)]
enum Step {
    /// The S3 plan's form POST.
    Form(u32),
    /// Multipart part `n`: its checksum, URL, then the PUT.
    Part(u32, u32),
    /// The chunk at the session's offset.
    Chunk(u32),
    /// Asking the session what it holds (its try, then the chunk's).
    Probe(u32, u32),
}

/// What an API answer (or a hash) is for.
#[derive(Clone, Copy)]
enum Then {
    /// `GET /uploads/{id}` after a pause: send the rest.
    Resumed,
    /// `GET /uploads/{id}` for ETags the CORS rules hid: complete.
    Listed,
    /// `POST .../complete`: the File record.
    Completed,
    /// Part `n`'s SHA-256.
    Summed(u32),
    /// The URLs of a batch asked for by part `n` (and its try).
    Signed(u32, u32),
}

impl Flow {
    /// Records the parts the server says are stored.
    fn merge(&self, parts: &[StoredPart]) {
        let mut s = self.s.borrow_mut();
        for p in parts {
            let n = p.part_number as usize;
            // At most S3's 10,000 parts.
            if (1..=10_000).contains(&n) {
                if s.etags.len() < n {
                    s.etags.resize(n, None);
                }
                s.etags[n - 1] = Some(p.etag.clone());
            }
        }
    }

    fn finish(&self, outcome: Result<JsValue, Fail>) {
        *self.outcome.borrow_mut() = Some(outcome);
        let _ = self.resolve.call0(&JsValue::UNDEFINED);
    }

    /// Runs `work` (an API call, a hash) and hands its result to [`Flow::on_answer`].
    fn spawn(self: &Rc<Self>, work: Work, then: Then) {
        let flow = self.clone();
        crate::wait::then(work, Box::new(move |answer| flow.on_answer(then, answer)));
    }

    /// An idempotent API call (tried again on network errors, 429, 5xx).
    fn api(self: &Rc<Self>, method: Method, path: String, body: Option<JsValue>, then: Then) {
        let client = self.client.clone();
        self.spawn(Box::pin(async move { client.call(method, &path, body.as_ref()).await }), then);
    }

    fn status_path(&self) -> String {
        cat(&["/uploads/", &self.id])
    }

    // --- the plan ---------------------------------------------------------

    fn send_plan(self: &Rc<Self>) {
        let t = &self.t;
        let mut s = self.s.borrow_mut();
        let first = match &s.plan {
            UploadPlan::S3 { .. } => Step::Form(1),
            UploadPlan::S3Multipart { part_size, part_count, .. } => {
                let plan = match policy::part_plan(t.size, *part_size, *part_count) {
                    Ok(plan) => plan,
                    Err(fail) => {
                        drop(s);
                        return self.sent_all(Err(fail));
                    }
                };
                s.parts = (1..=plan.part_count).filter_map(|n| plan.part_range(n)).collect();
                let count = s.parts.len();
                s.etags.resize(count, None);
                s.urls = vec![None; count];
                if s.sums.len() != count {
                    s.sums = vec![Sum::Todo; count];
                }
                let mut queue = VecDeque::new();
                let mut stored = 0;
                for (n, (_, len)) in (1..).zip(&s.parts) {
                    if s.etags[n as usize - 1].is_none() {
                        queue.push_back(n);
                    } else {
                        stored += len;
                    }
                }
                let workers = (t.shared.concurrency as usize).min(queue.len());
                s.queue = queue;
                s.workers = workers;
                s.error = None;
                drop(s);
                t.set_stored(stored as f64);
                if workers == 0 {
                    return self.sent_all(if t.interrupted() { Err(Fail::aborted()) } else { Ok(()) });
                }
                for _ in 0..workers {
                    self.next_part();
                }
                return self.hash_ahead();
            }
            UploadPlan::Chunked { .. } if s.resuming => Step::Probe(1, 1),
            UploadPlan::Chunked { .. } => {
                s.offset = 0;
                Step::Chunk(1)
            }
        };
        drop(s);
        if matches!(first, Step::Chunk(_)) {
            t.set_stored(0.0);
        }
        self.go(first);
    }

    /// Starts `step`.
    fn go(self: &Rc<Self>, step: Step) {
        let t = &self.t;
        match step {
            Step::Form(_) => {
                let Ok((url, form)) = self.form() else { return self.sent_all(Err(Fail::unreadable())) };
                let flow = self.clone();
                t.shared.slots.take_then(Box::new(move |slot| {
                    let body = Body::Form(&form);
                    let request =
                        Request { key: 0, len: flow.t.size as f64, method: "POST", url: &url, headers: &[], body };
                    flow.send(step, request, Some(slot));
                }));
            }
            Step::Part(n, attempt) => {
                if self.module.is_some() {
                    // Checksums on: the part's SHA-256 is signed into its URL;
                    // hashed ahead, being hashed (the worker waits for it), or
                    // hashed now (the first parts, a part sent again).
                    let stopping = self.stopping();
                    let mut s = self.s.borrow_mut();
                    match &mut s.sums[n as usize - 1] {
                        Sum::Ready(_) => {}
                        Sum::Hashing(waiting) => return *waiting = attempt,
                        Sum::Todo if stopping => {
                            drop(s);
                            return self.part_failed(Fail::aborted());
                        }
                        Sum::Todo => {
                            drop(s);
                            return self.hash(n, attempt);
                        }
                    }
                }
                self.url_for(n, attempt);
            }
            Step::Chunk(_) => {
                let (url, chunk_size, mut headers) = self.session();
                let (offset, total) = (self.s.borrow().offset, t.size);
                if offset >= total {
                    return self.sent_all(Ok(()));
                }
                let end = (offset + chunk_size).min(total);
                let range = cat(&["bytes ", &num(offset), "-", &num(end - 1), "/", &num(total)]);
                headers.push(("Content-Range".into(), range));
                let chunk = match t.slice(offset as f64, end as f64) {
                    Ok(chunk) => chunk,
                    Err(fail) => return self.sent_all(Err(fail)),
                };
                let flow = self.clone();
                t.shared.slots.take_then(Box::new(move |slot| {
                    let len = (end - offset) as f64;
                    let body = Body::Blob(&chunk);
                    let request = Request { key: 0, len, method: "PUT", url: &url, headers: &headers, body };
                    flow.send(step, request, Some(slot));
                }));
            }
            Step::Probe(..) => {
                // An empty PUT with `bytes */total`; not counted against the pool.
                let (url, _, mut headers) = self.session();
                headers.push(("Content-Range".into(), cat(&["bytes */", &num(t.size)])));
                let request =
                    Request { key: -1, len: 0.0, method: "PUT", url: &url, headers: &headers, body: Body::Empty };
                self.send(step, request, None);
            }
        }
    }

    fn send(self: &Rc<Self>, step: Step, request: Request<'_>, slot: Option<Slot>) {
        let flow = self.clone();
        self.t.send_then(request, slot, Box::new(move |sent| flow.on_sent(step, sent)));
    }

    /// The S3 plan's URL and form: every field, then the file last.
    fn form(&self) -> Result<(String, FormData), JsValue> {
        let form = FormData::new()?;
        let s = self.s.borrow();
        let UploadPlan::S3 { url, fields, .. } = &s.plan else { return Err(JsValue::NULL) };
        for (k, v) in fields {
            form.append_with_str(k, v)?;
        }
        form.append_with_blob_and_filename("file", &self.t.file, &self.t.name)?;
        Ok((url.clone(), form))
    }

    /// The chunked session's URL, chunk size and headers.
    fn session(&self) -> (String, u64, Vec<(String, String)>) {
        match &self.s.borrow().plan {
            UploadPlan::Chunked { url, chunk_size, headers } => {
                (url.clone(), (*chunk_size).max(1), headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            _ => (String::new(), 1, Vec::new()),
        }
    }

    /// The store's answer to `step`.
    fn on_sent(self: &Rc<Self>, step: Step, sent: Sent) {
        let t = &self.t;
        let retry = t.shared.retry;
        match step {
            Step::Form(attempt) => match self.judge(&sent, "the form POST", false, attempt) {
                Ok(None) => {
                    t.add_stored(0, t.size as f64);
                    self.sent_all(Ok(()));
                }
                // A refused checksum (bytes changed on the way) is tried again, as a part is.
                Ok(Some(Verdict::Refused(fail)))
                    if !fail.is(CHECKSUM_MISMATCH) || retry.after(&fail, Retryable::Store, attempt).is_none() =>
                {
                    self.sent_all(Err(fail));
                }
                Ok(_) => self.go(Step::Form(attempt + 1)),
                Err((_, Some(ms))) => self.later(ms, Step::Form(attempt + 1)),
                Err((fail, None)) => self.sent_all(Err(fail)),
            },
            Step::Part(n, attempt) => {
                let i = n as usize - 1;
                match self.judge(&sent, &cat(&["part ", &num(n.into())]), false, attempt) {
                    Ok(None) => {
                        let etag = match &sent {
                            Sent::Answer(xhr) => xhr.get_response_header("ETag").ok().flatten().unwrap_or_default(),
                            _ => String::new(),
                        };
                        let len = {
                            let mut s = self.s.borrow_mut();
                            s.etags[i] = Some(etag);
                            s.parts[i].1
                        };
                        t.add_stored(n as i32, len as f64);
                        self.next_part();
                    }
                    Ok(Some(Verdict::Refused(fail))) => {
                        // Most likely the URL expired while the part waited, or the
                        // store refused the bytes (checksum_mismatch): read, hash, sign again.
                        {
                            let mut s = self.s.borrow_mut();
                            s.urls[i] = None;
                            s.sums[i] = Sum::Todo;
                        }
                        if retry.after(&fail, Retryable::Store, attempt).is_none() {
                            return self.part_failed(fail);
                        }
                        self.go(Step::Part(n, attempt + 1));
                    }
                    Ok(Some(_)) => self.go(Step::Part(n, attempt + 1)),
                    Err((_, Some(ms))) => self.later(ms, Step::Part(n, attempt + 1)),
                    Err((fail, None)) => self.part_failed(fail),
                }
            }
            Step::Chunk(attempt) => match self.judge(&sent, "a chunk", true, attempt) {
                Ok(None) => {
                    let offset = next_offset(&sent, t.size);
                    self.s.borrow_mut().offset = offset;
                    t.set_stored(offset as f64);
                    self.go(Step::Chunk(1));
                }
                // Part of the chunk may have been stored before the failure.
                Err((_, Some(ms))) => self.later(ms, Step::Probe(1, attempt + 1)),
                Ok(Some(Verdict::Refused(fail))) | Err((fail, None)) => self.sent_all(Err(fail)),
                Ok(Some(_)) => self.sent_all(Err(Fail::aborted())),
            },
            Step::Probe(attempt, chunk) => match self.judge(&sent, "the session status", true, attempt) {
                Ok(None) => {
                    let offset = next_offset(&sent, t.size);
                    self.s.borrow_mut().offset = offset;
                    t.set_stored(offset as f64);
                    self.go(Step::Chunk(chunk));
                }
                Err((_, Some(ms))) => self.later(ms, Step::Probe(attempt + 1, chunk)),
                Ok(Some(Verdict::Refused(fail))) | Err((fail, None)) => self.sent_all(Err(fail)),
                Ok(Some(_)) => self.sent_all(Err(Fail::aborted())),
            },
        }
    }

    /// `step` after `ms` milliseconds.
    fn later(self: &Rc<Self>, ms: f64, step: Step) {
        let flow = self.clone();
        after(ms, move || flow.go(step));
    }

    /// The verdict on a sent request: `Ok(None)` stored, `Ok(Some(Refused))`
    /// refused (sign again), `Err((fail, Some(ms)))` worth another try after
    /// `ms`, `Err((fail, None))` final or out of tries. `attempt` counts tries.
    fn judge(
        &self,
        sent: &Sent,
        what: &str,
        ok_308: bool,
        attempt: u32,
    ) -> Result<Option<Verdict>, (Fail, Option<f64>)> {
        let verdict = match sent {
            Sent::Abort => return Err((Fail::aborted(), None)),
            Sent::Network => judge(0, "", what, ok_308),
            Sent::Answer(xhr) => {
                judge(xhr.status().unwrap_or(0), &xhr.response_text().ok().flatten().unwrap_or_default(), what, ok_308)
            }
        };
        match verdict {
            Verdict::Stored => Ok(None),
            Verdict::Again(fail) => {
                let wait = self.t.shared.retry.after(&fail, Retryable::Store, attempt);
                Err((fail, wait))
            }
            Verdict::Fatal(fail) => Err((fail, None)),
            refused => Ok(Some(refused)),
        }
    }

    // --- multipart ----------------------------------------------------------

    fn part_body(&self, n: u32) -> Result<Blob, Fail> {
        let (offset, len) = self.s.borrow().parts[n as usize - 1];
        self.t.slice(offset as f64, (offset + len) as f64)
    }

    /// A worker takes the next part, or stops.
    fn next_part(self: &Rc<Self>) {
        let next = if self.stopping() { None } else { self.s.borrow_mut().queue.pop_front() };
        match next {
            Some(n) => {
                self.go(Step::Part(n, 1));
                // The window of parts hashed ahead moved on.
                self.hash_ahead();
            }
            None => self.worker_done(),
        }
    }

    /// A part failed, the upload is paused or cancelled, or no worker is
    /// left: nothing more is started.
    fn stopping(&self) -> bool {
        let s = self.s.borrow();
        s.error.is_some() || s.workers == 0 || self.t.interrupted()
    }

    /// Checksums: hashes the next parts of the queue ahead of their
    /// workers, `HASHING` at once, so that a worker finds its part's sum
    /// (and URL) ready and sends at once. At most the next `concurrency`
    /// parts are hashed ahead (their digests only: a part's bytes are read,
    /// hashed and dropped), and nothing once the upload is stopping or no
    /// worker is left (paused, cancelled, failed, sent).
    fn hash_ahead(self: &Rc<Self>) {
        if self.module.is_none() || self.stopping() {
            return;
        }
        let mut next = None;
        {
            let s = self.s.borrow();
            for q in s.queue.iter().take(self.t.shared.concurrency as usize) {
                if s.hashing < HASHING && next.is_none() && matches!(s.sums[*q as usize - 1], Sum::Todo) {
                    next = Some(*q);
                }
            }
        }
        if let Some(n) = next {
            self.hash(n, 0);
            self.hash_ahead();
        }
    }

    /// Hashes part `n`, for the worker sending it (its try), or ahead (0).
    fn hash(self: &Rc<Self>, n: u32, attempt: u32) {
        let Some(module) = &self.module else { return };
        {
            let mut s = self.s.borrow_mut();
            s.sums[n as usize - 1] = Sum::Hashing(attempt);
            s.hashing += 1;
        }
        let module: HashModule = AsRef::<JsValue>::as_ref(module).clone().unchecked_into();
        let body = self.part_body(n);
        self.spawn(Box::pin(async move { sum(&module, &body?).await.map(JsValue::from) }), Then::Summed(n));
    }

    /// One part failed for good (or was stopped): it fails the file, and the
    /// others stop now.
    fn part_failed(self: &Rc<Self>, fail: Fail) {
        self.stop_parts(fail);
        self.worker_done();
    }

    /// The first failure fails the file; the parts in flight stop.
    fn stop_parts(&self, fail: Fail) {
        self.s.borrow_mut().error.get_or_insert(fail);
        if !self.t.interrupted() {
            self.t.abort_requests();
        }
    }

    /// Once every worker has stopped (no part may still be on its way when
    /// the upload is completed or deleted), the parts are sent, or not.
    fn worker_done(self: &Rc<Self>) {
        let error = {
            let mut s = self.s.borrow_mut();
            s.workers = s.workers.saturating_sub(1);
            if s.workers > 0 {
                return;
            }
            s.error.take()
        };
        let outcome = match error {
            Some(fail) => Err(fail),
            None if self.t.interrupted() => Err(Fail::aborted()),
            None => Ok(()),
        };
        self.sent_all(outcome);
    }

    /// Part n's signed request: cached, from the batch under way, or from a
    /// new batch of this part and the next ones queued.
    fn url_for(self: &Rc<Self>, n: u32, attempt: u32) {
        let i = n as usize - 1;
        let mut s = self.s.borrow_mut();
        if let Some(signed) = s.urls[i].clone() {
            drop(s);
            return self.put_part(n, attempt, &signed);
        }
        if s.error.is_some() || self.t.interrupted() {
            drop(s);
            return self.part_failed(Fail::aborted());
        }
        if s.signing {
            return s.waiting.push((n, attempt));
        }
        drop(s);
        self.sign(n, attempt);
    }

    /// Asks for the URLs of part `n` (0: of none, ahead of the workers) and
    /// of the next parts queued, `batch` at most; with checksums, of those
    /// already hashed (each URL is signed with its part's SHA-256). Not while
    /// another signing request is under way, nor once the upload is stopping.
    fn sign(self: &Rc<Self>, n: u32, attempt: u32) {
        if n == 0 && (self.stopping() || self.s.borrow().signing) {
            return;
        }
        let mut s = self.s.borrow_mut();
        let mut numbers = Vec::new();
        if n > 0 {
            numbers.push(n);
        }
        for q in &s.queue {
            let i = *q as usize - 1;
            if numbers.len() < self.t.shared.batch as usize
                && s.urls[i].is_none()
                && (self.module.is_none() || matches!(s.sums[i], Sum::Ready(_)))
            {
                numbers.push(*q);
            }
        }
        if numbers.is_empty() {
            return;
        }
        let mut request = SignParts { part_numbers: numbers, sha256: Default::default() };
        for q in &request.part_numbers {
            if let Sum::Ready(digest) = &s.sums[*q as usize - 1] {
                request.sha256.insert(*q, digest.clone());
            }
        }
        s.signing = true;
        drop(s);
        let path = cat(&["/uploads/", &self.id, "/parts"]);
        self.api(POST, path, Some(to_js(&request)), Then::Signed(n, attempt));
    }

    fn put_part(self: &Rc<Self>, n: u32, attempt: u32, signed: &Rc<SignedUrl>) {
        let body = match self.part_body(n) {
            Ok(body) => body,
            Err(fail) => return self.part_failed(fail),
        };
        let (flow, signed) = (self.clone(), signed.clone());
        self.t.shared.slots.take_then(Box::new(move |slot| {
            // Another part failed meanwhile.
            if flow.s.borrow().error.is_some() {
                drop(slot);
                return flow.part_failed(Fail::aborted());
            }
            let len = flow.s.borrow().parts[n as usize - 1].1 as f64;
            let (url, headers) = (&signed.url, &signed.headers);
            let request = Request { key: n as i32, len, method: "PUT", url, headers, body: Body::Blob(&body) };
            flow.send(Step::Part(n, attempt), request, Some(slot));
        }));
    }

    // --- the API's answers --------------------------------------------------

    fn on_answer(self: &Rc<Self>, then: Then, answer: Result<JsValue, Fail>) {
        match then {
            Then::Summed(n) => {
                let waiting = {
                    let mut s = self.s.borrow_mut();
                    s.hashing = s.hashing.saturating_sub(1);
                    let Some(sum) = s.sums.get_mut(n as usize - 1) else { return };
                    let waiting = match sum {
                        Sum::Hashing(waiting) => *waiting,
                        _ => 0,
                    };
                    *sum = match &answer {
                        Ok(digest) => Sum::Ready(digest.as_string().unwrap_or_default()),
                        Err(_) => Sum::Todo,
                    };
                    waiting
                };
                match answer {
                    // Hashed ahead: signed ahead too, with the others ready.
                    Ok(_) if waiting == 0 => self.sign(0, 0),
                    Ok(_) => self.url_for(n, waiting),
                    Err(fail) if waiting > 0 => self.part_failed(fail),
                    // Hashed ahead, and unreadable: the upload fails as the
                    // part's worker would have failed it.
                    Err(fail) => self.stop_parts(fail),
                }
                self.hash_ahead();
            }
            Then::Signed(n, attempt) => {
                let waiting = {
                    let mut s = self.s.borrow_mut();
                    s.signing = false;
                    std::mem::take(&mut s.waiting)
                };
                match answer.and_then(|json| from_js::<SignedParts>(json, "part list")) {
                    Ok(signed) => {
                        {
                            let mut s = self.s.borrow_mut();
                            for p in signed.parts {
                                if let Some(slot) = s.urls.get_mut((p.part_number as usize).wrapping_sub(1)) {
                                    let headers = p.headers.into_iter().collect();
                                    *slot = Some(Rc::new(SignedUrl { url: p.url, headers }));
                                }
                            }
                        }
                        if n > 0 {
                            self.url_for_signed(n, attempt);
                        }
                    }
                    Err(fail) if n > 0 => self.part_failed(fail),
                    // Signed ahead: each worker asks again for its own part.
                    Err(_) => {}
                }
                for (n, attempt) in waiting {
                    self.url_for(n, attempt);
                }
            }
            Then::Resumed => match answer.and_then(|json| from_js::<UploadStatus>(json, "upload")) {
                Ok(status) => {
                    self.merge(&status.parts);
                    {
                        let mut s = self.s.borrow_mut();
                        s.plan = status.upload;
                        s.resuming = true;
                    }
                    self.send_plan();
                }
                Err(fail) => self.finish(Err(fail)),
            },
            Then::Listed => match answer.and_then(|json| from_js::<UploadStatus>(json, "upload")) {
                Ok(status) => {
                    self.merge(&status.parts);
                    self.complete();
                }
                Err(fail) => self.finish(Err(fail)),
            },
            Then::Completed => self.finish(answer.and_then(|answer| {
                from_js::<Completed>(answer.clone(), "File record")?;
                Ok(crate::get(&answer, "file"))
            })),
        }
    }

    /// After a batch answered: part n's URL must be in it.
    fn url_for_signed(self: &Rc<Self>, n: u32, attempt: u32) {
        if self.s.borrow().urls[n as usize - 1].is_none() {
            return self.part_failed(Fail::bad_answer("part list"));
        }
        self.url_for(n, attempt);
    }

    // --- after the bytes ------------------------------------------------------

    /// The plan's bytes are sent, or not: complete; after a pause, wait for
    /// `resume()` and ask the server what is stored (its word, not ours: a part
    /// may have landed after we stopped listening); or fail.
    fn sent_all(self: &Rc<Self>, outcome: Result<(), Fail>) {
        match outcome {
            Ok(()) => {
                self.t.set_state(State::Completing);
                let multipart = matches!(self.s.borrow().plan, UploadPlan::S3Multipart { .. });
                let hidden = self.s.borrow().etags.iter().any(|e| e.as_deref().is_none_or(str::is_empty));
                if multipart && hidden {
                    // The store's CORS rules hide ETag: ask the server, which lists the parts.
                    return self.api(GET, self.status_path(), None, Then::Listed);
                }
                self.complete();
            }
            Err(fail) if fail.is(ABORTED) && self.t.state() == State::Paused => {
                let (t, client, path) = (self.t.clone(), self.client.clone(), self.status_path());
                self.spawn(
                    Box::pin(async move {
                        t.checkpoint().await?;
                        client.call(GET, &path, None).await
                    }),
                    Then::Resumed,
                );
            }
            Err(fail) => self.finish(Err(fail)),
        }
    }

    fn complete(self: &Rc<Self>) {
        let mut complete = CompleteUpload::default();
        let s = self.s.borrow();
        if matches!(s.plan, UploadPlan::S3Multipart { .. }) {
            match completed(&s.etags) {
                Ok(parts) => complete.parts = Some(parts),
                Err(fail) => {
                    drop(s);
                    return self.finish(Err(fail));
                }
            }
        }
        drop(s);
        let body = to_js(&complete);
        match &self.client.batches {
            // Gathered with the other uploads' completes (see `crate::batch`).
            Some(batches) => {
                let flow = self.clone();
                let done = Box::new(move |answer| flow.on_answer(Then::Completed, answer));
                batches.completes.submit(self.complete_url.clone(), body, Some(&self.id), done);
            }
            None => self.api(POST, self.complete_url.clone(), Some(body), Then::Completed),
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
