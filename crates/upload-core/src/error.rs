use core::fmt;

/// The stable error codes of the HTTP contract (`docs/api.md`).
///
/// The string form ([`ErrorCode::as_str`]) and the HTTP status
/// ([`ErrorCode::http_status`]) of a code never change once released; new codes
/// may be added, hence `#[non_exhaustive]`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: malformed JSON, missing or ill-typed field, bad value.
    InvalidRequest,
    /// 401: no valid identity.
    Unauthorized,
    /// 404: no such upload or file for this owner.
    NotFound,
    /// 405: the path exists, the method does not (`Allow` lists the ones that do).
    MethodNotAllowed,
    /// 413: declared size over `max_file_size`.
    FileTooLarge,
    /// 413: the API request body itself is too big.
    RequestTooLarge,
    /// 415: declared type or extension not in `accept`.
    TypeNotAccepted,
    /// 409: the owner already has `max_files` pending uploads.
    TooManyFiles,
    /// 409: the operation does not fit the upload's state or plan.
    InvalidState,
    /// 409: complete was called but the object or a part is not in storage.
    UploadIncomplete,
    /// 422: what is in storage differs from what was declared; the object is deleted.
    UploadMismatch,
    /// 422: the file's first bytes show a type that `accept` does not allow
    /// (an HTML page declared `image/png`); the object is deleted.
    ContentNotAccepted,
    /// 422: the application's hook refused the file; the object is deleted.
    RefusedByApp,
    /// 410: the upload's signing window has passed.
    UploadExpired,
    /// 429: too many requests from this owner.
    RateLimited,
    /// 503: the object store did not answer.
    StorageUnavailable,
    /// 500: a bug; details are logged, never sent.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of the contract's table.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::FileTooLarge,
        ErrorCode::RequestTooLarge,
        ErrorCode::TypeNotAccepted,
        ErrorCode::TooManyFiles,
        ErrorCode::InvalidState,
        ErrorCode::UploadIncomplete,
        ErrorCode::UploadMismatch,
        ErrorCode::ContentNotAccepted,
        ErrorCode::RefusedByApp,
        ErrorCode::UploadExpired,
        ErrorCode::RateLimited,
        ErrorCode::StorageUnavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears in `{"error": {"code": ...}}`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::TypeNotAccepted => "type_not_accepted",
            ErrorCode::TooManyFiles => "too_many_files",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::UploadIncomplete => "upload_incomplete",
            ErrorCode::UploadMismatch => "upload_mismatch",
            ErrorCode::ContentNotAccepted => "content_not_accepted",
            ErrorCode::RefusedByApp => "refused_by_app",
            ErrorCode::UploadExpired => "upload_expired",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the server answers with for this code.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::FileTooLarge | ErrorCode::RequestTooLarge => 413,
            ErrorCode::TypeNotAccepted => 415,
            ErrorCode::TooManyFiles | ErrorCode::InvalidState | ErrorCode::UploadIncomplete => 409,
            ErrorCode::UploadMismatch | ErrorCode::ContentNotAccepted | ErrorCode::RefusedByApp => 422,
            ErrorCode::UploadExpired => 410,
            ErrorCode::RateLimited => 429,
            ErrorCode::StorageUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Parses the string form; `None` for a code this version does not know.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Owned, not `&str`: a deserializer that cannot lend its input (the
        // browser client's, over JS values) must be able to read it too.
        let s = String::deserialize(deserializer)?;
        ErrorCode::parse(&s).ok_or_else(|| serde::de::Error::custom(format_args!("unknown error code `{s}`")))
    }
}

/// The schema of a code: a string, one of [`ErrorCode::ALL`]'s names, so
/// the OpenAPI document lists exactly the codes this version sends.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("Stable error code; its HTTP status never changes (docs/api.md, Errors)."))
            .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str)))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn statuses_match_the_contract_table() {
        let table = [
            ("invalid_request", 400),
            ("unauthorized", 401),
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("file_too_large", 413),
            ("request_too_large", 413),
            ("type_not_accepted", 415),
            ("too_many_files", 409),
            ("invalid_state", 409),
            ("upload_incomplete", 409),
            ("upload_mismatch", 422),
            ("content_not_accepted", 422),
            ("refused_by_app", 422),
            ("upload_expired", 410),
            ("rate_limited", 429),
            ("storage_unavailable", 503),
            ("internal", 500),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (name, status) in table {
            assert_eq!(ErrorCode::parse(name).unwrap().http_status(), status, "{name}");
        }
    }
}
