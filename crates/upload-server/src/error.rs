//! One error type for every handler, rendered as `{"error": {"code", "message"}}`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use upload_core::wire::{ErrorBody, ErrorDetail};
use upload_core::{ConstraintError, ErrorCode};

use crate::storage::{BoxError, StorageError};

/// An API failure: a stable code, a message for people, and for a 5xx the
/// error behind it.
///
/// There is one constructor per contract code (the constraint codes come
/// from [`ConstraintError`]). A 5xx is logged in one place, its
/// [`IntoResponse`], with its whole cause; nothing of the cause is sent: the
/// body of an `internal` error is always the same sentence.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), source: None }
    }

    /// The stable code; it decides the HTTP status.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// What went wrong, naming the limit and the value.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    /// 404 `not_found`; the same answer whether the id does not exist or is someone else's.
    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed(method: &axum::http::Method) -> Self {
        ApiError::new(ErrorCode::MethodNotAllowed, format!("this endpoint does not answer {method}"))
    }

    /// 413 `file_too_large`.
    pub fn file_too_large(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::FileTooLarge, message)
    }

    /// 413 `request_too_large`.
    pub fn request_too_large(limit: usize) -> Self {
        ApiError::new(ErrorCode::RequestTooLarge, format!("the request body is over the limit of {limit} bytes"))
    }

    /// 409 `invalid_state`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidState, message)
    }

    /// 409 `upload_incomplete`.
    pub fn upload_incomplete(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::UploadIncomplete, message)
    }

    /// 422 `upload_mismatch`.
    pub fn upload_mismatch(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::UploadMismatch, message)
    }

    /// 422 `content_not_accepted`: the bytes show a type `accept` does not allow.
    pub fn content_not_accepted(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::ContentNotAccepted, message)
    }

    /// 422 `refused_by_app`: the application's hook refused the file.
    pub fn refused_by_app(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::RefusedByApp, message)
    }

    /// 503 `storage_unavailable` because something the request needs (an
    /// application's hook, its scanner) cannot decide now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::StorageUnavailable, message)
    }

    /// 410 `upload_expired`.
    pub fn upload_expired(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::UploadExpired, message)
    }

    /// 429 `rate_limited`.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::RateLimited, message)
    }

    /// 503 `storage_unavailable`: the store did not answer; the cause is kept for the log.
    pub fn storage_unavailable(source: impl Into<BoxError>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..ApiError::new(ErrorCode::StorageUnavailable, "the object store did not answer; try again shortly")
        }
    }

    /// 503 `storage_unavailable`: the database did not answer; the cause is kept for the log.
    pub fn database_unavailable(source: impl Into<BoxError>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..ApiError::new(ErrorCode::StorageUnavailable, "the database did not answer; try again shortly")
        }
    }

    /// 503 `storage_unavailable`: the database kept rolling the request's
    /// transaction back for conflicting with others (deadlocks,
    /// serialization failures) however often it was run again; the cause
    /// is kept for the log.
    pub fn database_contended(source: impl Into<BoxError>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..ApiError::new(
                ErrorCode::StorageUnavailable,
                "the database is contended: the request's writes kept conflicting with others; try again shortly",
            )
        }
    }

    /// 503 `storage_unavailable` for a request that did not finish within
    /// `limit`: what does not answer is a dependency (the store, the
    /// database's lock), and the client may try again.
    pub fn timed_out(limit: Duration) -> Self {
        ApiError::new(
            ErrorCode::StorageUnavailable,
            format!("the request did not finish within {} s; try again shortly", limit.as_secs()),
        )
    }

    /// 500 `internal`, keeping the cause for the log; nothing of it is sent.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..ApiError::new(ErrorCode::Internal, "internal error; it has been logged")
        }
    }
}

impl From<ConstraintError> for ApiError {
    fn from(e: ConstraintError) -> Self {
        // Each constraint names its own code (file_too_large, type_not_accepted, too_many_files...).
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable { .. } => ApiError::storage_unavailable(e),
            other => ApiError::internal(other),
        }
    }
}

/// A database that did not answer is a dependency down, as a store that
/// does not answer is: 503 `storage_unavailable`, which clients retry; so is
/// one too contended to let the request's writes through. A statement it
/// refused is a bug: 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::database(crate::db::classify(&e), e)
    }
}

/// A group-commit writer's failure, as the same failure of a write of its own.
impl From<crate::db::WriteError> for ApiError {
    fn from(e: crate::db::WriteError) -> Self {
        ApiError::database(e.failure(), e)
    }
}

impl ApiError {
    /// The answer to a database failure of kind `failure`, keeping its cause.
    fn database(failure: crate::db::Failure, source: impl Into<BoxError>) -> Self {
        use crate::db::Failure;
        match failure {
            Failure::Unavailable => ApiError::database_unavailable(source),
            Failure::Contended => ApiError::database_contended(source),
            Failure::Refused => ApiError::internal(source),
        }
    }
}

/// `Json` rejections (`ApiJson`) in the contract's shape rather than axum's plain text.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::request_too_large(crate::api::MAX_REQUEST_BODY);
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::invalid("expected `Content-Type: application/json`"),
            other => ApiError::invalid(other.body_text()),
        }
    }
}

/// A raw body axum could not read (over the limit, cut short), in the
/// contract's shape rather than axum's plain text.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::request_too_large(crate::api::MAX_REQUEST_BODY);
        }
        ApiError::invalid(rejection.body_text())
    }
}

/// The API's only path parameters are ids, which are ULIDs: one that does
/// not even decode (`%FF`) cannot exist, so it is not found, in the
/// contract's shape, where axum's own `Path` would answer a plain-text 400.
impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::not_found("upload or file")
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The contract's error body, as a response or as one outcome of a
    /// batch; a server error is logged here, once, either way.
    pub(crate) fn into_body(self) -> ErrorBody {
        if self.status().is_server_error() {
            log_server_error(&self);
        }
        ErrorBody { error: ErrorDetail { code: self.code, message: self.message } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = (self.status(), self.code);
        let mut response = (status, Json(self.into_body())).into_response();
        if code == ErrorCode::RateLimited {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// The one place a 5xx is logged: a store that did not answer is a warning
/// (it is someone else's outage, and the client may retry), anything else
/// an error, with its whole chain of causes.
fn log_server_error(error: &ApiError) {
    let cause = error.source.as_deref().map(|source| Chain(source).to_string());
    let cause = cause.as_deref().unwrap_or(&error.message);
    if error.code == ErrorCode::StorageUnavailable {
        // The answer's message names what did not answer (the object store,
        // the database, a request past its deadline): the log says the same.
        tracing::warn!(error = %cause, "{}", error.message);
    } else {
        tracing::error!(error = %cause, code = %error.code, "server error");
    }
}

/// Writes an error and its sources, `: `-separated. A source whose text its
/// error already includes (as `StorageError` does, so that it reads whole
/// on its own) is not written twice.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut written = self.0.to_string();
        f.write_str(&written)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !written.contains(&text) {
                write!(f, ": {text}")?;
                written = text;
            }
            next = e.source();
        }
        Ok(())
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5xx keeps its cause (for the log) and sends none of it.
    #[tokio::test]
    async fn internal_errors_keep_their_source_and_send_nothing_of_it() {
        let cause = std::io::Error::other("disk on fire at /srv/secret");
        let error = ApiError::from(StorageError::other("writing a part")(cause));
        assert_eq!(error.code(), ErrorCode::Internal);
        let source = std::error::Error::source(&error).expect("the storage error");
        assert!(source.to_string().contains("disk on fire"), "{source}");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains(r#""code":"internal""#), "{body}");
        assert!(!body.contains("disk on fire") && !body.contains("/srv/secret"), "{body}");
    }

    /// A conflict lost however often it was run again is 503 and says the
    /// database is contended, not that it did not answer; an outage says
    /// that; a refusal is 500. Each keeps its cause.
    #[test]
    fn database_failures_answer_by_their_kind() {
        let contended = ApiError::from(crate::db::WriteError::from(crate::db::error_with_code("40P01")));
        assert_eq!((contended.code(), contended.status().as_u16()), (ErrorCode::StorageUnavailable, 503));
        assert!(contended.message().contains("contended"), "{}", contended.message());
        assert!(Chain(&contended).to_string().contains("code 40P01"), "{}", Chain(&contended));
        let serialization = ApiError::from(crate::db::error_with_code("40001"));
        assert!(serialization.message().contains("contended"), "{}", serialization.message());
        let down = ApiError::from(crate::db::WriteError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(down.code(), ErrorCode::StorageUnavailable);
        assert!(down.message().contains("did not answer"), "{}", down.message());
        let refused = ApiError::from(crate::db::WriteError::from(crate::db::error_with_code("23505")));
        assert_eq!(refused.code(), ErrorCode::Internal);
    }

    /// Each cause is written once, whether or not an error repeats its source's text.
    #[test]
    fn a_chain_names_each_cause_once() {
        let repeating = StorageError::other("writing a part")(std::io::Error::other("disk full"));
        assert_eq!(Chain(&repeating).to_string(), "writing a part: disk full");
        let error = ApiError::internal(repeating);
        assert_eq!(
            Chain(&error).to_string(),
            "internal: internal error; it has been logged: writing a part: disk full"
        );
    }
}
