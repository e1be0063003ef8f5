//! The database under bad conditions: unreachable at start, migrated by a
//! newer version, the embedded store on PostgreSQL without a shared volume
//! (each through the real binary, `target/debug/upload-server`, which
//! `cargo build --all-targets` and scripts/test.sh build), and PostgreSQL
//! stopped under a serving server, then started again (a cluster of the
//! test's own, from scripts/postgres.sh, since the shared one must stay up).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use upload_tests::{Backend, TestServer, expect_error, json_ok};

/// The server binary of this workspace's debug build.
fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/upload-server");
    assert!(path.is_file(), "{} is missing: run `cargo build --all-targets` first", path.display());
    path
}

/// Runs `upload-server` (serve) with only `vars` set, in a fresh data
/// directory; it must exit on its own within a minute.
fn run_server(vars: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary());
    command.env_clear().env("UPLOAD_DATA_DIR", dir.path()).env("UPLOAD_LISTEN", "127.0.0.1:0");
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the server did not exit within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The `error: ...` line the binary ends with, asserting it failed.
fn failure_line(output: &Output) -> String {
    assert!(!output.status.success(), "it started: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_owned()
}

/// A port nothing listens on: bind one, then close it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_unreachable_database_stops_the_start_with_its_host_and_no_password() {
    let port = closed_port();
    let url = format!("postgres://upload:hunter2secret@127.0.0.1:{port}/uploads");
    let started = Instant::now();
    let output = run_server(&[("UPLOAD_DATABASE_URL", &url), ("UPLOAD_LOCAL_SHARED_VOLUME", "true")]);
    let line = failure_line(&output);
    assert!(
        line.contains(&format!("the database at postgres://upload:***@127.0.0.1:{port}/uploads cannot be reached")),
        "{line}"
    );
    assert!(line.to_lowercase().contains("connection refused"), "the cause is named: {line}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let everything = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!everything.contains("hunter2secret"), "the password leaks: {everything}");
}

#[test]
fn the_local_store_on_postgres_is_refused_without_a_shared_volume() {
    let url = format!("postgres://upload:hunter2secret@127.0.0.1:{}/uploads", closed_port());
    let line = failure_line(&run_server(&[("UPLOAD_DATABASE_URL", &url)]));
    assert!(line.contains("UPLOAD_LOCAL_SHARED_VOLUME") && line.contains("UPLOAD_S3_BUCKET"), "{line}");
    assert!(!line.contains("hunter2secret"), "{line}");
}

/// A pool size or acquire timeout that cannot be used stops the start with
/// one line naming the variable and what it accepts: zero, a number out of
/// range, a non-number.
#[test]
fn bad_postgres_pool_settings_stop_the_start_naming_the_variable() {
    let cases = [
        ("UPLOAD_POSTGRES_POOL_SIZE", "0", "outside 1..=10000"),
        ("UPLOAD_POSTGRES_POOL_SIZE", "lots", "`lots`"),
        ("UPLOAD_POSTGRES_POOL_SIZE", "-4", "`-4`"),
        ("UPLOAD_POSTGRES_ACQUIRE_TIMEOUT", "0", "outside 1..=600 seconds"),
        ("UPLOAD_POSTGRES_ACQUIRE_TIMEOUT", "2.5", "`2.5`"),
        ("UPLOAD_POSTGRES_ACQUIRE_TIMEOUT", "3s", "`3s`"),
    ];
    for (variable, value, says) in cases {
        let line = failure_line(&run_server(&[(variable, value)]));
        assert!(line.starts_with(&format!("error: {variable}: ")) && line.contains(says), "{variable}={value}: {line}");
    }
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_version_is_refused_at_start() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("uploads.db").display());
    drop(upload_server::Db::connect(&url).await.unwrap());
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, X'00', 0)",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    let line = failure_line(&run_server(&[("UPLOAD_DATABASE_URL", &url)]));
    assert!(line.contains("migrated by a newer version (migration 9999 is unknown to this one)"), "{line}");
}

/// A PostgreSQL cluster of the test's own (scripts/postgres.sh), stopped
/// when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    fn script(&self, action: &str) -> Output {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
        let output = Command::new("bash").arg(script).arg(action).arg(self.dir.path()).output().unwrap();
        assert!(output.status.success(), "postgres.sh {action}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    fn start() -> Cluster {
        let mut cluster = Cluster { dir: tempfile::tempdir().unwrap(), url: String::new() };
        let output = cluster.script("start");
        let env = String::from_utf8(output.stdout).unwrap();
        cluster.url = env
            .lines()
            .find_map(|line| line.strip_prefix("export TEST_POSTGRES_URL="))
            .expect("postgres.sh prints TEST_POSTGRES_URL")
            .to_owned();
        cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(self.dir.path()).output();
    }
}

/// PostgreSQL stops under a serving server: requests that need it answer
/// 503 `storage_unavailable` in the contract's shape (no 500, no hang,
/// within the acquire timeout of `UPLOAD_POSTGRES_ACQUIRE_TIMEOUT`),
/// `/healthz` fails; once it is back, the same server serves again without
/// a restart, and what it recorded before is still there.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh runs it"]
async fn the_database_going_away_is_503_and_its_return_needs_no_restart() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let url = cluster.url.clone();
    // A request waits at most the acquire timeout for a connection, so the
    // 503s come that soon, not after the whole request timeout.
    let server = TestServer::start(Backend::Local, |c| {
        c.database_url(url).local_shared_volume(true).postgres_acquire_timeout_secs(1)
    })
    .await;
    let alice = server.as_owner("alice");
    let before = alice.create("before.bin", 10, "").await;
    let healthz = || async { server.http.get(format!("{}/healthz", server.base)).send().await.unwrap() };
    assert_eq!(healthz().await.status(), StatusCode::OK);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.script("stop");
        cluster
    })
    .await
    .unwrap();
    let started = Instant::now();
    let message = expect_error(
        alice.post_raw_json(serde_json::json!({"name": "a.bin", "size": 10})).await,
        503,
        "storage_unavailable",
    )
    .await;
    assert!(message.contains("database did not answer"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    expect_error(alice.get("/files").await, 503, "storage_unavailable").await;
    expect_error(alice.get(&format!("/uploads/{}", before["id"].as_str().unwrap())).await, 503, "storage_unavailable")
        .await;
    let message = expect_error(healthz().await, 503, "storage_unavailable").await;
    assert!(message.contains("database did not answer"), "{message}");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.script("start");
        cluster
    })
    .await
    .unwrap();
    // The pool reconnects on its own: no restart, a few seconds at most.
    let back = Instant::now();
    loop {
        if healthz().await.status() == StatusCode::OK {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "still failing after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice.create("after.bin", 10, "").await;
    let status =
        json_ok(alice.get(&format!("/uploads/{}", before["id"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(status["state"], "pending");
    drop(server);
    drop(cluster);
}

/// Another process holds SQLite's write lock past the busy timeout (5 s):
/// creates and rate-limited requests coming in meanwhile answer 503
/// `storage_unavailable` in the contract's shape, never 500, both where the
/// rate limit's take waits for the lock (an owner with no lease) and where
/// the create's insert does (an owner whose lease is still good), and a
/// batch create too; once the lock is released, the same requests succeed.
#[tokio::test]
async fn sqlite_locked_by_another_process_is_503_until_it_lets_go() {
    use sqlx::Connection as _;
    let server = TestServer::start(Backend::Local, |c| c.rate_limit(50)).await;
    let (alice, bob, carol) = (server.as_owner("alice"), server.as_owner("bob"), server.as_owner("carol"));
    // Alice takes a lease of tokens now, so her next create spends it here
    // and meets the lock at its insert.
    alice.create("before.bin", 10, "").await;

    let url = server.state.config().database_url.clone();
    let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    let started = Instant::now();
    let create = serde_json::json!({"name": "a.bin", "size": 10});
    let batch = serde_json::json!({"files": [{"name": "b.bin", "size": 10}, {"name": "c.bin", "size": 10}]});
    let (by_insert, by_take, by_batch) = tokio::join!(
        alice.post_raw_json(create.clone()),
        bob.post_raw_json(create.clone()),
        carol.post("/uploads/batch", batch.clone()),
    );
    for (who, response) in [("alice (insert)", by_insert), ("bob (rate limit)", by_take), ("carol (batch)", by_batch)] {
        let message = expect_error(response, 503, "storage_unavailable").await;
        assert!(message.contains("database did not answer"), "{who}: {message}");
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "answered before the busy timeout: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(60), "answered after {:?}", started.elapsed());

    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
    alice.create("after.bin", 10, "").await;
    bob.create("after.bin", 10, "").await;
    let created = json_ok(carol.post("/uploads/batch", batch).await, StatusCode::OK).await;
    assert!(created["uploads"].as_array().unwrap().iter().all(|u| u["id"].is_string()), "{created}");
}
