//! The upload server: decides, signs and records; in S3 mode it touches no
//! file bytes but the first 8 KiB of each completed object, to see its type.
//!
//! Use it as a binary (`upload-server`, configured from the environment) or
//! nest [`app`] in your own axum application:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = upload_server::Config::builder().s3_bucket("my-bucket").build()?;
//! let state = upload_server::AppState::from_config(config).await?;
//! let router = axum::Router::new().merge(upload_server::app(state));
//! # let _ = router; Ok(()) }
//! ```
//!
//! Architecture invariant: only this crate holds storage credentials; the
//! browser only ever gets URLs and forms signed for one object.

mod api;
pub mod auth;
mod config;
mod db;
mod error;
pub mod hooks;
mod id;
mod metrics;
mod plan;
mod rate_limit;
pub mod serve;
mod sniff;
pub mod storage;
pub mod sweeper;
mod time_util;
pub mod upload_token;
pub mod webhooks;

use std::sync::{Arc, RwLock};

use axum::Router;

use crate::auth::{Authenticate, DevelopmentIdentity, JwtIdentity, Owner};
pub use crate::config::{Config, ConfigBuilder, ConfigError, ENV_VARIABLES, EnvVariable, StorageConfig};
pub use crate::db::{ConnectError, Db, PoolSettings};
pub use crate::error::{ApiError, ApiResult};
use crate::hooks::{NoHooks, UploadHooks};
use crate::metrics::{MeteredStorage, Metrics};
use crate::rate_limit::RateLimiter;
pub use crate::sniff::{SniffMode, UnknownSniffMode};
use crate::storage::local::LocalStorage;
use crate::storage::s3::S3Storage;
use crate::storage::{Storage, StorageError};
use crate::upload_token::UploadTokens;

/// Why [`AppState::from_config`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory could not be created.
    #[error("creating the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object store could not be reached or opened.
    #[error("opening the object store")]
    Storage(#[from] StorageError),
    /// The database could not be reached, or its migrations do not match.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The database answered but refused to be set up.
    #[error("setting up the database")]
    Database(#[from] sqlx::Error),
}

/// Everything handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    storage: Arc<dyn Storage>,
    db: Db,
    auth: Arc<dyn Authenticate>,
    limiter: RateLimiter,
    /// Signs and checks the tokens that authorise one upload.
    upload_tokens: UploadTokens,
    /// This state's own registry, served at `/metrics`.
    metrics: Arc<Metrics>,
    /// The application's hooks; replaceable at any time, read once per completion.
    hooks: RwLock<Arc<dyn UploadHooks>>,
}

impl AppState {
    /// Assembles a state from its parts, for library users who bring their
    /// own storage (S3, the embedded [`LocalStorage`], or their own) or
    /// identity. A store's own routes come with it (see [`app`]); its calls
    /// are timed and counted for `/metrics`.
    pub fn new(config: Config, storage: Arc<dyn Storage>, db: Db, auth: Arc<dyn Authenticate>) -> Self {
        let limiter = RateLimiter::new(config.rate_limit);
        let upload_tokens = UploadTokens::new(config.jwt_secret.as_deref().map(str::as_bytes));
        let metrics = Metrics::new();
        let storage = Arc::new(MeteredStorage::new(storage, metrics.clone()));
        let hooks = RwLock::new(Arc::new(NoHooks) as Arc<dyn UploadHooks>);
        AppState { inner: Arc::new(Inner { config, storage, db, auth, limiter, upload_tokens, metrics, hooks }) }
    }

    /// Runs `hooks` around recording every file from now on (see
    /// [`hooks`]); replaces the hooks set before. Every clone of this state
    /// shares them.
    pub fn set_hooks(&self, hooks: Arc<dyn UploadHooks>) {
        *self.inner.hooks.write().unwrap_or_else(std::sync::PoisonError::into_inner) = hooks;
    }

    /// The hooks in force.
    pub(crate) fn hooks(&self) -> Arc<dyn UploadHooks> {
        self.inner.hooks.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Connects storage and the database as the configuration says, with
    /// JWT identity when a secret is set and development identity otherwise.
    pub async fn from_config(config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
        let storage: Arc<dyn Storage> = match &config.storage {
            StorageConfig::S3(settings) => Arc::new(S3Storage::connect(settings.clone()).await?),
            StorageConfig::Local => Arc::new(LocalStorage::open(config.data_dir.join("storage"), &config.public_url)?),
        };
        let db = Db::connect_with(&config.database_url, config.database_pool).await?;
        // Events are written (by the database's triggers) from now on when
        // webhooks are configured; `webhooks::run` delivers them.
        db.set_webhooks_enabled(config.webhook.is_some()).await?;
        let auth: Arc<dyn Authenticate> = match &config.jwt_secret {
            Some(secret) => {
                let jwt = JwtIdentity::new(secret.as_bytes());
                Arc::new(match &config.jwt_audience {
                    Some(audience) => jwt.with_audience(audience),
                    None => jwt,
                })
            }
            None => Arc::new(DevelopmentIdentity),
        };
        Ok(AppState::new(config, storage, db, auth))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The object store.
    pub fn storage(&self) -> &dyn Storage {
        self.inner.storage.as_ref()
    }

    /// The object store's own routes, if it has any (see [`Storage::router`]),
    /// usable from the configured origins and the server's own.
    fn storage_router(&self) -> Option<Router> {
        let mut origins = self.config().cors_origins.clone();
        origins.push(self.config().public_url.clone());
        self.inner.storage.clone().router(&origins)
    }

    /// The metadata store.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The identity check.
    pub fn auth(&self) -> &dyn Authenticate {
        self.inner.auth.as_ref()
    }

    /// Issues and checks upload-scoped tokens.
    pub fn upload_tokens(&self) -> &UploadTokens {
        &self.inner.upload_tokens
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub(crate) async fn check_rate(&self, owner: &Owner) -> Result<(), ApiError> {
        self.inner.limiter.check(&self.inner.db, &owner.0).await
    }

    pub(crate) fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// Charges `extra` requests more to the owner's rate limit (a batch's
    /// files beyond the one its request was charged for).
    pub(crate) async fn charge_rate(&self, owner: &Owner, extra: u32) -> Result<(), ApiError> {
        self.inner.limiter.charge_more(&self.inner.db, &owner.0, extra).await
    }
}

/// The whole HTTP surface: the API under `/api/v1`, `/healthz`, `/metrics`, the
/// storage backend's own routes when it has some (the embedded store's
/// signed URLs under `/storage/v1`), and the upload page at `/` when a
/// static directory is configured.
pub fn app(state: AppState) -> Router {
    let storage = state.storage_router();
    api::router(state, storage)
}
