//! Thin helpers over the JS values the client reads and writes, and the one
//! error type that crosses back to JS.
//!
//! JSON is parsed and printed by the browser (`JSON.parse`/`JSON.stringify`)
//! and fields are read with `Reflect`: serde_json would cost ~12 KB gzip.
//! Messages are put together with `push_str` and [`num`] rather than
//! `format!`: `core::fmt` costs the .wasm more than all of them.

use js_sys::{Array, Object, Reflect};
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

pub(crate) fn set(obj: &Object, key: &str, value: &JsValue) {
    // Setting a property on a plain object we created cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// The own enumerable entries of a plain object as `[key, value]` arrays, in
/// order, when every value is a string; `Err(key)` names the first that is
/// not. Anything but an object has no entries.
pub(crate) fn string_entries(obj: &JsValue) -> Result<Array, String> {
    let out = Array::new();
    if obj.is_object() {
        for entry in Object::entries(obj.unchecked_ref()).iter() {
            let entry: Array = entry.unchecked_into();
            if !entry.get(1).is_string() {
                return Err(entry.get(0).as_string().unwrap_or_default());
            }
            out.push(&entry);
        }
    }
    Ok(out)
}

/// `n` in decimal.
pub(crate) fn num(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|d| char::from(*d)).collect()
}

/// The pieces, one after the other.
pub(crate) fn cat(pieces: &[&str]) -> String {
    let mut s = String::new();
    for p in pieces {
        s.push_str(p);
    }
    s
}

/// Codes the client adds to the API's own (`upload_core::ErrorCode`).
pub(crate) const NETWORK: &str = "network";
pub(crate) const CHECKSUM_MISMATCH: &str = "checksum_mismatch";

/// Why an upload failed: a stable `code` (the API's, or one of the client's
/// own), a message for people, and the HTTP status when there was one.
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
