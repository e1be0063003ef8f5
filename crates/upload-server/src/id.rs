//! Upload ids: ULIDs (sortable, and safe as a key segment), in their
//! canonical 26-character form.

use std::fmt;

use ulid::Ulid;

/// The id of an upload, and of the file it becomes.
///
/// Only ever made fresh ([`UploadId::new`]) or from a string that is a ULID
/// in canonical form ([`UploadId::parse`]), so a query by id never sees an
/// arbitrary string from a request path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct UploadId(String);

impl UploadId {
    /// A fresh id.
    #[allow(clippy::new_without_default)]
    pub(crate) fn new() -> Self {
        UploadId(Ulid::new().to_string())
    }

    /// The id written as `s`, when `s` is a ULID as this server writes them
    /// (upper case); anything else cannot name an upload.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let ulid = Ulid::from_string(s).ok()?;
        (ulid.to_string() == s).then(|| UploadId(s.to_owned()))
    }

    /// The id as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UploadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_ulids_parse() {
        let id = UploadId::new();
        assert_eq!(UploadId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(UploadId::parse(&id.as_str().to_ascii_lowercase()), None);
        assert_eq!(UploadId::parse("01ARZ3NDEKTSV4RRFFQ69G5FA"), None, "25 characters");
        assert_eq!(UploadId::parse("../../etc/passwd0000000000"), None);
        assert_eq!(UploadId::parse("81ARZ3NDEKTSV4RRFFQ69G5FAV"), None, "past the largest ULID");
    }
}
