//! One error type for every handler, rendered as `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use upload_core::wire::{ErrorBody, ErrorDetail};
use upload_core::{ConstraintError, ErrorCode};

use crate::storage::StorageError;

/// An API failure: a stable code and a message for people.
///
/// 5xx details are logged where the error is made and never sent: the body of
/// an `internal` error is always the same sentence.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Stable code; decides the HTTP status.
    pub code: ErrorCode,
    /// What went wrong, naming the limit and the value.
    pub message: String,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// 404 `not_found`; the same answer whether the id does not exist or is someone else's.
    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    /// 409 `invalid_state`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidState, message)
    }

    /// 500 `internal`: logs the cause, sends nothing of it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; it has been logged")
    }
}

impl From<ConstraintError> for ApiError {
    fn from(e: ConstraintError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            cause @ StorageError::Unavailable { .. } => {
                tracing::warn!(error = %cause, "object store unavailable");
                ApiError::new(ErrorCode::StorageUnavailable, "the object store did not answer; try again shortly")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format_args!("database: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        let mut response = (status, Json(body)).into_response();
        if self.code == ErrorCode::RateLimited {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
