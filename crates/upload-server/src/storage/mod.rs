//! The object store seam.
//!
//! Handlers talk to storage only through [`Storage`]. Signing is never
//! silently weaker than asked: a backend that cannot sign a checksum into a
//! URL fails with [`StorageError::NotSupported`] instead of dropping it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use time::OffsetDateTime;
use upload_core::wire::StoredPart;

use crate::error::Chain;

pub mod local;
pub mod post_policy;
pub mod s3;

/// Any error a backend passes on as the cause of a [`StorageError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Storage failures, by what the caller can do about them. Each keeps the
/// error it comes from as its [`source`](std::error::Error::source), and its
/// message includes the whole chain, so one log line says everything.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object or multipart upload does not exist.
    #[error("not found in storage")]
    NotFound,
    /// The store refused the request as invalid (bad part list, wrong ETag...).
    #[error("the store refused the request: {0}")]
    Rejected(String),
    /// The store did not answer, or answered 5xx.
    #[error("the store is unavailable: {}", Chain(&**source))]
    Unavailable {
        /// What failed.
        source: BoxError,
    },
    /// The backend cannot do what was asked as strictly as it was asked.
    #[error("not supported by this storage backend: {0}")]
    NotSupported(&'static str),
    /// Anything else (misconfiguration, credentials, a file system error, a bug).
    #[error("{context}: {}", Chain(&**source))]
    Other {
        /// What the backend was doing.
        context: &'static str,
        /// What failed.
        source: BoxError,
    },
}

impl StorageError {
    /// Wraps an error as [`StorageError::Other`] with what was being done:
    /// `.map_err(StorageError::other("reading a part"))`.
    pub fn other<E: Into<BoxError>>(context: &'static str) -> impl FnOnce(E) -> StorageError {
        move |e| StorageError::Other { context, source: e.into() }
    }

    /// [`StorageError::Unavailable`] from its cause.
    pub fn unavailable(source: impl Into<BoxError>) -> StorageError {
        StorageError::Unavailable { source: source.into() }
    }
}

/// A form for a browser POST upload.
#[derive(Debug, Clone)]
pub struct PresignedForm {
    /// Where to POST.
    pub url: String,
    /// Fields to send before the file.
    pub fields: BTreeMap<String, String>,
}

/// A presigned request: method, URL and the headers that were signed.
#[derive(Debug, Clone)]
pub struct PresignedRequest {
    /// URL with the signature in its query.
    pub url: String,
    /// Headers the client must send exactly.
    pub headers: BTreeMap<String, String>,
}

/// What the store says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bytes stored.
    pub size: u64,
    /// Content-Type stored with the object.
    pub content_type: Option<String>,
    /// Base64 SHA-256 the store verified, whole-object or composite, when it has one.
    pub checksum_sha256: Option<String>,
}

/// What a POST form must pin down.
#[derive(Debug, Clone)]
pub struct PostTarget<'a> {
    /// Exact key.
    pub key: &'a str,
    /// Exact Content-Type.
    pub content_type: &'a str,
    /// Exact size: the policy's `content-length-range` is `[size, size]`.
    pub size: u64,
    /// Base64 SHA-256 the store must verify, when known.
    pub sha256: Option<&'a str>,
    /// When the form stops working.
    pub expires_at: OffsetDateTime,
}

/// One part of a multipart upload, to sign.
#[derive(Debug, Clone)]
pub struct PartTarget<'a> {
    /// Object key.
    pub key: &'a str,
    /// The store's multipart upload id.
    pub upload_id: &'a str,
    /// 1-based part number.
    pub part_number: u32,
    /// Exact length of the part.
    pub length: u64,
    /// Base64 SHA-256 the store must verify, when known.
    pub sha256: Option<&'a str>,
}

/// Object storage as the server needs it: signing for browsers, and checking
/// what arrived. One implementation per backend: `s3`, and `local`, the
/// embedded default.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Signs a POST form whose policy allows exactly this object.
    async fn presign_post(&self, target: &PostTarget<'_>) -> Result<PresignedForm, StorageError>;

    /// Starts a multipart upload and returns the store's upload id. With
    /// `part_checksums`, every part will carry a SHA-256 (S3 needs to know
    /// at creation: `ChecksumAlgorithm=SHA256`).
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        part_checksums: bool,
    ) -> Result<String, StorageError>;

    /// Signs a PUT of one part of `length` bytes; a checksum given is signed
    /// in, so the store refuses other bytes. The local backend also pins the
    /// length; S3 cannot (a presigned UploadPart takes any length), so part
    /// sizes are checked against the plan at completion.
    async fn presign_part(&self, part: &PartTarget<'_>, expires_in: Duration)
    -> Result<PresignedRequest, StorageError>;

    /// The parts the store holds, ascending by part number.
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>, StorageError>;

    /// Assembles the parts into the object.
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[StoredPart]) -> Result<(), StorageError>;

    /// Drops a multipart upload and its parts; succeeds if it is already gone.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError>;

    /// Size and type of an object, or `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;

    /// [`Storage::head`] for completing a single-POST upload: from now on
    /// the store refuses writes to `key` through forms already signed, so
    /// what was verified stays what is stored. The embedded store can; S3
    /// cannot revoke a presigned POST before it expires, so there it is
    /// `head` (the mitigations are in docs/security.md).
    async fn head_sealed(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.head(key).await
    }

    /// The first `len` bytes of an object (all of it when shorter; empty for
    /// an empty object), [`StorageError::NotFound`] when there is none.
    /// Completion reads the start of every file to see its real type
    /// (`UPLOAD_SNIFF`), so this must cost one small read, never the whole
    /// object: S3 asks for a byte range.
    async fn read_prefix(&self, key: &str, len: u64) -> Result<Vec<u8>, StorageError>;

    /// Deletes an object; succeeds if it is already gone. The embedded
    /// store also refuses forms signed for `key` from then on.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Opens a resumable session for the `Chunked` plan (consecutive
    /// `Content-Range` PUTs answered with 308 until the last); returns its id.
    async fn create_chunked(&self, _key: &str, _content_type: &str, _size: u64) -> Result<String, StorageError> {
        Err(StorageError::NotSupported("Chunked uploads"))
    }

    /// Drops a `Chunked` session and the bytes it holds; succeeds if it is
    /// already gone (and so for a backend that never opens sessions).
    async fn abort_chunked(&self, _session: &str) -> Result<(), StorageError> {
        Ok(())
    }

    /// Signs the session URL of a `Chunked` upload.
    async fn presign_chunked(
        &self,
        _session: &str,
        _size: u64,
        _expires_at: OffsetDateTime,
    ) -> Result<PresignedRequest, StorageError> {
        Err(StorageError::NotSupported("Chunked uploads"))
    }

    /// Signs a GET answering with this `Content-Disposition`.
    async fn presign_get(
        &self,
        key: &str,
        content_disposition: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError>;

    /// The routes a backend serves itself, for the URLs it signs (the
    /// embedded store's forms, parts, sessions and downloads), usable from
    /// a browser on `origins`; [`app`](crate::app) merges them, so a state
    /// built with [`AppState::new`](crate::AppState::new) serves them too.
    /// `None` for a store that answers its URLs itself, as S3 does.
    fn router(self: Arc<Self>, _origins: &[String]) -> Option<Router> {
        None
    }

    /// Periodic upkeep, run by the sweeper (the embedded store removes
    /// temporary files that crashed writes left behind).
    async fn housekeeping(&self) {}
}
