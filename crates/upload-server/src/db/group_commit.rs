//! The step both group-commit writers (`sqlite/writer`, `postgres/writer`)
//! take with each batch of jobs: write it in one transaction and answer
//! every job, keeping what kind of failure a failure was.
//!
//! A transaction that lost a conflict (PostgreSQL's deadlock or
//! serialization failure) is run again a few times (`retry_contended`).
//! A batch the database did not answer for fails every job with that
//! error, so each caller answers 503 as it would have alone. A batch the
//! database refused is written again one job at a time: a constraint that
//! refuses one row then fails that job alone, not the unrelated ones that
//! happened to share its transaction.

use std::future::Future;

use super::admit::Candidate;
use super::failure::{Failure, WriteError, retry_contended};
use super::rows::UploadRow;
use crate::error::Chain;

/// A new upload for a writer's batch: its row, inserted if its owner has
/// fewer than `max_pending` pending uploads inside their window at `now_ms`.
#[derive(Debug)]
pub(super) struct NewUpload {
    pub(super) row: UploadRow,
    pub(super) max_pending: u32,
    pub(super) now_ms: i64,
}

impl NewUpload {
    /// The upload as the pending-limit decision (`admit`) sees it.
    pub(super) fn candidate(&self) -> Candidate<'_> {
        Candidate { owner: &self.row.owner, max_pending: self.max_pending, now_ms: self.now_ms }
    }
}

/// The owners of a batch's uploads, each once, sorted: the order every
/// writer takes their counters in, so two batches never wait on each other
/// in a cycle.
pub(super) fn owners_of<'a>(uploads: impl Iterator<Item = &'a NewUpload>) -> Vec<&'a str> {
    let mut owners: Vec<&str> = uploads.map(|upload| upload.row.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    owners
}

/// Writes `jobs` with `write` (one transaction, one outcome per job, in
/// order; run again after a lost conflict); if the database refused it,
/// writes each job alone. One outcome per job, in order.
pub(super) async fn commit_or_each<'a, J, F, Fut>(jobs: &'a [J], mut write: F) -> Vec<Result<bool, WriteError>>
where
    F: FnMut(&'a [J]) -> Fut,
    Fut: Future<Output = Result<Vec<bool>, sqlx::Error>>,
{
    let error = match retry_contended(|| write(jobs)).await {
        Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
        Err(e) => WriteError::from(e),
    };
    if error.failure() != Failure::Refused || jobs.len() == 1 {
        return vec![Err(error); jobs.len()];
    }
    tracing::warn!(error = %Chain(&error), jobs = jobs.len(), "the database refused a batch; writing its jobs one at a time");
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        match retry_contended(|| write(std::slice::from_ref(job))).await {
            Ok(outcome) => outcomes.extend(outcome.into_iter().map(Ok)),
            Err(e) => {
                let error = WriteError::from(e);
                if error.failure() == Failure::Unavailable {
                    // The database went away meanwhile: the rest would
                    // each wait for it in vain (SQLite's busy timeout, the
                    // pool's acquire timeout) before failing the same way.
                    outcomes.extend(std::iter::repeat_n(Err(error), jobs.len() - n));
                    break;
                }
                outcomes.push(Err(error));
            }
        }
    }
    outcomes
}
