//! The group-commit writer on PostgreSQL: new uploads, the hot path, are
//! queued to one task per instance that commits whatever arrived meanwhile
//! in one transaction: each owner's counter locked once, one multi-row
//! INSERT, one commit (one WAL flush).
//!
//! Without it every create took its owner's `owner_pending` row lock and
//! held it through its own commit, so one owner's creates committed one
//! after another, a WAL flush each (about 1,400 per second on the benchmark
//! machine, where SQLite's writer made 15,000), and each left dead versions
//! of that one row behind.

use std::collections::HashMap;

use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::super::admit::{Candidate, admit, to_count};
use super::super::failure::WriteError;
use super::super::group_commit::{NewUpload, commit_or_each, owners_of};
use super::super::rows::{UploadRow, insert_new_uploads};

/// Most new uploads committed in one transaction.
const MAX_BATCH: usize = 256;

/// The writer task's handle; cheap to clone. The task ends with the last one.
#[derive(Clone, Debug)]
pub(super) struct Inserts {
    jobs: mpsc::Sender<InsertJob>,
}

#[derive(Debug)]
struct InsertJob {
    upload: NewUpload,
    reply: oneshot::Sender<Result<bool, WriteError>>,
}

impl Inserts {
    /// Starts the writer task on `pool`.
    pub(super) fn spawn(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(insert_batches(pool, queue));
        Inserts { jobs }
    }

    /// Queues a new upload for the next batch and waits for its commit.
    /// Returns whether it was inserted (the owner had room).
    pub(super) async fn insert(&self, upload: NewUpload) -> Result<bool, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = InsertJob { upload, reply };
        self.jobs.send(job).await.map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Jobs sent and not yet taken by the writer.
    pub(super) fn queue_depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Whether the writer task has stopped.
    pub(super) fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

/// The writer task: takes new uploads as they come, commits each batch in
/// one transaction (`commit_or_each`), answers every caller.
async fn insert_batches(pool: PgPool, mut jobs: mpsc::Receiver<InsertJob>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes = commit_or_each(&batch, |jobs| insert_batch(&pool, jobs)).await;
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

/// One transaction. Each owner's counter row is locked first, in one order
/// on every instance (so two instances' batches cannot deadlock), by an
/// upsert that answers its value as the last committed create left it;
/// then `admit` decides (with exact counts for the owners it names), and
/// the admitted are inserted. Whether each upload was inserted.
async fn insert_batch(pool: &PgPool, batch: &[InsertJob]) -> Result<Vec<bool>, sqlx::Error> {
    let owners = owners_of(batch.iter().map(|job| &job.upload));
    let mut tx = pool.begin().await?;
    let counters: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "INSERT INTO owner_pending (owner, pending) SELECT owner, 0 FROM unnest($1::text[]) AS owner ORDER BY owner \
         ON CONFLICT (owner) DO UPDATE SET pending = owner_pending.pending RETURNING owner, pending",
    )
    .bind(&owners)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let candidates: Vec<Candidate> = batch.iter().map(|job| job.upload.candidate()).collect();
    let mut exact = HashMap::new();
    for (owner, max, now_ms) in to_count(&candidates, &counters) {
        // A statement of its own, so its snapshot is taken after the lock:
        // it sees every create that committed before.
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE owner = $1 AND state = 'pending' \
             AND expires_at > $2 LIMIT $3) AS p",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(max)
        .fetch_one(&mut *tx)
        .await?;
        exact.insert(owner, pending);
    }
    let inserted = admit(&candidates, &counters, &exact);
    let rows: Vec<&UploadRow> =
        batch.iter().zip(&inserted).filter(|(_, ok)| **ok).map(|(job, _)| &job.upload.row).collect();
    if !rows.is_empty() {
        insert_new_uploads::<Postgres>(rows).build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}
