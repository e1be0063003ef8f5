//! Thin helpers over the JS values the client reads and writes, and the one
//! error type that crosses back to JS.
//!
//! JSON is parsed and printed by the browser (`JSON.parse`/`JSON.stringify`)
//! and fields are read with `Reflect`: serde_json would cost ~12 KB gzip.

use js_sys::{Function, Object, Promise, Reflect};
use upload_core::ConstraintError;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    // Bound as globals (not through `window`) so the client also runs in a
    // Web Worker, and so a test can stand in for them.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = fetch)]
    pub(crate) fn fetch(url: &str, init: &Object) -> Promise;
    // Monotonic, unlike Date.now (the wall clock may be stepped), so the
    // 50 ms between progress events hold.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// `obj[key]`, or `undefined` when `obj` is not an object.
pub(crate) fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() || obj.is_function() {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

pub(crate) fn get_str(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}

pub(crate) fn get_f64(obj: &JsValue, key: &str) -> Option<f64> {
    get(obj, key).as_f64()
}

/// A non-negative whole number that fits a `u64` exactly (JS numbers are
/// exact up to 2^53, far above S3's 5 TiB object limit).
pub(crate) fn get_u64(obj: &JsValue, key: &str) -> Option<u64> {
    get_f64(obj, key).filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0).map(|n| n as u64)
}

pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    // Setting a property on a plain object we created cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// The own enumerable string-valued entries of a plain object, in order.
/// `Err(key)` names the first entry whose value is not a string.
pub(crate) fn string_entries(obj: &JsValue) -> Result<Vec<(String, String)>, String> {
    if !obj.is_object() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in Object::entries(obj.unchecked_ref()).iter() {
        let key = Reflect::get_u32(&entry, 0).ok().and_then(|k| k.as_string()).unwrap_or_default();
        match Reflect::get_u32(&entry, 1).ok().and_then(|v| v.as_string()) {
            Some(value) => out.push((key, value)),
            None => return Err(key),
        }
    }
    Ok(out)
}

pub(crate) fn now() -> f64 {
    performance_now()
}

/// A promise and the function that resolves it.
pub(crate) fn promise_with_resolver() -> (Promise, Function) {
    let mut resolver = None;
    let promise = Promise::new(&mut |resolve, _reject| resolver = Some(resolve));
    // The executor runs synchronously inside `new Promise`.
    (promise, resolver.unwrap_or_else(|| Function::from(JsValue::UNDEFINED)))
}

pub(crate) async fn sleep(ms: f64) {
    let promise = Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, ms.max(0.0));
    });
    let _ = JsFuture::from(promise).await;
}

/// Codes the client adds to the API's own (`upload_core::ErrorCode`).
pub(crate) const NETWORK: &str = "network";
pub(crate) const ABORTED: &str = "aborted";
pub(crate) const CHECKSUM_MISMATCH: &str = "checksum_mismatch";

/// Why an upload failed: a stable `code` (the API's, or one of the three
/// above), a message for people, and the HTTP status when there was one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fail {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) status: u16,
}

impl Fail {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Fail {
        Fail { code: code.to_owned(), message: message.into(), status: 0 }
    }

    pub(crate) fn with_status(mut self, status: u16) -> Fail {
        self.status = status;
        self
    }

    pub(crate) fn aborted() -> Fail {
        Fail::new(ABORTED, "the upload was cancelled")
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.code == ABORTED
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(upload_core::ErrorCode::InvalidRequest.as_str(), message)
    }

    /// The JS `Error` handed to the application: `message`, `code` and, when
    /// the failure came with an HTTP answer, `status`.
    pub(crate) fn to_js(&self) -> JsValue {
        let err = js_sys::Error::new(&self.message);
        set(&err, "code", &JsValue::from_str(&self.code));
        if self.status != 0 {
            set(&err, "status", &JsValue::from(self.status));
        }
        err.into()
    }
}

impl From<ConstraintError> for Fail {
    fn from(e: ConstraintError) -> Fail {
        Fail::new(e.code().as_str(), e.to_string())
    }
}
