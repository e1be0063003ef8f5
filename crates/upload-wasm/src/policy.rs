//! The client's decisions, as plain functions of plain values (the flows in
//! `upload.rs` ask them):
//!
//! - the constraint checks, with upload-core's `UploadConstraints::check`
//!   (the server's own code) and upload-core's meta and checksum rules;
//! - the part ranges of a multipart plan (upload-core's `PartPlan`), checked
//!   against the file;
//! - the contract's codes for the API's and the store's failures;
//! - whether and when a failed request is tried again (exponential backoff
//!   with jitter).

use upload_core::wire::{check_meta_entries, is_base64_sha256};
use upload_core::{ConstraintError, ErrorCode, PartPlan, UploadConstraints};

use crate::fail::{CHECKSUM_MISMATCH, Fail, NETWORK, cat, num};

/// Checks a file against the server's constraints with upload-core (the
/// server's own check, so the same files fail with the same codes).
pub(crate) fn check(constraints: &UploadConstraints, name: &str, size: u64, content_type: &str) -> Result<(), Fail> {
    constraints.check(name, size, content_type).map(drop).map_err(constraint_fail)
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
    Fail::of(e.code(), message)
}

/// `upload()`'s `meta` and `sha256`, after upload-core's rules, checked
/// before any request (even before the configuration is needed).
pub(crate) fn check_declaration(meta: &[(String, String)], sha256: Option<&str>) -> Result<(), Fail> {
    check_meta_entries(meta.len(), meta.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(Fail::invalid)?;
    if sha256.is_some_and(|s| !is_base64_sha256(s)) {
        return Err(Fail::invalid("sha256 must be the base64 SHA-256 of the file (44 characters)"));
    }
    Ok(())
}

/// The server's part plan, checked against the file's size.
pub(crate) fn part_plan(size: u64, part_size: u64, part_count: u32) -> Result<PartPlan, Fail> {
    if part_size == 0 || size.div_ceil(part_size) != u64::from(part_count) {
        return Err(Fail::of(
            ErrorCode::Internal,
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

/// The contract's code for a status whose body is not the contract's (a proxy's page, say).
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
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
    }
}

// --- retries ----------------------------------------------------------------

/// How failed requests are retried: `attempts` tries in all, the n-th retry
/// after about `base_ms * 2^(n-1)` (with jitter, capped at 20 s).
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) attempts: u32,
    pub(crate) base_ms: f64,
}

/// Which failures of a request are worth another try.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Retryable {
    /// A store request already judged retryable ([`judge`]).
    Store,
    /// An idempotent API call (GET, DELETE, signing, complete): network
    /// errors, 429 and 5xx.
    Idempotent,
    /// `POST /uploads`: a lost answer may still have created an upload, so
    /// only an explicit "not now" (429, 503).
    IfRefused,
}

impl Retry {
    /// Delay before try `attempt + 1`: exponential, with "equal jitter" (half
    /// fixed, half random) so that parts failing together do not come back together.
    pub(crate) fn delay(&self, attempt: u32) -> f64 {
        let exp = (self.base_ms * f64::from(1u32 << attempt.saturating_sub(1).min(16))).min(20_000.0);
        exp / 2.0 + js_sys::Math::random() * exp / 2.0
    }

    /// After try `attempt` failed with `fail`: the ms to wait before the next
    /// try, or `None` to give up.
    pub(crate) fn after(&self, fail: &Fail, kind: Retryable, attempt: u32) -> Option<f64> {
        let status = fail.status;
        let again = match kind {
            Retryable::Store => true,
            Retryable::Idempotent => fail.is(NETWORK) || status == 429 || status >= 500,
            Retryable::IfRefused => status == 429 || status == 503,
        };
        (again && attempt < self.attempts).then(|| self.delay(attempt))
    }
}

/// What to do about an answer of the object store.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Stored (or, for a resumable session, a 308 "go on").
    Stored,
    /// Worth another try after a wait (network error, 5xx, 429).
    Again(Fail),
    /// The URL or the bytes were refused: sign (and hash) again, a bounded
    /// number of times.
    Refused(Fail),
    /// Final.
    Fatal(Fail),
}

/// Sorts an answer of the object store (status 0: the connection failed).
/// `ok_308`: a resumable session's "incomplete" (308) is a success too.
pub(crate) fn judge(status: u16, body: &str, what: &str, ok_308: bool) -> Verdict {
    if (200..300).contains(&status) || (ok_308 && status == 308) {
        return Verdict::Stored;
    }
    if status == 0 {
        return Verdict::Again(Fail::new(NETWORK, cat(&[what, ": the connection to the store failed"])));
    }
    // S3 answers `<Error><Code>BadDigest</Code><Message>...`.
    let store_code = between(body, "<Code>", "</Code>").unwrap_or("");
    let fail = |code: &'static str| {
        Fail::new(code, cat(&[what, ": the store answered ", &num(status.into()), " ", store_code])).with_status(status)
    };
    match status {
        429 => Verdict::Again(fail("rate_limited")),
        500..=599 if store_code == "SlowDown" => Verdict::Again(fail("rate_limited")),
        500..=599 => Verdict::Again(fail("storage_unavailable")),
        // The bytes differ from the signed checksum: read, hash and sign
        // again (a bounded number of times), as for an expired URL.
        _ if matches!(store_code, "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch") => {
            Verdict::Refused(fail(CHECKSUM_MISMATCH))
        }
        403 if find(body, "xpired").is_some() => Verdict::Refused(fail("upload_expired")),
        403 => Verdict::Refused(fail("unauthorized")),
        404 => Verdict::Fatal(fail("not_found")),
        _ => Verdict::Fatal(fail("upload_mismatch")),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = find(s, start)? + start.len();
    let rest = s.get(from..)?;
    rest.get(..find(rest, end)?)
}

/// Where `needle` first occurs in `hay` (a plain byte search: `str::find`
/// with a `&str` pattern brings a two-way searcher of ~2 KB into the .wasm).
pub(crate) fn find(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes().windows(needle.len()).position(|w| w == needle.as_bytes())
}

/// The last byte N of a `Range: bytes=0-N` header (a resumable session's
/// answer), or `None`.
pub(crate) fn range_end(range: &str) -> Option<u64> {
    let rest = range.trim().strip_prefix("bytes=")?.trim_start();
    let rest = rest.strip_prefix('0')?.trim_start().strip_prefix('-')?.trim();
    if rest.is_empty() || rest.len() > 15 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(rest.bytes().fold(0, |n, b| n * 10 + u64::from(b - b'0')))
}

/// `path` under the endpoint (`/uploads`) or, as the server's `complete_url`,
/// absolute or rooted (`/api/v1/uploads/1/complete`): a rooted path that
/// already carries the endpoint's own path is resolved against its origin.
pub(crate) fn resolve_url(endpoint: &str, path: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if path.starts_with("http://") || path.starts_with("https://") {
        return path.into();
    }
    // `scheme://host` and the endpoint's own path after it.
    // With `get` and `strip_prefix`, not indexing: a slice out of bounds
    // would link `core::fmt`'s message for it (and `char`'s `Debug`).
    if let Some(scheme_end) = find(endpoint, "://") {
        let host_from = scheme_end + 3;
        let slash = endpoint.as_bytes().get(host_from..).and_then(|rest| rest.iter().position(|b| *b == b'/'));
        if let Some(at) = slash.map(|slash| host_from + slash)
            && let (Some(origin), Some(own_path)) = (endpoint.get(..at), endpoint.get(at..))
            && path.strip_prefix(own_path).is_some_and(|rest| rest.starts_with('/'))
        {
            return cat(&[origin, path]);
        }
    }
    cat(&[endpoint, path])
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn statuses_without_a_contract_body_get_a_code() {
        assert_eq!(code_for_status(429).as_str(), "rate_limited");
        assert_eq!(code_for_status(503).as_str(), "storage_unavailable");
        assert_eq!(code_for_status(418).as_str(), "internal");
    }

    #[wasm_bindgen_test]
    fn backoff_grows_and_is_capped() {
        let retry = Retry { attempts: 5, base_ms: 100.0 };
        for attempt in 1..=4 {
            let d = retry.delay(attempt);
            let exp = 100.0 * f64::from(1u32 << (attempt - 1));
            assert!(d >= exp / 2.0 && d <= exp, "attempt {attempt}: {d}");
        }
        assert!(retry.delay(40) <= 20_000.0);
        let network = Fail::new(NETWORK, "x");
        assert!(retry.after(&network, Retryable::Idempotent, 4).is_some());
        assert_eq!(retry.after(&network, Retryable::Idempotent, 5), None, "five tries in all");
        assert_eq!(retry.after(&network, Retryable::IfRefused, 1), None, "a lost POST /uploads is not sent again");
        let busy = Fail::new("rate_limited", "x").with_status(429);
        assert!(retry.after(&busy, Retryable::IfRefused, 1).is_some());
    }

    #[wasm_bindgen_test]
    fn store_answers_are_judged() {
        assert_eq!(judge(200, "", "part 1", false), Verdict::Stored);
        assert_eq!(judge(308, "", "a chunk", true), Verdict::Stored);
        assert!(matches!(judge(0, "", "part 1", false), Verdict::Again(f) if f.is(NETWORK)));
        let slow = judge(503, "<Error><Code>SlowDown</Code></Error>", "part 1", false);
        assert!(matches!(slow, Verdict::Again(f) if f.code == "rate_limited" && f.status == 503));
        let digest = judge(400, "<Error><Code>BadDigest</Code></Error>", "part 2", false);
        assert!(
            matches!(digest, Verdict::Refused(f) if f.is(CHECKSUM_MISMATCH) && f.message == "part 2: the store answered 400 BadDigest")
        );
        let expired =
            judge(403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", "p", false);
        assert!(matches!(expired, Verdict::Refused(f) if f.code == "upload_expired"));
        assert!(matches!(judge(404, "", "p", false), Verdict::Fatal(f) if f.code == "not_found"));
        assert!(matches!(judge(308, "", "p", false), Verdict::Fatal(f) if f.code == "upload_mismatch"));
    }

    #[wasm_bindgen_test]
    fn urls_resolve_against_the_endpoint() {
        let api = "https://app.example/api/v1/";
        assert_eq!(resolve_url(api, "/uploads"), "https://app.example/api/v1/uploads");
        assert_eq!(resolve_url(api, "/api/v1/uploads/1/complete"), "https://app.example/api/v1/uploads/1/complete");
        assert_eq!(resolve_url(api, "https://other.example/x"), "https://other.example/x");
        assert_eq!(resolve_url("http://127.0.0.1:9000", "/config"), "http://127.0.0.1:9000/config");
        // A path that merely starts with the same letters is not the endpoint's.
        assert_eq!(resolve_url("https://app.example/api", "/api2/x"), "https://app.example/api/api2/x");
        // LiveView's presigned URLs come with no endpoint.
        assert_eq!(resolve_url("", "https://app.example/complete"), "https://app.example/complete");
        assert_eq!(resolve_url("", "/complete"), "/complete");
    }

    #[wasm_bindgen_test]
    fn range_headers() {
        assert_eq!(range_end("bytes=0-262143"), Some(262_143));
        assert_eq!(range_end(" bytes=0-0 "), Some(0));
        assert_eq!(range_end("bytes= 0 - 9"), Some(9));
        assert_eq!(range_end("bytes=5-9"), None);
        assert_eq!(range_end(""), None);
        assert_eq!(range_end("bytes=0-x"), None);
        assert_eq!(range_end("bytes=0-1234567890123456"), None);
    }

    #[wasm_bindgen_test]
    fn plans_must_cover_the_file() {
        assert!(part_plan(1050, 100, 11).is_ok());
        assert_eq!(part_plan(1050, 100, 10).unwrap_err().message, "10 parts of 100 bytes do not cover 1050 bytes");
        assert!(part_plan(10, 0, 0).is_err());
    }

    #[wasm_bindgen_test]
    fn declarations_follow_upload_cores_rules() {
        assert!(check_declaration(&[("album".into(), "7".into())], None).is_ok());
        assert!(check_declaration(&[(String::new(), "x".into())], None).is_err());
        assert!(check_declaration(&[], Some("not base64")).is_err());
    }
}
