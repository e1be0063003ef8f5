//! A first-come first-served semaphore for the single-threaded browser (used
//! by the browser tests only, which share one mock and so run one at a time).
//!
//! Waiters park on a JS promise whose resolve function sits in the queue, so
//! no waker machinery or extra crate is needed; a released permit passes
//! straight to the oldest waiter, which keeps files that started first first.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen_futures::JsFuture;

pub(crate) struct Semaphore {
    free: Cell<usize>,
    waiters: RefCell<VecDeque<Function>>,
}

/// Held while a request runs; dropping it hands the slot on.
pub(crate) struct Permit(Rc<Semaphore>);

impl Semaphore {
    pub(crate) fn new(permits: usize) -> Rc<Semaphore> {
        Rc::new(Semaphore { free: Cell::new(permits), waiters: RefCell::new(VecDeque::new()) })
    }

    pub(crate) async fn acquire(self: &Rc<Self>) -> Permit {
        if self.free.get() > 0 {
            self.free.set(self.free.get() - 1);
        } else {
            let promise = Promise::new(&mut |resolve, _reject| self.waiters.borrow_mut().push_back(resolve));
            // Resolved by `Permit::drop`, which hands its slot over instead of freeing it.
            let _ = JsFuture::from(promise).await;
        }
        Permit(self.clone())
    }

    #[cfg(all(test, target_arch = "wasm32"))]
    pub(crate) fn available(&self) -> usize {
        self.free.get()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let next = self.0.waiters.borrow_mut().pop_front();
        match next {
            Some(resolve) => {
                let _ = resolve.call0(&wasm_bindgen::JsValue::UNDEFINED);
            }
            None => self.0.free.set(self.0.free.get() + 1),
        }
    }
}
