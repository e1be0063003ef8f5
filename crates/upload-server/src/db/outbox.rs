//! The webhook outbox's rows. Its rows are written by triggers in the
//! transactions that change state (both databases' migrations); the
//! deliverer's queries are [`super::Database`]'s `claim_events`,
//! `finish_attempt`, `events_due`. A row is claimed with a lease before it
//! is sent, so one deliverer sends it at a time however many instances
//! share the database.

/// One event to deliver.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct OutboxRow {
    /// `msg_<hex>`: the `webhook-id`, the same on every attempt.
    pub(crate) id: String,
    /// `file.completed`, `file.deleted`, `upload.failed`, `upload.expired`.
    pub(crate) event: String,
    /// The JSON object of the body's `data`.
    pub(crate) data: String,
    /// Unix ms of the change.
    pub(crate) created_at: i64,
    /// Attempts made before this one.
    pub(crate) attempts: i64,
}
