//! Waiting, single-threaded browser style: timers, a first-come first-served
//! pool of slots, and the clock.
//!
//! A timer is a JS `Promise` awaited through `wasm-bindgen-futures` (or a
//! callback); a pool waiter parks a callback (or its task's waker), and
//! whoever frees a slot hands it over. No executor crate beyond
//! `wasm-bindgen-futures` is needed.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

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

/// An API call (or other work) to run, and what is done with its result.
pub(crate) type Work = std::pin::Pin<Box<dyn Future<Output = Result<JsValue, crate::fail::Fail>>>>;

/// Runs `work` and hands its result to `then`. One spawned future for every
/// caller: each `spawn_local` of its own `async` block would add a task's
/// state machine to the .wasm.
pub(crate) fn then(work: Work, then: Box<dyn FnOnce(Result<JsValue, crate::fail::Fail>)>) {
    wasm_bindgen_futures::spawn_local(async move { then(work.await) });
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

#[derive(Default)]
struct Handoff {
    slot: RefCell<Option<Slot>>,
    waker: Cell<Option<Waker>>,
}

impl Pool {
    pub(crate) fn new(slots: usize) -> Rc<Pool> {
        Rc::new(Pool { free: Cell::new(slots), waiters: RefCell::new(VecDeque::new()) })
    }

    /// A slot, once one is free: at once (no promise, no trip through the
    /// microtask queue) when one is; else when a dropped slot is handed over.
    /// Every slot comes from the pool's count or from a slot handed on,
    /// never minted here.
    pub(crate) async fn take(self: &Rc<Self>) -> Slot {
        if let Some(slot) = self.try_take() {
            return slot;
        }
        // The waiter's end of the hand-over: the slot, or the waker of the
        // task to poll once it is there. A slot handed to a waiter that is
        // gone (its future dropped) is dropped with this, and so handed on.
        let handoff = Rc::new(Handoff::default());
        let given = handoff.clone();
        self.waiters.borrow_mut().push_back(Box::new(move |slot| {
            *given.slot.borrow_mut() = Some(slot);
            if let Some(waker) = given.waker.take() {
                waker.wake();
            }
        }));
        std::future::poll_fn(|cx| match handoff.slot.borrow_mut().take() {
            Some(slot) => Poll::Ready(slot),
            None => {
                handoff.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// A free slot, if there is one.
    fn try_take(self: &Rc<Self>) -> Option<Slot> {
        let free = self.free.get();
        (free > 0).then(|| {
            self.free.set(free - 1);
            Slot(self.clone())
        })
    }

    /// Calls `then` with a slot: at once when one is free, else when one is
    /// handed over.
    pub(crate) fn take_then(self: &Rc<Self>, then: Then) {
        match self.try_take() {
            Some(slot) => then(slot),
            // Called by `Slot::drop`, which hands its slot over instead of freeing it.
            None => self.waiters.borrow_mut().push_back(then),
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
    use std::future::Future;

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

    #[wasm_bindgen_test]
    fn a_free_slot_is_taken_without_waiting() {
        let pool = Pool::new(2);
        let mut cx = std::task::Context::from_waker(Waker::noop());
        let mut first = std::pin::pin!(pool.take());
        let Poll::Ready(first) = first.as_mut().poll(&mut cx) else { panic!("a slot was free") };
        let mut second = std::pin::pin!(pool.take());
        let Poll::Ready(_second) = second.as_mut().poll(&mut cx) else { panic!("a second slot was free") };
        let mut third = std::pin::pin!(pool.take());
        assert!(third.as_mut().poll(&mut cx).is_pending(), "both slots are held");
        drop(first);
        assert_eq!(pool.free.get(), 0, "the freed slot waits for the third taker, not in the pool");
    }

    #[wasm_bindgen_test]
    async fn a_slot_handed_to_a_waiter_that_is_gone_goes_back_to_the_pool() {
        let pool = Pool::new(1);
        let held = pool.take().await;
        {
            let mut cx = std::task::Context::from_waker(Waker::noop());
            let mut gone = Box::pin(pool.take());
            assert!(gone.as_mut().poll(&mut cx).is_pending());
        }
        drop(held);
        sleep(1.0).await;
        assert_eq!(pool.free.get(), 1, "one slot, counted once");
        let _one = pool.take().await;
        let mut cx = std::task::Context::from_waker(Waker::noop());
        assert!(std::pin::pin!(pool.take()).as_mut().poll(&mut cx).is_pending(), "no slot was made up");
    }
}
