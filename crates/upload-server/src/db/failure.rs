//! What a database error means for the request that met it, decided in one
//! place: the database did not answer (503, try again shortly), the
//! transaction lost a conflict with another one (run again here a few
//! times, then 503), or the database refused the statement (500: a bug).
//!
//! [`WriteError`] carries that meaning with its cause to every caller of a
//! group-commit batch: sqlx's errors are not `Clone`, so one batch's error
//! is shared by all of its jobs, its meaning decided once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure a database error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The database did not answer: down, unreachable, restarting, out of
    /// connections, or (SQLite) its lock held by another process past the
    /// busy timeout. The request may succeed if tried again shortly.
    Unavailable,
    /// The transaction lost a conflict with a concurrent one (PostgreSQL's
    /// deadlock 40P01 or serialization failure 40001) and was rolled back
    /// whole: running it again is safe, and usually succeeds.
    Contended,
    /// The database refused the statement (a constraint, a type): the same
    /// statement would be refused again.
    Refused,
}

/// Which kind of failure `e` is.
pub(crate) fn classify(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Failure::Unavailable,
        sqlx::Error::Database(db) => match db.code() {
            // PostgreSQL: serialization failure, deadlock detected.
            Some(code) if matches!(&*code, "40001" | "40P01") => Failure::Contended,
            // PostgreSQL: class 08 (connection exception), 57P01-57P03
            // (admin or crash shutdown, cannot connect now), 53300 (too
            // many connections).
            Some(code) if code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300") => {
                Failure::Unavailable
            }
            // SQLite: busy or locked past the busy timeout (5, 6 and their extended codes).
            Some(code)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6)) =>
            {
                Failure::Unavailable
            }
            _ => Failure::Refused,
        },
        sqlx::Error::Migrate(m) => match &**m {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            _ => Failure::Refused,
        },
        _ => Failure::Refused,
    }
}

/// Whether `e` says the database did not answer (see [`Failure::Unavailable`]).
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    classify(e) == Failure::Unavailable
}

/// A write that failed, with what kind of failure it was and its cause;
/// cheap to clone, so every job of a failed batch gets it whole.
#[derive(Debug, Clone, thiserror::Error)]
#[error("writing to the database failed")]
pub(crate) struct WriteError {
    failure: Failure,
    #[source]
    source: Arc<sqlx::Error>,
}

impl WriteError {
    /// What kind of failure it was.
    pub(crate) fn failure(&self) -> Failure {
        self.failure
    }
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError { failure: classify(&e), source: Arc::new(e) }
    }
}

/// Attempts in all at a transaction that keeps losing conflicts. Deadlocks
/// and serialization failures come from transactions that overlapped; run
/// again a moment later they rarely meet again, so a few attempts clear
/// nearly all, and a conflict that outlasts them is real contention the
/// client should back off from (503) rather than a request held longer.
const CONTENDED_ATTEMPTS: u32 = 4;

/// The pause before the first retry; each next one doubles (10, 20 and
/// 40 ms at most: 70 ms in all, far below a request's budget).
const FIRST_CONTENDED_PAUSE: Duration = Duration::from_millis(10);

/// The pause before retry number `retry` (1 for the first), scaled by
/// `jitter` (clamped to 0.5..=1): transactions that collided and were
/// rolled back together must not come back in step and collide again.
fn pause_before(retry: u32, jitter: f64) -> Duration {
    let doubling = f64::from(1u32 << retry.saturating_sub(1).min(16));
    FIRST_CONTENDED_PAUSE.mul_f64(doubling * jitter.clamp(0.5, 1.0))
}

/// A random factor in 0.5..=1 for [`pause_before`].
fn jitter() -> f64 {
    let random = getrandom::u32().unwrap_or(u32::MAX / 2);
    0.5 + f64::from(random) / f64::from(u32::MAX) / 2.0
}

/// Runs `attempt` (one whole transaction or statement) again after it lost
/// a conflict ([`Failure::Contended`]: rolled back whole, so safe to run
/// again), up to [`CONTENDED_ATTEMPTS`] times in all with a short jittered
/// pause before each retry; any other outcome, or the last attempt's
/// failure, is returned as it is.
pub(crate) async fn retry_contended<T, F, Fut>(mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut retry = 0;
    loop {
        match attempt().await {
            Err(e) if classify(&e) == Failure::Contended && retry + 1 < CONTENDED_ATTEMPTS => {
                retry += 1;
                tracing::debug!(error = %e, retry, "a transaction lost a conflict; running it again");
                tokio::time::sleep(pause_before(retry, jitter())).await;
            }
            outcome => return outcome,
        }
    }
}

/// A database error with `code` (as PostgreSQL's SQLSTATE), for tests of
/// what the server makes of codes that are hard to provoke on demand.
#[cfg(test)]
pub(crate) fn error_with_code(code: &'static str) -> sqlx::Error {
    use std::borrow::Cow;
    use std::error::Error;

    #[derive(Debug)]
    struct Coded(&'static str);
    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a test error with code {}", self.0)
        }
    }
    impl Error for Coded {}
    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "a test error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }
    sqlx::Error::Database(Box::new(Coded(code)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// PostgreSQL's deadlock and serialization failure are conflicts lost,
    /// told apart from an outage (connection lost, shutting down, too many
    /// connections) and from a refusal (a unique or CHECK violation).
    #[test]
    fn conflicts_are_told_from_outages_and_refusals() {
        for code in ["40001", "40P01"] {
            assert_eq!(classify(&error_with_code(code)), Failure::Contended, "{code}");
        }
        for code in ["08006", "57P01", "57P03", "53300"] {
            assert_eq!(classify(&error_with_code(code)), Failure::Unavailable, "{code}");
        }
        for code in ["23505", "23514", "42P01"] {
            assert_eq!(classify(&error_with_code(code)), Failure::Refused, "{code}");
        }
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Failure::Unavailable);
        assert_eq!(WriteError::from(error_with_code("40P01")).failure(), Failure::Contended);
    }

    /// Runs `retry_contended` on attempts that fail with `codes` in turn
    /// (then succeed); how many attempts were made, and the outcome.
    async fn attempts_with(codes: &[&'static str]) -> (u32, Result<(), Failure>) {
        let made = AtomicU32::new(0);
        let outcome = retry_contended(|| {
            let n = made.fetch_add(1, Ordering::SeqCst) as usize;
            async move { codes.get(n).map_or(Ok(()), |code| Err(error_with_code(code))) }
        })
        .await;
        (made.load(Ordering::SeqCst), outcome.map_err(|e| classify(&e)))
    }

    /// A lost conflict is run again, at most four times in all; nothing
    /// else is (an outage or a refusal would fail again the same way).
    #[tokio::test]
    async fn only_lost_conflicts_are_run_again_and_boundedly() {
        assert_eq!(attempts_with(&[]).await, (1, Ok(())));
        assert_eq!(attempts_with(&["40P01", "40001"]).await, (3, Ok(())));
        assert_eq!(attempts_with(&["40P01", "40P01", "40P01"]).await, (4, Ok(())));
        assert_eq!(attempts_with(&["40001"; 9]).await, (4, Err(Failure::Contended)));
        assert_eq!(attempts_with(&["23505", "40001"]).await, (1, Err(Failure::Refused)));
        assert_eq!(attempts_with(&["40001", "57P01"]).await, (2, Err(Failure::Unavailable)));
    }

    /// The pauses double from 10 ms, each cut by up to half at random, and
    /// all of them together take 70 ms at most.
    #[test]
    fn pauses_double_with_jitter_and_stay_short() {
        assert_eq!(pause_before(1, 1.0), Duration::from_millis(10));
        assert_eq!(pause_before(1, 0.5), Duration::from_millis(5));
        assert_eq!(pause_before(3, 1.0), Duration::from_millis(40));
        assert_eq!(pause_before(2, 7.0), Duration::from_millis(20), "jitter is clamped");
        let all: Duration = (1..CONTENDED_ATTEMPTS).map(|retry| pause_before(retry, 1.0)).sum();
        assert_eq!(all, Duration::from_millis(70));
        for _ in 0..1000 {
            assert!((0.5..=1.0).contains(&jitter()));
        }
    }
}
