//! Metadata: uploads with their state machine, files, the webhook outbox and
//! the rate limits' buckets, behind one seam ([`Database`]) with two
//! implementations: SQLite, the embedded default (`sqlite`), and PostgreSQL
//! for several instances on several machines (`postgres`), chosen by the
//! URL's scheme. [`Db`] is the handle the rest of the server holds.
//!
//! Shared by both: `rows` (the rows and their columns) and `outbox` (the
//! outbox's rows). Each implementation keeps its own migrations
//! (`migrations/` for SQLite, `migrations-postgres/`), with the same tables,
//! the same CHECKs on a row's plan columns, the same `owner_pending` counter
//! and the same outbox triggers.
//!
//! What both guarantee, whatever the number of instances on one database:
//! - Every query a request handler makes names the owner too, so a handler
//!   cannot reach another owner's row by id. The sweeper's queries act for
//!   no user: they select abandoned uploads of every owner by state and
//!   time, then change each by id.
//! - State changes are compare-and-set (`WHERE state = 'pending'`), so two
//!   requests racing on one upload (or two instances) never both win.
//! - An owner's pending uploads never exceed the limit, however many creates
//!   race on however many instances.
//! - A handler's future may be dropped at any await (its client went away,
//!   the request timed out): no connection goes back to a pool inside an
//!   open transaction, and a transaction cut short is rolled back whole.
//! - Connection-level failures (the database down, unreachable, restarting)
//!   are errors that [`classify`] names unavailable, answered 503; the pools
//!   reconnect once it is back. The group-commit writers answer each job of
//!   a batch with a [`WriteError`] that keeps that meaning, and a batch the
//!   database refused is written again job by job (`group_commit`), so one
//!   bad row fails alone.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use upload_core::wire::UploadState;

use crate::id::UploadId;
#[cfg(test)]
pub(crate) use failure::error_with_code;
pub(crate) use failure::{Failure, WriteError, classify, is_unavailable};
pub(crate) use outbox::OutboxRow;
pub(crate) use rows::{FileRow, UploadRow};

mod admit;
mod failure;
mod group_commit;
mod outbox;
mod postgres;
mod rows;
mod sqlite;

/// What the server asks of its database. Every method is one atomic step;
/// see the module's documentation for what both implementations guarantee.
#[async_trait]
pub(crate) trait Database: Send + Sync + std::fmt::Debug {
    /// New uploads queued and not yet written (for `/metrics`; 0 where
    /// nothing is queued).
    fn writer_queue_depth(&self) -> usize {
        0
    }

    /// Uploads of this owner still pending and inside their window, counted
    /// up to `limit`: callers only need to know whether the limit is reached.
    async fn count_pending(&self, owner: &str, now_ms: i64, limit: u32) -> Result<u64, sqlx::Error>;

    /// Inserts a pending upload unless the owner already has `max_pending`
    /// pending ones inside their window; concurrent creates cannot
    /// overshoot. Returns whether it was inserted.
    async fn insert_upload(&self, row: UploadRow, max_pending: u32, now_ms: i64) -> Result<bool, WriteError>;

    /// One upload of this owner.
    async fn upload(&self, owner: &str, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error>;

    /// Moves a pending upload of this owner to `to`. Returns false when it
    /// was no longer pending.
    async fn finish_pending(
        &self,
        owner: &str,
        id: &UploadId,
        to: UploadState,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error>;

    /// Marks the upload completed and records its file, atomically. Returns
    /// false (and changes nothing) when the upload was no longer pending.
    async fn complete(&self, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error>;

    /// One file of this owner.
    async fn file(&self, owner: &str, id: &UploadId) -> Result<Option<FileRow>, sqlx::Error>;

    /// A page of this owner's files, newest first, after `cursor` (the
    /// `(created_at, id)` of the last file of the previous page).
    async fn list_files(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<(i64, &str)>,
    ) -> Result<Vec<FileRow>, sqlx::Error>;

    /// Deletes a file record. Returns whether there was one.
    async fn delete_file(&self, owner: &str, id: &UploadId) -> Result<bool, sqlx::Error>;

    /// Pending uploads whose window closed before `before_ms`, oldest first.
    async fn overdue_pending(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error>;

    /// Claims an overdue pending upload for cleanup (pending -> expired,
    /// cleanup pending). Returns false when another request or instance got
    /// there first.
    async fn claim_expired(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error>;

    /// Expired uploads whose cleanup was claimed before `before_ms` and never finished.
    async fn stale_cleanups(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error>;

    /// Re-claims a stale cleanup (compare-and-set on its timestamp).
    async fn touch_cleanup(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error>;

    /// Marks an upload's storage clean.
    async fn finish_cleanup(&self, id: &UploadId) -> Result<(), sqlx::Error>;

    /// Takes `cost` tokens from `owner`'s bucket (`rate` per second, at most
    /// `burst`), refilled for the time since its last use. With
    /// `may_refuse`, returns false and takes nothing when the bucket holds
    /// less than one token; without, it always takes (into debt).
    async fn take_tokens(
        &self,
        owner: &str,
        cost: f64,
        may_refuse: bool,
        rate: f64,
        burst: f64,
        now_ms: i64,
    ) -> Result<bool, WriteError>;

    /// Deletes the buckets that have refilled by `now_ms` (a full bucket is
    /// what a missing one starts as); returns how many.
    async fn forget_full_buckets(&self, rate: f64, burst: f64, now_ms: i64) -> Result<u64, sqlx::Error>;

    /// Checks the database answers and takes writes.
    async fn ping(&self) -> Result<(), sqlx::Error>;

    /// Turns writing webhook events on or off for this database.
    async fn set_webhooks_enabled(&self, on: bool) -> Result<(), sqlx::Error>;

    /// Claims up to `limit` due events for `deliverer` until `lease_until`
    /// (unix ms), oldest first: due, neither delivered nor given up, and
    /// not under another deliverer's live lease. One deliverer holds an
    /// event at a time, however many instances claim at once.
    async fn claim_events(
        &self,
        deliverer: &str,
        now_ms: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, sqlx::Error>;

    /// Records the outcome of an attempt by `deliverer` (only while it
    /// still holds the lease): delivered, or the next attempt at `retry_at`,
    /// or given up when that is `None`.
    async fn finish_attempt(
        &self,
        id: &str,
        deliverer: &str,
        now_ms: i64,
        outcome: Result<(), (String, Option<i64>)>,
    ) -> Result<(), sqlx::Error>;

    /// Whether any event is due and unclaimed (a read, for the deliverer's polls).
    async fn events_due(&self, now_ms: i64) -> Result<bool, sqlx::Error>;

    /// Events neither delivered nor given up (for `/metrics`).
    async fn undelivered_events(&self) -> Result<i64, sqlx::Error>;
}

/// The PostgreSQL connection pool of one instance (`UPLOAD_POSTGRES_POOL_SIZE`,
/// `UPLOAD_POSTGRES_ACQUIRE_TIMEOUT`). SQLite has no use for them: it keeps
/// one write connection and a few readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections this instance keeps open.
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
}

impl PoolSettings {
    /// PostgreSQL's default `max_connections` is 100 in all, so several
    /// instances fit beside administration.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

    /// A request waits for a connection behind other requests when all are
    /// busy, or while the pool connects anew after the database went away
    /// (sqlx retries a refused connection until then). Statements take
    /// milliseconds, so a few seconds ride out any burst and a quick
    /// restart or failover; longer only makes every request wait that long
    /// for its 503 while the database is down (10 s did), where clients
    /// retry a 503 anyway and a balancer should see `/healthz` fail fast.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings { max_connections: Self::DEFAULT_MAX_CONNECTIONS, acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT }
    }
}

/// A handle on the metadata store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db(Arc<dyn Database>);

/// Why [`Db::connect`] could not open the database. Each message names the
/// database by [`redacted`] URL, never with its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Not a URL of a database this server runs on.
    #[error("UPLOAD_DATABASE_URL: `{0}` is neither sqlite:// nor postgres://")]
    Scheme(String),
    /// The database did not answer (down, unreachable, refused the login).
    #[error("the database at {target} cannot be reached")]
    Unreachable {
        /// The URL without its password.
        target: String,
        /// Why.
        source: sqlx::Error,
    },
    /// Its migrations are not the ones this version knows: it was migrated
    /// by a newer version, or a migration was changed after it was applied.
    #[error("the database at {target} does not match this version of upload-server: {reason}")]
    Migrations {
        /// The URL without its password.
        target: String,
        /// What does not match, and what to do.
        reason: String,
        /// The migrator's own error.
        source: sqlx::migrate::MigrateError,
    },
    /// Opened, but could not be prepared (migrated, configured).
    #[error("the database at {target} could not be prepared")]
    Setup {
        /// The URL without its password.
        target: String,
        /// Why.
        source: sqlx::Error,
    },
}

impl ConnectError {
    fn from_migrate(target: String, e: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError;
        if let MigrateError::Execute(inner) = &e
            && is_unavailable(inner)
        {
            return ConnectError::Unreachable { target, source: sqlx::Error::Migrate(Box::new(e)) };
        }
        let reason = match &e {
            MigrateError::VersionMissing(v) => format!(
                "it was migrated by a newer version (migration {v} is unknown to this one); run that version or a newer one"
            ),
            MigrateError::VersionMismatch(v) => {
                format!("migration {v} was changed after it was applied; restore it as released")
            }
            MigrateError::VersionNotPresent(v) => format!("migration {v} is not recorded as applied"),
            MigrateError::Dirty(v) => {
                format!("migration {v} was left half-applied; repair the database by hand, then start again")
            }
            other => format!("migrating it failed: {other}"),
        };
        ConnectError::Migrations { target, reason, source: e }
    }
}

impl Db {
    /// Opens and migrates the database `url` names: `sqlite://...` (created
    /// if missing) or `postgres://...` (`postgresql://` too), a PostgreSQL
    /// pool with the default [`PoolSettings`].
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Db::connect_with(url, PoolSettings::default()).await
    }

    /// [`Db::connect`], with a PostgreSQL pool of `pool`'s size and acquire timeout.
    pub async fn connect_with(url: &str, pool: PoolSettings) -> Result<Self, ConnectError> {
        let database: Arc<dyn Database> = if url.starts_with("sqlite:") {
            Arc::new(sqlite::SqliteDb::connect(url).await?)
        } else if is_postgres(url) {
            Arc::new(postgres::PostgresDb::connect(url, pool).await?)
        } else {
            return Err(ConnectError::Scheme(redacted(url)));
        };
        Ok(Db(database))
    }

    /// New uploads queued for the writer's next batch (for `/metrics`).
    pub(crate) fn writer_queue_depth(&self) -> usize {
        self.0.writer_queue_depth()
    }

    /// Uploads of this owner still pending and inside their window.
    /// Counts at most `limit`: callers only need to know whether the limit is reached.
    pub async fn count_pending(&self, owner: &str, now_ms: i64, limit: u32) -> Result<u64, sqlx::Error> {
        self.0.count_pending(owner, now_ms, limit).await
    }

    /// See [`Database::insert_upload`].
    pub(crate) async fn insert_upload(
        &self,
        row: UploadRow,
        max_pending: u32,
        now_ms: i64,
    ) -> Result<bool, WriteError> {
        self.0.insert_upload(row, max_pending, now_ms).await
    }

    /// See [`Database::upload`].
    pub(crate) async fn upload(&self, owner: &str, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error> {
        self.0.upload(owner, id).await
    }

    /// See [`Database::finish_pending`].
    pub(crate) async fn finish_pending(
        &self,
        owner: &str,
        id: &UploadId,
        to: UploadState,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        self.0.finish_pending(owner, id, to, now_ms).await
    }

    /// See [`Database::complete`].
    pub(crate) async fn complete(&self, file: &FileRow, now_ms: i64) -> Result<bool, sqlx::Error> {
        self.0.complete(file, now_ms).await
    }

    /// See [`Database::file`].
    pub(crate) async fn file(&self, owner: &str, id: &UploadId) -> Result<Option<FileRow>, sqlx::Error> {
        self.0.file(owner, id).await
    }

    /// See [`Database::list_files`].
    pub(crate) async fn list_files(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<(i64, &str)>,
    ) -> Result<Vec<FileRow>, sqlx::Error> {
        self.0.list_files(owner, limit, cursor).await
    }

    /// See [`Database::delete_file`].
    pub(crate) async fn delete_file(&self, owner: &str, id: &UploadId) -> Result<bool, sqlx::Error> {
        self.0.delete_file(owner, id).await
    }

    /// See [`Database::overdue_pending`].
    pub(crate) async fn overdue_pending(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        self.0.overdue_pending(before_ms, limit).await
    }

    /// See [`Database::claim_expired`].
    pub(crate) async fn claim_expired(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
        self.0.claim_expired(id, now_ms).await
    }

    /// See [`Database::stale_cleanups`].
    pub(crate) async fn stale_cleanups(&self, before_ms: i64, limit: u32) -> Result<Vec<UploadRow>, sqlx::Error> {
        self.0.stale_cleanups(before_ms, limit).await
    }

    /// See [`Database::touch_cleanup`].
    pub(crate) async fn touch_cleanup(&self, id: &UploadId, now_ms: i64) -> Result<bool, sqlx::Error> {
        self.0.touch_cleanup(id, now_ms).await
    }

    /// See [`Database::finish_cleanup`].
    pub(crate) async fn finish_cleanup(&self, id: &UploadId) -> Result<(), sqlx::Error> {
        self.0.finish_cleanup(id).await
    }

    /// See [`Database::take_tokens`].
    pub(crate) async fn take_tokens(
        &self,
        owner: &str,
        cost: f64,
        may_refuse: bool,
        rate: f64,
        burst: f64,
        now_ms: i64,
    ) -> Result<bool, WriteError> {
        self.0.take_tokens(owner, cost, may_refuse, rate, burst, now_ms).await
    }

    /// See [`Database::forget_full_buckets`].
    pub(crate) async fn forget_full_buckets(&self, rate: f64, burst: f64, now_ms: i64) -> Result<u64, sqlx::Error> {
        self.0.forget_full_buckets(rate, burst, now_ms).await
    }

    /// Checks the database answers and takes writes: a health check that
    /// only read would stay green while no write can succeed.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.0.ping().await
    }

    /// See [`Database::set_webhooks_enabled`].
    pub(crate) async fn set_webhooks_enabled(&self, on: bool) -> Result<(), sqlx::Error> {
        self.0.set_webhooks_enabled(on).await
    }

    /// See [`Database::claim_events`].
    pub(crate) async fn claim_events(
        &self,
        deliverer: &str,
        now_ms: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, sqlx::Error> {
        self.0.claim_events(deliverer, now_ms, lease_until, limit).await
    }

    /// See [`Database::finish_attempt`].
    pub(crate) async fn finish_attempt(
        &self,
        id: &str,
        deliverer: &str,
        now_ms: i64,
        outcome: Result<(), (String, Option<i64>)>,
    ) -> Result<(), sqlx::Error> {
        self.0.finish_attempt(id, deliverer, now_ms, outcome).await
    }

    /// See [`Database::events_due`].
    pub(crate) async fn events_due(&self, now_ms: i64) -> Result<bool, sqlx::Error> {
        self.0.events_due(now_ms).await
    }

    /// See [`Database::undelivered_events`].
    pub(crate) async fn undelivered_events(&self) -> Result<i64, sqlx::Error> {
        self.0.undelivered_events().await
    }
}

/// Whether `url` names a PostgreSQL database.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password (and without its query, which may carry one):
/// what messages and logs may show.
pub(crate) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.set_query(None);
            parsed.to_string()
        }
        // sqlite://path and friends: no host, no password.
        _ => url.split('?').next().unwrap_or(url).to_owned(),
    }
}

#[cfg(test)]
mod tests;
