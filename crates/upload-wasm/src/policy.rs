//! The decisions of the client, asked by `transport.js` (which only moves
//! bytes and waits) through one function, [`dispatch`]:
//!
//! - the constraint checks, with upload-core's `UploadConstraints::check`
//!   (the server's own code) and upload-core's meta and checksum rules;
//! - the part ranges of a multipart plan (upload-core's `PartPlan`), checked
//!   against the file;
//! - the contract's codes for the API's and the store's failures;
//! - whether and when a failed request is tried again (exponential backoff
//!   with jitter);
//! - what progress may show (never less than before).
//!
//! Failures come back as the JS `Error` the application sees (a value, not a
//! throw: `transport.js` throws it).

use js_sys::Array;
use upload_core::wire::{check_meta_entries, is_base64_sha256};
use upload_core::{ConstraintError, ErrorCode, PartPlan, UploadConstraints};
use wasm_bindgen::prelude::*;

use crate::js::{CHECKSUM_MISMATCH, Fail, NETWORK, as_u64, cat, get, get_str, get_u64, js_error, num};

// The operations (same numbers in transport.js).
const CHECK: u32 = 0;
const META: u32 = 1;
const PARTS: u32 = 2;
const API_FAIL: u32 = 3;
const RETRY: u32 = 4;
const VERDICT: u32 = 5;
const SHOWN: u32 = 6;

/// Verdicts on an answer of the store (same numbers in transport.js).
const OK: u32 = 0;
const AGAIN: u32 = 1;
const FORBIDDEN: u32 = 2;
const FATAL: u32 = 3;

/// Retry modes (same numbers in transport.js).
const MODE_STORE: u32 = 0;
const MODE_IDEMPOTENT: u32 = 1;

/// Answers operation `op` of `transport.js`.
pub(crate) fn dispatch(op: u32, a: JsValue, b: JsValue, c: JsValue, d: JsValue) -> JsValue {
    let f = |v: &JsValue| v.as_f64().unwrap_or(0.0);
    let s = |v: &JsValue| v.as_string().unwrap_or_default();
    let answer = match op {
        CHECK => check(&a, b.as_string(), &c, &s(&d)),
        META => declared_meta(&a, &b),
        PARTS => part_plan(size_of(&a), size_of(&b), f(&c) as u32).map(|plan| ranges(&plan)),
        API_FAIL => Ok(api_fail(f(&a) as u16, &b, &s(&c))),
        RETRY => Ok(retry_after(&a, f(&b) as u32, f(&c) as u32, &Retry::from_js(&d)).into()),
        VERDICT => Ok(verdict(f(&a) as u16, &s(&b), &s(&c), d.is_truthy())),
        SHOWN => Ok(f(&a).max(f(&b).min(f(&c))).into()),
        _ => Ok(JsValue::UNDEFINED),
    };
    answer.unwrap_or_else(|fail| fail.to_js())
}

fn size_of(v: &JsValue) -> u64 {
    as_u64(v).unwrap_or(0)
}

// --- the declaration and the constraints ------------------------------------

/// `constraints` of a `GET /config` answer.
pub(crate) fn constraints_from(config: &JsValue) -> Result<UploadConstraints, Fail> {
    let c = get(config, "constraints");
    let accept = match get(&c, "accept").dyn_into::<Array>() {
        Ok(list) => list.iter().filter_map(|v| v.as_string()).collect(),
        Err(_) => Vec::new(),
    };
    Ok(UploadConstraints {
        max_file_size: get_u64(&c, "max_file_size")
            .ok_or_else(|| Fail::new("internal", "the server's answer has no valid `constraints.max_file_size`"))?,
        max_files: get_u64(&c, "max_files").unwrap_or(u64::from(u32::MAX)).min(u64::from(u32::MAX)) as u32,
        accept,
    })
}

/// Checks a file against `GET /config` with upload-core (the server's own
/// check, so the same files fail with the same codes); without a file, only
/// that the configuration reads. Answers `max_files`.
fn check(config: &JsValue, name: Option<String>, size: &JsValue, content_type: &str) -> Result<JsValue, Fail> {
    let constraints = constraints_from(config)?;
    if let Some(name) = name {
        constraints.check(&name, size_of(size), content_type).map_err(constraint_fail)?;
    }
    Ok(f64::from(constraints.max_files).into())
}

/// The failure with upload-core's code, and a message naming the limit
/// (put together here: upload-core's `Display` would bring `core::fmt`'s
/// number formatting into the .wasm).
fn constraint_fail(e: ConstraintError) -> Fail {
    let message = match &e {
        ConstraintError::EmptyFile => "the file is empty (size 0); empty files are not accepted".into(),
        ConstraintError::FileTooLarge { size, max } => {
            cat(&["the file is ", &num(*size), " bytes, over the limit of ", &num(*max), " bytes"])
        }
        ConstraintError::TypeNotAccepted { content_type, accept } => {
            let mut m = cat(&["type `", content_type, "` is not accepted; accepted:"]);
            for (i, a) in accept.iter().enumerate() {
                m.push_str(if i == 0 { " " } else { ", " });
                m.push_str(a);
            }
            m
        }
        ConstraintError::InvalidName(why) => cat(&["invalid file name: ", why]),
        ConstraintError::InvalidContentType => cat(&[
            "invalid content type: expected `type/subtype` of at most ",
            &num(upload_core::MAX_CONTENT_TYPE_LEN as u64),
            " bytes",
        ]),
        // `check` gives none of the others (they come from the server's
        // configuration check and its pending count).
        _ => "the file is refused by the server's constraints".into(),
    };
    Fail::new(e.code().as_str(), message)
}

/// `upload()`'s `meta` (as `[key, value]` string pairs) and `sha256`, after
/// upload-core's rules, checked before any request (even before the
/// configuration is needed).
fn declared_meta(meta: &JsValue, sha256: &JsValue) -> Result<JsValue, Fail> {
    let pairs: Vec<(String, String)> = meta
        .unchecked_ref::<Array>()
        .iter()
        .map(|e| {
            let e: Array = e.unchecked_into();
            (e.get(0).as_string().unwrap_or_default(), e.get(1).as_string().unwrap_or_default())
        })
        .collect();
    check_meta_entries(pairs.len(), pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(Fail::invalid)?;
    if sha256.as_string().is_some_and(|s| !is_base64_sha256(&s)) {
        return Err(Fail::invalid("sha256 must be the base64 SHA-256 of the file (44 characters)"));
    }
    Ok(JsValue::UNDEFINED)
}

/// The server's part plan, checked against the file's size.
pub(crate) fn part_plan(size: u64, part_size: u64, part_count: u32) -> Result<PartPlan, Fail> {
    if part_size == 0 || size.div_ceil(part_size) != u64::from(part_count) {
        return Err(Fail::new(
            "internal",
            cat(&[
                &num(part_count.into()),
                " parts of ",
                &num(part_size),
                " bytes do not cover ",
                &num(size),
                " bytes",
            ]),
        ));
    }
    Ok(PartPlan { total: size, part_size, part_count })
}

/// `[offset, length]` of every part, by part number - 1.
fn ranges(plan: &PartPlan) -> JsValue {
    (1..=plan.part_count)
        .filter_map(|n| plan.part_range(n))
        .map(|(offset, len)| Array::of2(&(offset as f64).into(), &(len as f64).into()))
        .collect::<Array>()
        .into()
}

/// A non-2xx answer of the API as the contract's error (the JS `Error`).
fn api_fail(status: u16, json: &JsValue, what: &str) -> JsValue {
    let error = get(json, "error");
    let code = get_str(&error, "code").unwrap_or_else(|| code_for_status(status).to_owned());
    let message = get_str(&error, "message").unwrap_or_else(|| cat(&[what, " answered ", &num(status.into())]));
    js_error(&code, &message, status)
}

/// The contract's code for a status whose body is not the contract's (a proxy's page, say).
pub(crate) fn code_for_status(status: u16) -> &'static str {
    let code = match status {
        400 => ErrorCode::InvalidRequest,
        401 | 403 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::InvalidState,
        410 => ErrorCode::UploadExpired,
        413 => ErrorCode::RequestTooLarge,
        415 => ErrorCode::TypeNotAccepted,
        422 => ErrorCode::UploadMismatch,
        429 => ErrorCode::RateLimited,
        502..=504 => ErrorCode::StorageUnavailable,
        _ => ErrorCode::Internal,
    };
    code.as_str()
}

// --- retries ----------------------------------------------------------------

/// How failed requests are retried: `attempts` tries in all, the n-th retry
/// after about `base_ms * 2^(n-1)` (with jitter, capped at 20 s).
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) base_ms: f64,
}

impl Retry {
    /// `[attempts, base_ms]`, as `Uploader` hands it to transport.js.
    fn from_js(v: &JsValue) -> Retry {
        let v: &Array = v.unchecked_ref();
        Retry { attempts: v.get(0).as_f64().unwrap_or(5.0) as u32, base_ms: v.get(1).as_f64().unwrap_or(500.0) }
    }

    /// Delay before try `attempt + 1`: exponential, with "equal jitter" (half
    /// fixed, half random) so that parts failing together do not come back together.
    pub(crate) fn delay(&self, attempt: u32) -> f64 {
        let exp = (self.base_ms * f64::from(1u32 << attempt.saturating_sub(1).min(16))).min(20_000.0);
        exp / 2.0 + js_sys::Math::random() * exp / 2.0
    }
}

/// After try `attempt` failed with `err`: the ms to wait before the next try,
/// or -1 to give up. `mode`: a store request already judged retryable
/// ([`verdict`]); an idempotent API call (GET, DELETE, signing, complete:
/// network errors, 429 and 5xx); or `POST /uploads`, where a lost answer may
/// still have created an upload, so only an explicit "not now" (429, 503).
fn retry_after(err: &JsValue, mode: u32, attempt: u32, retry: &Retry) -> f64 {
    let status = get_u64(err, "status").unwrap_or(0);
    let again = match mode {
        MODE_STORE => true,
        MODE_IDEMPOTENT => get_str(err, "code").as_deref() == Some(NETWORK) || status == 429 || status >= 500,
        _ => status == 429 || status == 503,
    };
    if !again || attempt >= retry.attempts { -1.0 } else { retry.delay(attempt) }
}

/// Sorts an answer of the object store (status 0: the connection failed)
/// into `[verdict, error]`. `ok_308`: a resumable session's "incomplete"
/// (308) is a success too.
fn verdict(status: u16, body: &str, what: &str, ok_308: bool) -> JsValue {
    let (kind, fail) = judge(status, body, what, ok_308);
    Array::of2(&kind.into(), &fail.map_or(JsValue::UNDEFINED, |f| f.to_js())).into()
}

fn judge(status: u16, body: &str, what: &str, ok_308: bool) -> (u32, Option<Fail>) {
    if (200..300).contains(&status) || (ok_308 && status == 308) {
        return (OK, None);
    }
    if status == 0 {
        return (AGAIN, Some(Fail::new(NETWORK, cat(&[what, ": the connection to the store failed"]))));
    }
    // S3 answers `<Error><Code>BadDigest</Code><Message>...`.
    let store_code = between(body, "<Code>", "</Code>").unwrap_or("");
    let message = cat(&[what, ": the store answered ", &num(status.into()), " ", store_code]);
    let (kind, code) = match status {
        429 => (AGAIN, "rate_limited"),
        500..=599 if store_code == "SlowDown" => (AGAIN, "rate_limited"),
        500..=599 => (AGAIN, "storage_unavailable"),
        // The bytes differ from the signed checksum: read, hash and sign
        // again (a bounded number of times), as for an expired URL.
        _ if matches!(store_code, "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch") => {
            (FORBIDDEN, CHECKSUM_MISMATCH)
        }
        403 if find(body, "xpired").is_some() => (FORBIDDEN, "upload_expired"),
        403 => (FORBIDDEN, "unauthorized"),
        404 => (FATAL, "not_found"),
        _ => (FATAL, "upload_mismatch"),
    };
    (kind, Some(Fail::new(code, message).with_status(status)))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = find(s, start)? + start.len();
    let rest = s.get(from..)?;
    rest.get(..find(rest, end)?)
}

/// Where `needle` first occurs in `hay` (a plain byte search: `str::find`
/// with a `&str` pattern brings a two-way searcher of ~2 KB into the .wasm).
fn find(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes().windows(needle.len()).position(|w| w == needle.as_bytes())
}

// --- progress ---------------------------------------------------------------

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn statuses_without_a_contract_body_get_a_code() {
        assert_eq!(code_for_status(429), "rate_limited");
        assert_eq!(code_for_status(503), "storage_unavailable");
        assert_eq!(code_for_status(418), "internal");
    }

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
