//! PostgreSQL: one database every instance shares, on any machine.
//! Migrations: `migrations-postgres/`.
//!
//! Each request is a statement or a short transaction on a pool connection,
//! but for new uploads, which `writer` commits in batches (group commit),
//! as SQLite's writer does. Under READ COMMITTED a "count, then insert"
//! would let two creates both see room, so a batch first takes its owners'
//! `owner_pending` row locks (an upsert) and holds them until its inserts
//! commit: every create of one owner, on any instance, decides after the
//! ones before it committed. State changes are compare-and-set
//! UPDATEs (a second one waits for the first's row lock, then finds the row
//! no longer pending), and the outbox is claimed `FOR UPDATE SKIP LOCKED`.
//!
//! Deadlocks and serialization failures (40P01, 40001: possible where
//! transactions meet on the counter rows, or under a stricter
//! `default_transaction_isolation`) roll a transaction back whole, so the
//! writes that can meet them (the writer's batches, completing, state
//! changes, deleting a file, rate limits' takes) are run again a few times
//! (`failure::retry_contended`) before the request answers 503.
//!
//! Cancel-safety: multi-statement work runs in sqlx `Transaction`s; one
//! dropped before its commit is rolled back when its connection goes back
//! to the pool, and a connection dropped mid-statement is drained (or
//! closed) by sqlx before it is used again.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgPool};
use upload_core::wire::UploadState;

use super::failure::retry_contended;
use super::group_commit::NewUpload;
use super::rows::{FILE_COLUMNS, UPLOAD_COLUMNS, bind_file};
use super::{ConnectError, Database, FileRow, OutboxRow, PoolSettings, UploadRow, WriteError, redacted};
use crate::id::UploadId;
use writer::Inserts;

mod writer;

/// A pooled connection idle this long is pinged before a request gets it.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

/// The PostgreSQL database.
#[derive(Debug)]
pub(super) struct PostgresDb {
    pool: PgPool,
    inserts: Inserts,
}

impl PostgresDb {
    /// Connects and migrates (sqlx takes an advisory lock for it, so
    /// instances starting at once migrate one after another). A database
    /// that does not answer is answered 503 after `pool.acquire_timeout`,
    /// the wait for a connection, not after the whole request timeout.
    pub(super) async fn connect(url: &str, pool: PoolSettings) -> Result<Self, ConnectError> {
        let target = redacted(url);
        let unreachable = |source| ConnectError::Unreachable { target: target.clone(), source };
        let options = PgConnectOptions::from_str(url).map_err(unreachable)?.application_name("upload-server");
        // One connection first, for its own error: the pool retries a
        // refused connection until its timeout and then says only that it
        // timed out, where "connection refused" says what is wrong.
        sqlx::PgConnection::connect_with(&options).await.map_err(unreachable)?.close().await.map_err(unreachable)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            // A connection the database dropped (restart, failover) is found
            // out before a request gets it, not by the request failing; but
            // only one that sat idle (a ping per request is a round trip
            // each), since a busy one would have failed its last request.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await
            .map_err(unreachable)?;
        sqlx::migrate!("./migrations-postgres")
            .run(&pool)
            .await
            .map_err(|e| ConnectError::from_migrate(target.clone(), e))?;
        let inserts = Inserts::spawn(pool.clone());
        Ok(PostgresDb { pool, inserts })
    }
}

#[async_trait]
impl Database for PostgresDb {
    async fn count_pending(&self, owner: &str, now_ms: i64, limit: u32) -> Result<u64, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE owner = $1 AND state = 'pending' AND expires_at > $2 \
             LIMIT $3) AS p",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        Ok(count as u64)
    }

    async fn insert_upload(&self, row: UploadRow, max_pending: u32, now_ms: i64) -> Result<bool, WriteError> {
        self.inserts.insert(NewUpload { row, max_pending, now_ms }).await
    }

    fn writer_queue_depth(&self) -> usize {
        self.inserts.queue_depth()
    }

    async fn upload(&self, owner: &str, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND owner = $2"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
    }

    async fn finish_pending(
        &self,
        owner: &str,
        id: &UploadId,
        to: UploadState,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = retry_contended(|| {
            sqlx::query(
                "UPDATE uploads SET state = $1, updated_at = $2 WHERE id = $3 AND owner = $4 AND state = 'pending'",
            )
            .bind(to.as_str())
            .bind(now_ms)
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One statement, so atomic and cancel-safe without a transaction: the
    /// file is inserted only from the row the compare-and-set changed.
    async fn complete(&self, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "WITH done AS (UPDATE uploads SET state = 'completed', updated_at = $1 \
               WHERE id = $2 AND owner = $3 AND state = 'pending' RETURNING id) \
             INSERT INTO files ({FILE_COLUMNS}) \
             SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM done RETURNING id"
        );
        let recorded = retry_contended(|| {
            bind_file(sqlx::query(&sql).bind(now_ms).bind(&file.id).bind(&file.owner), file).fetch_optional(&self.pool)
        })
        .await?;
        Ok(recorded.is_some())
    }

    async fn file(&self, owner: &str, id: &UploadId) -> Result<Option<FileRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1 AND owner = $2"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
    }

    async fn list_files(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<(i64, &str)>,
    ) -> Result<Vec<FileRow>, sqlx::Error> {
        // Ids compare bytewise (COLLATE "C"), as on SQLite and as the index is built.
        let sql = match cursor {
            Some(_) => format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE owner = $1 \
                 AND (created_at < $2 OR (created_at = $2 AND id COLLATE \"C\" < $3)) \
                 ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $4"
            ),
            None => format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE owner = $1 ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $2"
            ),
        };
        let mut query = sqlx::query_as(&sql).bind(owner);
        if let Some((created_at, id)) = cursor {
            query = query.bind(created_at).bind(id);
        }
        query.bind(i64::from(limit)).fetch_all(&self.pool).await
    }

    async fn delete_file(&self, owner: &str, id: &UploadId) -> Result<bool, sqlx::Error> {
        let done = retry_contended(|| {
            sqlx::query("DELETE FROM files WHERE id = $1 AND owner = $2").bind(id).bind(owner).execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn overdue_pending(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'pending' AND expires_at < $1 \
             ORDER BY expires_at LIMIT $2"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
    }

    async fn claim_expired(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = retry_contended(|| {
            sqlx::query(
                "UPDATE uploads SET state = 'expired', cleanup_pending = TRUE, updated_at = $1 \
                 WHERE id = $2 AND state = 'pending'",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn stale_cleanups(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE cleanup_pending AND updated_at < $1 ORDER BY updated_at LIMIT $2"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
    }

    async fn touch_cleanup(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2 AND cleanup_pending AND updated_at < $3")
                .bind(now_ms)
                .bind(id)
                .bind(now_ms - 1000)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_cleanup(&self, id: &UploadId) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE uploads SET cleanup_pending = FALSE WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn take_tokens(
        &self,
        owner: &str,
        cost: f64,
        may_refuse: bool,
        rate: f64,
        burst: f64,
        now_ms: i64,
    ) -> Result<bool, WriteError> {
        // As on SQLite: a new owner starts full; an existing bucket refills
        // for the time since (never backwards), and is only updated with a
        // token to take unless a debt is allowed. Concurrent requests of one
        // owner queue on the row, each refilling from the last one's state.
        let taken = retry_contended(|| {
            sqlx::query(
                "INSERT INTO rate_buckets (owner, tokens, at_ms) VALUES ($1, $3 - $5, $4) \
                 ON CONFLICT (owner) DO UPDATE SET \
                   tokens = LEAST($3, rate_buckets.tokens + GREATEST($4 - rate_buckets.at_ms, 0) * $2 / 1000.0) - $5, \
                   at_ms = GREATEST(rate_buckets.at_ms, $4) \
                 WHERE NOT $6 OR LEAST($3, rate_buckets.tokens + GREATEST($4 - rate_buckets.at_ms, 0) * $2 / 1000.0) >= 1",
            )
            .bind(owner)
            .bind(rate)
            .bind(burst)
            .bind(now_ms)
            .bind(cost)
            .bind(may_refuse)
            .execute(&self.pool)
        })
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn forget_full_buckets(&self, rate: f64, burst: f64, now_ms: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM rate_buckets WHERE tokens + GREATEST($3 - at_ms, 0) * $1 / 1000.0 >= $2")
            .bind(rate)
            .bind(burst)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Answers, and is not a read-only standby (where every write would fail).
    async fn ping(&self) -> Result<(), sqlx::Error> {
        if self.inserts.is_closed() {
            return Err(sqlx::Error::Protocol("the writer task has stopped".to_owned()));
        }
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&self.pool).await?;
        if standby {
            return Err(sqlx::Error::Protocol("the database is a read-only standby".to_owned()));
        }
        Ok(())
    }

    async fn set_webhooks_enabled(&self, on: bool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE webhook_settings SET enabled = $1").bind(on).execute(&self.pool).await?;
        Ok(())
    }

    async fn claim_events(
        &self,
        deliverer: &str,
        now_ms: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, sqlx::Error> {
        // SKIP LOCKED: rows another deliverer is claiming right now are left
        // to it (a plain subquery would let both pick the same rows, and
        // the UPDATE would not look at the lease again).
        let mut rows: Vec<OutboxRow> = sqlx::query_as(
            "UPDATE webhook_outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN ( \
               SELECT id FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL \
               AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until <= $3) \
               ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, event, data, created_at, attempts",
        )
        .bind(deliverer)
        .bind(lease_until)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rows)
    }

    async fn finish_attempt(
        &self,
        id: &str,
        deliverer: &str,
        now_ms: i64,
        outcome: Result<(), (String, Option<i64>)>,
    ) -> Result<(), sqlx::Error> {
        let query = match &outcome {
            Ok(()) => sqlx::query(
                "UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, claimed_by = NULL, \
                 claimed_until = NULL, last_error = NULL WHERE id = $2 AND claimed_by = $3",
            )
            .bind(now_ms)
            .bind(id)
            .bind(deliverer),
            Err((error, Some(retry_at))) => sqlx::query(
                "UPDATE webhook_outbox SET next_attempt_at = $1, attempts = attempts + 1, claimed_by = NULL, \
                 claimed_until = NULL, last_error = $4 WHERE id = $2 AND claimed_by = $3",
            )
            .bind(*retry_at)
            .bind(id)
            .bind(deliverer)
            .bind(error.as_str()),
            Err((error, None)) => sqlx::query(
                "UPDATE webhook_outbox SET gave_up_at = $1, attempts = attempts + 1, claimed_by = NULL, \
                 claimed_until = NULL, last_error = $4 WHERE id = $2 AND claimed_by = $3",
            )
            .bind(now_ms)
            .bind(id)
            .bind(deliverer)
            .bind(error.as_str()),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn events_due(&self, now_ms: i64) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL \
             AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1))",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
    }

    async fn undelivered_events(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL")
            .fetch_one(&self.pool)
            .await
    }
}
