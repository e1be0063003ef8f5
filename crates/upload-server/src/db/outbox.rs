//! The webhook outbox (migration 0007): its rows are written by triggers in
//! the transactions that change state; these are the deliverer's queries.
//! A row is claimed with a lease before it is sent, so one deliverer sends
//! it at a time however many instances share the database.

use super::Db;

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

impl Db {
    /// Turns writing events on or off for this database.
    pub(crate) async fn set_webhooks_enabled(&self, on: bool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE webhook_settings SET enabled = ?").bind(on).execute(&self.write).await?;
        Ok(())
    }

    /// Claims up to `limit` due events for `deliverer` until `lease_until`
    /// (unix ms), oldest first: due, neither delivered nor given up, and
    /// not under another deliverer's live lease.
    pub(crate) async fn claim_events(
        &self,
        deliverer: &str,
        now_ms: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let mut rows: Vec<OutboxRow> = sqlx::query_as(
            "UPDATE webhook_outbox SET claimed_by = ?, claimed_until = ? WHERE id IN ( \
               SELECT id FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL \
               AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) \
               ORDER BY created_at LIMIT ?) \
             RETURNING id, event, data, created_at, attempts",
        )
        .bind(deliverer)
        .bind(lease_until)
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.write)
        .await?;
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rows)
    }

    /// Records the outcome of an attempt by `deliverer` (only while it
    /// still holds the lease): delivered, or the next attempt at `retry_at`,
    /// or given up when that is `None`.
    pub(crate) async fn finish_attempt(
        &self,
        id: &str,
        deliverer: &str,
        now_ms: i64,
        outcome: Result<(), (String, Option<i64>)>,
    ) -> Result<(), sqlx::Error> {
        let query = match &outcome {
            Ok(()) => sqlx::query(
                "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1, claimed_by = NULL, \
                 claimed_until = NULL, last_error = NULL WHERE id = ? AND claimed_by = ?",
            )
            .bind(now_ms),
            Err((error, Some(retry_at))) => sqlx::query(
                "UPDATE webhook_outbox SET next_attempt_at = ?, attempts = attempts + 1, claimed_by = NULL, \
                 claimed_until = NULL, last_error = ? WHERE id = ? AND claimed_by = ?",
            )
            .bind(*retry_at)
            .bind(error.as_str()),
            Err((error, None)) => sqlx::query(
                "UPDATE webhook_outbox SET gave_up_at = ?, attempts = attempts + 1, claimed_by = NULL, \
                 claimed_until = NULL, last_error = ? WHERE id = ? AND claimed_by = ?",
            )
            .bind(now_ms)
            .bind(error.as_str()),
        };
        query.bind(id).bind(deliverer).execute(&self.write).await?;
        Ok(())
    }

    /// Whether any event is due and unclaimed (a read, for the deliverer's polls).
    pub(crate) async fn events_due(&self, now_ms: i64) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL \
             AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?))",
        )
        .bind(now_ms)
        .bind(now_ms)
        .fetch_one(&self.read)
        .await
    }

    /// Events neither delivered nor given up (for `/metrics`).
    pub(crate) async fn undelivered_events(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL")
            .fetch_one(&self.read)
            .await
    }
}
