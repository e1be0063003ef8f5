//! Metadata in SQLite: uploads with their state machine, and files.
//!
//! Every query that reads or changes one row names the owner too, so a
//! handler cannot reach another owner's row by id. State changes are
//! compare-and-set (`WHERE state = 'pending'`), so two requests racing on one
//! upload (or two server instances) never both win.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use std::collections::HashMap;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{FromRow, QueryBuilder, Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use upload_core::wire::{FileRecord, UploadState, UploaderKind};

use crate::id::UploadId;
pub use crate::plan::StoredPlan;
use crate::time_util::rfc3339;

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
    inserts: mpsc::Sender<InsertJob>,
}

#[derive(Debug)]
struct InsertJob {
    row: UploadRow,
    max_pending: u32,
    now_ms: i64,
    reply: oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// How every write transaction begins: with the write lock taken at once.
/// A deferred transaction that reads first and then writes cannot wait for
/// another writer (the WAL checkpointer's RESTART, another server instance):
/// SQLite fails it with "database is locked" at once, since its snapshot
/// would be stale. An immediate one waits in the busy handler instead.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Most new uploads committed in one transaction.
const MAX_BATCH: usize = 256;

/// An upload as stored.
#[derive(Debug, Clone)]
pub struct UploadRow {
    /// Upload id.
    pub id: UploadId,
    /// Owner id.
    pub owner: String,
    /// Object key.
    pub object_key: String,
    /// Sanitised name.
    pub name: String,
    /// Declared size.
    pub size: u64,
    /// Declared, normalised content type.
    pub content_type: String,
    /// Declared base64 SHA-256.
    pub sha256: Option<String>,
    /// JSON object of strings.
    pub meta: String,
    /// How the bytes are sent, with what the store made for it.
    pub plan: StoredPlan,
    /// Lifecycle state.
    pub state: UploadState,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
}

impl UploadRow {
    /// The meta map, parsed.
    pub fn meta(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.meta).unwrap_or_default()
    }
}

/// A column that holds something this version cannot represent.
fn bad_column(column: &str, source: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(source) }
}

/// Why a row's plan columns do not make a plan.
#[derive(Debug, thiserror::Error)]
#[error("the plan columns of a {0} upload are incomplete")]
struct IncompletePlan(UploaderKind);

impl<'r> FromRow<'r, SqliteRow> for UploadRow {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        let kind: UploaderKind = row.try_get::<&str, _>("uploader")?.parse().map_err(|e| bad_column("uploader", e))?;
        let plan = match kind {
            UploaderKind::S3 => StoredPlan::S3,
            UploaderKind::S3Multipart => {
                let upload_id: Option<String> = row.try_get("multipart_upload_id")?;
                let part_size: Option<i64> = row.try_get("part_size")?;
                let part_count: Option<i64> = row.try_get("part_count")?;
                let (Some(upload_id), Some(part_size), Some(part_count)) = (upload_id, part_size, part_count) else {
                    return Err(bad_column("multipart_upload_id", IncompletePlan(kind)));
                };
                StoredPlan::S3Multipart {
                    upload_id,
                    part_size: part_size as u64,
                    part_count: part_count as u32,
                    part_checksums: row.try_get("part_checksums")?,
                }
            }
            UploaderKind::Chunked => StoredPlan::Chunked {
                session: row
                    .try_get::<Option<String>, _>("chunked_session")?
                    .ok_or_else(|| bad_column("chunked_session", IncompletePlan(kind)))?,
            },
        };
        Ok(UploadRow {
            id: row.try_get("id")?,
            owner: row.try_get("owner")?,
            object_key: row.try_get("object_key")?,
            name: row.try_get("name")?,
            size: row.try_get::<i64, _>("size")? as u64,
            content_type: row.try_get("content_type")?,
            sha256: row.try_get("sha256")?,
            meta: row.try_get("meta")?,
            plan,
            state: row.try_get::<&str, _>("state")?.parse().map_err(|e| bad_column("state", e))?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

/// The plan's columns: `multipart_upload_id`, `part_size`, `part_count`,
/// `part_checksums`, `chunked_session`.
type PlanColumns<'a> = (Option<&'a str>, Option<i64>, Option<i64>, bool, Option<&'a str>);

fn plan_columns(plan: &StoredPlan) -> PlanColumns<'_> {
    match plan {
        StoredPlan::S3 => (None, None, None, false, None),
        StoredPlan::S3Multipart { upload_id, part_size, part_count, part_checksums } => {
            (Some(upload_id), Some(*part_size as i64), Some(i64::from(*part_count)), *part_checksums, None)
        }
        StoredPlan::Chunked { session } => (None, None, None, false, Some(session)),
    }
}

/// A file as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    /// File id (the id of the upload that made it).
    pub id: UploadId,
    /// Owner id.
    pub owner: String,
    /// Object key.
    pub object_key: String,
    /// Sanitised name.
    pub name: String,
    /// Verified size.
    pub size: i64,
    /// Verified content type.
    pub content_type: String,
    /// Base64 SHA-256.
    pub sha256: Option<String>,
    /// JSON object of strings.
    pub meta: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl FileRow {
    /// The wire form.
    pub fn into_record(self) -> FileRecord {
        FileRecord {
            meta: serde_json::from_str(&self.meta).unwrap_or_default(),
            created_at: rfc3339(self.created_at),
            id: self.id.to_string(),
            name: self.name,
            size: self.size as u64,
            content_type: self.content_type,
            key: self.object_key,
            sha256: self.sha256,
            owner: self.owner,
        }
    }
}

const UPLOAD_COLUMNS: &str = "id, owner, object_key, name, size, content_type, sha256, meta, uploader, \
    multipart_upload_id, part_checksums, part_size, part_count, chunked_session, state, created_at, expires_at";
const FILE_COLUMNS: &str = "id, owner, object_key, name, size, content_type, sha256, meta, created_at";

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
        let (inserts, jobs) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(insert_batches(write.clone(), jobs));
        tokio::spawn(checkpoint_wal(checkpoints, inserts.downgrade()));
        Ok(Db { read, write, inserts })
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
    pub async fn insert_upload(&self, row: UploadRow, max_pending: u32, now_ms: i64) -> Result<bool, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let job = InsertJob { row, max_pending, now_ms, reply };
        self.inserts.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// One upload of this owner.
    pub async fn upload(&self, owner: &str, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ? AND owner = ?"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.read)
            .await
    }

    /// Moves a pending upload to `to`. Returns false when it was no longer pending.
    pub async fn finish_pending(&self, id: &UploadId, to: UploadState, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("UPDATE uploads SET state = ?, updated_at = ? WHERE id = ? AND state = 'pending'")
            .bind(to.as_str())
            .bind(now_ms)
            .bind(id)
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
    pub async fn complete(&self, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error> {
        let (write, file) = (self.write.clone(), file.clone());
        tokio::spawn(async move { complete_in(&write, &file, now_ms).await })
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("the complete task failed: {e}")))?
    }

    /// One file of this owner.
    pub async fn file(&self, owner: &str, id: &UploadId) -> Result<Option<FileRow>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ? AND owner = ?"))
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.read)
            .await
    }

    /// A page of this owner's files, newest first, after `cursor` (the
    /// `(created_at, id)` of the last file of the previous page).
    pub async fn list_files(
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
    pub async fn delete_file(&self, owner: &str, id: &UploadId) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM files WHERE id = ? AND owner = ?")
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending uploads whose window closed before `before_ms`, oldest first.
    pub async fn overdue_pending(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
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
    pub async fn claim_expired(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
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
    pub async fn stale_cleanups(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE cleanup_pending = 1 AND updated_at < ? ORDER BY updated_at LIMIT ?"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
    }

    /// Re-claims a stale cleanup (compare-and-set on its timestamp).
    pub async fn touch_cleanup(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
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
    pub async fn finish_cleanup(&self, id: &UploadId) -> Result<(), sqlx::Error> {
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
         INSERT INTO files ({FILE_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE changes() = 1 RETURNING id; \
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

/// How often the WAL is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL frames (pages) past which the checkpointer makes the writer start the
/// WAL over (16 MiB of 4 KiB pages).
const WAL_RESTART_FRAMES: i64 = 4096;

/// The checkpointer task. Every [`CHECKPOINT_EVERY`], a PASSIVE checkpoint:
/// it copies what no reader still needs and never blocks the writer. But
/// the WAL only starts over when a write begins with every frame copied,
/// which a busy writer never lets happen, so once it holds more than
/// [`WAL_RESTART_FRAMES`] a RESTART checkpoint waits for the writer's current
/// transaction, copies the few frames the passive ones left, and has the
/// next write start the file over. Ends with the last handle on the database.
async fn checkpoint_wal(pool: SqlitePool, alive: mpsc::WeakSender<InsertJob>) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if alive.upgrade().is_none() {
            pool.close().await;
            return;
        }
        // (busy, frames in the WAL, frames copied)
        let passive: Result<(i64, i64, i64), _> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
        let frames = match passive {
            Ok((_, frames, _)) => frames,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
                continue;
            }
        };
        if frames > WAL_RESTART_FRAMES
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&pool).await
        {
            // Busy now and then is expected (a long read); only a WAL that
            // keeps growing is worth a warning.
            if frames > 16 * WAL_RESTART_FRAMES {
                tracing::warn!(frames, error = %e, "the WAL keeps growing: its restart keeps timing out");
            } else {
                tracing::debug!(frames, error = %e, "WAL restart timed out; will try again");
            }
        }
    }
}

/// The writer task: takes new uploads as they come, commits each batch in
/// one transaction, answers every caller.
async fn insert_batches(write: SqlitePool, mut jobs: mpsc::Receiver<InsertJob>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match insert_batch(&write, &batch).await {
            Ok(inserted) => {
                for (job, inserted) in batch.drain(..).zip(inserted) {
                    let _ = job.reply.send(Ok(inserted));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(sqlx::Error::Protocol(message.clone())));
                }
            }
        }
    }
}

async fn insert_batch(write: &SqlitePool, batch: &[InsertJob]) -> Result<Vec<bool>, sqlx::Error> {
    let mut conn = write.acquire().await?;
    let outcome = insert_batch_in(&mut conn, batch).await;
    if outcome.is_err() {
        rollback(&mut conn).await;
    }
    outcome
}

/// Ends a transaction begun by a statement string of ours (sqlx does not
/// know of it) that failed part way, or the next write on this connection
/// would run inside it. Harmless when none is open.
async fn rollback(conn: &mut sqlx::SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(conn).await;
}

/// A batch in two trips to SQLite's worker thread (each trip is a wake-up
/// of that thread and one of ours, the largest cost of a small commit):
/// `BEGIN IMMEDIATE` with the counters of the batch's owners, then the
/// insert with the `COMMIT`. sqlx runs a string of several statements as
/// one command, binding the arguments in order; its `Transaction` would
/// send BEGIN and COMMIT as trips of their own.
async fn insert_batch_in(conn: &mut sqlx::SqliteConnection, batch: &[InsertJob]) -> Result<Vec<bool>, sqlx::Error> {
    let mut owners: Vec<&str> = batch.iter().map(|job| job.row.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    let mut read = QueryBuilder::new(BEGIN_WRITE);
    read.push("; SELECT owner, pending FROM owner_pending WHERE owner IN (");
    let mut list = read.separated(", ");
    for owner in &owners {
        list.push_bind(*owner);
    }
    read.push(")");
    let counters: HashMap<String, i64> =
        read.build_query_as::<(String, i64)>().fetch_all(&mut *conn).await?.into_iter().collect();

    // Decide in order. Only an owner the counter says is full gets the
    // exact, window-aware count (the counter also holds uploads past their
    // window that the sweeper has not expired yet). The write lock is held
    // from BEGIN IMMEDIATE, so nothing changes between the reads and the insert.
    let mut room: HashMap<&str, i64> = HashMap::with_capacity(owners.len());
    let mut inserted = Vec::with_capacity(batch.len());
    for job in batch {
        let owner = job.row.owner.as_str();
        let max = i64::from(job.max_pending);
        if !room.contains_key(owner) {
            let mut pending = counters.get(owner).copied().unwrap_or(0);
            if pending >= max {
                pending = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE owner = ? AND state = 'pending' \
                     AND expires_at > ? LIMIT ?)",
                )
                .bind(owner)
                .bind(job.now_ms)
                .bind(max)
                .fetch_one(&mut *conn)
                .await?;
            }
            room.insert(owner, max - pending);
        }
        let left = room.get_mut(owner).expect("inserted above");
        inserted.push(*left > 0);
        if *left > 0 {
            *left -= 1;
        }
    }
    let rows: Vec<&UploadRow> = batch.iter().zip(&inserted).filter(|(_, ok)| **ok).map(|(job, _)| &job.row).collect();
    if rows.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(inserted);
    }
    let mut insert = QueryBuilder::new(
        "INSERT INTO uploads (id, owner, object_key, name, size, content_type, sha256, meta, uploader, \
         multipart_upload_id, part_size, part_count, part_checksums, chunked_session, state, created_at, expires_at, \
         updated_at) ",
    );
    insert.push_values(rows, |mut values, row| {
        let (upload_id, part_size, part_count, part_checksums, session) = plan_columns(&row.plan);
        values
            .push_bind(&row.id)
            .push_bind(&row.owner)
            .push_bind(&row.object_key)
            .push_bind(&row.name)
            .push_bind(row.size as i64)
            .push_bind(&row.content_type)
            .push_bind(&row.sha256)
            .push_bind(&row.meta)
            .push_bind(row.plan.kind().as_str())
            .push_bind(upload_id)
            .push_bind(part_size)
            .push_bind(part_count)
            .push_bind(part_checksums)
            .push_bind(session)
            .push_bind(UploadState::Pending.as_str())
            .push_bind(row.created_at)
            .push_bind(row.expires_at)
            .push_bind(row.created_at);
    });
    insert.push("; COMMIT");
    insert.build().execute(&mut *conn).await?;
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            meta: "{}".to_owned(),
            created_at: 3,
        };
        assert!(!db.complete(&file("mallory"), 3).await.unwrap(), "another owner's upload");
        assert!(db.file("mallory", &id("01C")).await.unwrap().is_none());
        assert!(db.complete(&file("alice"), 3).await.unwrap());
        assert!(!db.complete(&file("alice"), 4).await.unwrap(), "no longer pending");
        assert_eq!(db.file("alice", &id("01C")).await.unwrap().unwrap().created_at, 3);
        assert_eq!(db.upload("alice", &id("01C")).await.unwrap().unwrap().state, UploadState::Completed);
        assert_eq!(db.count_pending("alice", 3, 100).await.unwrap(), 0);
        // The connection is not left inside a transaction: the next write works.
        assert!(db.insert_upload(pending_row("01D"), 100, 2).await.unwrap());
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
        assert!(db.finish_pending(&id("01J"), UploadState::Aborted, 4).await.unwrap());
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
        let target = 16 * WAL_RESTART_FRAMES as u64;
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
