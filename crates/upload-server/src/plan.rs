//! An upload's plan as the server keeps it: each kind with its own fields.

use upload_core::wire::UploaderKind;

use crate::storage::{Storage, StorageError};

/// How an upload's bytes are sent, with what the store made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredPlan {
    /// One POST of a signed form; nothing in the store until it arrives.
    S3,
    /// A multipart upload in the store.
    S3Multipart {
        /// The store's multipart upload id.
        upload_id: String,
        /// Size of every part but the last.
        part_size: u64,
        /// Number of parts.
        part_count: u32,
        /// Every part must be signed with its SHA-256.
        part_checksums: bool,
    },
    /// A resumable session of the store.
    Chunked {
        /// The store's session id.
        session: String,
    },
}

impl StoredPlan {
    /// The kind, as on the wire.
    pub(crate) fn kind(&self) -> UploaderKind {
        match self {
            StoredPlan::S3 => UploaderKind::S3,
            StoredPlan::S3Multipart { .. } => UploaderKind::S3Multipart,
            StoredPlan::Chunked { .. } => UploaderKind::Chunked,
        }
    }

    /// Whether the store checks the whole file's declared SHA-256 (or
    /// reports the digest of what it holds) for this plan. A multipart
    /// upload's digest is a composite of the parts', so a declared
    /// whole-file digest is checked by nobody.
    pub(crate) fn whole_file_digest(&self) -> bool {
        !matches!(self, StoredPlan::S3Multipart { .. })
    }

    /// Drops what the store holds for the plan before an object exists
    /// (a multipart upload and its parts, a session's bytes); succeeds if
    /// it is already gone.
    pub(crate) async fn release(&self, storage: &dyn Storage, key: &str) -> Result<(), StorageError> {
        match self {
            StoredPlan::S3 => Ok(()),
            StoredPlan::S3Multipart { upload_id, .. } => storage.abort_multipart(key, upload_id).await,
            StoredPlan::Chunked { session } => storage.abort_chunked(session).await,
        }
    }

    /// Drops everything the store holds for the upload: [`release`](Self::release), then the object.
    pub(crate) async fn discard(&self, storage: &dyn Storage, key: &str) -> Result<(), StorageError> {
        self.release(storage, key).await?;
        storage.delete(key).await
    }
}
