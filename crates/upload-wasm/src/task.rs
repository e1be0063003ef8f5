//! One file's upload as the browser sees it: its state, the requests in
//! flight, the progress shown, and the XMLHttpRequests that carry its bytes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, FormData, ProgressEvent, XmlHttpRequest};

use crate::fail::Fail;
use crate::policy::Retry;
use crate::wait::{Pool, Slot, after, now, signal, sleep};

/// Progress events are at most this far apart (ms).
const INTERVAL: f64 = 50.0;

/// Where an upload is, as `upload.state` says it.
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

/// Who hears about progress.
pub(crate) enum Sink {
    None,
    /// `onProgress({loaded, total, state})` of `uploader.upload`.
    Callback(Function),
    /// A LiveView upload entry: `entry.progress(percent)`, 100 meaning finished.
    Entry(JsValue),
}

/// What the uploads of one `Uploader` (or of all LiveView uploads) share.
pub(crate) struct Shared {
    /// Requests carrying bytes at once, across all files.
    pub(crate) slots: Rc<Pool>,
    /// Also the parts in flight per file.
    pub(crate) concurrency: u32,
    /// Most part URLs per signing request.
    pub(crate) batch: u32,
    pub(crate) retry: Retry,
}

/// A request's body.
pub(crate) enum Body<'a> {
    Empty,
    Blob(&'a Blob),
    Form(&'a FormData),
}

/// A request carrying bytes.
pub(crate) struct Request<'a> {
    /// Which share of the progress it is (the part number; 0 for the one
    /// body of a form POST or chunk).
    pub(crate) key: i32,
    /// The file's bytes in the body.
    pub(crate) len: f64,
    pub(crate) method: &'a str,
    pub(crate) url: &'a str,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: Body<'a>,
}

/// How a request carrying bytes ended.
pub(crate) enum Sent {
    /// The store answered (any status).
    Answer(XmlHttpRequest),
    /// The connection failed.
    Network,
    /// Aborted: paused or cancelled.
    Abort,
}

pub(crate) struct Task {
    pub(crate) file: Blob,
    pub(crate) name: String,
    /// The file's size (a Blob reports a whole number of bytes).
    pub(crate) size: u64,
    pub(crate) shared: Rc<Shared>,
    sink: Sink,
    pub(crate) id: RefCell<Option<String>>,
    state: Cell<State>,
    xhrs: RefCell<Vec<XmlHttpRequest>>,
    /// Resolves the wait of a paused upload.
    wake: RefCell<Option<Function>>,
    /// Bytes stored, bytes of requests in flight by key, the highest shown.
    stored: Cell<f64>,
    inflight: RefCell<Vec<(i32, f64)>>,
    shown: Cell<f64>,
    last_event: Cell<Option<(f64, State)>>,
    last_emit: Cell<f64>,
    timer: Cell<bool>,
}

impl Task {
    pub(crate) fn new(file: Blob, name: String, shared: Rc<Shared>, sink: Sink) -> Rc<Task> {
        let size = file.size();
        let size = if size > 0.0 && size.is_finite() { size.trunc() as u64 } else { 0 };
        Rc::new(Task {
            file,
            name,
            size,
            shared,
            sink,
            id: RefCell::new(None),
            state: Cell::new(State::Queued),
            xhrs: RefCell::new(Vec::new()),
            wake: RefCell::new(None),
            stored: Cell::new(0.0),
            inflight: RefCell::new(Vec::new()),
            shown: Cell::new(0.0),
            last_event: Cell::new(None),
            last_emit: Cell::new(f64::NEG_INFINITY),
            timer: Cell::new(false),
        })
    }

    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    pub(crate) fn loaded(&self) -> f64 {
        self.shown.get()
    }

    pub(crate) fn set_state(self: &Rc<Self>, state: State) {
        if !self.state().finished() {
            self.state.set(state);
            self.schedule_emit();
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        matches!(self.state(), State::Paused | State::Cancelled)
    }

    pub(crate) fn pause(&self) {
        if matches!(self.state(), State::Queued | State::Uploading) {
            self.state.set(State::Paused);
            self.abort_requests();
        }
    }

    pub(crate) fn resume(&self) {
        if self.state() == State::Paused {
            self.state.set(State::Uploading);
            self.wake_up();
        }
    }

    pub(crate) fn cancel(&self) {
        if !self.state().finished() {
            self.state.set(State::Cancelled);
            self.abort_requests();
            self.wake_up();
        }
    }

    pub(crate) fn fail(&self) {
        if !self.state().finished() {
            self.state.set(State::Failed);
            self.abort_requests();
        }
    }

    /// The server has answered /complete: only now may progress say "done".
    pub(crate) fn finish(&self) {
        self.shown.set(self.size as f64);
        self.state.set(State::Done);
    }

    fn wake_up(&self) {
        let wake = self.wake.borrow_mut().take();
        if let Some(resolve) = wake {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }

    pub(crate) fn abort_requests(&self) {
        // `abort` may fire its event at once: take the list first.
        let xhrs = std::mem::take(&mut *self.xhrs.borrow_mut());
        for xhr in xhrs {
            let _ = xhr.abort();
        }
    }

    /// Waits while paused; fails with `aborted` once cancelled or failed.
    pub(crate) async fn checkpoint(&self) -> Result<(), Fail> {
        loop {
            match self.state() {
                State::Cancelled | State::Failed => return Err(Fail::aborted()),
                State::Paused => {
                    let (promise, resolve) = signal();
                    *self.wake.borrow_mut() = Some(resolve);
                    let _ = JsFuture::from(promise).await;
                }
                _ => return Ok(()),
            }
        }
    }

    // --- progress ---------------------------------------------------------

    pub(crate) fn set_stored(self: &Rc<Self>, bytes: f64) {
        self.stored.set(bytes);
        self.inflight.borrow_mut().clear();
        self.update();
    }

    pub(crate) fn add_stored(self: &Rc<Self>, key: i32, bytes: f64) {
        self.stored.set(self.stored.get() + bytes);
        self.inflight.borrow_mut().retain(|(k, _)| *k != key);
        self.update();
    }

    fn set_inflight(self: &Rc<Self>, key: i32, bytes: f64) {
        {
            let mut inflight = self.inflight.borrow_mut();
            match inflight.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = bytes,
                None => inflight.push((key, bytes)),
            }
        }
        self.update();
    }

    /// What progress may show: never less than before, never more than the file.
    fn update(self: &Rc<Self>) {
        let sum = self.stored.get() + self.inflight.borrow().iter().map(|(_, b)| b).sum::<f64>();
        let shown = sum.min(self.size as f64);
        if shown > self.shown.get() {
            self.shown.set(shown);
            self.schedule_emit();
        }
    }

    /// Emits now, or once INTERVAL has passed since the last event.
    fn schedule_emit(self: &Rc<Self>) {
        if self.timer.get() {
            return;
        }
        let wait = self.last_emit.get() + INTERVAL - now();
        if wait <= 0.0 {
            return self.emit();
        }
        self.timer.set(true);
        let task = self.clone();
        after(wait, move || {
            task.timer.set(false);
            task.emit();
        });
    }

    /// The last event: never skipped, never too soon.
    pub(crate) async fn emit_final(&self) {
        loop {
            let wait = self.last_emit.get() + INTERVAL - now();
            if wait <= 0.0 && !self.timer.get() {
                break;
            }
            sleep(wait.max(1.0)).await;
        }
        self.emit();
    }

    fn emit(&self) {
        let (state, loaded, total) = (self.state(), self.shown.get(), self.size as f64);
        if self.last_event.get() == Some((loaded, state)) {
            return;
        }
        self.last_event.set(Some((loaded, state)));
        if matches!(state, State::Cancelled | State::Failed) {
            return;
        }
        // An exception in the application's callback is its own business.
        match &self.sink {
            Sink::None => {}
            Sink::Callback(f) => {
                let event = Object::new();
                let _ = Reflect::set(&event, &"loaded".into(), &loaded.into());
                let _ = Reflect::set(&event, &"total".into(), &total.into());
                let _ = Reflect::set(&event, &"state".into(), &state.as_str().into());
                let _ = f.call1(&JsValue::NULL, &event);
            }
            Sink::Entry(entry) => {
                // 100 means finished, so it is held back until then.
                let percent = if total > 0.0 { (loaded * 100.0 / total).floor() } else { 0.0 };
                let percent = if state == State::Done { percent } else { percent.min(99.0) };
                if let Ok(progress) = Reflect::get(entry, &"progress".into())
                    && let Some(progress) = progress.dyn_ref::<Function>()
                {
                    let _ = progress.call1(entry, &percent.into());
                }
            }
        }
        // Counted from when the callback returned.
        self.last_emit.set(now());
    }

    /// The failure reported to a LiveView entry (`entry.error(message)`).
    pub(crate) fn report_error(&self, fail: &Fail) {
        if let Sink::Entry(entry) = &self.sink
            && let Ok(error) = Reflect::get(entry, &"error".into())
            && let Some(error) = error.dyn_ref::<Function>()
        {
            let _ = error.call1(entry, &fail.message.as_str().into());
        }
    }

    // --- requests carrying bytes ----------------------------------------

    /// Sends one request with XMLHttpRequest (the only browser API that
    /// reports upload progress) and calls `done` with how it ended; `slot`
    /// (of the shared pool) is held until then. `done` may be called at once
    /// (an interrupted task sends nothing).
    pub(crate) fn send_then(self: &Rc<Self>, request: Request<'_>, slot: Option<Slot>, done: Box<dyn FnOnce(Sent)>) {
        let Request { key, len, method, url, headers, body } = request;
        if self.interrupted() {
            drop(slot);
            return done(Sent::Abort);
        }
        let Some(xhr) = XmlHttpRequest::new().ok().filter(|xhr| {
            xhr.open_with_async(method, url, true).is_ok()
                && headers.iter().all(|(k, v)| xhr.set_request_header(k, v).is_ok())
        }) else {
            drop(slot);
            return done(Sent::Network);
        };
        let upload = xhr.upload().ok();
        let task = self.clone();
        let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
            // A form body is a little larger than the file: scale to the file's bytes.
            let total = e.total();
            task.set_inflight(key, if total > 0.0 { e.loaded() / total * len } else { e.loaded().min(len) });
        });
        if let Some(upload) = &upload {
            upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        }
        // One of load, error, abort and timeout ends every request sent.
        let (task, x) = (self.clone(), xhr.clone());
        let ended: Function = Closure::once_into_js(move |event: JsValue| {
            if let Some(upload) = &upload {
                upload.set_onprogress(None);
            }
            drop(on_progress);
            let kind = Reflect::get(&event, &"type".into()).ok().and_then(|t| t.as_string());
            let sent = match kind.as_deref() {
                Some("load") => Sent::Answer(x.clone()),
                Some("abort") => Sent::Abort,
                _ => Sent::Network,
            };
            task.xhrs.borrow_mut().retain(|other| *other != x);
            if !matches!(sent, Sent::Answer(_)) {
                task.inflight.borrow_mut().retain(|(k, _)| *k != key);
            }
            drop(slot);
            done(if task.interrupted() { Sent::Abort } else { sent });
        })
        .unchecked_into();
        xhr.set_onload(Some(&ended));
        xhr.set_onerror(Some(&ended));
        xhr.set_onabort(Some(&ended));
        xhr.set_ontimeout(Some(&ended));
        self.xhrs.borrow_mut().push(xhr.clone());
        self.set_inflight(key, 0.0);
        let started = match body {
            Body::Empty => xhr.send(),
            Body::Blob(blob) => xhr.send_with_opt_blob(Some(blob)),
            Body::Form(form) => xhr.send_with_opt_form_data(Some(form)),
        };
        if started.is_err() {
            // The request never left: end it as a failed connection.
            let _ = ended.call1(&JsValue::NULL, &JsValue::NULL);
        }
    }

    /// `file.slice(from, to)`.
    pub(crate) fn slice(&self, from: f64, to: f64) -> Result<Blob, Fail> {
        self.file.slice_with_f64_and_f64(from, to).map_err(|_| Fail::unreadable())
    }
}
