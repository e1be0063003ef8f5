//! Creates and completes gathered into batch requests (`POST /uploads/batch`,
//! `POST /uploads/batch/complete`), group-commit style: a request goes at
//! once when none of its kind is in flight, and whatever arrives meanwhile
//! goes together in the next one (up to the contract's 100 files).
//!
//! Why: over a link with tens of milliseconds of round trip, a folder of
//! small files is bound by round trips. A single create and complete cost
//! one round trip each, and every complete one more for its CORS preflight
//! (its URL names the upload, so the browser cannot reuse the preflight);
//! the batch routes have fixed URLs, preflighted once. A lone file pays
//! nothing: it goes at once, by the single route.
//!
//! Every outcome goes to its own upload as the single answer would: the
//! created upload or the File record as the same JSON, an error body as the
//! same failure (code and status), retried by the same rules. A server
//! without the batch routes (404 or 405) turns batching off for the
//! `Uploader` for good, and what was gathered goes singly at once.
//!
//! Only an `Uploader` that talks to the API with its user's token batches:
//! a batch acts for the owner, so the upload-scoped tokens (the app's
//! `create` step, LiveView and pyview entries) keep the single routes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use upload_core::wire::{ErrorBody, MAX_FILES_PER_BATCH};
use wasm_bindgen::prelude::*;

use crate::api::{Api, POST};
use crate::fail::Fail;
use crate::policy::{Retry, Retryable};
use crate::wait::after;

/// The two batchers of one `Uploader`, and whether its server has the routes.
pub(crate) struct Batches {
    pub(crate) creates: Rc<Batcher>,
    pub(crate) completes: Rc<Batcher>,
}

impl Batches {
    pub(crate) fn new(api: Rc<Api>, retry: Retry) -> Batches {
        // Shared: a server without one batch route has neither.
        let off = Rc::new(Cell::new(false));
        let batcher = |route, list, answers, kind| {
            Rc::new(Batcher {
                api: api.clone(),
                retry,
                route,
                list,
                answers,
                kind,
                busy: Cell::new(false),
                queue: RefCell::new(Vec::new()),
                off: off.clone(),
            })
        };
        Batches {
            // A lost create may still have created: tried again only when refused (as the single one).
            creates: batcher("/uploads/batch", "files", "uploads", Retryable::IfRefused),
            completes: batcher("/uploads/batch/complete", "uploads", "files", Retryable::Idempotent),
        }
    }
}

/// One kind of request (create or complete), gathered.
pub(crate) struct Batcher {
    api: Rc<Api>,
    retry: Retry,
    /// The batch route, its request's list and its answer's list.
    route: &'static str,
    list: &'static str,
    answers: &'static str,
    /// Which failures are tried again, as for the single route.
    kind: Retryable,
    /// A request of this kind is in flight: new items wait for the next one.
    busy: Cell<bool>,
    queue: RefCell<Vec<Item>>,
    /// The server has no batch routes: every item goes singly.
    off: Rc<Cell<bool>>,
}

/// One upload's request, waiting or on its way.
struct Item {
    /// The single route and its body.
    path: String,
    body: JsValue,
    /// The entry of the batch's list (the body, with the upload's id for a complete).
    entry: JsValue,
    /// Tries so far.
    attempt: u32,
    done: Done,
}

/// Where an outcome goes.
pub(crate) type Done = Box<dyn FnOnce(Result<JsValue, Fail>)>;

impl Batcher {
    /// Sends `body` to `path` (the single route), or as `id`'s entry of a
    /// batch, and calls `done` with what the single route would have
    /// answered. A callback, not a future: the client's futures' state
    /// machines are what its size is made of (README, "Size").
    pub(crate) fn submit(self: &Rc<Self>, path: String, body: JsValue, id: Option<&str>, done: Done) {
        let entry = match id {
            Some(id) => {
                let entry = Object::assign(&Object::new(), body.unchecked_ref());
                let _ = Reflect::set(&entry, &"id".into(), &id.into());
                entry.into()
            }
            None => body.clone(),
        };
        self.push(Item { path, body, entry, attempt: 1, done });
    }

    fn push(self: &Rc<Self>, item: Item) {
        if self.off.get() {
            return self.send(vec![item], false);
        }
        self.queue.borrow_mut().push(item);
        if !self.busy.get() {
            self.flush();
        }
    }

    /// Sends what was gathered (at most a batch; the rest waits for the next
    /// request), or notes that nothing is in flight.
    fn flush(self: &Rc<Self>) {
        let items: Vec<Item> = {
            let mut queue = self.queue.borrow_mut();
            let n = if self.off.get() { queue.len() } else { queue.len().min(MAX_FILES_PER_BATCH) };
            queue.drain(..n).collect()
        };
        self.busy.set(!items.is_empty() && !self.off.get());
        if self.off.get() {
            for item in items {
                self.send(vec![item], false);
            }
        } else if !items.is_empty() {
            self.send(items, true);
        }
    }

    /// One request for `items`: the single route for one, else the batch
    /// route. `gathered`: the request of the group commit, after which the
    /// next gathering goes.
    fn send(self: &Rc<Self>, items: Vec<Item>, gathered: bool) {
        let (path, body) = match &items[..] {
            [item] => (item.path.clone(), item.body.clone()),
            _ => {
                let list: Array = items.iter().map(|i| i.entry.clone()).collect();
                let body = Object::new();
                let _ = Reflect::set(&body, &self.list.into(), &list);
                (self.route.into(), body.into())
            }
        };
        let (this, api) = (self.clone(), self.api.clone());
        crate::wait::then(
            Box::pin(async move { api.call(POST, &path, Some(&body)).await }),
            Box::new(move |answer| {
                this.answered(items, answer);
                if gathered {
                    this.flush();
                }
            }),
        );
    }

    /// Each item's outcome of the answer to [`Batcher::send`].
    fn answered(self: &Rc<Self>, mut items: Vec<Item>, answer: Result<JsValue, Fail>) {
        if items.len() == 1 {
            return self.settle(items.remove(0), answer);
        }
        match answer {
            Ok(json) => {
                let outcomes = crate::get(&json, self.answers);
                let outcomes = Array::is_array(&outcomes)
                    .then(|| Array::from(&outcomes))
                    .filter(|o| o.length() as usize == items.len());
                for (i, item) in (0..).zip(items) {
                    let outcome = match &outcomes {
                        Some(outcomes) => read_outcome(outcomes.get(i)),
                        None => Err(Fail::bad_answer("batch answer")),
                    };
                    self.settle(item, outcome);
                }
            }
            // A server from before the batch routes: singly from now on.
            Err(fail) if fail.status == 404 || fail.status == 405 => {
                self.off.set(true);
                for item in items {
                    self.push(item);
                }
            }
            Err(fail) => {
                for item in items {
                    self.settle(item, Err(fail.clone()));
                }
            }
        }
    }

    /// Hands `item` its outcome, or gathers it again after the backoff when
    /// the single route's rules would try it again.
    fn settle(self: &Rc<Self>, mut item: Item, outcome: Result<JsValue, Fail>) {
        if let Err(fail) = &outcome
            && let Some(ms) = self.retry.after(fail, self.kind, item.attempt)
        {
            item.attempt += 1;
            let this = self.clone();
            return after(ms, move || this.push(item));
        }
        (item.done)(outcome);
    }
}

/// One outcome of a batch, as the single route would have answered it: the
/// answer's JSON, or the error body's failure with the status that route
/// gives its code (so that it is retried, or not, the same way).
pub(crate) fn read_outcome(outcome: JsValue) -> Result<JsValue, Fail> {
    match crate::json::from_value::<ErrorBody>(outcome.clone()) {
        Ok(refused) => {
            let status = refused.error.code.http_status();
            Err(Fail::of(refused.error.code, refused.error.message).with_status(status))
        }
        Err(_) => Ok(outcome),
    }
}
