//! Per-owner token buckets: `rate` requests per second, bursts of twice that.
//!
//! The buckets live in the database ([`crate::db::Database::take_tokens`]),
//! not in this process's memory: behind a load balancer every instance
//! sees one owner's requests, and a limit kept per process would let an
//! owner through N times the rate on N instances. The sweeper deletes the
//! buckets that have refilled.
//!
//! A write per request would make the limit a large part of a request's
//! cost (on SQLite, even riding in the writer's group commits: 95-100 us of
//! server CPU per create, against 71-77 with leases), so an instance takes
//! an owner's tokens from the database a lease at a time, a tenth of a
//! second's worth, and spends them here. Every token spent was taken from
//! the shared bucket first, so all instances together never pass more than
//! the limit; a lease unspent within a second is forgotten, which can only
//! hold an owner back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::error::ApiError;
use crate::time_util::now_ms;

/// How long an instance may spend a lease's tokens.
const LEASE_FOR: Duration = Duration::from_secs(1);
/// Most leases kept at once; past it, expired ones are dropped, and a new
/// lease is spent on its one request only.
const MAX_LEASES: usize = 10_000;

pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    /// Tokens per lease: a tenth of a second's worth, 1 to 100.
    lease: u32,
    leases: Mutex<HashMap<String, Lease>>,
}

/// Tokens this instance took from an owner's bucket and has not spent yet.
struct Lease {
    tokens: u32,
    until: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        let lease = (per_second / 10).clamp(1, 100);
        RateLimiter { rate, burst: rate * 2.0, lease, leases: Mutex::default() }
    }

    /// Takes one request's token, from this instance's lease on `owner`'s
    /// tokens or else from the database (a new lease): 429 `rate_limited`
    /// when the bucket is empty, 503 when the database does not answer.
    pub(crate) async fn check(&self, db: &Db, owner: &str) -> Result<(), ApiError> {
        if self.rate == 0.0 || self.spend_leased(owner) {
            return Ok(());
        }
        // A lease is granted whenever the bucket holds a token: a lease of
        // more tokens than it holds leaves it in debt, paid off before the
        // owner's next tokens (on any instance).
        let lease = f64::from(self.lease);
        if !db.take_tokens(owner, lease, true, self.rate, self.burst, now_ms()).await? {
            return Err(ApiError::rate_limited(format!("more than {} requests per second; slow down", self.rate)));
        }
        self.keep_lease(owner, self.lease - 1);
        Ok(())
    }

    /// Spends a token of a live lease on `owner`, if this instance holds one.
    fn spend_leased(&self, owner: &str) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match leases.get_mut(owner) {
            Some(lease) if lease.tokens > 0 && Instant::now() < lease.until => {
                lease.tokens -= 1;
                true
            }
            _ => false,
        }
    }

    fn keep_lease(&self, owner: &str, tokens: u32) {
        if tokens == 0 {
            return;
        }
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if leases.len() >= MAX_LEASES && !leases.contains_key(owner) {
            leases.retain(|_, lease| lease.tokens > 0 && now < lease.until);
            if leases.len() >= MAX_LEASES {
                return;
            }
        }
        leases.insert(owner.to_owned(), Lease { tokens, until: now + LEASE_FOR });
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

#[cfg(test)]
mod tests {
    use upload_core::ErrorCode;

    use super::*;

    /// Two instances on one database, 1,000 requests per second (leases of
    /// 100): the first instance's lease is spent without the database, even
    /// after the other has put the bucket deep in debt; once it is spent,
    /// the database refuses both (the debt takes about a second to repay,
    /// far longer than this test).
    #[tokio::test]
    async fn a_lease_is_spent_here_and_the_bucket_decides_after() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("uploads.db").display())).await.unwrap();
        let (here, there) = (RateLimiter::new(1000), RateLimiter::new(1000));
        here.check(&db, "alice").await.unwrap();
        there.charge_more(&db, "alice", 3000).await.unwrap();
        assert_eq!(there.check(&db, "alice").await.unwrap_err().code(), ErrorCode::RateLimited);
        for n in 1..100 {
            here.check(&db, "alice").await.unwrap_or_else(|e| panic!("request {n} of the lease: {e}"));
        }
        assert_eq!(here.check(&db, "alice").await.unwrap_err().code(), ErrorCode::RateLimited);
        here.check(&db, "bob").await.unwrap();
    }

    /// Below ten requests per second a lease is one token: every request asks the database.
    #[tokio::test]
    async fn a_low_limit_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("uploads.db").display())).await.unwrap();
        let (here, there) = (RateLimiter::new(5), RateLimiter::new(5));
        for n in 0..10 {
            let instance = if n % 2 == 0 { &here } else { &there };
            instance.check(&db, "alice").await.unwrap_or_else(|e| panic!("request {n} of the burst of 10: {e}"));
        }
        assert_eq!(here.check(&db, "alice").await.unwrap_err().code(), ErrorCode::RateLimited);
        assert_eq!(there.check(&db, "alice").await.unwrap_err().code(), ErrorCode::RateLimited);
    }
}
