//! Per-owner token buckets: `rate` requests per second, bursts of twice that.
//!
//! The buckets live in the database ([`crate::db::Database::take_tokens`]),
//! not in this process's memory: behind a load balancer every instance
//! sees one owner's requests, and a limit kept per process would let an
//! owner through N times the rate on N instances. One upsert per request
//! refills and takes; the sweeper deletes the buckets that have refilled.

use crate::db::Db;
use crate::error::ApiError;
use crate::time_util::now_ms;

pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        RateLimiter { rate, burst: rate * 2.0 }
    }

    /// Takes one request's token from `owner`'s bucket: 429 `rate_limited`
    /// when it is empty, 503 when the database does not answer.
    pub(crate) async fn check(&self, db: &Db, owner: &str) -> Result<(), ApiError> {
        if self.rate == 0.0 {
            return Ok(());
        }
        if !db.take_tokens(owner, 1.0, true, self.rate, self.burst, now_ms()).await? {
            return Err(ApiError::rate_limited(format!("more than {} requests per second; slow down", self.rate)));
        }
        Ok(())
    }

    /// Takes `extra` tokens more for a request [`check`](Self::check) let
    /// through: a batch costs one per file. It never refuses: a batch may
    /// cost more than a burst (and could never pass otherwise), so the
    /// bucket goes into debt instead, and the owner's next requests wait
    /// until it has refilled.
    pub(crate) async fn charge_more(&self, db: &Db, owner: &str, extra: u32) -> Result<(), ApiError> {
        if self.rate == 0.0 || extra == 0 {
            return Ok(());
        }
        db.take_tokens(owner, f64::from(extra), false, self.rate, self.burst, now_ms()).await?;
        Ok(())
    }

    /// Deletes the buckets that have refilled (the sweeper's housekeeping):
    /// the table holds only owners active within the last `burst / rate`
    /// seconds (2 s), or still paying off a batch. Returns how many went.
    pub(crate) async fn forget_full_buckets(&self, db: &Db) -> Result<u64, sqlx::Error> {
        if self.rate == 0.0 {
            return Ok(0);
        }
        db.forget_full_buckets(self.rate, self.burst, now_ms()).await
    }
}
