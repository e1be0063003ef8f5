//! Metadata in SQLite: uploads with their state machine, and files.
//!
//! Split by concern: `rows` (the rows and their columns), this module (the
//! queries, and completing an upload), `writer` (the group-commit writer of
//! new uploads), `checkpoint` (the WAL checkpointer beside it).
//!
//! Every query a request handler makes names the owner too, so a handler
//! cannot reach another owner's row by id. The sweeper's queries act for no
//! user: they select abandoned uploads of every owner by state and time,
//! then change each by id. State changes are
//! compare-and-set (`WHERE state = 'pending'`), so two requests racing on one
//! upload (or two server instances) never both win.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use upload_core::wire::UploadState;

use crate::id::UploadId;
use checkpoint::{CHECKPOINT_EVERY, checkpoint_wal};
pub(crate) use outbox::OutboxRow;
use rows::{FILE_COLUMNS, UPLOAD_COLUMNS};
pub(crate) use rows::{FileRow, UploadRow};
use writer::Inserts;

mod checkpoint;
mod outbox;
mod rows;
mod writer;

/// A handle on the metadata store; cheap to clone.
///
/// SQLite has one writer at a time. Rather than letting several connections
/// fight for the write lock (and sleep in the busy handler, which is what
/// makes p99 latencies explode under load), every write goes through one
/// connection, and new uploads, the hot path, are batched by a writer task:
/// whatever arrives while a transaction commits goes into the next one
/// (group commit). Reads use a pool of their own; WAL lets them run beside
/// the writer.
#[derive(Clone, Debug)]
pub struct Db {
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

impl Db {
    /// Opens (creating if missing) and migrates the database. WAL mode, so
    /// readers never wait for the writer.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // The writer never checkpoints: a checkpoint copies the WAL into the
        // database and syncs it, tens of milliseconds during which every
        // create would wait on the writer. A connection of its own does it
        // beside the writer (PASSIVE checkpoints take no write lock).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // Once the WAL starts over, its file is cut back to 64 MiB.
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0").pragma("journal_size_limit", "67108864"))
            .await?;
        sqlx::migrate!("./migrations").run(&write).await?;
        // A RESTART checkpoint holds new writes back while it waits for older
        // readers to finish: it waits a quarter of a second at most, then
        // gives up until the next tick.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().busy_timeout(CHECKPOINT_EVERY))
            .await?;
        let read = SqlitePoolOptions::new().max_connections(8).connect_with(options.read_only(true)).await?;
        let inserts = Inserts::spawn(write.clone());
        tokio::spawn(checkpoint_wal(checkpoints, inserts.in_use()));
        Ok(Db { read, write, inserts })
    }

    /// New uploads queued for the writer's next batch (for `/metrics`).
    pub(crate) fn writer_queue_depth(&self) -> usize {
        self.inserts.queue_depth()
    }

    /// Uploads of this owner still pending and inside their window.
    /// Counts at most `limit`: callers only need to know whether the limit is reached.
    pub async fn count_pending(&self, owner: &str, now_ms: i64, limit: u32) -> Result<u64, sqlx::Error> {
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
    pub(crate) async fn insert_upload(
        &self,
        row: UploadRow,
        max_pending: u32,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        self.inserts.insert(row, max_pending, now_ms).await
    }

    /// One upload of this owner.
    pub(crate) async fn upload(&self, owner: &str, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ? AND owner = ?"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.read)
            .await
    }

    /// Moves a pending upload of this owner to `to`. Returns false when it
    /// was no longer pending.
    pub(crate) async fn finish_pending(
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
    pub(crate) async fn complete(&self, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error> {
        let (write, file) = (self.write.clone(), file.clone());
        tokio::spawn(async move { complete_in(&write, &file, now_ms).await })
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("the complete task failed: {e}")))?
    }

    /// One file of this owner.
    pub(crate) async fn file(&self, owner: &str, id: &UploadId) -> Result<Option<FileRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ? AND owner = ?"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.read)
            .await
    }

    /// A page of this owner's files, newest first, after `cursor` (the
    /// `(created_at, id)` of the last file of the previous page).
    pub(crate) async fn list_files(
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
    pub(crate) async fn delete_file(&self, owner: &str, id: &UploadId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM files WHERE id = ? AND owner = ?")
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending uploads whose window closed before `before_ms`, oldest first.
    pub(crate) async fn overdue_pending(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
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
    pub(crate) async fn claim_expired(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
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
    pub(crate) async fn stale_cleanups(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE cleanup_pending = 1 AND updated_at < ? ORDER BY updated_at LIMIT ?"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
    }

    /// Re-claims a stale cleanup (compare-and-set on its timestamp).
    pub(crate) async fn touch_cleanup(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
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
    pub(crate) async fn finish_cleanup(&self, id: &UploadId) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE uploads SET cleanup_pending = 0 WHERE id = ?").bind(id).execute(&self.write).await?;
        Ok(())
    }

    /// Checks the database answers, readers and the writer: a health check
    /// that only read would stay green while no write can succeed.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
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
}

/// How long the health check waits for the write connection: SQLite's busy timeout.
const WRITER_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The transaction of [`Db::complete`]: one trip to SQLite's worker (see
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
    let recorded = sqlx::query(&sql)
        .bind(now_ms)
        .bind(&file.id)
        .bind(&file.owner)
        .bind(&file.id)
        .bind(&file.owner)
        .bind(&file.object_key)
        .bind(&file.name)
        .bind(file.size)
        .bind(&file.content_type)
        .bind(&file.sha256)
        .bind(&file.detected_type)
        .bind(&file.meta)
        .bind(file.created_at)
        .fetch_all(&mut *conn)
        .await;
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
    use crate::plan::StoredPlan;
    use sqlx::Connection as _;

    /// A fixed id: `tail` padded to a ULID with zeros.
    fn id(tail: &str) -> UploadId {
        UploadId::parse(&format!("{tail:0>26}")).expect("a ULID")
    }

    fn pending_row(tail: &str) -> UploadRow {
        UploadRow {
            id: id(tail),
            owner: "alice".to_owned(),
            object_key: format!("uploads/alice/{tail}/a.bin"),
            name: "a.bin".to_owned(),
            size: 1,
            content_type: "application/octet-stream".to_owned(),
            sha256: None,
            meta: "{}".to_owned(),
            plan: StoredPlan::S3,
            state: UploadState::Pending,
            created_at: 1,
            expires_at: i64::MAX,
        }
    }

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

    /// Completing is a compare-and-set: once for the owner, never for
    /// another owner, never twice; the file is recorded exactly once.
    #[tokio::test]
    async fn complete_records_the_file_once_and_only_for_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("uploads.db").display())).await.unwrap();
        assert!(db.insert_upload(pending_row("01C"), 100, 2).await.unwrap());
        let file = |owner: &str| FileRow {
            id: id("01C"),
            owner: owner.to_owned(),
            object_key: "uploads/alice/01C/a.bin".to_owned(),
            name: "a.bin".to_owned(),
            size: 1,
            content_type: "application/octet-stream".to_owned(),
            sha256: None,
            detected_type: Some("image/png".to_owned()),
            meta: "{}".to_owned(),
            created_at: 3,
        };
        assert!(!db.complete(&file("mallory"), 3).await.unwrap(), "another owner's upload");
        assert!(db.file("mallory", &id("01C")).await.unwrap().is_none());
        assert!(db.complete(&file("alice"), 3).await.unwrap());
        assert!(!db.complete(&file("alice"), 4).await.unwrap(), "no longer pending");
        let stored = db.file("alice", &id("01C")).await.unwrap().unwrap();
        assert_eq!((stored.created_at, stored.detected_type.as_deref()), (3, Some("image/png")));
        assert_eq!(db.upload("alice", &id("01C")).await.unwrap().unwrap().state, UploadState::Completed);
        assert_eq!(db.count_pending("alice", 3, 100).await.unwrap(), 0);
        // The connection is not left inside a transaction: the next write works.
        assert!(db.insert_upload(pending_row("01D"), 100, 2).await.unwrap());
    }

    /// A state change names the owner: another owner's id changes nothing.
    #[tokio::test]
    async fn only_its_owner_finishes_a_pending_upload() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        assert!(db.insert_upload(pending_row("01A"), 100, 1).await.unwrap());
        assert!(!db.finish_pending("mallory", &id("01A"), UploadState::Aborted, 2).await.unwrap());
        assert_eq!(db.upload("alice", &id("01A")).await.unwrap().unwrap().state, UploadState::Pending);
        assert!(db.finish_pending("alice", &id("01A"), UploadState::Aborted, 3).await.unwrap());
        assert_eq!(db.upload("alice", &id("01A")).await.unwrap().unwrap().state, UploadState::Aborted);
    }

    fn completed_file(tail: &str) -> FileRow {
        FileRow {
            id: id(tail),
            owner: "alice".to_owned(),
            object_key: format!("uploads/alice/{tail}/a.bin"),
            name: "a.bin".to_owned(),
            size: 1,
            content_type: "application/octet-stream".to_owned(),
            sha256: None,
            detected_type: None,
            meta: "{}".to_owned(),
            created_at: 3,
        }
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
        let dropped = tokio::time::timeout(Duration::from_millis(300), db.complete(&completed_file("01H"), 3)).await;
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
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("uploads.db").display())).await.unwrap();
        db.ping().await.unwrap();
        db.write.close().await;
        assert!(db.upload("alice", &id("01A")).await.is_ok(), "reads still work");
        assert!(db.ping().await.is_err());
    }

    /// Every plan comes back as it went in, and the table refuses a row
    /// whose columns do not fit its plan (here a Chunked session kept where
    /// a multipart upload id goes, as earlier versions did).
    #[tokio::test]
    async fn plans_round_trip_and_impossible_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("uploads.db").display());
        let db = Db::connect(&url).await.unwrap();
        let plans = [
            StoredPlan::S3,
            StoredPlan::S3Multipart { upload_id: "m-1".into(), part_size: 5, part_count: 3, part_checksums: true },
            StoredPlan::Chunked { session: "s-1".into() },
        ];
        for (n, plan) in plans.into_iter().enumerate() {
            let mut row = pending_row(&format!("P{n}"));
            row.plan = plan.clone();
            assert!(db.insert_upload(row, 100, 2).await.unwrap());
            assert_eq!(db.upload("alice", &id(&format!("P{n}"))).await.unwrap().unwrap().plan, plan);
        }
        let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let refused = sqlx::query(
            "INSERT INTO uploads (id, owner, object_key, name, size, content_type, meta, uploader, \
             multipart_upload_id, state, created_at, expires_at, updated_at) \
             VALUES ('X', 'alice', 'k', 'a', 1, 't', '{}', 'Chunked', 's-2', 'pending', 1, 2, 1)",
        )
        .execute(&mut raw)
        .await;
        assert!(refused.unwrap_err().to_string().contains("do not fit"));
    }

    /// A batch that fails part way (here a second row on the same key) is
    /// rolled back whole, answers an error, and leaves the writer usable.
    #[tokio::test]
    async fn a_failed_batch_is_rolled_back_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("uploads.db").display())).await.unwrap();
        assert!(db.insert_upload(pending_row("01E"), 100, 2).await.unwrap());
        let mut clash = pending_row("01F");
        clash.object_key = pending_row("01E").object_key;
        assert!(db.insert_upload(clash, 100, 2).await.is_err());
        assert!(db.upload("alice", &id("01F")).await.unwrap().is_none());
        assert!(db.insert_upload(pending_row("01G"), 100, 2).await.unwrap());
        assert_eq!(db.count_pending("alice", 3, 100).await.unwrap(), 2);
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
