//! SQLite, the embedded default: one file beside the server, or one file
//! several instances on one machine share.
//!
//! Split by concern: this module (the queries, and completing an upload),
//! `writer` (the group-commit writer of new uploads), `checkpoint` (the WAL
//! checkpointer beside it). Migrations: `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use upload_core::wire::UploadState;

use super::group_commit::NewUpload;
use super::rows::{FILE_COLUMNS, UPLOAD_COLUMNS, bind_file};
use super::{ConnectError, Database, FileRow, OutboxRow, UploadRow, WriteError, redacted};
use crate::id::UploadId;
use checkpoint::{CHECKPOINT_EVERY, checkpoint_wal};
use writer::{Inserts, Take};

mod checkpoint;
mod writer;

/// The SQLite database.
///
/// SQLite has one writer at a time. Rather than letting several connections
/// fight for the write lock (and sleep in the busy handler, which is what
/// makes p99 latencies explode under load), every write goes through one
/// connection, and new uploads, the hot path, and rate limits' token takes
/// (one per API request) are batched by a writer task:
/// whatever arrives while a transaction commits goes into the next one
/// (group commit). Reads use a pool of their own; WAL lets them run beside
/// the writer.
#[derive(Debug)]
pub(super) struct SqliteDb {
    read: SqlitePool,
    write: SqlitePool,
    inserts: Inserts,
}

/// How every write transaction begins: with the write lock taken at once.
/// A deferred transaction that reads first and then writes cannot wait for
/// another writer (the WAL checkpointer's RESTART, another server instance):
/// SQLite fails it with "database is locked" at once, since its snapshot
/// would be stale. An immediate one waits in the busy handler instead.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

impl SqliteDb {
    /// Opens (creating if missing) and migrates the database. WAL mode, so
    /// readers never wait for the writer.
    pub(super) async fn connect(url: &str) -> Result<Self, ConnectError> {
        let target = redacted(url);
        let unreachable = |source| ConnectError::Unreachable { target: target.clone(), source };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(unreachable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // The writer never checkpoints: a checkpoint copies the WAL into the
        // database and syncs it, tens of milliseconds during which every
        // create would wait on the writer. A connection of its own does it
        // beside the writer (PASSIVE checkpoints take no write lock).
        // No ping before a connection is handed out (sqlx's default): the
        // database is a local file, not a server that may have hung up, and
        // the ping is a round trip to the connection's worker thread (two
        // context switches) before every batch and every read.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            // Once the WAL starts over, its file is cut back to 64 MiB.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0").pragma("journal_size_limit", "67108864"))
            .await
            .map_err(unreachable)?;
        sqlx::migrate!("./migrations").run(&write).await.map_err(|e| ConnectError::from_migrate(target.clone(), e))?;
        // A RESTART checkpoint holds new writes back while it waits for older
        // readers to finish: it waits a quarter of a second at most, then
        // gives up until the next tick.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().busy_timeout(CHECKPOINT_EVERY))
            .await
            .map_err(unreachable)?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(unreachable)?;
        let inserts = Inserts::spawn(write.clone());
        tokio::spawn(checkpoint_wal(checkpoints, inserts.in_use()));
        Ok(SqliteDb { read, write, inserts })
    }
}

#[async_trait]
impl Database for SqliteDb {
    /// New uploads queued for the writer's next batch (for `/metrics`).
    fn writer_queue_depth(&self) -> usize {
        self.inserts.queue_depth()
    }

    /// Uploads of this owner still pending and inside their window.
    /// Counts at most `limit`: callers only need to know whether the limit is reached.
    async fn count_pending(&self, owner: &str, now_ms: i64, limit: u32) -> Result<u64, sqlx::Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE owner = ? AND state = 'pending' AND expires_at > ? LIMIT ?)",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_one(&self.read)
        .await?;
        Ok(count as u64)
    }

    /// Inserts a pending upload unless the owner already has `max_pending`
    /// pending ones; the count and the insert are one statement, so
    /// concurrent requests cannot overshoot. Returns whether it was inserted.
    async fn insert_upload(&self, row: UploadRow, max_pending: u32, now_ms: i64) -> Result<bool, WriteError> {
        self.inserts.insert(NewUpload { row, max_pending, now_ms }).await
    }

    /// One upload of this owner.
    async fn upload(&self, owner: &str, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ? AND owner = ?"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.read)
            .await
    }

    /// Moves a pending upload of this owner to `to`. Returns false when it
    /// was no longer pending.
    async fn finish_pending(
        &self,
        owner: &str,
        id: &UploadId,
        to: UploadState,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE uploads SET state = ?, updated_at = ? WHERE id = ? AND owner = ? AND state = 'pending'",
        )
        .bind(to.as_str())
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the upload completed and records its file, in one transaction.
    /// Returns false (and changes nothing) when the upload was no longer pending.
    ///
    /// Cancel-safe: the transaction runs on a task of its own. The handler's
    /// future is dropped when its client disconnects, and a drop between
    /// `BEGIN` and `COMMIT` (sent as one string, sqlx does not know of the
    /// transaction) would put the one write connection back in the pool
    /// inside an open transaction: every later write would "succeed" inside
    /// it and be rolled back, and the write lock would stay held. On its own
    /// task it always runs to COMMIT or ROLLBACK.
    async fn complete(&self, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error> {
        let (write, file) = (self.write.clone(), file.clone());
        tokio::spawn(async move { complete_in(&write, &file, now_ms).await })
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("the complete task failed: {e}")))?
    }

    /// One file of this owner.
    async fn file(&self, owner: &str, id: &UploadId) -> Result<Option<FileRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ? AND owner = ?"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.read)
            .await
    }

    /// A page of this owner's files, newest first, after `cursor` (the
    /// `(created_at, id)` of the last file of the previous page).
    async fn list_files(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<(i64, &str)>,
    ) -> Result<Vec<FileRow>, sqlx::Error> {
        let (created_at, id) = cursor.unwrap_or((i64::MAX, ""));
        sqlx::query_as(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE owner = ? AND (created_at < ? OR (created_at = ? AND id < ?)) \
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(owner)
        .bind(created_at)
        .bind(created_at)
        .bind(if cursor.is_some() { id } else { "\u{10FFFF}" })
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
    }

    /// Deletes a file record. Returns whether there was one.
    async fn delete_file(&self, owner: &str, id: &UploadId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM files WHERE id = ? AND owner = ?")
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending uploads whose window closed before `before_ms`, oldest first.
    async fn overdue_pending(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'pending' AND expires_at < ? ORDER BY expires_at LIMIT ?"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
    }

    /// Claims an overdue pending upload for cleanup (pending -> expired,
    /// cleanup pending). Returns false when another request or instance got
    /// there first.
    async fn claim_expired(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE uploads SET state = 'expired', cleanup_pending = 1, updated_at = ? WHERE id = ? AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Expired uploads whose cleanup was claimed before `before_ms` and never finished.
    async fn stale_cleanups(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE cleanup_pending = 1 AND updated_at < ? ORDER BY updated_at LIMIT ?"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
    }

    /// Re-claims a stale cleanup (compare-and-set on its timestamp).
    async fn touch_cleanup(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("UPDATE uploads SET updated_at = ? WHERE id = ? AND cleanup_pending = 1 AND updated_at < ?")
                .bind(now_ms)
                .bind(id)
                .bind(now_ms - 1000)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks an upload's storage clean.
    async fn finish_cleanup(&self, id: &UploadId) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE uploads SET cleanup_pending = 0 WHERE id = ?").bind(id).execute(&self.write).await?;
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
        // Through the group-commit writer: one take per API request would
        // otherwise be a commit of its own on the one write connection.
        self.inserts.take(Take { owner: owner.to_owned(), cost, may_refuse, rate, burst, now_ms }).await
    }

    async fn forget_full_buckets(&self, rate: f64, burst: f64, now_ms: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM rate_buckets WHERE tokens + MAX(?3 - at_ms, 0) * ?1 / 1000.0 >= ?2")
            .bind(rate)
            .bind(burst)
            .bind(now_ms)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    /// Checks the database answers, readers and the writer: a health check
    /// that only read would stay green while no write can succeed.
    async fn ping(&self) -> Result<(), sqlx::Error> {
        if self.inserts.is_closed() {
            return Err(sqlx::Error::Protocol("the writer task has stopped".to_owned()));
        }
        sqlx::query("SELECT 1").fetch_one(&self.read).await?;
        // The write connection, as a write would get it (behind queued
        // writes, but no longer than a write itself would wait), must be able
        // to take the write lock: not closed, not stuck inside a transaction.
        let mut conn = tokio::time::timeout(WRITER_PING_TIMEOUT, self.write.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        sqlx::query("BEGIN IMMEDIATE; ROLLBACK").execute(&mut *conn).await.map(drop)
    }

    /// Turns writing events on or off for this database.
    async fn set_webhooks_enabled(&self, on: bool) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE webhook_settings SET enabled = ?").bind(on).execute(&self.write).await?;
        Ok(())
    }

    /// Claims up to `limit` due events for `deliverer` until `lease_until`
    /// (unix ms), oldest first: due, neither delivered nor given up, and
    /// not under another deliverer's live lease.
    async fn claim_events(
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
    async fn finish_attempt(
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
    async fn events_due(&self, now_ms: i64) -> Result<bool, sqlx::Error> {
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
    async fn undelivered_events(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL")
            .fetch_one(&self.read)
            .await
    }
}

/// How long the health check waits for the write connection: SQLite's busy timeout.
const WRITER_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The transaction of `complete`: one trip to SQLite's worker (see
/// `insert_batch_in`): the file is recorded only if the compare-and-set
/// changed the upload, which `changes()` (the UPDATE's count) tells the INSERT.
async fn complete_in(write: &SqlitePool, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "{BEGIN_WRITE}; \
         UPDATE uploads SET state = 'completed', updated_at = ? WHERE id = ? AND owner = ? AND state = 'pending'; \
         INSERT INTO files ({FILE_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE changes() = 1 RETURNING id; \
         COMMIT"
    );
    let mut conn = write.acquire().await?;
    let recorded =
        bind_file(sqlx::query(&sql).bind(now_ms).bind(&file.id).bind(&file.owner), file).fetch_all(&mut *conn).await;
    match recorded {
        Ok(rows) => Ok(!rows.is_empty()),
        Err(e) => {
            rollback(&mut conn).await;
            Err(e)
        }
    }
}

/// Ends a transaction begun by a statement string of ours (sqlx does not
/// know of it) that failed part way, or the next write on this connection
/// would run inside it. Harmless when none is open.
async fn rollback(conn: &mut sqlx::SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::db::tests::{file_of, id, pending_row};
    use sqlx::Connection as _;

    /// Another writer on the same file (a second instance, the checkpointer's
    /// RESTART) holds the write lock for a while: a new upload waits for it
    /// and is recorded, instead of failing with "database is locked".
    #[tokio::test]
    async fn a_new_upload_waits_for_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("uploads.db").display());
        let db = Db::connect(&url).await.unwrap();
        assert!(db.insert_upload(pending_row("01A"), 100, 2).await.unwrap());

        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        sqlx::query("UPDATE owner_pending SET pending = pending WHERE owner = 'alice'")
            .execute(&mut other)
            .await
            .unwrap();
        let insert = tokio::spawn({
            let db = db.clone();
            async move { db.insert_upload(pending_row("01B"), 100, 2).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!insert.is_finished(), "the insert must wait for the other writer");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        assert!(insert.await.unwrap().expect("recorded once the other writer is done"));
        assert!(db.upload("alice", &id("01B")).await.unwrap().is_some());
        assert_eq!(db.count_pending("alice", 3, 100).await.unwrap(), 2);
    }

    /// A client that disconnects while its complete waits for the write
    /// lock drops the handler's future part way. The one write connection
    /// must not go back to the pool inside an open transaction: later writes
    /// succeed and persist, the write lock is free again, and the upload is
    /// either completed with its file or still pending without one.
    #[tokio::test]
    async fn a_complete_dropped_part_way_leaves_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("uploads.db").display());
        let db = Db::connect(&url).await.unwrap();
        assert!(db.insert_upload(pending_row("01H"), 100, 2).await.unwrap());
        assert!(db.insert_upload(pending_row("01J"), 100, 2).await.unwrap());

        // Another writer holds the lock, so the complete is caught between
        // sending its BEGIN and its COMMIT when the client goes away.
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
        let dropped = tokio::time::timeout(Duration::from_millis(300), db.complete(&file_of("01H", "alice"), 3)).await;
        assert!(dropped.is_err(), "the complete must still be waiting for the lock when dropped");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();

        // Later writes succeed and persist (readers see them).
        assert!(db.insert_upload(pending_row("01K"), 100, 2).await.unwrap());
        assert!(db.finish_pending("alice", &id("01J"), UploadState::Aborted, 4).await.unwrap());
        assert!(db.upload("alice", &id("01K")).await.unwrap().is_some(), "the insert was rolled back");
        assert_eq!(db.upload("alice", &id("01J")).await.unwrap().unwrap().state, UploadState::Aborted);
        let upload = db.upload("alice", &id("01H")).await.unwrap().unwrap().state;
        let file = db.file("alice", &id("01H")).await.unwrap();
        assert_eq!(upload == UploadState::Completed, file.is_some(), "{upload:?} with file {file:?}");
        // The write lock is free: another connection takes it at once.
        sqlx::query("PRAGMA busy_timeout = 1000").execute(&mut other).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.expect("the write lock is still held");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        db.ping().await.unwrap();
    }

    /// The health check fails when writes cannot succeed, even while reads still do.
    #[tokio::test]
    async fn the_health_check_sees_a_dead_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::connect(&format!("sqlite://{}", dir.path().join("uploads.db").display())).await.unwrap();
        db.ping().await.unwrap();
        db.write.close().await;
        assert!(db.upload("alice", &id("01A")).await.is_ok(), "reads still work");
        assert!(db.ping().await.is_err());
    }

    /// The writer never checkpoints; the checkpointer keeps the WAL from
    /// growing without end under a steady stream of inserts.
    #[tokio::test]
    async fn the_wal_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads.db");
        let db = Db::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let wal = dir.path().join("uploads.db-wal");
        // Rows with 4 KiB of meta take about a page each; 32 writers at once,
        // so the writer commits in batches as it does under load.
        let meta = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
        let target = 16 * checkpoint::WAL_RESTART_FRAMES as u64;
        let (mut n, mut largest) = (0u64, 0u64);
        let started = std::time::Instant::now();
        while n < target && started.elapsed() < Duration::from_secs(60) {
            let mut writers = tokio::task::JoinSet::new();
            for _ in 0..32 {
                let (db, mut row) = (db.clone(), pending_row(&format!("{n:08}")));
                row.meta = meta.clone();
                writers.spawn(async move { db.insert_upload(row, u32::MAX, 2).await });
                n += 1;
            }
            while let Some(inserted) = writers.join_next().await {
                assert!(inserted.unwrap().unwrap());
            }
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        let written = n * 4096;
        assert!(n >= target, "only {n} rows written in a minute");
        assert!(
            largest < written / 2,
            "the WAL reached {largest} bytes for {written} bytes of rows: it never started over"
        );
    }
}
