//! Test support: a real `upload-server` on a real port, in front of the
//! embedded local store or of the Garage started by `scripts/test.sh` (its
//! address comes in `TEST_S3_*`), on SQLite or on the PostgreSQL that
//! script starts (`TEST_POSTGRES_URL`, an admin connection: each test gets
//! a database of its own).
//!
//! `cargo test` on a fresh clone needs nothing installed: it runs every test
//! on the embedded store and lists each test that needs Garage as `ignored,
//! needs Garage: scripts/test.sh runs it` and each that needs PostgreSQL
//! too as `ignored, needs Garage and PostgreSQL: ...` (`#[ignore = "..."]`
//! with that text). `scripts/test.sh` starts both and runs them with
//! `cargo test -- --ignored`, where a missing store or database fails them.
//! In this crate `#[ignore]` means exactly that, nothing else.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use upload_server::{AppState, ConfigBuilder, app};

/// The secret tests sign tokens with.
pub const JWT_SECRET: &str = "test-secret-for-integration-tests";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: this test needs a running Garage; run it with scripts/test.sh"))
}

/// Runs each listed `async fn(Backend)` once per backend, as
/// `<name>::garage` (ignored: needs Garage, see the crate's docs),
/// `<name>::garage_postgres` (ignored: needs Garage and PostgreSQL) and
/// `<name>::local`, so one suite covers both stores and both databases.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                #[ignore = "needs Garage: scripts/test.sh runs it"]
                async fn garage() {
                    super::$name($crate::Backend::Garage).await
                }
                #[tokio::test]
                #[ignore = "needs Garage and PostgreSQL: scripts/test.sh runs it"]
                async fn garage_postgres() {
                    super::$name($crate::Backend::GaragePostgres).await
                }
                #[tokio::test]
                async fn local() {
                    super::$name($crate::Backend::Local).await
                }
            }
        )*
    };
}

/// Where a test server keeps its objects and its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The Garage started by `scripts/test.sh`, records in SQLite.
    Garage,
    /// That Garage, records in a fresh database of the PostgreSQL
    /// `scripts/test.sh` starts.
    GaragePostgres,
    /// The embedded default: local disk, URLs served by the server itself;
    /// records in SQLite.
    Local,
}

/// Where a test server keeps its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Garage: an S3-compatible store.
    Garage,
    /// The embedded local-disk store.
    Local,
}

impl Backend {
    /// The object store.
    pub fn store(self) -> Store {
        match self {
            Backend::Garage | Backend::GaragePostgres => Store::Garage,
            Backend::Local => Store::Local,
        }
    }

    /// A new, empty database of this backend's kind, for servers that
    /// share one: a SQLite file in the returned directory, or a database of
    /// its own on the test PostgreSQL.
    pub async fn fresh_database(self) -> (String, Option<tempfile::TempDir>) {
        match self {
            Backend::GaragePostgres => (fresh_postgres_database().await, None),
            Backend::Garage | Backend::Local => {
                let dir = tempfile::tempdir().unwrap();
                (format!("sqlite://{}", dir.path().join("uploads.db").display()), Some(dir))
            }
        }
    }
}

/// A new database with a random name on the PostgreSQL server
/// `TEST_POSTGRES_URL` names (through that admin connection); its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection as _;
    let admin = std::env::var("TEST_POSTGRES_URL")
        .expect("TEST_POSTGRES_URL is not set: this test needs PostgreSQL; run it with scripts/test.sh");
    let name = format!("test_{:016x}{:08x}", rand_u64(), std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connecting to TEST_POSTGRES_URL");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let _ = conn.close().await;
    let (base, _) = admin.rsplit_once('/').expect("TEST_POSTGRES_URL ends with /<database>");
    format!("{base}/{name}")
}

/// Random enough for database names: the std hasher's random keys.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    hasher.finish()
}

/// Rows of `table` in the database at `url`, SQLite or PostgreSQL.
pub async fn count_rows(url: &str, table: &str) -> i64 {
    use sqlx::Connection as _;
    let sql = format!("SELECT COUNT(*) FROM {table}");
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
    }
}

/// A builder for `backend`, in JWT mode, with a fresh database in `data_dir`.
pub fn test_config(backend: Backend, data_dir: &std::path::Path, base: &str) -> ConfigBuilder {
    let builder = ConfigBuilder::default()
        .listen("127.0.0.1:0")
        .public_url(base)
        .data_dir(data_dir)
        .jwt_secret(JWT_SECRET)
        .rate_limit(0);
    match backend.store() {
        Store::Garage => builder
            .s3_bucket(env("TEST_S3_BUCKET"))
            .s3_endpoint(env("TEST_S3_ENDPOINT"))
            .s3_region(env("TEST_S3_REGION"))
            .s3_force_path_style(true),
        Store::Local => builder,
    }
}

/// A server listening on 127.0.0.1, stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server on `backend` with `customize` applied to the config.
    pub async fn start(backend: Backend, customize: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut builder = test_config(backend, dir.path(), &base);
        if backend == Backend::GaragePostgres {
            builder = builder.database_url(fresh_postgres_database().await);
        }
        let config = customize(builder).build().unwrap();
        let state = AppState::from_config(config).await.unwrap();
        let router = app(state.clone());
        let task = tokio::spawn(async move {
            // The binary's serve loop, with its connection limits.
            upload_server::serve::serve(listener, router, Default::default(), std::future::pending()).await.unwrap();
        });
        TestServer { base, http: reqwest::Client::new(), state, task, backend, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// A client acting as `owner`.
    pub fn as_owner(&self, owner: &str) -> Client<'_> {
        Client { server: self, token: Some(token(owner, 3600)) }
    }

    /// A client with no token at all.
    pub fn anonymous(&self) -> Client<'_> {
        Client { server: self, token: None }
    }
}

/// Unix milliseconds now, as the server keeps times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// An HS256 token for `sub`, expiring `exp_in` seconds from now (negative: already expired).
pub fn token(sub: &str, exp_in: i64) -> String {
    token_with_secret(sub, exp_in, JWT_SECRET)
}

pub fn token_with_secret(sub: &str, exp_in: i64, secret: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": now + exp_in}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Requests as one owner.
pub struct Client<'a> {
    pub server: &'a TestServer,
    pub token: Option<String>,
}

impl Client<'_> {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.server.http.request(method, self.server.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(reqwest::Method::GET, path).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(reqwest::Method::POST, path).json(&body).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        self.request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(reqwest::Method::DELETE, path).send().await.unwrap()
    }

    /// `POST /uploads`, expecting 201.
    pub async fn create(&self, name: &str, size: usize, content_type: &str) -> Value {
        let response = self.post("/uploads", json!({"name": name, "size": size, "type": content_type})).await;
        json_ok(response, StatusCode::CREATED).await
    }
}

/// Asserts the status and returns the JSON body.
pub async fn json_ok(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {body}");
    if body.is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap() }
}

/// Asserts the contract's error shape, status and code; returns the message.
pub async fn expect_error(response: Response, status: u16, code: &str) -> String {
    let got = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {body}");
    let value: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("error body is not JSON: {body}"));
    assert_eq!(value["error"]["code"], code, "body: {body}");
    let message = value["error"]["message"].as_str().expect("error message").to_owned();
    assert!(!message.is_empty());
    message
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends the S3 POST form of a created upload the way a browser does:
/// every field, then the file last. Returns the store's status and body.
pub async fn post_form(
    http: &reqwest::Client,
    upload: &Value,
    fields_override: &BTreeMap<String, String>,
    file: Vec<u8>,
) -> (u16, String) {
    let plan = &upload["upload"];
    assert_eq!(plan["uploader"], "S3", "expected a single-POST plan: {upload}");
    let mut form = reqwest::multipart::Form::new();
    let mut fields: BTreeMap<String, String> =
        plan["fields"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    for (k, v) in fields_override {
        fields.insert(k.clone(), v.clone());
    }
    for (k, v) in fields {
        form = form.text(k, v);
    }
    form = form.part("file", reqwest::multipart::Part::bytes(file).file_name("upload.bin"));
    let response = http.post(plan["url"].as_str().unwrap()).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Base64 SHA-256, as the contract carries it.
pub fn sha256_b64(data: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

impl Client<'_> {
    /// `POST /uploads` with any body, for error cases.
    pub async fn post_raw_json(&self, body: Value) -> Response {
        self.post("/uploads", body).await
    }
}
