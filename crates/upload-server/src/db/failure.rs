//! What a database error means for the request that met it, decided in one
//! place: the database did not answer (503, try again shortly), the
//! transaction lost a conflict with another one (run again here a few
//! times, then 503), or the database refused the statement (500: a bug).
//!
//! [`WriteError`] carries that meaning with its cause to every caller of a
//! group-commit batch: sqlx's errors are not `Clone`, so one batch's error
//! is shared by all of its jobs, its meaning decided once.

use std::sync::Arc;

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
