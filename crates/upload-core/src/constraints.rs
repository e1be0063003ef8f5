use core::fmt;

use serde::{Deserialize, Serialize};

use crate::ErrorCode;
use crate::key::extension;

/// Longest declared file name, in bytes, before sanitising.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest declared content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// The content type used when the browser declares none (it says `""` for unknown files).
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// What an owner may upload. Sent to the browser by `GET /config`, checked by
/// both ends with [`UploadConstraints::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadConstraints {
    /// Largest accepted file, in bytes.
    pub max_file_size: u64,
    /// Most uploads one owner may have pending at once.
    pub max_files: u32,
    /// MIME types (`image/png`), wildcards (`image/*`) or extensions (`.pdf`);
    /// empty accepts everything.
    #[serde(default)]
    pub accept: Vec<String>,
}

impl Default for UploadConstraints {
    fn default() -> Self {
        UploadConstraints { max_file_size: 100 * 1024 * 1024, max_files: 10, accept: Vec::new() }
    }
}

/// One entry of an `accept` list, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptPattern {
    /// `.pdf`: matches file names ending in that extension, case-insensitively.
    Extension(String),
    /// `image/*`: matches any subtype of the type.
    TypeWildcard(String),
    /// `image/png`: matches exactly that MIME type (parameters ignored).
    Exact(String),
    /// `*/*` or `*`: matches everything.
    Any,
}

impl AcceptPattern {
    /// Parses one accept entry; `None` when it is none of the three shapes.
    pub fn parse(entry: &str) -> Option<AcceptPattern> {
        let entry = entry.trim();
        if entry == "*" || entry == "*/*" {
            return Some(AcceptPattern::Any);
        }
        if let Some(ext) = entry.strip_prefix('.') {
            let valid =
                !ext.is_empty() && ext.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
            // ASCII case-insensitive, as HTML's `accept` attribute compares
            // extensions (and it keeps Unicode case tables out of the wasm client).
            return valid.then(|| AcceptPattern::Extension(ext.to_ascii_lowercase()));
        }
        let (ty, sub) = entry.split_once('/')?;
        if !is_token(ty) {
            return None;
        }
        if sub == "*" {
            Some(AcceptPattern::TypeWildcard(ty.to_ascii_lowercase()))
        } else if is_token(sub) {
            Some(AcceptPattern::Exact(entry.to_ascii_lowercase()))
        } else {
            None
        }
    }

    /// Whether a file with this name and (normalised) content type matches.
    pub fn matches(&self, name: &str, content_type: &str) -> bool {
        let essence = mime_essence(content_type);
        match self {
            AcceptPattern::Any => true,
            AcceptPattern::Extension(ext) => extension(name).is_some_and(|e| e.eq_ignore_ascii_case(ext)),
            AcceptPattern::TypeWildcard(ty) => essence.split_once('/').is_some_and(|(t, _)| t.eq_ignore_ascii_case(ty)),
            AcceptPattern::Exact(exact) => essence.eq_ignore_ascii_case(exact),
        }
    }
}

/// Why a declared file breaks the constraints. [`ConstraintError::code`] gives
/// the contract's error code; `Display` gives the message, naming the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintError {
    /// The file is empty.
    EmptyFile,
    /// The file is bigger than `max_file_size`.
    FileTooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Neither the type nor the extension is in `accept`.
    TypeNotAccepted {
        /// Declared content type.
        content_type: String,
        /// The accept list.
        accept: Vec<String>,
    },
    /// The owner already has `max_files` uploads pending.
    TooManyFiles {
        /// The limit.
        max: u32,
    },
    /// The name is empty, too long, or has nothing left after sanitising.
    InvalidName(&'static str),
    /// The content type is not `type/subtype` or is too long.
    InvalidContentType,
    /// An `accept` entry of the configuration cannot be parsed.
    InvalidAccept(String),
}

impl ConstraintError {
    /// The contract's error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            ConstraintError::FileTooLarge { .. } => ErrorCode::FileTooLarge,
            ConstraintError::TypeNotAccepted { .. } => ErrorCode::TypeNotAccepted,
            ConstraintError::TooManyFiles { .. } => ErrorCode::TooManyFiles,
            ConstraintError::EmptyFile
            | ConstraintError::InvalidName(_)
            | ConstraintError::InvalidContentType
            | ConstraintError::InvalidAccept(_) => ErrorCode::InvalidRequest,
        }
    }
}

impl fmt::Display for ConstraintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstraintError::EmptyFile => f.write_str("the file is empty (size 0); empty files are not accepted"),
            ConstraintError::FileTooLarge { size, max } => {
                write!(f, "the file is {size} bytes, over the limit of {max} bytes")
            }
            ConstraintError::TypeNotAccepted { content_type, accept } => {
                write!(f, "type `{content_type}` is not accepted; accepted: {}", accept.join(", "))
            }
            ConstraintError::TooManyFiles { max } => {
                write!(f, "at most {max} uploads may be pending at once; finish or cancel one first")
            }
            ConstraintError::InvalidName(why) => write!(f, "invalid file name: {why}"),
            ConstraintError::InvalidContentType => {
                write!(f, "invalid content type: expected `type/subtype` of at most {MAX_CONTENT_TYPE_LEN} bytes")
            }
            ConstraintError::InvalidAccept(entry) => {
                write!(f, "invalid accept entry `{entry}`: expected `type/subtype`, `type/*` or `.ext`")
            }
        }
    }
}

impl std::error::Error for ConstraintError {}

impl UploadConstraints {
    /// Checks that every `accept` entry parses; the server calls this on its configuration.
    pub fn validate(&self) -> Result<(), ConstraintError> {
        for entry in &self.accept {
            AcceptPattern::parse(entry).ok_or_else(|| ConstraintError::InvalidAccept(entry.clone()))?;
        }
        Ok(())
    }

    /// Checks one declared file: name, size and type (as the browser reports it;
    /// `""` means unknown). Returns the content type to sign and store.
    pub fn check(&self, name: &str, size: u64, content_type: &str) -> Result<String, ConstraintError> {
        if name.trim().is_empty() {
            return Err(ConstraintError::InvalidName("the name is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ConstraintError::InvalidName("the name is longer than 1024 bytes"));
        }
        let content_type = normalize_content_type(content_type)?;
        if size == 0 {
            return Err(ConstraintError::EmptyFile);
        }
        if size > self.max_file_size {
            return Err(ConstraintError::FileTooLarge { size, max: self.max_file_size });
        }
        if !self.accepts(name, &content_type) {
            return Err(ConstraintError::TypeNotAccepted { content_type, accept: self.accept.clone() });
        }
        Ok(content_type)
    }

    /// Checks that one more upload may start while `pending` are under way.
    pub fn check_count(&self, pending: u64) -> Result<(), ConstraintError> {
        if pending >= u64::from(self.max_files) {
            return Err(ConstraintError::TooManyFiles { max: self.max_files });
        }
        Ok(())
    }

    /// Whether the accept list lets this name and content type through.
    /// Entries that do not parse match nothing.
    pub fn accepts(&self, name: &str, content_type: &str) -> bool {
        self.accept.is_empty()
            || self.accept.iter().filter_map(|e| AcceptPattern::parse(e)).any(|p| p.matches(name, content_type))
    }
}

/// Normalises a declared content type: `""` becomes `application/octet-stream`,
/// type and subtype are lower-cased, and anything that is not `type/subtype`
/// (with optional parameters) of header-safe characters is refused, because
/// the value is signed into policies and sent as a header.
pub fn normalize_content_type(content_type: &str) -> Result<String, ConstraintError> {
    let trimmed = content_type.trim();
    if trimmed.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    }
    if trimmed.len() > MAX_CONTENT_TYPE_LEN || !trimmed.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ConstraintError::InvalidContentType);
    }
    let (essence, params) = match trimmed.split_once(';') {
        Some((e, p)) => (e.trim(), Some(p)),
        None => (trimmed, None),
    };
    let (ty, sub) = essence.split_once('/').ok_or(ConstraintError::InvalidContentType)?;
    if !is_token(ty) || !is_token(sub) {
        return Err(ConstraintError::InvalidContentType);
    }
    let mut out = format!("{}/{}", ty.to_ascii_lowercase(), sub.to_ascii_lowercase());
    if let Some(params) = params {
        out.push(';');
        out.push_str(params);
    }
    Ok(out)
}

fn mime_essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// RFC 7230 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(list: &[&str]) -> UploadConstraints {
        UploadConstraints { accept: list.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn accept_cases() {
        let cases: &[(&[&str], &str, &str, bool)] = &[
            (&[], "anything.bin", "application/x-whatever", true),
            (&["image/*"], "cat.png", "image/png", true),
            (&["image/*"], "cat.png", "IMAGE/PNG", true),
            (&["image/*"], "cat.png", "text/plain", false),
            (&["image/*"], "cat.png", "imagex/png", false),
            (&[".pdf"], "Report.PDF", "application/octet-stream", true),
            (&[".PDF"], "report.pdf", "", true),
            (&[".pdf"], "report.pdf.exe", "application/pdf", false),
            (&[".pdf"], "pdf", "application/pdf", false),
            (&["application/pdf"], "x", "application/pdf; charset=binary", true),
            (&["application/pdf"], "x.pdf", "application/pdfx", false),
            (&["image/*", ".pdf"], "a.pdf", "application/pdf", true),
            (&["*/*"], "a", "x/y", true),
            (&[".tar.gz"], "a.tar.gz", "", false),
            (&["text/plain"], "ÄÖ.txt", "text/plain", true),
            (&[".tXt"], "ÄÖ.TXT", "", true),
            (&[".äö"], "a.äö", "", true),
        ];
        for (list, name, ty, want) in cases {
            let c = accept(list);
            let ty = normalize_content_type(ty).unwrap();
            assert_eq!(c.accepts(name, &ty), *want, "accept {list:?} name {name} type {ty}");
        }
    }

    #[test]
    fn check_gives_the_contract_codes() {
        let c = UploadConstraints { max_file_size: 100, max_files: 2, accept: vec!["image/*".into()] };
        assert_eq!(c.check("a.png", 100, "image/png"), Ok("image/png".into()));
        assert_eq!(c.check("a.png", 0, "image/png").unwrap_err().code(), ErrorCode::InvalidRequest);
        assert_eq!(c.check("a.png", 101, "image/png").unwrap_err().code(), ErrorCode::FileTooLarge);
        assert_eq!(c.check("a.txt", 1, "text/plain").unwrap_err().code(), ErrorCode::TypeNotAccepted);
        assert_eq!(c.check("", 1, "image/png").unwrap_err().code(), ErrorCode::InvalidRequest);
        assert_eq!(c.check("a.png", 1, "image/png\r\nx: y").unwrap_err().code(), ErrorCode::InvalidRequest);
        assert_eq!(c.check("a.png", 1, "nonsense").unwrap_err().code(), ErrorCode::InvalidRequest);
        assert!(c.check_count(1).is_ok());
        assert_eq!(c.check_count(2).unwrap_err().code(), ErrorCode::TooManyFiles);
        let msg = c.check("a.png", 101, "image/png").unwrap_err().to_string();
        assert!(msg.contains("101") && msg.contains("100"), "{msg}");
    }

    #[test]
    fn unknown_type_becomes_octet_stream() {
        assert_eq!(normalize_content_type("").unwrap(), DEFAULT_CONTENT_TYPE);
        assert_eq!(normalize_content_type(" Text/HTML; charset=UTF-8").unwrap(), "text/html; charset=UTF-8");
    }

    #[test]
    fn validate_refuses_bad_accept_entries() {
        assert!(accept(&["image/*", ".pdf", "text/plain"]).validate().is_ok());
        for bad in ["image", ".", "/png", "image/", "im age/png"] {
            assert_eq!(accept(&[bad]).validate(), Err(ConstraintError::InvalidAccept(bad.into())), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics_and_respects_size(name in ".{0,40}", size in 0u64..1000, ty in ".{0,40}") {
            let c = UploadConstraints { max_file_size: 500, max_files: 1, accept: vec![] };
            match c.check(&name, size, &ty) {
                Ok(normalized) => {
                    proptest::prop_assert!(size > 0 && size <= 500);
                    proptest::prop_assert!(normalized.contains('/'));
                    proptest::prop_assert!(!normalized.contains(['\r', '\n']));
                }
                Err(e) => { let _ = e.to_string(); }
            }
        }

        #[test]
        fn extension_accept_is_case_insensitive(stem in "[a-z]{1,8}", ext in "[a-zA-Z]{1,5}") {
            let c = accept(&[&format!(".{}", ext.to_lowercase())]);
            let upper = format!("{stem}.{}", ext.to_uppercase());
            proptest::prop_assert!(c.accepts(&upper, DEFAULT_CONTENT_TYPE));
        }
    }
}
