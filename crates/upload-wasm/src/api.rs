//! Calls to the upload API (`/api/v1`): JSON over `fetch`.
//!
//! Only the bytes go through XMLHttpRequest (for upload progress); the small
//! JSON calls use `fetch`, which needs no event handlers.

use std::cell::RefCell;

use js_sys::{JSON, Object};
use upload_core::ErrorCode;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Response;

use crate::js::{Fail, NETWORK, fetch, get, get_str, set, sleep};
use crate::task::Retry;

pub(crate) struct Api {
    /// Without a trailing slash.
    endpoint: String,
    token: RefCell<Option<String>>,
}

/// Whether a failed API call may be sent again as it is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    /// GET, DELETE, parts signing, complete: repeating them is harmless.
    Yes,
    /// Create: a lost answer may still have created an upload, so only an
    /// explicit "not now" (429, 503) is retried.
    OnlyIfRefused,
}

impl Api {
    pub(crate) fn new(endpoint: &str, token: Option<String>) -> Api {
        Api { endpoint: endpoint.trim_end_matches('/').to_owned(), token: RefCell::new(token) }
    }

    pub(crate) fn set_token(&self, token: Option<String>) {
        *self.token.borrow_mut() = token;
    }

    /// `path` is either under the endpoint (`/uploads`) or, as the server's
    /// `complete_url`, absolute or rooted (`/api/v1/uploads/1/complete`).
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_owned();
        }
        if let Some(rest) = path.strip_prefix('/') {
            // A rooted path the server gave us that already carries the
            // endpoint's own path (`/api/v1/...`) is resolved against its origin.
            if let Some(origin_end) = origin_len(&self.endpoint) {
                let base_path = &self.endpoint[origin_end..];
                if !base_path.is_empty() && path.starts_with(base_path) && path[base_path.len()..].starts_with('/') {
                    return format!("{}/{rest}", &self.endpoint[..origin_end]);
                }
            }
        }
        format!("{}{path}", self.endpoint)
    }

    /// One call; a non-2xx answer becomes the contract's error.
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<&JsValue>) -> Result<JsValue, Fail> {
        let init = Object::new();
        set(&init, "method", &JsValue::from_str(method));
        let headers = Object::new();
        if let Some(token) = self.token.borrow().as_deref().filter(|t| !t.is_empty()) {
            set(&headers, "Authorization", &JsValue::from_str(&format!("Bearer {token}")));
        }
        if let Some(body) = body {
            set(&headers, "Content-Type", &JsValue::from_str("application/json"));
            let text = JSON::stringify(body).map_err(|_| Fail::invalid("the request body is not JSON"))?;
            set(&init, "body", &text);
        }
        set(&init, "headers", &headers);
        let url = self.url(path);
        let resp: Response = JsFuture::from(fetch(&url, &init))
            .await
            .map_err(|e| Fail::new(NETWORK, format!("{method} {url} failed: {}", describe(&e))))?
            .unchecked_into();
        let status = resp.status();
        let text = match resp.text() {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
            Err(_) => String::new(),
        };
        let json = if text.is_empty() { JsValue::NULL } else { JSON::parse(&text).unwrap_or(JsValue::NULL) };
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let error = get(&json, "error");
        let code = get_str(&error, "code").unwrap_or_else(|| code_for_status(status).to_owned());
        let message = get_str(&error, "message").unwrap_or_else(|| format!("{method} {url} answered {status}"));
        Err(Fail::new(&code, message).with_status(status))
    }

    /// [`Api::call`], retried with backoff on a network error, 429 and 5xx
    /// (as far as `idempotent` allows).
    pub(crate) async fn call_retrying(
        &self,
        method: &str,
        path: &str,
        body: Option<&JsValue>,
        idempotent: Idempotent,
        retry: &Retry,
    ) -> Result<JsValue, Fail> {
        let mut attempt = 1;
        loop {
            let err = match self.call(method, path, body).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let again = match idempotent {
                Idempotent::Yes => err.code == NETWORK || err.status == 429 || err.status >= 500,
                Idempotent::OnlyIfRefused => err.status == 429 || err.status == 503,
            };
            if !again || attempt >= retry.attempts {
                return Err(err);
            }
            sleep(retry.delay(attempt)).await;
            attempt += 1;
        }
    }
}

/// Length of `scheme://host[:port]` in `url`.
fn origin_len(url: &str) -> Option<usize> {
    let after_scheme = url.find("://")? + 3;
    Some(url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i))
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

/// A thrown JS value as text, for messages.
pub(crate) fn describe(e: &JsValue) -> String {
    get_str(e, "message").or_else(|| e.as_string()).unwrap_or_else(|| "no answer".to_owned())
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn urls_resolve_against_the_endpoint() {
        let api = Api::new("https://app.example/api/v1/", None);
        assert_eq!(api.url("/uploads"), "https://app.example/api/v1/uploads");
        assert_eq!(api.url("/api/v1/uploads/1/complete"), "https://app.example/api/v1/uploads/1/complete");
        assert_eq!(api.url("https://other.example/x"), "https://other.example/x");
        let bare = Api::new("http://127.0.0.1:9000", None);
        assert_eq!(bare.url("/config"), "http://127.0.0.1:9000/config");
        // A path that merely starts with the same letters is not the endpoint's.
        let api = Api::new("https://app.example/api", None);
        assert_eq!(api.url("/api2/x"), "https://app.example/api/api2/x");
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn statuses_without_a_contract_body_get_a_code() {
        assert_eq!(code_for_status(429), "rate_limited");
        assert_eq!(code_for_status(503), "storage_unavailable");
        assert_eq!(code_for_status(418), "internal");
    }
}
