//! The JSON bodies of the HTTP contract (`docs/api.md`), as serde types.
//!
//! Timestamps are RFC 3339 strings in UTC (`2026-11-22T12:00:00Z`), so this
//! crate needs no date library. Maps are `BTreeMap`s so that output is stable.
//!
//! With the `openapi` feature (the server's, never the browser client's) each
//! type derives utoipa's `ToSchema` for `GET /api/v1/openapi.json`. A field
//! the server always sends is `required` there even where serde reads it as
//! optional (so that an older server's answer still reads).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, UploadConstraints};

/// Most `meta` entries one upload may carry.
pub const MAX_META_ENTRIES: usize = 32;
/// Longest `meta` key, in bytes.
pub const MAX_META_KEY_LEN: usize = 64;
/// Longest `meta` value, in bytes.
pub const MAX_META_VALUE_LEN: usize = 1024;
/// Most part numbers one `POST /uploads/{id}/parts` may ask for.
pub const MAX_PARTS_PER_SIGN_REQUEST: usize = 100;
/// Most files one batch request (`POST /uploads/batch`,
/// `POST /uploads/batch/complete`) may carry.
pub const MAX_FILES_PER_BATCH: usize = 100;

/// `GET /config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientConfig {
    /// What may be uploaded.
    pub constraints: UploadConstraints,
    /// Files of at least this many bytes go multipart.
    pub multipart_threshold: u64,
    /// Preferred part size for multipart uploads.
    pub part_size: u64,
}

/// `POST /uploads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUpload {
    /// The file's name as the user has it; sanitised by the server.
    pub name: String,
    /// Exact size in bytes.
    pub size: u64,
    /// MIME type as the browser reports it; `""` for unknown.
    #[serde(rename = "type", default)]
    pub content_type: String,
    /// Base64 SHA-256 of the whole file, when the client computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Application data stored with the file.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// For multipart uploads: the client will give the SHA-256 of every
    /// part when asking for its URL, and the store verifies each part (and,
    /// on S3, keeps a composite checksum).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub part_checksums: bool,
    /// The plan the client prefers; the server picks by size when absent,
    /// and refuses a plan its storage cannot offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<UploaderKind>,
}

/// How the browser sends the bytes; chosen by the server.
///
/// Tagged by `uploader` (internally tagged). Read by hand ([`Deserialize`]
/// below) rather than derived: serde's derive for an internally tagged enum
/// buffers the whole object in its private `Content` first, which costs the
/// browser client's .wasm several KB; the JSON is the same either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "uploader")]
pub enum UploadPlan {
    /// One multipart/form-data POST: every field, then the file as `file`.
    S3 {
        /// Always `POST`.
        method: String,
        /// Where to post the form.
        url: String,
        /// Form fields, sent before the file.
        fields: BTreeMap<String, String>,
    },
    /// Part PUTs signed by `POST /uploads/{id}/parts`.
    S3Multipart {
        /// The store's multipart upload id.
        upload_id: String,
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts.
        part_count: u32,
        /// Every part's SHA-256 must be given when its URL is asked for
        /// (the upload was created with `part_checksums`): a client that
        /// did not create the upload itself (a LiveView uploader) learns it
        /// here. Absent when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        part_checksums: bool,
    },
    /// Consecutive `Content-Range` PUTs to one session URL.
    Chunked {
        /// The session URL.
        url: String,
        /// Bytes per chunk.
        chunk_size: u64,
        /// Headers to send with every chunk.
        headers: BTreeMap<String, String>,
    },
}

/// Every field of every plan, as the object reads in one pass; the tag then
/// says which fields the plan needs (others are ignored, as the derived
/// reader ignores unknown fields).
#[derive(Deserialize)]
struct AnyPlan {
    uploader: UploaderKind,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    fields: Option<BTreeMap<String, String>>,
    #[serde(default)]
    upload_id: Option<String>,
    #[serde(default)]
    part_size: Option<u64>,
    #[serde(default)]
    part_count: Option<u32>,
    #[serde(default)]
    part_checksums: bool,
    #[serde(default)]
    chunk_size: Option<u64>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for UploadPlan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn need<T, E: serde::de::Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
            value.ok_or_else(|| E::missing_field(field))
        }
        let p = AnyPlan::deserialize(deserializer)?;
        Ok(match p.uploader {
            UploaderKind::S3 => UploadPlan::S3 {
                method: need(p.method, "method")?,
                url: need(p.url, "url")?,
                fields: need(p.fields, "fields")?,
            },
            UploaderKind::S3Multipart => UploadPlan::S3Multipart {
                upload_id: need(p.upload_id, "upload_id")?,
                part_size: need(p.part_size, "part_size")?,
                part_count: need(p.part_count, "part_count")?,
                part_checksums: p.part_checksums,
            },
            UploaderKind::Chunked => UploadPlan::Chunked {
                url: need(p.url, "url")?,
                chunk_size: need(p.chunk_size, "chunk_size")?,
                headers: need(p.headers, "headers")?,
            },
        })
    }
}

impl UploadPlan {
    /// The plan's name as in `uploader`.
    pub fn uploader(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Which of the three plans this is.
    pub fn kind(&self) -> UploaderKind {
        match self {
            UploadPlan::S3 { .. } => UploaderKind::S3,
            UploadPlan::S3Multipart { .. } => UploaderKind::S3Multipart,
            UploadPlan::Chunked { .. } => UploaderKind::Chunked,
        }
    }
}

/// A plan's name: the `uploader` tag of [`UploadPlan`], and the name of the
/// browser package's uploader that sends it (LiveView and pyview pick the
/// uploader by an entry's top-level `meta.uploader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UploaderKind {
    /// One form POST.
    S3,
    /// Part PUTs.
    S3Multipart,
    /// `Content-Range` PUTs to one session URL.
    Chunked,
}

impl std::fmt::Display for UploaderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UploaderKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UploaderKind::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| UnknownName::new("uploader", s))
    }
}

/// A name that is not one of an enum's (a stored state or plan kind that
/// this version does not know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    what: &'static str,
    name: String,
}

impl UnknownName {
    fn new(what: &'static str, name: &str) -> Self {
        UnknownName { what, name: name.to_owned() }
    }
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is not a known {}", self.name, self.what)
    }
}

impl std::error::Error for UnknownName {}

impl UploaderKind {
    /// Every kind, in the order the contract lists them.
    pub const ALL: [UploaderKind; 3] = [UploaderKind::S3, UploaderKind::S3Multipart, UploaderKind::Chunked];

    /// The name as sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            UploaderKind::S3 => "S3",
            UploaderKind::S3Multipart => "S3Multipart",
            UploaderKind::Chunked => "Chunked",
        }
    }
}

/// 201 answer to `POST /uploads`.
///
/// It is meant to be handed to the browser as it is (an app's server
/// creates the upload for its user and passes the answer on as a LiveView
/// entry's `meta`): it names its uploader at the top level and carries an
/// upload-scoped `token` in place of the user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedUpload {
    /// The package's uploader for this plan (the same as `upload.uploader`).
    /// This and the other additions below are optional on reading only so
    /// that answers of servers before them still read; this server always
    /// sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = UploaderKind))]
    pub uploader: Option<UploaderKind>,
    /// Upload id; the file id once completed.
    pub id: String,
    /// Object key in the store.
    pub key: String,
    /// When the signing window closes.
    pub expires_at: String,
    /// How to send the bytes.
    pub upload: UploadPlan,
    /// Where to POST once the bytes are stored.
    pub complete_url: String,
    /// Absolute base URL of this API (`.../api/v1`), for a browser on another origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String))]
    pub endpoint: Option<String>,
    /// Bearer token for this upload's part URLs, status, complete and abort only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String))]
    pub token: Option<String>,
    /// When `token` stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = String))]
    pub token_expires_at: Option<String>,
}

/// `POST /uploads/{id}/parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignParts {
    /// 1-based part numbers, at most 100.
    pub part_numbers: Vec<u32>,
    /// Base64 SHA-256 per part number, signed into that part's URL.
    #[serde(default)]
    pub sha256: BTreeMap<u32, String>,
}

/// One signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedPart {
    /// 1-based part number.
    pub part_number: u32,
    /// Always `PUT`.
    pub method: String,
    /// Presigned URL.
    pub url: String,
    /// Headers that were signed and must be sent as they are.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: String,
}

/// Answer to `POST /uploads/{id}/parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedParts {
    /// One per part number asked for, in the same order.
    pub parts: Vec<SignedPart>,
}

/// Lifecycle of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Signed; bytes may be on their way.
    Pending,
    /// Verified and recorded as a file.
    Completed,
    /// Storage held something other than what was declared.
    Failed,
    /// Cancelled by its owner.
    Aborted,
    /// Abandoned past its window and cleaned up.
    Expired,
}

impl UploadState {
    /// Every state.
    pub const ALL: [UploadState; 5] =
        [UploadState::Pending, UploadState::Completed, UploadState::Failed, UploadState::Aborted, UploadState::Expired];

    /// The state as stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            UploadState::Pending => "pending",
            UploadState::Completed => "completed",
            UploadState::Failed => "failed",
            UploadState::Aborted => "aborted",
            UploadState::Expired => "expired",
        }
    }
}

impl std::fmt::Display for UploadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UploadState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UploadState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownName::new("state", s))
    }
}

/// A part the store already holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredPart {
    /// 1-based part number.
    pub part_number: u32,
    /// The store's ETag for the part.
    pub etag: String,
    /// Bytes stored.
    pub size: u64,
    /// Base64 SHA-256 the store verified for this part, when it was signed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `GET /uploads/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStatus {
    /// Upload id.
    pub id: String,
    /// Where it is in its lifecycle.
    pub state: UploadState,
    /// Sanitised name.
    pub name: String,
    /// Declared size.
    pub size: u64,
    /// Declared (normalised) content type.
    #[serde(rename = "type")]
    pub content_type: String,
    /// Object key.
    pub key: String,
    /// When the signing window closes.
    pub expires_at: String,
    /// How to send the bytes (freshly signed while pending).
    pub upload: UploadPlan,
    /// Whether every part must be signed with its SHA-256 (see [`CreateUpload::part_checksums`]).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub part_checksums: bool,
    /// Parts already stored (multipart only).
    pub parts: Vec<StoredPart>,
}

/// A part as given to `/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompletedPart {
    /// 1-based part number.
    pub part_number: u32,
    /// ETag the store answered the part PUT with.
    pub etag: String,
}

/// `POST /uploads/{id}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteUpload {
    /// The parts, for `S3Multipart`; absent for the other plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<CompletedPart>>,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileRecord {
    /// File id (the id of the upload that made it).
    pub id: String,
    /// Sanitised name.
    pub name: String,
    /// Size in bytes, as verified in storage.
    pub size: u64,
    /// Content type, as verified in storage.
    #[serde(rename = "type")]
    pub content_type: String,
    /// Object key.
    pub key: String,
    /// Base64 SHA-256 of the whole file, when known.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub sha256: Option<String>,
    /// The type the server saw in the file's first bytes, when it knows the
    /// format (`null` for formats without a signature, such as plain text,
    /// and when sniffing is off). Absent from older servers' answers.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub detected_type: Option<String>,
    /// Application data given at creation.
    pub meta: BTreeMap<String, String>,
    /// When it was completed.
    pub created_at: String,
    /// Owner id.
    pub owner: String,
}

/// 200 answer to `/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Completed {
    /// The recorded file.
    pub file: FileRecord,
}

/// `GET /files/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileDownload {
    /// The file.
    #[serde(flatten)]
    pub file: FileRecord,
    /// Presigned GET answering with `Content-Disposition: attachment`.
    pub download_url: String,
    /// When the URL stops working.
    pub download_expires_at: String,
}

/// `GET /files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileList {
    /// Newest first.
    pub files: Vec<FileRecord>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// `POST /uploads/batch`: several declarations in one request, so a folder
/// of small files costs one round trip to create instead of one per file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUploads {
    /// 1 to [`MAX_FILES_PER_BATCH`] declarations, each as `POST /uploads` takes it.
    pub files: Vec<CreateUpload>,
}

/// 200 answer to `POST /uploads/batch`: one outcome per declaration, in
/// the order they were given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedUploads {
    /// What `POST /uploads` would have answered for each declaration.
    pub uploads: Vec<CreateOutcome>,
}

/// One declaration's outcome in a batch: the created upload, or the error
/// body `POST /uploads` would have answered it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum CreateOutcome {
    /// Created: the same answer as a single create's 201.
    Created(Box<CreatedUpload>),
    /// Refused: `{"error": {"code", "message"}}`.
    Refused(ErrorBody),
}

/// `POST /uploads/batch/complete`: several uploads of one owner completed
/// in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteUploads {
    /// 1 to [`MAX_FILES_PER_BATCH`] uploads, each id once.
    pub uploads: Vec<CompleteOne>,
}

/// One upload to complete in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteOne {
    /// The upload id.
    pub id: String,
    /// The parts, for `S3Multipart`; absent for the other plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<CompletedPart>>,
}

/// 200 answer to `POST /uploads/batch/complete`: one outcome per upload, in
/// the order they were given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompletedUploads {
    /// What `POST /uploads/{id}/complete` would have answered for each.
    pub files: Vec<CompleteOutcome>,
}

/// One upload's outcome in a batch completion: the recorded file, or the
/// error body `POST /uploads/{id}/complete` would have answered it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum CompleteOutcome {
    /// Recorded (or recorded before: completion is idempotent).
    Completed(Completed),
    /// Not recorded: `{"error": {"code", "message"}}`.
    Refused(ErrorBody),
}

/// Every non-2xx body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable code.
    pub code: ErrorCode,
    /// For people: names the limit and the value.
    pub message: String,
}

/// Checks `meta` against the entry, key and value limits; the message names the limit.
pub fn check_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    check_meta_entries(meta.len(), meta.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// [`check_meta`] over `count` entries given as pairs, for callers that hold
/// no map (the wasm client reads them off a JS object; a `BTreeMap` would
/// grow its binary by several KB).
pub fn check_meta_entries<'a>(
    count: usize,
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    if count > MAX_META_ENTRIES {
        return Err(format!("meta has {count} entries, over the limit of {MAX_META_ENTRIES}"));
    }
    for (k, v) in entries {
        if k.is_empty() || k.len() > MAX_META_KEY_LEN {
            return Err(format!("meta key `{k}` must be 1 to {MAX_META_KEY_LEN} bytes"));
        }
        if v.len() > MAX_META_VALUE_LEN {
            return Err(format!("meta value of `{k}` is {} bytes, over the limit of {MAX_META_VALUE_LEN}", v.len()));
        }
    }
    Ok(())
}

/// Whether `s` is the standard base64 of a 32-byte digest (44 characters, one `=`).
pub fn is_base64_sha256(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 44
        && b[43] == b'='
        && b[..43].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        // The last data character carries 2 padding bits that must be zero.
        && b"AEIMQUYcgkosw048".contains(&b[42])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_upload_reads_the_contract_example() {
        let req: CreateUpload = serde_json::from_str(
            r#"{"name": "cat.png", "size": 123456, "type": "image/png", "meta": {"any": "strings"}}"#,
        )
        .unwrap();
        assert_eq!(req.content_type, "image/png");
        assert_eq!(req.meta["any"], "strings");
        let bare: CreateUpload = serde_json::from_str(r#"{"name": "a", "size": 1}"#).unwrap();
        assert_eq!(bare.content_type, "");
        assert!(serde_json::from_str::<CreateUpload>(r#"{"name": "a"}"#).is_err());
        assert!(serde_json::from_str::<CreateUpload>(r#"{"name": "a", "size": -1}"#).is_err());
    }

    #[test]
    fn plans_are_tagged_by_uploader() {
        let plan =
            UploadPlan::S3Multipart { upload_id: "u".into(), part_size: 5, part_count: 2, part_checksums: false };
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["uploader"], "S3Multipart");
        assert!(json.get("part_checksums").is_none(), "absent when false: {json}");
        assert_eq!(serde_json::from_value::<UploadPlan>(json).unwrap(), plan);
        let checked =
            UploadPlan::S3Multipart { upload_id: "u".into(), part_size: 5, part_count: 2, part_checksums: true };
        let json = serde_json::to_value(&checked).unwrap();
        assert_eq!(json["part_checksums"], true);
        assert_eq!(serde_json::from_value::<UploadPlan>(json).unwrap(), checked);
    }

    #[test]
    fn plans_read_by_their_tag_only() {
        let s3: UploadPlan = serde_json::from_str(
            r#"{"url": "http://s", "fields": {"key": "k"}, "uploader": "S3", "method": "POST", "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(
            s3,
            UploadPlan::S3 {
                method: "POST".into(),
                url: "http://s".into(),
                fields: BTreeMap::from([("key".into(), "k".into())])
            }
        );
        let chunked: UploadPlan =
            serde_json::from_str(r#"{"uploader": "Chunked", "url": "u", "chunk_size": 7, "headers": {}}"#).unwrap();
        assert_eq!(chunked, UploadPlan::Chunked { url: "u".into(), chunk_size: 7, headers: BTreeMap::new() });
        for bad in [
            r#"{"url": "http://s", "fields": {}, "method": "POST"}"#,
            r#"{"uploader": "S3", "url": "http://s", "fields": {}}"#,
            r#"{"uploader": "S3Multipart", "upload_id": "u", "part_size": 5}"#,
            r#"{"uploader": "Chunked", "url": "u", "chunk_size": 7}"#,
            r#"{"uploader": "s3", "method": "POST", "url": "http://s", "fields": {}}"#,
            r#"{"uploader": "S3Multipart", "upload_id": "u", "part_size": -5, "part_count": 1}"#,
            r#"["S3"]"#,
        ] {
            assert!(serde_json::from_str::<UploadPlan>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uploader_kind_is_the_plan_tag() {
        let plan = UploadPlan::Chunked { url: "u".into(), chunk_size: 1, headers: BTreeMap::new() };
        assert_eq!(serde_json::to_value(plan.kind()).unwrap(), serde_json::to_value(&plan).unwrap()["uploader"]);
        assert_eq!(plan.uploader(), "Chunked");
    }

    #[test]
    fn created_upload_reads_with_and_without_the_browser_additions() {
        let before: CreatedUpload = serde_json::from_str(
            r#"{"id": "1", "key": "k", "expires_at": "t", "complete_url": "/c",
                "upload": {"uploader": "S3Multipart", "upload_id": "u", "part_size": 5, "part_count": 1}}"#,
        )
        .unwrap();
        assert_eq!((before.uploader, before.token), (None, None));
        let now = CreatedUpload {
            uploader: Some(before.upload.kind()),
            endpoint: Some("https://x/api/v1".into()),
            token: Some("t".into()),
            token_expires_at: Some("e".into()),
            ..before
        };
        let json = serde_json::to_value(&now).unwrap();
        assert_eq!(json["uploader"], "S3Multipart");
        assert_eq!(json["uploader"], json["upload"]["uploader"]);
        assert_eq!(serde_json::from_value::<CreatedUpload>(json).unwrap(), now);
    }

    #[test]
    fn plan_kinds_and_states_keep_their_wire_names() {
        for kind in UploaderKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(kind.as_str().parse::<UploaderKind>(), Ok(kind));
        }
        for state in UploadState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(state.as_str().parse::<UploadState>(), Ok(state));
        }
        let req: CreateUpload = serde_json::from_str(r#"{"name": "a", "size": 1, "uploader": "Chunked"}"#).unwrap();
        assert_eq!(req.uploader, Some(UploaderKind::Chunked));
        assert!(serde_json::from_str::<CreateUpload>(r#"{"name": "a", "size": 1, "uploader": "s3"}"#).is_err());
        assert!("s3".parse::<UploaderKind>().unwrap_err().to_string().contains("`s3`"));
        assert!("Pending".parse::<UploadState>().is_err());
    }

    #[test]
    fn sign_parts_takes_string_part_numbers_as_keys() {
        let req: SignParts = serde_json::from_str(r#"{"part_numbers": [1, 2], "sha256": {"1": "x"}}"#).unwrap();
        assert_eq!(req.sha256[&1], "x");
    }

    #[test]
    fn file_download_is_flat() {
        let file = FileRecord {
            id: "1".into(),
            name: "a".into(),
            size: 1,
            content_type: "text/plain".into(),
            key: "k".into(),
            sha256: None,
            detected_type: Some("image/png".into()),
            meta: BTreeMap::new(),
            created_at: "t".into(),
            owner: "o".into(),
        };
        let json =
            serde_json::to_value(FileDownload { file, download_url: "u".into(), download_expires_at: "e".into() })
                .unwrap();
        assert_eq!(json["type"], "text/plain");
        assert_eq!(json["download_url"], "u");
        assert!(json["sha256"].is_null());
        assert_eq!(json["detected_type"], "image/png");
    }

    /// An answer from a server that predates `detected_type` still reads.
    #[test]
    fn a_file_record_without_detected_type_reads() {
        let old = r#"{"id": "1", "name": "a", "size": 1, "type": "text/plain", "key": "k", "sha256": null,
            "meta": {}, "created_at": "t", "owner": "o"}"#;
        let file: FileRecord = serde_json::from_str(old).unwrap();
        assert_eq!(file.detected_type, None);
        assert_eq!(file.content_type, "text/plain");
    }

    #[test]
    fn sha256_base64_shape() {
        assert!(is_base64_sha256("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="));
        assert!(!is_base64_sha256("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV="));
        assert!(!is_base64_sha256("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF="));
        assert!(!is_base64_sha256(""));
    }

    #[test]
    fn meta_limits() {
        let mut meta = BTreeMap::new();
        meta.insert("album".to_string(), "7".to_string());
        assert!(check_meta(&meta).is_ok());
        meta.insert("x".repeat(65), String::new());
        assert!(check_meta(&meta).unwrap_err().contains("64"));
    }
}
