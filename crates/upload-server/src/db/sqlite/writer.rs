//! The group-commit writer: new uploads, the hot path, are queued to one
//! task that commits whatever arrived meanwhile in one transaction, with one
//! multi-row INSERT, and checks each owner's pending limit inside it. Rate
//! limits' token takes, one per API request, ride in the same transactions:
//! a commit of their own each would cost as much as a batch of creates.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::super::admit::{Candidate, admit, to_count};
use super::super::failure::WriteError;
use super::super::group_commit::{NewUpload, commit_or_each, owners_of};
use super::super::rows::{UploadRow, insert_new_uploads};
use super::{BEGIN_WRITE, rollback};

/// Most new uploads committed in one transaction.
const MAX_BATCH: usize = 256;

/// The writer task's handle; cheap to clone. The task ends with the last one.
#[derive(Clone, Debug)]
pub(super) struct Inserts {
    jobs: mpsc::Sender<Job>,
}

impl Inserts {
    /// Starts the writer task on `write`, the one write connection.
    pub(super) fn spawn(write: SqlitePool) -> Self {
        let (jobs, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(write, queue));
        Inserts { jobs }
    }

    /// Queues a new upload for the next batch and waits for its commit.
    /// Returns whether it was inserted (the owner had room).
    pub(super) async fn insert(&self, upload: NewUpload) -> Result<bool, WriteError> {
        self.ask(Work::Insert(upload)).await
    }

    /// Queues a rate limit's take for the next batch (see
    /// `Database::take_tokens`) and waits for its commit.
    pub(super) async fn take(&self, take: Take) -> Result<bool, WriteError> {
        self.ask(Work::Take(take)).await
    }

    async fn ask(&self, work: Work) -> Result<bool, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { work, reply }).await.map_err(|_| sqlx::Error::PoolClosed)?;
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

    /// Whether any handle on the writer is left, without being one: tasks
    /// beside it (the checkpointer) end when this turns false.
    pub(super) fn in_use(&self) -> impl Fn() -> bool + Send + 'static {
        let jobs = self.jobs.downgrade();
        move || jobs.upgrade().is_some()
    }
}

/// What the writer is asked to do, and where to answer.
#[derive(Debug)]
struct Job {
    work: Work,
    reply: oneshot::Sender<Result<bool, WriteError>>,
}

#[derive(Debug)]
enum Work {
    Insert(NewUpload),
    Take(Take),
}

/// A rate limit's take: `cost` tokens from `owner`'s bucket.
#[derive(Debug)]
pub(super) struct Take {
    pub(super) owner: String,
    pub(super) cost: f64,
    pub(super) may_refuse: bool,
    pub(super) rate: f64,
    pub(super) burst: f64,
    pub(super) now_ms: i64,
}

/// The writer task: takes new uploads and rate limits' takes as they come,
/// commits each batch in one transaction (`commit_or_each`), answers every
/// caller.
async fn write_batches(write: SqlitePool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes = commit_or_each(&batch, |jobs| write_batch(&write, jobs)).await;
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

/// One transaction: the takes, then the inserts. Whether each job's insert
/// was made or take taken, in the jobs' order.
async fn write_batch(write: &SqlitePool, jobs: &[Job]) -> Result<Vec<bool>, sqlx::Error> {
    let (mut inserts, mut takes) = (Vec::with_capacity(jobs.len()), Vec::new());
    for job in jobs {
        match &job.work {
            Work::Insert(upload) => inserts.push(upload),
            Work::Take(take) => takes.push(take),
        }
    }
    let mut conn = write.acquire().await?;
    let outcome = async {
        let mut taken = Vec::with_capacity(takes.len());
        if !takes.is_empty() {
            sqlx::query(BEGIN_WRITE).execute(&mut *conn).await?;
            for take in &takes {
                taken.push(take_in(&mut conn, take).await?);
            }
        }
        let inserted = insert_batch_in(&mut conn, &inserts, !takes.is_empty()).await?;
        Ok((inserted, taken))
    }
    .await;
    let (inserted, taken) = match outcome {
        Ok(done) => done,
        Err(e) => {
            rollback(&mut conn).await;
            return Err(e);
        }
    };
    let (mut inserted, mut taken) = (inserted.into_iter(), taken.into_iter());
    Ok(jobs
        .iter()
        .filter_map(|job| match job.work {
            Work::Insert(_) => inserted.next(),
            Work::Take(_) => taken.next(),
        })
        .collect())
}

/// A new owner starts full; an existing bucket refills for the time since
/// it was last used (never backwards: instances' clocks differ a little),
/// and the update only happens with a token to take unless a debt is allowed.
async fn take_in(conn: &mut sqlx::SqliteConnection, take: &Take) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO rate_buckets (owner, tokens, at_ms) VALUES (?1, ?3 - ?5, ?4) \
         ON CONFLICT (owner) DO UPDATE SET \
           tokens = MIN(?3, tokens + MAX(?4 - at_ms, 0) * ?2 / 1000.0) - ?5, at_ms = MAX(at_ms, ?4) \
         WHERE NOT ?6 OR MIN(?3, tokens + MAX(?4 - at_ms, 0) * ?2 / 1000.0) >= 1",
    )
    .bind(&take.owner)
    .bind(take.rate)
    .bind(take.burst)
    .bind(take.now_ms)
    .bind(take.cost)
    .bind(take.may_refuse)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A batch in two trips to SQLite's worker thread (each trip is a wake-up
/// of that thread and one of ours, the largest cost of a small commit):
/// `BEGIN IMMEDIATE` with the counters of the batch's owners, then the
/// insert with the `COMMIT`. sqlx runs a string of several statements as
/// one command, binding the arguments in order; its `Transaction` would
/// send BEGIN and COMMIT as trips of their own.
/// `begun`: the transaction is already open (the batch's takes went first).
async fn insert_batch_in(
    conn: &mut sqlx::SqliteConnection,
    batch: &[&NewUpload],
    begun: bool,
) -> Result<Vec<bool>, sqlx::Error> {
    if batch.is_empty() {
        if begun {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
        }
        return Ok(Vec::new());
    }
    let owners = owners_of(batch.iter().copied());
    let mut read = QueryBuilder::new(if begun { "" } else { BEGIN_WRITE });
    read.push(if begun { "" } else { "; " });
    read.push("SELECT owner, pending FROM owner_pending WHERE owner IN (");
    let mut list = read.separated(", ");
    for owner in &owners {
        list.push_bind(*owner);
    }
    read.push(")");
    let counters: HashMap<String, i64> =
        read.build_query_as::<(String, i64)>().fetch_all(&mut *conn).await?.into_iter().collect();

    // The write lock is held from BEGIN IMMEDIATE, so nothing changes
    // between the reads and the insert.
    let candidates: Vec<Candidate> = batch.iter().map(|upload| upload.candidate()).collect();
    let mut exact = HashMap::new();
    for (owner, max, now_ms) in to_count(&candidates, &counters) {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE owner = ? AND state = 'pending' \
             AND expires_at > ? LIMIT ?)",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(max)
        .fetch_one(&mut *conn)
        .await?;
        exact.insert(owner, pending);
    }
    let inserted = admit(&candidates, &counters, &exact);
    let rows: Vec<&UploadRow> =
        batch.iter().zip(&inserted).filter(|(_, ok)| **ok).map(|(upload, _)| &upload.row).collect();
    if rows.is_empty() {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(inserted);
    }
    let mut insert = insert_new_uploads::<Sqlite>(rows);
    insert.push("; COMMIT");
    insert.build().execute(&mut *conn).await?;
    Ok(inserted)
}
