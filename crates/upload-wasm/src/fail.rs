//! The one error type of the client, [`Fail`], and how it crosses to JS: an
//! `Error` with a stable `code` and, when there was an HTTP answer, `status`
//! (`UploadError` in the TypeScript types).
//!
//! Messages are put together with `push_str` and [`num`] rather than
//! `format!`: `core::fmt`'s machinery would cost the .wasm more than all of
//! the messages together.

use js_sys::Reflect;
use upload_core::ErrorCode;
use wasm_bindgen::prelude::*;

/// Codes the client adds to the API's own (`upload_core::ErrorCode`).
pub(crate) const NETWORK: &str = "network";
pub(crate) const ABORTED: &str = "aborted";
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

    pub(crate) fn of(code: ErrorCode, message: impl Into<String>) -> Fail {
        Fail::new(code.as_str(), message)
    }

    pub(crate) fn with_status(mut self, status: u16) -> Fail {
        self.status = status;
        self
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::of(ErrorCode::InvalidRequest, message)
    }

    /// `cancel()` was called (or a LiveView went away), or the upload was
    /// paused: the caller tells which by the upload's state.
    pub(crate) fn aborted() -> Fail {
        Fail::new(ABORTED, "the upload was cancelled")
    }

    pub(crate) fn unreadable() -> Fail {
        Fail::invalid("the file cannot be read")
    }

    /// An answer of the API that does not read as the contract's type.
    pub(crate) fn bad_answer(what: &str) -> Fail {
        Fail::of(ErrorCode::Internal, cat(&["the server's answer is not a valid ", what]))
    }

    pub(crate) fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// The JS `Error` handed to the application.
    pub(crate) fn to_js(&self) -> JsValue {
        let e: JsValue = js_sys::Error::new(&self.message).into();
        let _ = Reflect::set(&e, &"code".into(), &self.code.into());
        if self.status != 0 {
            let _ = Reflect::set(&e, &"status".into(), &self.status.into());
        }
        e
    }

    /// A failure that went through JS (a rejected promise of the hash module,
    /// say): its `code` when it is one of ours, else `internal`.
    pub(crate) fn from_js(e: &JsValue) -> Fail {
        let code = Reflect::get(e, &"code".into()).ok().and_then(|c| c.as_string()).unwrap_or_default();
        let code = [NETWORK, ABORTED, CHECKSUM_MISMATCH]
            .into_iter()
            .chain(ErrorCode::ALL.iter().map(|c| c.as_str()))
            .find(|known| *known == code)
            .unwrap_or(ErrorCode::Internal.as_str());
        let message = Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
        let status = Reflect::get(e, &"status".into()).ok().and_then(|s| s.as_f64()).unwrap_or(0.0) as u16;
        Fail::new(code, message).with_status(status)
    }
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

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn numbers_print_in_decimal() {
        assert_eq!(num(0), "0");
        assert_eq!(num(1050), "1050");
        assert_eq!(num(u64::MAX), "18446744073709551615");
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn failures_keep_their_code_through_js() {
        let fail = Fail::new(CHECKSUM_MISMATCH, "part 2").with_status(400);
        assert_eq!(Fail::from_js(&fail.to_js()), fail);
        let foreign: JsValue = js_sys::Error::new("boom").into();
        assert_eq!(Fail::from_js(&foreign).code, "internal");
    }
}
