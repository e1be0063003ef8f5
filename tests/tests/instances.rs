//! Two server instances on one database (one SQLite file, or one PostgreSQL
//! database) and one Garage bucket, as a deployment with two processes
//! behind a load balancer would run: creates
//! on both at once all succeed, either instance completes, reads and lists
//! what the other created, and their sweepers running at once expire every
//! abandoned upload exactly once; and the per-owner pending limit holds
//! exactly under creates on both at once, and so do the rate limits.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use upload_server::sweeper::sweep_until;
use upload_tests::{Backend, TestServer, bytes, json_ok, now_ms, post_form, token};

/// New uploads per instance per round, all in flight at once: enough for the
/// two writers to overlap (at 40, deferred transactions failing with "database
/// is locked" went unseen; at 200 they failed every run).
const AT_ONCE: usize = 200;
const ROUNDS: usize = 5;

async fn create_many(server: &TestServer, owner: &str, n: usize) -> Vec<Result<Value, String>> {
    let mut creates = JoinSet::new();
    for i in 0..n {
        let (http, url, bearer) = (server.http.clone(), server.url("/uploads"), token(owner, 3600));
        creates.spawn(async move {
            let body = json!({"name": format!("f-{i}.bin"), "size": 1024, "type": "application/octet-stream"});
            let response = http.post(url).bearer_auth(bearer).json(&body).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let text = response.text().await.map_err(|e| e.to_string())?;
            if status == StatusCode::CREATED {
                serde_json::from_str(&text).map_err(|e| e.to_string())
            } else {
                Err(format!("{status}: {text}"))
            }
        });
    }
    creates.join_all().await
}

#[tokio::test]
#[ignore = "needs Garage: scripts/test.sh runs it"]
async fn two_instances_share_one_database_on_sqlite() {
    two_instances_share_one_database(Backend::Garage).await
}

#[tokio::test]
#[ignore = "needs Garage and PostgreSQL: scripts/test.sh runs it"]
async fn two_instances_share_one_database_on_postgres() {
    two_instances_share_one_database(Backend::GaragePostgres).await
}

async fn two_instances_share_one_database(backend: Backend) {
    let (url, _dir) = backend.fresh_database().await;
    let a = TestServer::start(backend, |c| c.database_url(&url).max_files(10_000)).await;
    let b = TestServer::start(backend, |c| c.database_url(&url).max_files(10_000)).await;

    // Both writers busy at the same time: each must wait for the other's
    // transaction, never fail with "database is locked".
    let mut created = Vec::new();
    for _ in 0..ROUNDS {
        let (on_a, on_b) = tokio::join!(create_many(&a, "alice", AT_ONCE), create_many(&b, "alice", AT_ONCE));
        for outcome in on_a.into_iter().chain(on_b) {
            created.push(outcome.expect("every create on either instance succeeds"));
        }
    }
    assert_eq!(created.len(), 2 * AT_ONCE * ROUNDS);

    // An upload created on A, its bytes sent to the store, completed on B.
    let alice_a = a.as_owner("alice");
    let alice_b = b.as_owner("alice");
    let data = bytes(1024, 7);
    let upload = &created[0];
    let id = upload["id"].as_str().unwrap();
    let (status, body) = post_form(&a.http, upload, &BTreeMap::new(), data).await;
    assert!((200..300).contains(&status), "store refused the form: {status} {body}");
    let completed = json_ok(alice_b.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(completed["file"]["id"], id);
    // A sees it completed and lists the file; completing it again on A answers the same file.
    let status = json_ok(alice_a.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "completed");
    let listed = json_ok(alice_a.get("/files").await, StatusCode::OK).await;
    assert_eq!(listed["files"][0]["id"], id);
    let again = json_ok(alice_a.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(again["file"], completed["file"]);

    // The per-owner count is shared: the rest are pending, on both.
    let pending = a.state.db().count_pending("alice", 0, 10_000).await.unwrap();
    assert_eq!(pending as usize, created.len() - 1);
    assert_eq!(b.state.db().count_pending("alice", 0, 10_000).await.unwrap(), pending);

    // Both sweepers at once, two hours on: every pending upload is expired
    // by exactly one of them, and none is left pending.
    let cutoff = now_ms() + 7_200_000;
    let (on_a, on_b) = tokio::join!(sweep_until(&a.state, cutoff), sweep_until(&b.state, cutoff));
    let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
    assert_eq!(on_a.expired + on_b.expired, pending, "each upload expired once: {on_a:?} {on_b:?}");
    assert_eq!(on_a.failed + on_b.failed, 0, "{on_a:?} {on_b:?}");
    assert_eq!(a.state.db().count_pending("alice", 0, 10_000).await.unwrap(), 0);
    let status =
        json_ok(alice_b.get(&format!("/uploads/{}", created[1]["id"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(status["state"], "expired");
}

/// The per-owner pending limit across instances: 60 creates of one owner
/// at once on each of two instances sharing one database, a limit of 25:
/// exactly 25 are created, every other one is refused `too_many_files`,
/// and the database holds exactly 25 pending uploads.
async fn the_pending_limit_holds_across_instances(backend: Backend) {
    let (url, _dir) = backend.fresh_database().await;
    let a = TestServer::start(backend, |c| c.database_url(&url).max_files(25)).await;
    let b = TestServer::start(backend, |c| c.database_url(&url).max_files(25)).await;
    let (on_a, on_b) = tokio::join!(create_many(&a, "alice", 60), create_many(&b, "alice", 60));
    let (mut created, mut refused) = (0, 0);
    for outcome in on_a.into_iter().chain(on_b) {
        match outcome {
            Ok(_) => created += 1,
            Err(e) if e.contains("\"too_many_files\"") => refused += 1,
            Err(e) => panic!("neither created nor refused for the limit: {e}"),
        }
    }
    assert_eq!((created, refused), (25, 95));
    assert_eq!(b.state.db().count_pending("alice", 0, 1000).await.unwrap(), 25);
}

#[tokio::test]
async fn the_pending_limit_holds_across_instances_on_sqlite() {
    the_pending_limit_holds_across_instances(Backend::Local).await
}

#[tokio::test]
#[ignore = "needs Garage and PostgreSQL: scripts/test.sh runs it"]
async fn the_pending_limit_holds_across_instances_on_postgres() {
    the_pending_limit_holds_across_instances(Backend::GaragePostgres).await
}

/// Rate limits across instances: one owner's requests alternate between
/// two instances on one database with UPLOAD_RATE_LIMIT=1 (bursts of 2).
/// A limit per process would let 4 through at once; the shared bucket lets
/// 2, plus one per second the requests took.
async fn rate_limits_hold_across_instances(backend: Backend) {
    let (url, _dir) = backend.fresh_database().await;
    let a = TestServer::start(backend, |c| c.database_url(&url).rate_limit(1)).await;
    let b = TestServer::start(backend, |c| c.database_url(&url).rate_limit(1)).await;
    let started = std::time::Instant::now();
    let mut passed = 0;
    for n in 0..12 {
        let server = if n % 2 == 0 { &a } else { &b };
        let response = server.as_owner("rita").get("/files").await;
        match response.status() {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("neither served nor limited: {other} {}", response.text().await.unwrap()),
        }
    }
    let refilled = started.elapsed().as_secs();
    assert!((2..=2 + refilled).contains(&passed), "{passed} requests passed in {refilled} s");
    // Another owner has a bucket of its own.
    assert_eq!(b.as_owner("sam").get("/files").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn rate_limits_hold_across_instances_on_sqlite() {
    rate_limits_hold_across_instances(Backend::Local).await
}

#[tokio::test]
#[ignore = "needs Garage and PostgreSQL: scripts/test.sh runs it"]
async fn rate_limits_hold_across_instances_on_postgres() {
    rate_limits_hold_across_instances(Backend::GaragePostgres).await
}
