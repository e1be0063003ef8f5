//! The HTTP side of the local backend: the signed URLs that
//! [`LocalStorage`] hands out point here, and these handlers check them as
//! strictly as S3 does before writing a byte into place: the signature, the
//! expiry, the POST policy's every condition (exact key, Content-Type, size
//! range, no stray fields), a part's exact length, and a checksum when one
//! was signed. Bytes reach the disk only through [`LocalStorage::write_temp`]
//! and [`Sink`](super::disk::Sink).
//!
//! Every refusal is answered as the store answers everything, `CODE:
//! message` with an S3-style code, never in axum's plain text or as a bare
//! status.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::LocalStorage;
use super::disk::SinkError;
use crate::storage::StorageError;

mod chunked;
mod form;
mod object;
mod part;

/// The routes under [`ROUTES`](super::ROUTES), allowed for `origins` as the
/// bucket CORS rule would be.
pub(super) fn router(store: Arc<LocalStorage>, origins: &[String]) -> Router {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::HEAD])
        .allow_headers(tower_http::cors::Any)
        .expose_headers([header::ETAG, header::RANGE])
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route("/form", post(form::post_form))
        .route("/multipart/{upload_id}/{part}", put(part::put_part))
        .route("/objects/{hex}", get(object::get_object))
        .route("/chunked/{session}", put(chunked::put_chunk))
        .method_not_allowed_fallback(|| async {
            refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the method is not allowed against this resource",
            )
        })
        // Sizes are bounded by what was signed, checked while streaming.
        .layer(DefaultBodyLimit::disable())
        .layer(cors)
        .with_state(store)
}

/// A refusal, in the manner of S3: a status and an error code.
#[derive(Debug)]
pub(crate) struct StoreError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> StoreError {
    StoreError { status, code, message: message.into() }
}

fn bad_request(code: &'static str, message: impl Into<String>) -> StoreError {
    refuse(StatusCode::BAD_REQUEST, code, message)
}

fn denied(message: impl Into<String>) -> StoreError {
    refuse(StatusCode::FORBIDDEN, "AccessDenied", message)
}

fn bad_signature() -> StoreError {
    denied("The request signature we calculated does not match the signature you provided")
}

/// What axum's extractors refuse (a path, query or form that does not
/// parse), answered as the store answers everything, not in axum's plain text.
fn bad_argument(rejection: impl std::fmt::Display) -> StoreError {
    bad_request("InvalidArgument", rejection.to_string())
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => refuse(StatusCode::NOT_FOUND, "NoSuchUpload", "no such upload"),
            StorageError::Rejected(why) => denied(why),
            other => {
                tracing::error!(error = %other, "local storage");
                refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error")
            }
        }
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}: {}", self.code, self.message))
            .into_response()
    }
}

/// How a body that did not all reach the disk is answered: `too_long` for
/// one past its limit, `IncompleteBody` for one cut short, and a disk that
/// failed as the internal error it is.
fn sink_refusal<E: std::fmt::Display>(e: SinkError<E>, too_long: impl FnOnce() -> StoreError) -> StoreError {
    match e {
        SinkError::TooLong => too_long(),
        SinkError::Input(e) => bad_request("IncompleteBody", e.to_string()),
        SinkError::Disk(e) => StorageError::other("writing an upload")(e).into(),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn check_expiry(expires: &str) -> Result<(), StoreError> {
    let expires: i64 = expires.parse().map_err(|_| denied("malformed expiry"))?;
    if unix_now() >= expires {
        return Err(denied("Request has expired"));
    }
    Ok(())
}
