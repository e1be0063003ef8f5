//! One file's upload: its state, its requests in flight, its progress, and
//! the XMLHttpRequest that carries its bytes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Object, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{Blob, ProgressEvent, XmlHttpRequest};

use crate::js::{CHECKSUM_MISMATCH, Fail, NETWORK, get, get_str, now, promise_with_resolver, set, sleep};
use crate::sched::Semaphore;

/// Progress events are at most this far apart.
pub(crate) const PROGRESS_INTERVAL_MS: f64 = 50.0;

#[wasm_bindgen]
extern "C" {
    // One binding for every body type (Blob, FormData, null) instead of
    // web-sys's one import per overload.
    #[wasm_bindgen(js_name = XMLHttpRequest)]
    type AnyBodyXhr;
    #[wasm_bindgen(method, catch, js_name = send)]
    fn send(this: &AnyBodyXhr, body: &JsValue) -> Result<(), JsValue>;
}

/// How failed requests are retried: `attempts` tries in all, the n-th retry
/// after about `base_ms * 2^(n-1)` (with jitter, capped at 20 s).
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) base_ms: f64,
}

impl Retry {
    /// Delay before try `attempt + 1`: exponential, with "equal jitter" (half
    /// fixed, half random) so that parts failing together do not come back together.
    pub(crate) fn delay(&self, attempt: u32) -> f64 {
        let exp = (self.base_ms * f64::from(1u32 << attempt.saturating_sub(1).min(16))).min(20_000.0);
        exp / 2.0 + js_sys::Math::random() * exp / 2.0
    }
}

/// What one `Uploader` shares between its files.
pub(crate) struct Ctx {
    /// Requests carrying bytes, across all files.
    pub(crate) slots: Rc<Semaphore>,
    /// Parts in flight per file (and the size of the global pool).
    pub(crate) concurrency: usize,
    pub(crate) retry: Retry,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Queued,
    Uploading,
    Paused,
    Completing,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Uploading => "uploading",
            State::Paused => "paused",
            State::Completing => "completing",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }
}

/// Where progress goes.
pub(crate) enum Sink {
    None,
    /// `onProgress({loaded, total, state})`.
    Callback(Function),
    /// A LiveView upload entry: `entry.progress(percent)`.
    Entry(JsValue),
}

#[derive(Default)]
struct Progress {
    /// Bytes the store has confirmed.
    stored: f64,
    /// Bytes sent by requests still in flight, by request key (part number).
    inflight: Vec<(u32, f64)>,
    /// The highest value shown: what is shown never goes back.
    shown: f64,
    /// What the last event said, so a timer does not repeat it.
    last_event: (f64, Option<State>),
    last_emit: f64,
    timer: bool,
}

pub(crate) struct Task {
    pub(crate) file: Blob,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) ctx: Rc<Ctx>,
    pub(crate) id: RefCell<Option<String>>,
    state: Cell<State>,
    xhrs: RefCell<Vec<XmlHttpRequest>>,
    progress: RefCell<Progress>,
    sink: Sink,
    /// Resolves the promise a paused upload waits on.
    resume: RefCell<Option<Function>>,
}

/// How a request carrying bytes ended.
pub(crate) enum Sent {
    Answered(XmlHttpRequest),
    Network,
    Aborted,
}

/// What to do about an answer from the store.
pub(crate) enum Verdict {
    Ok(XmlHttpRequest),
    /// Network error, 5xx or 429: try again after a pause.
    Retry(Fail),
    /// 403: the signature was refused (an expired URL, say); sign again.
    Forbidden(Fail),
    Fatal(Fail),
    /// Paused or cancelled.
    Aborted,
}

impl Task {
    pub(crate) fn new(file: Blob, name: String, ctx: Rc<Ctx>, sink: Sink) -> Rc<Task> {
        let size = file.size();
        Rc::new(Task {
            // A `Blob` reports a whole number of bytes; NaN (not a Blob) becomes 0.
            size: if size.is_finite() && size > 0.0 { size as u64 } else { 0 },
            file,
            name,
            ctx,
            id: RefCell::new(None),
            state: Cell::new(State::Queued),
            xhrs: RefCell::new(Vec::new()),
            progress: RefCell::new(Progress::default()),
            sink,
            resume: RefCell::new(None),
        })
    }

    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    pub(crate) fn set_state(self: &Rc<Self>, state: State) {
        if !self.state.get().finished() {
            self.state.set(state);
            self.schedule_emit();
        }
    }

    /// Paused or cancelled: stop sending.
    pub(crate) fn interrupted(&self) -> bool {
        matches!(self.state.get(), State::Paused | State::Cancelled)
    }

    pub(crate) fn pause(&self) {
        if matches!(self.state.get(), State::Queued | State::Uploading) {
            self.state.set(State::Paused);
            self.abort_requests();
        }
    }

    pub(crate) fn resume(&self) {
        if self.state.get() == State::Paused {
            self.state.set(State::Uploading);
            self.wake();
        }
    }

    /// Cancels; the upload's own loop then tells the server.
    pub(crate) fn cancel(&self) {
        if !self.state.get().finished() {
            self.state.set(State::Cancelled);
            self.abort_requests();
            self.wake();
        }
    }

    pub(crate) fn fail(&self) {
        if !self.state.get().finished() {
            self.state.set(State::Failed);
            self.abort_requests();
        }
    }

    /// The server has answered `/complete`: only now may progress say "done".
    pub(crate) fn finish(&self) {
        self.progress.borrow_mut().shown = self.size as f64;
        self.state.set(State::Done);
    }

    fn wake(&self) {
        if let Some(resolve) = self.resume.borrow_mut().take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }

    pub(crate) fn abort_requests(&self) {
        // Aborting fires `abort` synchronously; take the list first so the
        // handlers may touch it.
        let xhrs = std::mem::take(&mut *self.xhrs.borrow_mut());
        for xhr in xhrs {
            let _ = xhr.abort();
        }
    }

    /// Waits while paused; fails with `aborted` once cancelled.
    pub(crate) async fn checkpoint(&self) -> Result<(), Fail> {
        loop {
            match self.state.get() {
                State::Cancelled | State::Failed => return Err(Fail::aborted()),
                State::Paused => {
                    let (promise, resolve) = promise_with_resolver();
                    *self.resume.borrow_mut() = Some(resolve);
                    let _ = JsFuture::from(promise).await;
                }
                _ => return Ok(()),
            }
        }
    }

    // --- progress -------------------------------------------------------

    pub(crate) fn shown(&self) -> f64 {
        self.progress.borrow().shown
    }

    /// The store holds `bytes` (a fresh count, after a resume say).
    pub(crate) fn set_stored(self: &Rc<Self>, bytes: f64) {
        {
            let mut p = self.progress.borrow_mut();
            p.stored = bytes;
            p.inflight.clear();
        }
        self.update();
    }

    /// Request `key` is done and the store holds its `bytes`.
    pub(crate) fn add_stored(self: &Rc<Self>, key: u32, bytes: f64) {
        {
            let mut p = self.progress.borrow_mut();
            p.stored += bytes;
            p.inflight.retain(|(k, _)| *k != key);
        }
        self.update();
    }

    fn set_inflight(self: &Rc<Self>, key: u32, bytes: f64) {
        {
            let mut p = self.progress.borrow_mut();
            match p.inflight.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = bytes,
                None => p.inflight.push((key, bytes)),
            }
        }
        self.update();
    }

    pub(crate) fn clear_inflight(&self, key: u32) {
        self.progress.borrow_mut().inflight.retain(|(k, _)| *k != key);
    }

    fn update(self: &Rc<Self>) {
        let grew = {
            let mut p = self.progress.borrow_mut();
            let now = (p.stored + p.inflight.iter().map(|(_, b)| b).sum::<f64>()).min(self.size as f64);
            // A retried or aborted request restarts from zero; what was shown stays.
            let grew = now > p.shown;
            if grew {
                p.shown = now;
            }
            grew
        };
        if grew {
            self.schedule_emit();
        }
    }

    /// Emits now, or once `PROGRESS_INTERVAL_MS` has passed since the last event.
    fn schedule_emit(self: &Rc<Self>) {
        let wait = {
            let mut p = self.progress.borrow_mut();
            if p.timer {
                return;
            }
            let wait = p.last_emit + PROGRESS_INTERVAL_MS - now();
            if wait > 0.0 {
                p.timer = true;
            }
            wait
        };
        if wait <= 0.0 {
            self.emit();
            return;
        }
        let task = self.clone();
        spawn_local(async move {
            sleep(wait).await;
            task.progress.borrow_mut().timer = false;
            task.emit();
        });
    }

    /// The last event: sent once the interval since the previous one has
    /// passed, so it is never skipped and never too soon.
    pub(crate) async fn emit_final(self: &Rc<Self>) {
        loop {
            let (wait, timer) = {
                let p = self.progress.borrow();
                (p.last_emit + PROGRESS_INTERVAL_MS - now(), p.timer)
            };
            if wait <= 0.0 && !timer {
                break;
            }
            sleep(wait.max(1.0)).await;
        }
        self.emit();
    }

    fn emit(&self) {
        let state = self.state.get();
        let loaded = {
            let mut p = self.progress.borrow_mut();
            let event = (p.shown, Some(state));
            if p.last_event == event {
                return;
            }
            p.last_event = event;
            p.shown
        };
        if state == State::Cancelled || state == State::Failed {
            return;
        }
        let total = self.size as f64;
        match &self.sink {
            Sink::None => {}
            Sink::Callback(f) => {
                let event = Object::new();
                set(&event, "loaded", &JsValue::from(loaded));
                set(&event, "total", &JsValue::from(total));
                set(&event, "state", &JsValue::from_str(state.as_str()));
                // An exception in the application's callback is its own business.
                let _ = f.call1(&JsValue::NULL, &event);
            }
            Sink::Entry(entry) => {
                // LiveView treats 100 as finished: hold it back until we are.
                let mut percent = if total > 0.0 { (loaded * 100.0 / total).floor() } else { 0.0 };
                if state != State::Done {
                    percent = percent.min(99.0);
                }
                if let Some(progress) = get(entry, "progress").dyn_ref::<Function>() {
                    let _ = progress.call1(entry, &JsValue::from(percent));
                }
            }
        }
        // Counted from when the callback returned: however long it (or a
        // garbage collection on the way) took, the next one is 50 ms later.
        self.progress.borrow_mut().last_emit = now();
    }

    // --- requests carrying bytes ----------------------------------------

    /// Sends one request with XMLHttpRequest (the only browser API that
    /// reports upload progress). `key` names the request in the progress
    /// books; `len` is how many of the file's bytes the body carries.
    pub(crate) async fn send(
        self: &Rc<Self>,
        key: u32,
        len: f64,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &JsValue,
    ) -> Sent {
        if self.interrupted() {
            return Sent::Aborted;
        }
        let Ok(xhr) = XmlHttpRequest::new() else { return Sent::Network };
        if xhr.open_with_async(method, url, true).is_err() {
            return Sent::Network;
        }
        for (name, value) in headers {
            if xhr.set_request_header(name, value).is_err() {
                return Sent::Network;
            }
        }
        let task = self.clone();
        let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
            // A form body is a little larger than the file: scale to the file's bytes.
            let total = e.total();
            let bytes = if total > 0.0 { e.loaded() / total * len } else { e.loaded().min(len) };
            task.set_inflight(key, bytes);
        });
        let upload = xhr.upload().ok();
        if let Some(upload) = &upload {
            upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        }
        // The promise resolves with whichever event ends the request; no Rust
        // closure is needed for these.
        let ended = Promise::new(&mut |resolve, _reject| {
            xhr.set_onload(Some(&resolve));
            xhr.set_onerror(Some(&resolve));
            xhr.set_onabort(Some(&resolve));
            xhr.set_ontimeout(Some(&resolve));
        });
        self.xhrs.borrow_mut().push(xhr.clone());
        self.set_inflight(key, 0.0);
        let sent = if xhr.unchecked_ref::<AnyBodyXhr>().send(body).is_err() {
            Sent::Network
        } else {
            let event = JsFuture::from(ended).await.unwrap_or(JsValue::UNDEFINED);
            match get_str(&event, "type").as_deref() {
                Some("load") => Sent::Answered(xhr.clone()),
                Some("abort") => Sent::Aborted,
                _ => Sent::Network,
            }
        };
        if let Some(upload) = &upload {
            upload.set_onprogress(None);
        }
        self.xhrs.borrow_mut().retain(|x| x != &xhr);
        if !matches!(sent, Sent::Answered(_)) {
            self.clear_inflight(key);
        }
        if self.interrupted() { Sent::Aborted } else { sent }
    }
}

/// Sorts an answer from the object store into what to do next. `ok_308`:
/// a resumable session's "incomplete" (308) is a success too.
pub(crate) fn judge(sent: Sent, what: &str, ok_308: bool) -> Verdict {
    let xhr = match sent {
        Sent::Answered(xhr) => xhr,
        Sent::Aborted => return Verdict::Aborted,
        Sent::Network => {
            return Verdict::Retry(Fail::new(NETWORK, format!("{what}: the connection to the store failed")));
        }
    };
    let status = xhr.status().unwrap_or(0);
    if (200..300).contains(&status) || (ok_308 && status == 308) {
        return Verdict::Ok(xhr);
    }
    let body = xhr.response_text().ok().flatten().unwrap_or_default();
    // S3 answers `<Error><Code>BadDigest</Code><Message>...`.
    let store_code = between(&body, "<Code>", "</Code>").unwrap_or("");
    let message = format!("{what}: the store answered {status} {store_code}");
    let fail = |code: &str| Fail::new(code, message.clone()).with_status(status);
    match status {
        0 => Verdict::Retry(Fail::new(NETWORK, format!("{what}: the connection to the store failed"))),
        429 => Verdict::Retry(fail("rate_limited")),
        500..=599 if store_code == "SlowDown" => Verdict::Retry(fail("rate_limited")),
        500..=599 => Verdict::Retry(fail("storage_unavailable")),
        _ if matches!(store_code, "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch") => {
            Verdict::Fatal(fail(CHECKSUM_MISMATCH))
        }
        403 if body.contains("xpired") => Verdict::Forbidden(fail("upload_expired")),
        403 => Verdict::Forbidden(fail("unauthorized")),
        404 => Verdict::Fatal(fail("not_found")),
        _ => Verdict::Fatal(fail("upload_mismatch")),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn backoff_grows_and_is_capped() {
        let retry = Retry { attempts: 5, base_ms: 100.0 };
        for attempt in 1..=4 {
            let d = retry.delay(attempt);
            let exp = 100.0 * f64::from(1u32 << (attempt - 1));
            assert!(d >= exp / 2.0 && d <= exp, "attempt {attempt}: {d}");
        }
        assert!(retry.delay(40) <= 20_000.0);
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn store_error_codes_are_read() {
        assert_eq!(between("<Error><Code>BadDigest</Code></Error>", "<Code>", "</Code>"), Some("BadDigest"));
        assert_eq!(between("nothing", "<Code>", "</Code>"), None);
    }
}
