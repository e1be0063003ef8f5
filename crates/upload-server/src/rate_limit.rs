//! Per-owner token buckets: `rate` requests per second, bursts of twice that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::ApiError;

/// Most owners tracked at once. Past it, idle buckets that have refilled are
/// forgotten first (forgetting them changes nothing), then the least
/// recently used one (which then starts again from a full burst), so the map
/// stays bounded however many owners are active.
const MAX_TRACKED: usize = 10_000;

pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        RateLimiter { rate, burst: rate * 2.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request's token, or refuses the request.
    pub(crate) fn check(&self, owner: &str) -> Result<(), ApiError> {
        self.take(owner, 1.0, true)
    }

    /// Takes `extra` tokens more for a request [`check`](Self::check) let
    /// through: a batch costs one per file. It never refuses: a batch may
    /// cost more than a burst (and could never pass otherwise), so the
    /// bucket goes into debt instead, and the owner's next requests wait
    /// until it has refilled.
    pub(crate) fn charge_more(&self, owner: &str, extra: u32) {
        let _ = self.take(owner, f64::from(extra), false);
    }

    fn take(&self, owner: &str, cost: f64, may_refuse: bool) -> Result<(), ApiError> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(owner) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_TRACKED
                && let Some(stalest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(owner, _)| owner.clone())
            {
                buckets.remove(&stalest);
            }
        }
        let bucket = buckets.entry(owner.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate).min(self.burst);
        bucket.at = now;
        if may_refuse && bucket.tokens < 1.0 {
            return Err(ApiError::rate_limited(format!("more than {} requests per second; slow down", self.rate)));
        }
        bucket.tokens -= cost;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use upload_core::ErrorCode;

    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_then_is_per_owner() {
        let limiter = RateLimiter::new(5);
        for _ in 0..10 {
            limiter.check("a").unwrap();
        }
        assert_eq!(limiter.check("a").unwrap_err().code(), ErrorCode::RateLimited);
        limiter.check("b").unwrap();
        assert!(RateLimiter::new(0).check("a").is_ok());
    }

    /// A batch bigger than the burst passes once, then its debt holds the owner back.
    #[test]
    fn a_batch_goes_into_debt_once() {
        let limiter = RateLimiter::new(5);
        limiter.check("a").unwrap();
        limiter.charge_more("a", 99);
        assert_eq!(limiter.check("a").unwrap_err().code(), ErrorCode::RateLimited);
        limiter.check("b").unwrap();
    }

    /// Many owners, all busy (no bucket has refilled): the map stays bounded.
    #[test]
    fn the_map_stays_bounded_under_many_busy_owners() {
        let limiter = RateLimiter::new(1);
        for n in 0..MAX_TRACKED + 500 {
            limiter.check(&format!("owner-{n}")).unwrap();
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED);
        // The newest owner is tracked: its second and third requests drain its burst of 2.
        let newest = format!("owner-{}", MAX_TRACKED + 499);
        assert_eq!(limiter.check(&newest).map_err(|e| e.code()), Ok(()));
        assert_eq!(limiter.check(&newest).unwrap_err().code(), ErrorCode::RateLimited);
    }
}
