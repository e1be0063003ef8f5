//! Per-owner token buckets: `rate` requests per second, bursts of twice that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use upload_core::ErrorCode;

use crate::error::ApiError;

/// Owners tracked before idle, full buckets are forgotten.
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

    pub(crate) fn check(&self, owner: &str) -> Result<(), ApiError> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(owner) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(owner.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("more than {} requests per second; slow down", self.rate),
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_then_is_per_owner() {
        let limiter = RateLimiter::new(5);
        for _ in 0..10 {
            limiter.check("a").unwrap();
        }
        assert_eq!(limiter.check("a").unwrap_err().code, ErrorCode::RateLimited);
        limiter.check("b").unwrap();
        assert!(RateLimiter::new(0).check("a").is_ok());
    }
}
