//! Thin helpers over the JS values the client reads and writes, and the one
//! error type that crosses back to JS.
//!
//! JSON is parsed and printed by the browser (`JSON.parse`/`JSON.stringify`)
//! and fields are read with `Reflect`: serde_json would cost ~12 KB gzip.
//! Messages are put together with `push_str` and [`num`] rather than
//! `format!`: `core::fmt` costs the .wasm more than all of them.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

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

#[cfg(all(test, target_arch = "wasm32"))]
pub(crate) fn get_f64(obj: &JsValue, key: &str) -> Option<f64> {
    get(obj, key).as_f64()
}

/// A non-negative whole number that fits a `u64` exactly (JS numbers are
/// exact up to 2^53, far above S3's 5 TiB object limit).
pub(crate) fn as_u64(v: &JsValue) -> Option<u64> {
    v.as_f64().filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0).map(|n| n as u64)
}

pub(crate) fn get_u64(obj: &JsValue, key: &str) -> Option<u64> {
    as_u64(&get(obj, key))
}

/// `n` in decimal.
pub(crate) fn num(n: u64) -> String {
    let mut s = if n >= 10 { num(n / 10) } else { String::new() };
    s.push(char::from(b'0' + (n % 10) as u8));
    s
}

/// The pieces, one after the other.
pub(crate) fn cat(pieces: &[&str]) -> String {
    let mut s = String::new();
    for p in pieces {
        s.push_str(p);
    }
    s
}

#[wasm_bindgen(module = "/src/transport.js")]
extern "C" {
    /// `Object.assign(new Error(message), {code, status})` (no status when 0).
    #[wasm_bindgen(js_name = fail)]
    pub(crate) fn js_error(code: &str, message: &str, status: u16) -> JsValue;
}

/// Codes the client adds to the API's own (`upload_core::ErrorCode`).
pub(crate) const NETWORK: &str = "network";
pub(crate) const CHECKSUM_MISMATCH: &str = "checksum_mismatch";

/// Why an upload failed: a stable `code` (the API's, or one of the client's
/// own), a message for people, and the HTTP status when there was one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fail {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) status: u16,
}

impl Fail {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Fail {
        Fail { code, message: message.into(), status: 0 }
    }

    pub(crate) fn with_status(mut self, status: u16) -> Fail {
        self.status = status;
        self
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(upload_core::ErrorCode::InvalidRequest.as_str(), message)
    }

    /// The JS `Error` handed to the application: `message`, `code` and, when
    /// the failure came with an HTTP answer, `status`.
    pub(crate) fn to_js(&self) -> JsValue {
        js_error(self.code, &self.message, self.status)
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn numbers_print_in_decimal() {
        assert_eq!(num(0), "0");
        assert_eq!(num(1050), "1050");
        assert_eq!(num(u64::MAX), "18446744073709551615");
    }
}
