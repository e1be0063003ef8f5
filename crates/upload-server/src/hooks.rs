//! Hooks for applications that embed the server: code of theirs that runs
//! before a file is recorded (and may refuse it: a virus scanner, a quota,
//! a check of the bytes) and after (a thumbnail job, a notification).
//!
//! ```no_run
//! use std::sync::Arc;
//! use upload_server::hooks::{FileCandidate, FileRecord, Refusal, UploadHooks};
//!
//! struct NoExecutables;
//!
//! #[async_trait::async_trait]
//! impl UploadHooks for NoExecutables {
//!     async fn before_record(&self, file: &FileCandidate) -> Result<(), Refusal> {
//!         if file.detected_type.as_deref() == Some("application/x-executable") {
//!             return Err(Refusal::reject("executables are not accepted here"));
//!         }
//!         Ok(())
//!     }
//!
//!     async fn after_record(&self, file: &FileRecord) {
//!         println!("{} recorded {} ({} bytes)", file.owner, file.name, file.size);
//!     }
//! }
//!
//! # async fn run(state: upload_server::AppState) {
//! state.set_hooks(Arc::new(NoExecutables));
//! let router = upload_server::app(state);
//! # let _ = router; }
//! ```
//!
//! `before_record` runs at `/complete` once the stored object has been
//! verified against the declaration and its type detected, and before the
//! file is recorded. [`Refusal::reject`] fails the upload as a mismatch
//! does (the object is deleted, the upload becomes `failed`, the answer is
//! 422 `refused_by_app` with the hook's message); [`Refusal::unavailable`]
//! (a scanner that did not answer) leaves the upload pending and answers
//! 503 `storage_unavailable`, so the client completes again later. To look
//! at the bytes, a hook reads the object at `key` through the state's store
//! ([`AppState::storage`](crate::AppState::storage): `read_prefix`, or a
//! `presign_get` URL to fetch); it keeps a clone of the state for that,
//! which makes a cycle (state, hooks, state): harmless for a state that
//! lives as long as the process.
//!
//! `after_record` runs once for every file recorded, on a task of its own
//! after the transaction committed, so a slow or failing hook never delays
//! or changes the answer. It is not retried and is lost if the process
//! stops first.

use std::collections::BTreeMap;

use async_trait::async_trait;
pub use upload_core::wire::FileRecord;
use upload_core::wire::UploaderKind;

/// A file about to be recorded: verified in storage, not yet in the database.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileCandidate {
    /// The upload's id (the file will have the same).
    pub id: String,
    /// Owner id.
    pub owner: String,
    /// Object key.
    pub key: String,
    /// Sanitised name.
    pub name: String,
    /// Size in bytes, as verified in storage.
    pub size: u64,
    /// Declared content type, as verified in storage.
    pub content_type: String,
    /// The type the first bytes show, when sniffing is on and found one.
    pub detected_type: Option<String>,
    /// Base64 SHA-256, when something verified one.
    pub sha256: Option<String>,
    /// Application data given at creation.
    pub meta: BTreeMap<String, String>,
    /// How the bytes were sent.
    pub plan: UploaderKind,
}

/// Why a hook will not let a file be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    kind: RefusalKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    Reject,
    Unavailable,
}

impl Refusal {
    /// The file is refused for good: the upload fails, its object is
    /// deleted, and the client gets 422 `refused_by_app` with `message`.
    pub fn reject(message: impl Into<String>) -> Self {
        Refusal { kind: RefusalKind::Reject, message: message.into() }
    }

    /// The hook cannot decide now (its scanner did not answer): the upload
    /// stays pending and the client gets 503 `storage_unavailable`, so it
    /// completes again later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Refusal { kind: RefusalKind::Unavailable, message: message.into() }
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn kind(&self) -> RefusalKind {
        self.kind
    }
}

/// An application's code around recording a file; both methods do nothing
/// by default. Set with [`AppState::set_hooks`](crate::AppState::set_hooks).
#[async_trait]
pub trait UploadHooks: Send + Sync + 'static {
    /// Runs before the file is recorded; an `Err` keeps it from being recorded.
    async fn before_record(&self, _file: &FileCandidate) -> Result<(), Refusal> {
        Ok(())
    }

    /// Runs once the file is recorded, on a task of its own.
    async fn after_record(&self, _file: &FileRecord) {}
}

/// The hooks of a state nobody gave any.
pub(crate) struct NoHooks;

impl UploadHooks for NoHooks {}
