//! Calls to the upload API (`docs/api.md`): JSON over `fetch` with gloo-net,
//! every answer read into upload-core's wire types by upload-core's readers
//! (over the browser's `JSON.parse`, see [`crate::json`]), every request
//! body written from them with serde.

use std::cell::RefCell;

use js_sys::{Object, Reflect};
use serde::Serialize;
use upload_core::read::FromJson;
use upload_core::wire::ErrorBody;
use wasm_bindgen::prelude::*;
use web_sys::RequestInit;

use crate::fail::{Fail, NETWORK, cat, num};
use crate::json;
use crate::policy::{Retry, Retryable, code_for_status, resolve_url};
use crate::wait::sleep;

/// An HTTP method, as `fetch` takes it.
pub(crate) type Method = &'static str;
pub(crate) const GET: Method = "GET";
pub(crate) const POST: Method = "POST";
pub(crate) const DELETE: Method = "DELETE";

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
        let what = || cat(&[method, " ", &url]);
        let unreachable = || Fail::new(NETWORK, cat(&[&what(), " failed"]));
        // gloo-net's lightest path: the `web_sys::Request` is made here and
        // sent and read by gloo-net's `Request` and `Response`. Its
        // `RequestBuilder` would parse the URL once more to merge query
        // parameters (there are none) with `format!`, linking `core::fmt`.
        let init = RequestInit::new();
        init.set_method(method);
        let headers = Object::new();
        let header = |name: &str, value: &str| {
            let _ = Reflect::set(&headers, &name.into(), &value.into());
        };
        if let Some(token) = self.token.borrow().as_deref() {
            header("Authorization", &cat(&["Bearer ", token]));
        }
        if let Some(body) = body {
            header("Content-Type", "application/json");
            init.set_body(&js_sys::JSON::stringify(body).map_err(|_| unreachable())?.into());
        }
        init.set_headers(&headers);
        let request = web_sys::Request::new_with_str_and_init(&url, &init).map_err(|_| unreachable())?;
        let response = gloo_net::http::Request::from(request).send().await.map_err(|_| unreachable())?;
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
            match self.call(method, path, body).await {
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
