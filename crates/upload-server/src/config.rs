//! Server configuration: a builder filled from the environment or by hand,
//! validated once in [`ConfigBuilder::build`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use upload_core::{MAX_PART_SIZE, MIN_PART_SIZE, UploadConstraints};

use crate::db::PoolSettings;
use crate::sniff::SniffMode;
use crate::storage::s3::S3Settings;
use crate::webhooks::WebhookConfig;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The variable (or setting) at fault.
    pub variable: &'static str,
    /// Why, naming the accepted range.
    pub reason: String,
}

fn config_error(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { variable, reason: reason.into() }
}

/// Where objects live.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// An S3 bucket (AWS or any S3-compatible store).
    S3(S3Settings),
    /// Local disk under the data directory (the embedded default).
    Local,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Base URL browsers reach this server at.
    pub public_url: String,
    /// Directory for the SQLite database and local objects.
    pub data_dir: PathBuf,
    /// Metadata store URL (`sqlite://...` or `postgres://...`).
    pub database_url: String,
    /// The PostgreSQL connection pool's size and acquire timeout.
    pub database_pool: PoolSettings,
    /// The data directory is a volume every instance shares, so the
    /// embedded store may run on PostgreSQL (`UPLOAD_LOCAL_SHARED_VOLUME`).
    pub local_shared_volume: bool,
    /// Object storage.
    pub storage: StorageConfig,
    /// HS256 secret for bearer tokens (at least 32
    /// bytes); `None` is development identity, which [`ConfigBuilder::build`]
    /// allows only on a loopback address or with `dev_mode`.
    pub jwt_secret: Option<String>,
    /// When set, bearer tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
    /// Development mode was asked for explicitly (`UPLOAD_DEV_MODE=true`):
    /// development identity on any address.
    pub dev_mode: bool,
    /// What may be uploaded.
    pub constraints: UploadConstraints,
    /// What completion does with the file's first bytes: detect and record
    /// the type, and refuse bytes that contradict `accept`.
    pub sniff: SniffMode,
    /// How long a signed URL or form lives.
    pub url_ttl: Duration,
    /// Files of at least this size go multipart.
    pub multipart_threshold: u64,
    /// Preferred part size.
    pub part_size: u64,
    /// How long a multipart upload may stay pending (part URLs are signed on request).
    pub multipart_window: Duration,
    /// Origins allowed to call the API (and, through `bucket setup`, the bucket).
    pub cors_origins: Vec<String>,
    /// API requests per second per owner (burst twice that); 0 turns limiting off.
    pub rate_limit: u32,
    /// Directory served at `/` (the upload page); `None` serves no page.
    pub static_dir: Option<PathBuf>,
    /// The browser client's npm package, served at `/pkg/` for the page.
    pub pkg_dir: Option<PathBuf>,
    /// Days after which `bucket setup`'s lifecycle rule aborts incomplete multipart uploads.
    pub abort_incomplete_days: i32,
    /// How often the sweeper runs; `None` turns it off.
    pub sweep_interval: Option<Duration>,
    /// How long past its window an upload is left alone before it is expired.
    pub sweep_grace: Duration,
    /// Longest an API request may take before it is answered 503 (a store
    /// or database that does not answer must not hold requests for ever).
    pub request_timeout: Duration,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// Where events are POSTed and how they are signed; `None`: no webhooks.
    pub webhook: Option<WebhookConfig>,
}

impl Config {
    /// The database URL without its password, for messages and logs.
    pub fn database_target(&self) -> String {
        crate::db::redacted(&self.database_url)
    }

    /// A builder with every default.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
}

/// Builds a [`Config`]. Every setting is optional.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    listen: Option<String>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    postgres_pool_size: Option<u32>,
    postgres_acquire_timeout: Option<u64>,
    local_shared_volume: Option<bool>,
    s3_bucket: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_force_path_style: Option<bool>,
    jwt_secret: Option<String>,
    jwt_audience: Option<String>,
    dev_mode: Option<bool>,
    max_file_size: Option<u64>,
    max_files: Option<u32>,
    accept: Option<Vec<String>>,
    sniff: Option<SniffMode>,
    url_ttl: Option<u64>,
    multipart_threshold: Option<u64>,
    part_size: Option<u64>,
    multipart_window: Option<u64>,
    cors_origins: Option<Vec<String>>,
    rate_limit: Option<u32>,
    static_dir: Option<PathBuf>,
    pkg_dir: Option<PathBuf>,
    abort_incomplete_days: Option<i32>,
    sweep_interval: Option<u64>,
    sweep_grace: Option<u64>,
    request_timeout: Option<u64>,
    metrics_token: Option<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
}

/// One variable the server reads, as `upload-server --help` lists it.
#[derive(Debug, Clone, Copy)]
pub struct EnvVariable {
    /// Its name.
    pub name: &'static str,
    /// What it sets.
    pub meaning: &'static str,
    /// What holds when it is unset.
    pub default: &'static str,
}

const fn var(name: &'static str, meaning: &'static str, default: &'static str) -> EnvVariable {
    EnvVariable { name, meaning, default }
}

/// Every variable [`ConfigBuilder::from_env`] reads (and the few the
/// libraries underneath read), in the order of docs/configuration.md; a
/// test keeps this list, `from_env` and that page in step.
pub const ENV_VARIABLES: &[EnvVariable] = &[
    var("UPLOAD_LISTEN", "address to bind", "127.0.0.1:8080"),
    var("UPLOAD_PUBLIC_URL", "base URL browsers reach this server at", "http://UPLOAD_LISTEN"),
    var("UPLOAD_DATA_DIR", "SQLite database and local objects", "./data"),
    var("UPLOAD_DATABASE_URL", "metadata store: sqlite://... or postgres://...", "UPLOAD_DATA_DIR/uploads.db"),
    var("UPLOAD_POSTGRES_POOL_SIZE", "connections each instance keeps to PostgreSQL (1 to 10000)", "16"),
    var(
        "UPLOAD_POSTGRES_ACQUIRE_TIMEOUT",
        "seconds a request waits for a PostgreSQL connection before 503 (1 to 600)",
        "3",
    ),
    var(
        "UPLOAD_LOCAL_SHARED_VOLUME",
        "true: UPLOAD_DATA_DIR is a volume every instance shares (the local store on PostgreSQL)",
        "false",
    ),
    var("UPLOAD_S3_BUCKET", "use this S3 bucket instead of local disk", "unset: local disk"),
    var("UPLOAD_S3_ENDPOINT", "S3-compatible endpoint", "AWS"),
    var("UPLOAD_S3_REGION", "region (AWS_REGION also works)", "us-east-1"),
    var("UPLOAD_S3_FORCE_PATH_STYLE", "path-style addressing", "false"),
    var("AWS_ACCESS_KEY_ID", "S3 credentials, with AWS_SECRET_ACCESS_KEY (the whole AWS chain works)", "the AWS chain"),
    var("UPLOAD_JWT_SECRET", "HS256 secret, 32+ bytes; required unless loopback-only or dev mode", "unset"),
    var("UPLOAD_JWT_AUDIENCE", "tokens must carry this aud", "unset: aud not checked"),
    var("UPLOAD_DEV_MODE", "true: development identity on any address", "false"),
    var("UPLOAD_MAX_FILE_SIZE", "bytes", "104857600"),
    var("UPLOAD_MAX_FILES", "pending uploads per owner", "10"),
    var("UPLOAD_ACCEPT", "comma-separated accept list (.pdf, image/*, text/plain)", "empty: all"),
    var("UPLOAD_SNIFF", "off | record | enforce: detect the type from the first 8 KiB at completion", "enforce"),
    var("UPLOAD_URL_TTL", "seconds a signed URL lives (1 to 604800)", "3600"),
    var("UPLOAD_MULTIPART_THRESHOLD", "bytes from which uploads are multipart", "67108864"),
    var("UPLOAD_PART_SIZE", "bytes (5 MiB to 5 GiB)", "8388608"),
    var("UPLOAD_MULTIPART_WINDOW", "seconds a multipart upload may stay pending", "86400"),
    var("UPLOAD_CORS_ORIGINS", "comma-separated origins allowed to call the API", "same origin only"),
    var("UPLOAD_RATE_LIMIT", "API requests per second per owner, 0 = off", "50"),
    var("UPLOAD_STATIC_DIR", "directory served at /", "www if it has an index.html"),
    var("UPLOAD_PKG_DIR", "browser package served at /pkg/", "crates/upload-wasm/pkg if built"),
    var("UPLOAD_ABORT_INCOMPLETE_DAYS", "lifecycle rule of bucket setup", "2"),
    var("UPLOAD_SWEEP_INTERVAL", "seconds between sweeps of abandoned uploads, 0 = off", "300"),
    var("UPLOAD_REQUEST_TIMEOUT", "seconds an API request may take before 503", "120"),
    var("UPLOAD_SWEEP_GRACE", "seconds past its window before an upload is expired", "900"),
    var("UPLOAD_METRICS_TOKEN", "bearer token GET /metrics requires", "unset: open"),
    var("UPLOAD_WEBHOOK_URL", "receiver of file.* and upload.* events", "unset: no webhooks"),
    var("UPLOAD_WEBHOOK_SECRET", "whsec_<base64>, the webhook signing key", "unset"),
    var("RUST_LOG", "log filter", "info"),
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env(name).map(|v| v.trim().parse().map_err(|e| config_error(name, format!("`{v}`: {e}")))).transpose()
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl ConfigBuilder {
    /// Reads every variable below; unset or empty variables keep their default.
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `UPLOAD_LISTEN` | address to bind | `127.0.0.1:8080` |
    /// | `UPLOAD_PUBLIC_URL` | base URL browsers reach this server at | `http://UPLOAD_LISTEN` |
    /// | `UPLOAD_DATA_DIR` | SQLite database and local objects | `./data` |
    /// | `UPLOAD_DATABASE_URL` | metadata store: `sqlite://...` or `postgres://user:password@host/db` | `UPLOAD_DATA_DIR/uploads.db` |
    /// | `UPLOAD_POSTGRES_POOL_SIZE` | connections each instance keeps to PostgreSQL, 1 to 10000 | `16` |
    /// | `UPLOAD_POSTGRES_ACQUIRE_TIMEOUT` | seconds a request waits for a PostgreSQL connection before it is answered 503, 1 to 600 | `3` |
    /// | `UPLOAD_LOCAL_SHARED_VOLUME` | `true`: `UPLOAD_DATA_DIR` is a volume every instance shares, so the embedded store may run on PostgreSQL | `false` |
    /// | `UPLOAD_S3_BUCKET` | use this S3 bucket instead of local disk | unset |
    /// | `UPLOAD_S3_ENDPOINT` | S3-compatible endpoint | AWS |
    /// | `UPLOAD_S3_REGION` | region | `us-east-1` |
    /// | `UPLOAD_S3_FORCE_PATH_STYLE` | path-style addressing | `false` |
    /// | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | credentials (the AWS chain) | |
    /// | `UPLOAD_JWT_SECRET` | HS256 secret, at least 32 bytes; required unless loopback-only or dev mode | unset |
    /// | `UPLOAD_JWT_AUDIENCE` | tokens must carry this `aud` | unset (`aud` not checked) |
    /// | `UPLOAD_DEV_MODE` | `true`: development identity (everyone is `anonymous`) on any address | `false` |
    /// | `UPLOAD_MAX_FILE_SIZE` | bytes | `104857600` |
    /// | `UPLOAD_MAX_FILES` | pending uploads per owner | `10` |
    /// | `UPLOAD_ACCEPT` | comma-separated accept list | empty (all) |
    /// | `UPLOAD_SNIFF` | at completion, read the first 8 KiB: `off`, `record` (detect the type into `detected_type`), `enforce` (also refuse bytes that contradict `UPLOAD_ACCEPT`: 422 `content_not_accepted`) | `enforce` (with no accept list it only records) |
    /// | `UPLOAD_URL_TTL` | seconds a signed URL lives | `3600` |
    /// | `UPLOAD_MULTIPART_THRESHOLD` | bytes from which uploads are multipart | `67108864` |
    /// | `UPLOAD_PART_SIZE` | bytes | `8388608` |
    /// | `UPLOAD_MULTIPART_WINDOW` | seconds a multipart upload may stay pending | `86400` |
    /// | `UPLOAD_CORS_ORIGINS` | comma-separated origins allowed to call the API | same origin only |
    /// | `UPLOAD_RATE_LIMIT` | API requests per second per owner, 0 = off | `50` |
    /// | `UPLOAD_STATIC_DIR` | directory served at `/` | `www` if it exists |
    /// | `UPLOAD_PKG_DIR` | browser package served at `/pkg/` | `crates/upload-wasm/pkg` if it exists |
    /// | `UPLOAD_ABORT_INCOMPLETE_DAYS` | lifecycle rule of `bucket setup` | `2` |
    /// | `UPLOAD_SWEEP_INTERVAL` | seconds between sweeps of abandoned uploads, 0 = off | `300` |
    /// | `UPLOAD_REQUEST_TIMEOUT` | seconds an API request may take before it is answered 503 | `120` |
    /// | `UPLOAD_SWEEP_GRACE` | seconds past its window before an upload is expired | `900` |
    /// | `UPLOAD_METRICS_TOKEN` | bearer token `GET /metrics` requires | unset (open) |
    /// | `UPLOAD_WEBHOOK_URL` | receiver of `file.completed`, `file.deleted`, `upload.failed`, `upload.expired` (Standard Webhooks) | unset (no webhooks) |
    /// | `UPLOAD_WEBHOOK_SECRET` | `whsec_<base64 of 24 to 64 bytes>`, the signing key; required with the URL | unset |
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(ConfigBuilder {
            listen: env("UPLOAD_LISTEN"),
            public_url: env("UPLOAD_PUBLIC_URL"),
            data_dir: env("UPLOAD_DATA_DIR").map(PathBuf::from),
            database_url: env("UPLOAD_DATABASE_URL"),
            postgres_pool_size: env_parse("UPLOAD_POSTGRES_POOL_SIZE")?,
            postgres_acquire_timeout: env_parse("UPLOAD_POSTGRES_ACQUIRE_TIMEOUT")?,
            local_shared_volume: env_parse("UPLOAD_LOCAL_SHARED_VOLUME")?,
            s3_bucket: env("UPLOAD_S3_BUCKET"),
            s3_endpoint: env("UPLOAD_S3_ENDPOINT"),
            s3_region: env("UPLOAD_S3_REGION").or_else(|| env("AWS_REGION")),
            s3_force_path_style: env_parse("UPLOAD_S3_FORCE_PATH_STYLE")?,
            jwt_secret: env("UPLOAD_JWT_SECRET"),
            jwt_audience: env("UPLOAD_JWT_AUDIENCE"),
            dev_mode: env_parse("UPLOAD_DEV_MODE")?,
            max_file_size: env_parse("UPLOAD_MAX_FILE_SIZE")?,
            max_files: env_parse("UPLOAD_MAX_FILES")?,
            accept: env("UPLOAD_ACCEPT").map(|v| list(&v)),
            sniff: env_parse("UPLOAD_SNIFF")?,
            url_ttl: env_parse("UPLOAD_URL_TTL")?,
            multipart_threshold: env_parse("UPLOAD_MULTIPART_THRESHOLD")?,
            part_size: env_parse("UPLOAD_PART_SIZE")?,
            multipart_window: env_parse("UPLOAD_MULTIPART_WINDOW")?,
            cors_origins: env("UPLOAD_CORS_ORIGINS").map(|v| list(&v)),
            rate_limit: env_parse("UPLOAD_RATE_LIMIT")?,
            static_dir: env("UPLOAD_STATIC_DIR").map(PathBuf::from),
            pkg_dir: env("UPLOAD_PKG_DIR").map(PathBuf::from),
            abort_incomplete_days: env_parse("UPLOAD_ABORT_INCOMPLETE_DAYS")?,
            sweep_interval: env_parse("UPLOAD_SWEEP_INTERVAL")?,
            sweep_grace: env_parse("UPLOAD_SWEEP_GRACE")?,
            request_timeout: env_parse("UPLOAD_REQUEST_TIMEOUT")?,
            metrics_token: env("UPLOAD_METRICS_TOKEN"),
            webhook_url: env("UPLOAD_WEBHOOK_URL"),
            webhook_secret: env("UPLOAD_WEBHOOK_SECRET"),
        })
    }

    /// Address to bind, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }
    /// Base URL browsers reach this server at.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }
    /// Directory for the database and local objects.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
    /// Metadata store URL.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }
    /// Connections each instance keeps to PostgreSQL (`UPLOAD_POSTGRES_POOL_SIZE`).
    pub fn postgres_pool_size(mut self, connections: u32) -> Self {
        self.postgres_pool_size = Some(connections);
        self
    }
    /// Seconds a request waits for a PostgreSQL connection before it is
    /// answered 503 (`UPLOAD_POSTGRES_ACQUIRE_TIMEOUT`).
    pub fn postgres_acquire_timeout_secs(mut self, secs: u64) -> Self {
        self.postgres_acquire_timeout = Some(secs);
        self
    }
    /// The data directory is a volume every instance shares (see
    /// [`Config::local_shared_volume`]).
    pub fn local_shared_volume(mut self, shared: bool) -> Self {
        self.local_shared_volume = Some(shared);
        self
    }
    /// Use this S3 bucket.
    pub fn s3_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.s3_bucket = Some(bucket.into());
        self
    }
    /// S3-compatible endpoint URL.
    pub fn s3_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.s3_endpoint = Some(endpoint.into());
        self
    }
    /// Region.
    pub fn s3_region(mut self, region: impl Into<String>) -> Self {
        self.s3_region = Some(region.into());
        self
    }
    /// Path-style addressing.
    pub fn s3_force_path_style(mut self, on: bool) -> Self {
        self.s3_force_path_style = Some(on);
        self
    }
    /// HS256 secret for bearer tokens.
    pub fn jwt_secret(mut self, secret: impl Into<String>) -> Self {
        self.jwt_secret = Some(secret.into());
        self
    }
    /// The `aud` every bearer token must carry.
    pub fn jwt_audience(mut self, audience: impl Into<String>) -> Self {
        self.jwt_audience = Some(audience.into());
        self
    }
    /// Development identity (one shared owner for everybody) even on a
    /// non-loopback address. Never in production.
    pub fn dev_mode(mut self, on: bool) -> Self {
        self.dev_mode = Some(on);
        self
    }
    /// Largest file, in bytes.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = Some(bytes);
        self
    }
    /// Pending uploads per owner.
    pub fn max_files(mut self, n: u32) -> Self {
        self.max_files = Some(n);
        self
    }
    /// Accept list.
    pub fn accept(mut self, accept: Vec<String>) -> Self {
        self.accept = Some(accept);
        self
    }
    /// What completion does with the file's first bytes (`UPLOAD_SNIFF`).
    pub fn sniff(mut self, mode: SniffMode) -> Self {
        self.sniff = Some(mode);
        self
    }
    /// Seconds a signed URL lives.
    pub fn url_ttl_secs(mut self, secs: u64) -> Self {
        self.url_ttl = Some(secs);
        self
    }
    /// Bytes from which uploads are multipart.
    pub fn multipart_threshold(mut self, bytes: u64) -> Self {
        self.multipart_threshold = Some(bytes);
        self
    }
    /// Preferred part size.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = Some(bytes);
        self
    }
    /// Seconds a multipart upload may stay pending.
    pub fn multipart_window_secs(mut self, secs: u64) -> Self {
        self.multipart_window = Some(secs);
        self
    }
    /// Origins allowed to call the API.
    pub fn cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors_origins = Some(origins);
        self
    }
    /// Requests per second per owner; 0 is off.
    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = Some(per_second);
        self
    }
    /// Directory served at `/`.
    pub fn static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }
    /// Seconds between sweeps; 0 turns the sweeper off.
    pub fn sweep_interval_secs(mut self, secs: u64) -> Self {
        self.sweep_interval = Some(secs);
        self
    }
    /// Seconds an API request may take (`UPLOAD_REQUEST_TIMEOUT`).
    pub fn request_timeout_secs(mut self, secs: u64) -> Self {
        self.request_timeout = Some(secs);
        self
    }
    /// Seconds past its window before an upload is expired.
    pub fn sweep_grace_secs(mut self, secs: u64) -> Self {
        self.sweep_grace = Some(secs);
        self
    }
    /// The bearer token `GET /metrics` requires (`UPLOAD_METRICS_TOKEN`).
    pub fn metrics_token(mut self, token: impl Into<String>) -> Self {
        self.metrics_token = Some(token.into());
        self
    }
    /// Webhooks to `url`, signed with `secret` (`whsec_<base64>`).
    pub fn webhook(mut self, url: impl Into<String>, secret: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self.webhook_secret = Some(secret.into());
        self
    }
    /// Browser package directory served at `/pkg/`.
    pub fn pkg_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pkg_dir = Some(dir.into());
        self
    }

    /// Validates and fills in defaults, one concern at a time; the first
    /// bad value is refused, naming its variable.
    pub fn build(self) -> Result<Config, ConfigError> {
        let (listen, public_url) = self.address()?;
        let dev_mode = self.dev_mode.unwrap_or(false);
        check_identity(self.jwt_secret.as_deref(), dev_mode, listen)?;
        let (data_dir, database_url) = self.database()?;
        let database_pool = self.database_pool()?;
        let storage = self.storage();
        let local_shared_volume = self.local_shared_volume.unwrap_or(false);
        check_local_store(&storage, &database_url, local_shared_volume)?;
        let constraints = self.constraints()?;
        let url_ttl = self.url_ttl()?;
        let (part_size, multipart_threshold) = self.multipart_sizes()?;
        let cors_origins = self.allowed_origins()?;
        let (static_dir, pkg_dir) = self.served_dirs();
        let request_timeout = self.request_timeout()?;
        let abort_incomplete_days = self.abort_incomplete_days()?;
        let webhook = self.webhook_config()?;
        Ok(Config {
            listen,
            public_url,
            data_dir,
            database_url,
            database_pool,
            local_shared_volume,
            storage,
            jwt_secret: self.jwt_secret,
            jwt_audience: self.jwt_audience,
            dev_mode,
            constraints,
            sniff: self.sniff.unwrap_or_default(),
            url_ttl,
            multipart_threshold,
            part_size,
            // A multipart upload may stay pending at least as long as its URLs live.
            multipart_window: Duration::from_secs(self.multipart_window.unwrap_or(86_400)).max(url_ttl),
            cors_origins,
            rate_limit: self.rate_limit.unwrap_or(50),
            static_dir,
            pkg_dir,
            abort_incomplete_days,
            sweep_interval: Some(self.sweep_interval.unwrap_or(300)).filter(|s| *s > 0).map(Duration::from_secs),
            sweep_grace: Duration::from_secs(self.sweep_grace.unwrap_or(900)),
            request_timeout,
            metrics_token: self.metrics_token,
            webhook,
        })
    }

    /// Both webhook variables or neither.
    fn webhook_config(&self) -> Result<Option<WebhookConfig>, ConfigError> {
        match (&self.webhook_url, &self.webhook_secret) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(config_error("UPLOAD_WEBHOOK_SECRET", "required with UPLOAD_WEBHOOK_URL")),
            (None, Some(_)) => Err(config_error("UPLOAD_WEBHOOK_URL", "required with UPLOAD_WEBHOOK_SECRET")),
            (Some(url), Some(secret)) => WebhookConfig::new(url, secret).map(Some).map_err(|e| {
                let variable = match e {
                    crate::webhooks::WebhookConfigError::Url(_) => "UPLOAD_WEBHOOK_URL",
                    _ => "UPLOAD_WEBHOOK_SECRET",
                };
                config_error(variable, e.to_string())
            }),
        }
    }

    /// The address to bind, and the base URL browsers reach it at.
    fn address(&self) -> Result<(SocketAddr, String), ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|e| config_error("UPLOAD_LISTEN", format!("`{listen_text}` is not host:port ({e})")))?;
        let public_url =
            self.public_url.clone().unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_owned();
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(config_error(
                "UPLOAD_PUBLIC_URL",
                format!("`{public_url}` must start with http:// or https://"),
            ));
        }
        Ok((listen, public_url))
    }

    /// The data directory, and the SQLite database (in it unless given).
    fn database(&self) -> Result<(PathBuf, String), ConfigError> {
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from("./data"));
        let database_url =
            self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("uploads.db").display()));
        if !database_url.starts_with("sqlite:") && !crate::db::is_postgres(&database_url) {
            return Err(config_error(
                "UPLOAD_DATABASE_URL",
                format!("`{}` is neither sqlite://... nor postgres://...", crate::db::redacted(&database_url)),
            ));
        }
        Ok((data_dir, database_url))
    }

    /// The PostgreSQL pool's size and acquire timeout (validated whatever
    /// the database, so a bad value is found before a move to PostgreSQL).
    fn database_pool(&self) -> Result<PoolSettings, ConfigError> {
        let mut pool = PoolSettings::default();
        if let Some(size) = self.postgres_pool_size {
            if !(1..=10_000).contains(&size) {
                return Err(config_error(
                    "UPLOAD_POSTGRES_POOL_SIZE",
                    format!("{size} is outside 1..=10000 connections"),
                ));
            }
            pool.max_connections = size;
        }
        if let Some(secs) = self.postgres_acquire_timeout {
            if !(1..=600).contains(&secs) {
                return Err(config_error(
                    "UPLOAD_POSTGRES_ACQUIRE_TIMEOUT",
                    format!("{secs} is outside 1..=600 seconds"),
                ));
            }
            pool.acquire_timeout = Duration::from_secs(secs);
        }
        Ok(pool)
    }

    /// S3 when a bucket is named, else the embedded store.
    fn storage(&self) -> StorageConfig {
        match &self.s3_bucket {
            Some(bucket) => StorageConfig::S3(S3Settings {
                bucket: bucket.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
                force_path_style: self.s3_force_path_style.unwrap_or(false),
            }),
            None => StorageConfig::Local,
        }
    }

    /// What uploads may be: size, pending count per owner, accepted types.
    fn constraints(&self) -> Result<UploadConstraints, ConfigError> {
        let defaults = UploadConstraints::default();
        let constraints = UploadConstraints {
            max_file_size: self.max_file_size.unwrap_or(defaults.max_file_size),
            max_files: self.max_files.unwrap_or(defaults.max_files),
            accept: self.accept.clone().unwrap_or_default(),
        };
        if constraints.max_file_size == 0 || constraints.max_file_size > upload_core::MAX_OBJECT_SIZE {
            return Err(config_error("UPLOAD_MAX_FILE_SIZE", "must be 1 byte to 5 TiB"));
        }
        if constraints.max_files == 0 {
            return Err(config_error("UPLOAD_MAX_FILES", "must be at least 1"));
        }
        constraints.validate().map_err(|e| config_error("UPLOAD_ACCEPT", e.to_string()))?;
        Ok(constraints)
    }

    /// How long a signed URL lives.
    fn url_ttl(&self) -> Result<Duration, ConfigError> {
        let url_ttl = self.url_ttl.unwrap_or(3600);
        // SigV4 presigned URLs cannot live longer than 7 days.
        if !(1..=604_800).contains(&url_ttl) {
            return Err(config_error("UPLOAD_URL_TTL", format!("{url_ttl} is outside 1..=604800 seconds")));
        }
        Ok(Duration::from_secs(url_ttl))
    }

    /// The part size (within S3's limits) and the size from which uploads are multipart.
    fn multipart_sizes(&self) -> Result<(u64, u64), ConfigError> {
        let part_size = self.part_size.unwrap_or(8 * 1024 * 1024);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(config_error(
                "UPLOAD_PART_SIZE",
                format!("{part_size} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes"),
            ));
        }
        let multipart_threshold = self.multipart_threshold.unwrap_or(64 * 1024 * 1024);
        if multipart_threshold == 0 {
            return Err(config_error("UPLOAD_MULTIPART_THRESHOLD", "must be at least 1 byte"));
        }
        Ok((part_size, multipart_threshold))
    }

    /// Origins allowed to call the API, each a real origin (or `*`).
    fn allowed_origins(&self) -> Result<Vec<String>, ConfigError> {
        let cors_origins = self.cors_origins.clone().unwrap_or_default();
        for origin in &cors_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(config_error(
                    "UPLOAD_CORS_ORIGINS",
                    format!("`{origin}` is not an origin like https://app.example"),
                ));
            }
        }
        Ok(cors_origins)
    }

    /// The upload page and the browser package: as given, else the
    /// repository's own when the server runs from a checkout that has them.
    fn served_dirs(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        let static_dir = self.static_dir.clone().or_else(|| {
            let default = PathBuf::from("www");
            default.join("index.html").is_file().then_some(default)
        });
        let pkg_dir = self.pkg_dir.clone().or_else(|| {
            let default = PathBuf::from("crates/upload-wasm/pkg");
            default.join("upload_wasm.js").is_file().then_some(default)
        });
        (static_dir, pkg_dir)
    }

    /// How long an API request may take before it is answered 503.
    fn request_timeout(&self) -> Result<Duration, ConfigError> {
        let request_timeout = self.request_timeout.unwrap_or(120);
        if request_timeout == 0 {
            return Err(config_error("UPLOAD_REQUEST_TIMEOUT", "must be at least 1 second"));
        }
        Ok(Duration::from_secs(request_timeout))
    }

    /// The lifecycle rule `bucket setup` applies.
    fn abort_incomplete_days(&self) -> Result<i32, ConfigError> {
        let abort_incomplete_days = self.abort_incomplete_days.unwrap_or(2);
        if abort_incomplete_days < 1 {
            return Err(config_error("UPLOAD_ABORT_INCOMPLETE_DAYS", "must be at least 1"));
        }
        Ok(abort_incomplete_days)
    }
}

/// The embedded store keeps objects on this machine's disk, while a
/// PostgreSQL database is there for instances on several machines: each would
/// record files the others cannot serve. Only a data directory every
/// instance shares (NFS, a cluster file system) makes that work, and the
/// server cannot tell, so it must be told.
fn check_local_store(storage: &StorageConfig, database_url: &str, shared: bool) -> Result<(), ConfigError> {
    if matches!(storage, StorageConfig::Local) && crate::db::is_postgres(database_url) && !shared {
        return Err(config_error(
            "UPLOAD_LOCAL_SHARED_VOLUME",
            "the embedded local-disk store keeps objects on this machine only, but the database is PostgreSQL, \
             where instances on other machines would record files this disk does not have: set UPLOAD_S3_BUCKET, \
             or UPLOAD_LOCAL_SHARED_VOLUME=true if UPLOAD_DATA_DIR is a volume every instance shares",
        ));
    }
    Ok(())
}

/// Shortest accepted `UPLOAD_JWT_SECRET`: an HS256 key should be as long as
/// the hash (RFC 7518 3.2), and a short one can be brute-forced offline from
/// any token.
pub(crate) const MIN_JWT_SECRET_LEN: usize = 32;

/// Development identity makes everybody one owner who can list, download and
/// delete every file, so it never happens by accident: without a secret the
/// server must listen on loopback only, or be told `UPLOAD_DEV_MODE=true`.
fn check_identity(secret: Option<&str>, dev_mode: bool, listen: SocketAddr) -> Result<(), ConfigError> {
    match secret {
        Some(_) if dev_mode => Err(config_error(
            "UPLOAD_DEV_MODE",
            "development mode and UPLOAD_JWT_SECRET exclude each other: unset one of them",
        )),
        Some(secret) if secret.len() < MIN_JWT_SECRET_LEN => Err(config_error(
            "UPLOAD_JWT_SECRET",
            format!(
                "{} bytes is too short: use at least {MIN_JWT_SECRET_LEN} random bytes (e.g. `openssl rand -hex 32`)",
                secret.len()
            ),
        )),
        Some(_) => Ok(()),
        None if dev_mode || listen.ip().is_loopback() => Ok(()),
        None => Err(config_error(
            "UPLOAD_JWT_SECRET",
            format!(
                "required when listening on {listen}, which is not loopback-only: set a secret of at least \
                 {MIN_JWT_SECRET_LEN} bytes, or UPLOAD_DEV_MODE=true for development identity"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::builder().build().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(config.constraints.max_file_size, 104_857_600);
        assert_eq!(config.constraints.max_files, 10);
        assert!(config.constraints.accept.is_empty());
        assert_eq!(config.url_ttl, Duration::from_secs(3600));
        assert_eq!(config.multipart_threshold, 67_108_864);
        assert_eq!(config.part_size, 8_388_608);
        assert!(matches!(config.storage, StorageConfig::Local));
        assert_eq!(config.sniff, SniffMode::Enforce);
        assert_eq!(config.database_pool.max_connections, 16);
        assert_eq!(config.database_pool.acquire_timeout, Duration::from_secs(3));
    }

    /// The list `--help` prints, what `from_env` reads and
    /// docs/configuration.md name the same variables.
    #[test]
    fn every_variable_is_listed_and_documented() {
        let source = include_str!("config.rs");
        let from_env = &source[source.find("pub fn from_env").unwrap()..];
        let from_env = &from_env[..from_env.find("\n    }\n").unwrap()];
        let read: std::collections::BTreeSet<&str> =
            from_env.split('"').filter(|s| s.starts_with("UPLOAD_") || s.starts_with("AWS_")).collect();
        assert!(read.len() > 25, "{read:?}");
        let listed: std::collections::BTreeSet<&str> = ENV_VARIABLES.iter().map(|v| v.name).collect();
        for name in &read {
            assert!(listed.contains(name) || *name == "AWS_REGION", "{name} is read but not in ENV_VARIABLES");
        }
        let docs = include_str!("../../../docs/configuration.md");
        for v in ENV_VARIABLES {
            assert!(
                v.name == "RUST_LOG" || v.name.starts_with("AWS_") || read.contains(v.name),
                "{} is listed but not read",
                v.name
            );
            assert!(
                docs.contains(&format!("| {} ", v.name)) || docs.contains(&format!("| {},", v.name)),
                "{} is not in docs/configuration.md",
                v.name
            );
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            (Config::builder().listen("nope"), "UPLOAD_LISTEN"),
            (Config::builder().part_size(1024), "UPLOAD_PART_SIZE"),
            (Config::builder().url_ttl_secs(0), "UPLOAD_URL_TTL"),
            (Config::builder().url_ttl_secs(604_801), "UPLOAD_URL_TTL"),
            (Config::builder().accept(vec!["image".into()]), "UPLOAD_ACCEPT"),
            (Config::builder().max_files(0), "UPLOAD_MAX_FILES"),
            (Config::builder().cors_origins(vec!["app.example".into()]), "UPLOAD_CORS_ORIGINS"),
            (Config::builder().database_url("mysql://x"), "UPLOAD_DATABASE_URL"),
            (Config::builder().request_timeout_secs(0), "UPLOAD_REQUEST_TIMEOUT"),
            (Config::builder().postgres_pool_size(0), "UPLOAD_POSTGRES_POOL_SIZE"),
            (Config::builder().postgres_pool_size(10_001), "UPLOAD_POSTGRES_POOL_SIZE"),
            (Config::builder().postgres_acquire_timeout_secs(0), "UPLOAD_POSTGRES_ACQUIRE_TIMEOUT"),
            (Config::builder().postgres_acquire_timeout_secs(601), "UPLOAD_POSTGRES_ACQUIRE_TIMEOUT"),
            (Config::builder().database_url("postgres://u:p@db.example/up"), "UPLOAD_LOCAL_SHARED_VOLUME"),
            (Config::builder().webhook("https://h.example", "whsec_c2hvcnQ="), "UPLOAD_WEBHOOK_SECRET"),
            (Config::builder().webhook("h.example", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "UPLOAD_WEBHOOK_URL"),
        ];
        for (builder, variable) in cases {
            assert_eq!(builder.build().unwrap_err().variable, variable);
        }
    }

    /// The embedded store runs on PostgreSQL only when told the data
    /// directory is shared, and a refused URL's message keeps its password.
    #[test]
    fn the_local_store_on_postgres_needs_a_shared_volume() {
        let url = "postgres://upload:hunter2@db.example:5432/uploads";
        let refused = Config::builder().database_url(url).build().unwrap_err();
        assert!(refused.reason.contains("UPLOAD_LOCAL_SHARED_VOLUME=true"), "{refused}");
        let shared = Config::builder().database_url(url).local_shared_volume(true).build().unwrap();
        assert!(shared.local_shared_volume);
        assert!(Config::builder().database_url(url).s3_bucket("b").build().is_ok());
        let bad = Config::builder().database_url("mysql://upload:hunter2@db.example/x").build().unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
    }

    /// Development identity never happens by accident: not on a public
    /// address without `dev_mode`, never with a short secret.
    #[test]
    fn no_open_door_without_asking() {
        let long = "0123456789abcdef0123456789abcdef";
        let cases = [
            (Config::builder().listen("0.0.0.0:8080"), "UPLOAD_JWT_SECRET"),
            (Config::builder().listen("[::]:8080"), "UPLOAD_JWT_SECRET"),
            (Config::builder().listen("192.0.2.7:8080"), "UPLOAD_JWT_SECRET"),
            (Config::builder().jwt_secret("x"), "UPLOAD_JWT_SECRET"),
            (Config::builder().jwt_secret(&long[1..]), "UPLOAD_JWT_SECRET"),
            (Config::builder().listen("0.0.0.0:8080").jwt_secret("short"), "UPLOAD_JWT_SECRET"),
            (Config::builder().jwt_secret(long).dev_mode(true), "UPLOAD_DEV_MODE"),
        ];
        for (builder, variable) in cases {
            assert_eq!(builder.build().unwrap_err().variable, variable);
        }
        let loopback = Config::builder().listen("127.0.0.1:0").build().unwrap();
        assert!(loopback.jwt_secret.is_none() && !loopback.dev_mode);
        assert!(Config::builder().listen("[::1]:8080").build().unwrap().jwt_secret.is_none());
        let explicit = Config::builder().listen("0.0.0.0:8080").dev_mode(true).build().unwrap();
        assert!(explicit.jwt_secret.is_none() && explicit.dev_mode);
        let production = Config::builder().listen("0.0.0.0:8080").jwt_secret(long).build().unwrap();
        assert_eq!(production.jwt_secret.as_deref(), Some(long));
    }
}
