//! The credentials POST forms are signed with, resolved once and kept until
//! shortly before they expire.
//!
//! Written by hand because nothing in the SDK does it for a caller outside
//! the client: aws-config 1.x's default chain resolves afresh on every call
//! (its caching moved into the client's `IdentityCache`, which only the
//! client's own request pipeline can drive). Calling the chain per form
//! would walk it per create request: reading the environment at best, and
//! with role credentials (web identity on Kubernetes, ECS, EC2 instance
//! roles) an STS or metadata request per upload.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, error::CredentialsError};

/// Credentials are resolved again this long before they expire, so a form
/// signed now still has valid credentials behind it for a while.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// A credentials provider with the last credentials it gave.
#[derive(Debug)]
pub(super) struct CachedCredentials {
    provider: SharedCredentialsProvider,
    last: RwLock<Option<Credentials>>,
    /// One resolution at a time: requests that find the cache stale while
    /// another refreshes it wait for that one instead of each asking.
    refreshing: tokio::sync::Mutex<()>,
}

impl CachedCredentials {
    pub(super) fn new(provider: SharedCredentialsProvider) -> Self {
        CachedCredentials { provider, last: RwLock::new(None), refreshing: tokio::sync::Mutex::new(()) }
    }

    /// The credentials to sign with at `now`.
    pub(super) async fn get(&self, now: SystemTime) -> Result<Credentials, CredentialsError> {
        if let Some(fresh) = self.fresh(now) {
            return Ok(fresh);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(fresh) = self.fresh(now) {
            return Ok(fresh);
        }
        let credentials = self.provider.provide_credentials().await?;
        *self.last.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(credentials.clone());
        Ok(credentials)
    }

    fn fresh(&self, now: SystemTime) -> Option<Credentials> {
        let last = self.last.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        last.as_ref().filter(|c| is_fresh(c, now)).cloned()
    }
}

/// Credentials without an expiry (keys from the environment or a profile)
/// stay fresh for the life of the process.
fn is_fresh(credentials: &Credentials, now: SystemTime) -> bool {
    match credentials.expiry() {
        None => true,
        Some(expiry) => now + REFRESH_BEFORE_EXPIRY < expiry,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_credential_types::provider::future;

    use super::*;

    /// Gives credentials that expire at `expiry`, numbered by how often it
    /// was asked, after a moment (as a role's STS request would), so that
    /// requests arriving meanwhile find a resolution under way.
    #[derive(Debug)]
    struct Counting {
        asked: Arc<AtomicU32>,
        expiry: Option<SystemTime>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
            let expiry = self.expiry;
            future::ProvideCredentials::new(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(Credentials::new(format!("AKID{n}"), "secret", None, expiry, "test"))
            })
        }
    }

    fn cache(expiry: Option<SystemTime>) -> (CachedCredentials, Arc<AtomicU32>) {
        let asked = Arc::new(AtomicU32::new(0));
        let provider = SharedCredentialsProvider::new(Counting { asked: asked.clone(), expiry });
        (CachedCredentials::new(provider), asked)
    }

    #[tokio::test]
    async fn keys_without_an_expiry_are_resolved_once() {
        let (cache, asked) = cache(None);
        let now = SystemTime::now();
        for _ in 0..100 {
            assert_eq!(cache.get(now).await.unwrap().access_key_id(), "AKID1");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn expiring_credentials_are_resolved_again_before_they_expire() {
        let start = SystemTime::now();
        let (cache, asked) = cache(Some(start + Duration::from_secs(3600)));
        assert_eq!(cache.get(start).await.unwrap().access_key_id(), "AKID1");
        // Still an hour less five minutes to go: the same ones.
        let later = start + Duration::from_secs(3600) - REFRESH_BEFORE_EXPIRY - Duration::from_secs(1);
        assert_eq!(cache.get(later).await.unwrap().access_key_id(), "AKID1");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // Within five minutes of the expiry: resolved again.
        let close = start + Duration::from_secs(3600) - REFRESH_BEFORE_EXPIRY + Duration::from_secs(1);
        assert_eq!(cache.get(close).await.unwrap().access_key_id(), "AKID2");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_find_the_cache_empty_at_once_ask_once() {
        let (cache, asked) = cache(None);
        let cache = Arc::new(cache);
        let now = SystemTime::now();
        let all: Vec<_> = (0..32)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(now).await.unwrap() })
            })
            .collect();
        for one in all {
            assert_eq!(one.await.unwrap().access_key_id(), "AKID1");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[derive(Debug)]
    struct Failing;

    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("no credentials here")))
        }
    }

    #[tokio::test]
    async fn a_failure_is_not_kept() {
        let cache = CachedCredentials::new(SharedCredentialsProvider::new(Failing));
        assert!(cache.get(SystemTime::now()).await.is_err());
        assert!(cache.last.read().unwrap().is_none());
    }
}
