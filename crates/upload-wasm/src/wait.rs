//! Waiting, single-threaded browser style: timers, a first-come first-served
//! pool of slots, and the clock.
//!
//! Every wait is a JS `Promise` awaited through `wasm-bindgen-futures`: a
//! waiter parks the promise's `resolve` function, and whoever frees what it
//! waits for calls it. No waker machinery or executor crate is needed.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    // Looked up as globals at each call (not `window.`), so the client also
    // runs in a Web Worker.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub(crate) fn now() -> f64;
    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(f: &Function);
}

/// Calls `f` after `ms` milliseconds.
pub(crate) fn after(ms: f64, f: impl FnOnce() + 'static) {
    set_timeout(&Closure::once_into_js(f).unchecked_into(), ms.max(0.0));
}

/// Resolves after `ms` milliseconds.
pub(crate) async fn sleep(ms: f64) {
    let timer = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms.max(0.0));
    });
    let _ = JsFuture::from(timer).await;
}

/// A promise and the function that resolves it.
pub(crate) fn signal() -> (Promise, Function) {
    let mut resolver = None;
    let promise = Promise::new(&mut |resolve, _| resolver = Some(resolve));
    (promise, resolver.unwrap_or_else(|| Function::new_no_args("")))
}

/// A first-come first-served pool of slots. A freed slot passes straight to
/// the oldest waiter (in a microtask, not inside the code that freed it), so
/// files that started first go first.
pub(crate) struct Pool {
    free: Cell<usize>,
    waiters: RefCell<VecDeque<Then>>,
}

/// What a waiter does with its slot.
pub(crate) type Then = Box<dyn FnOnce(Slot)>;

/// Held while a request runs; dropping it hands the slot on.
pub(crate) struct Slot(Rc<Pool>);

impl Pool {
    pub(crate) fn new(slots: usize) -> Rc<Pool> {
        Rc::new(Pool { free: Cell::new(slots), waiters: RefCell::new(VecDeque::new()) })
    }

    pub(crate) async fn take(self: &Rc<Self>) -> Slot {
        let (promise, resolve) = signal();
        let slot = Rc::new(RefCell::new(None));
        let given = slot.clone();
        self.take_then(Box::new(move |s| {
            *given.borrow_mut() = Some(s);
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }));
        let _ = JsFuture::from(promise).await;
        let taken = slot.borrow_mut().take();
        taken.unwrap_or_else(|| Slot(self.clone()))
    }

    /// Calls `then` with a slot: at once when one is free, else when one is
    /// handed over.
    pub(crate) fn take_then(self: &Rc<Self>, then: Then) {
        if self.free.get() > 0 {
            self.free.set(self.free.get() - 1);
            then(Slot(self.clone()));
        } else {
            // Called by `Slot::drop`, which hands its slot over instead of freeing it.
            self.waiters.borrow_mut().push_back(then);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let next = self.0.waiters.borrow_mut().pop_front();
        match next {
            Some(then) => {
                let slot = Slot(self.0.clone());
                queue_microtask(&Closure::once_into_js(move || then(slot)).unchecked_into());
            }
            None => self.0.free.set(self.0.free.get() + 1),
        }
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    async fn slots_go_to_waiters_first_come_first_served() {
        let pool = Pool::new(1);
        let order = Rc::new(RefCell::new(Vec::new()));
        let first = pool.take().await;
        let waiters: Vec<Promise> = (1..=3)
            .map(|n| {
                let (pool, order) = (pool.clone(), order.clone());
                wasm_bindgen_futures::future_to_promise(async move {
                    let slot = pool.take().await;
                    order.borrow_mut().push(n);
                    sleep(1.0).await;
                    drop(slot);
                    Ok(JsValue::UNDEFINED)
                })
            })
            .collect();
        sleep(5.0).await;
        assert!(order.borrow().is_empty(), "the only slot is held");
        drop(first);
        for w in waiters {
            JsFuture::from(w).await.unwrap();
        }
        assert_eq!(*order.borrow(), [1, 2, 3]);
        // Every slot came back: one can be taken at once.
        assert_eq!(pool.free.get(), 1);
    }
}
