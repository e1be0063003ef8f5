//! Calls to the upload API (`docs/api.md`): JSON over `fetch` with gloo-net,
//! every answer read into upload-core's wire types by upload-core's readers
//! (over the browser's `JSON.parse`, see [`crate::json`]), every request
//! body written from them with serde.

use std::cell::RefCell;

use gloo_net::http::{Method, RequestBuilder};
use serde::Serialize;
use upload_core::read::FromJson;
use upload_core::wire::ErrorBody;
use wasm_bindgen::prelude::*;

use crate::fail::{Fail, NETWORK, cat, num};
use crate::json;
use crate::policy::{Retry, Retryable, code_for_status, resolve_url};
use crate::wait::sleep;

/// One upload API: its base URL and the bearer token for it.
pub(crate) struct Api {
    endpoint: String,
    pub(crate) token: RefCell<Option<String>>,
}

impl Api {
    pub(crate) fn new(endpoint: String, token: Option<String>) -> Api {
        Api { endpoint, token: RefCell::new(token) }
    }

    /// The base URL; empty for an Uploader that has only the app's `create` step.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One request; the parsed JSON of a 2xx answer (`null` when empty), or
    /// the contract's error.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<&JsValue>) -> Result<JsValue, Fail> {
        let url = resolve_url(&self.endpoint, path);
        let what = || cat(&[method.as_str(), " ", &url]);
        let mut request = RequestBuilder::new(&url).method(method.clone());
        if let Some(token) = self.token.borrow().as_deref() {
            request = request.header("Authorization", &cat(&["Bearer ", token]));
        }
        let request = match body {
            Some(body) => {
                let text = js_sys::JSON::stringify(body).map(String::from).unwrap_or_default();
                request.header("Content-Type", "application/json").body(text)
            }
            None => request.build(),
        };
        let unreachable = || Fail::new(NETWORK, cat(&[&what(), " failed"]));
        let response = request.map_err(|_| unreachable())?.send().await.map_err(|_| unreachable())?;
        let status = response.status();
        // A body that is not JSON (a proxy's page) reads as null.
        let json = match response.text().await {
            Ok(text) if !text.is_empty() => js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL),
            _ => JsValue::NULL,
        };
        if (200..300).contains(&status) {
            return Ok(json);
        }
        Err(match json::from_value::<ErrorBody>(json) {
            Ok(body) => Fail::of(body.error.code, body.error.message),
            Err(_) => Fail::of(code_for_status(status), cat(&[&what(), " answered ", &num(status.into())])),
        }
        .with_status(status))
    }

    /// [`Api::call`], tried again as `kind` allows.
    pub(crate) async fn retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&JsValue>,
        kind: Retryable,
        retry: &Retry,
    ) -> Result<JsValue, Fail> {
        let mut attempt = 1;
        loop {
            match self.call(method.clone(), path, body).await {
                Ok(json) => return Ok(json),
                Err(fail) => match retry.after(&fail, kind, attempt) {
                    Some(ms) => sleep(ms).await,
                    None => return Err(fail),
                },
            }
            attempt += 1;
        }
    }
}

/// A request body, as JSON would have it (maps as objects).
pub(crate) fn to_js(value: &impl Serialize) -> JsValue {
    json::to_value(value).unwrap_or(JsValue::NULL)
}

/// An answer read into its wire type; `what` names it in the error.
pub(crate) fn from_js<T: FromJson>(json: JsValue, what: &str) -> Result<T, Fail> {
    json::from_value(json).map_err(|_| Fail::bad_answer(what))
}
