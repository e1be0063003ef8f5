//! `GET /metrics` after real uploads: every counter moved by exactly what
//! was done, requests are labelled by route pattern, and the optional token
//! is required when set.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;
use upload_tests::{Backend, TestServer, bytes, expect_error, json_ok, now_ms, on_every_backend, post_form};

const TOKEN: &str = "scrape-secret-for-tests";

/// The samples of a scrape: `(name, labels)` to value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

fn parse(text: &str) -> Samples {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest.strip_suffix('}').unwrap();
                let labels = labels
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap();
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.push((name, labels, value));
    }
    samples
}

/// The sum over the series of `name` that carry every label given.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

async fn scrape(server: &TestServer) -> (String, Samples) {
    let response = server.http.get(format!("{}/metrics", server.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

async fn counters_move_by_what_was_done(backend: Backend) {
    let server = TestServer::start(backend, |c| c.accept(vec!["image/*".into()]).metrics_token(TOKEN)).await;
    let alice = server.as_owner("alice");
    let (_, before) = scrape(&server).await;

    // Two images recorded, of 1000 and 2500 bytes.
    let mut ids = Vec::new();
    for size in [1000, 2500] {
        let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
        data.extend(bytes(size - 8, size as u64));
        let upload = alice.create("a.png", data.len(), "image/png").await;
        let (status, _) = post_form(&server.http, &upload, &BTreeMap::new(), data).await;
        assert!((200..300).contains(&status));
        let id = upload["id"].as_str().unwrap().to_owned();
        json_ok(alice.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
        ids.push(id);
    }
    // One refused for its bytes.
    let html = b"<html><body>not an image</body></html>".to_vec();
    let upload = alice.create("b.png", html.len(), "image/png").await;
    post_form(&server.http, &upload, &BTreeMap::new(), html).await;
    let id = upload["id"].as_str().unwrap().to_owned();
    expect_error(alice.post(&format!("/uploads/{id}/complete"), json!({})).await, 422, "content_not_accepted").await;
    ids.push(id);
    // One abandoned, then expired by a sweep.
    let abandoned = alice.create("c.png", 10, "image/png").await;
    ids.push(abandoned["id"].as_str().unwrap().to_owned());
    let report = upload_server::sweeper::sweep_until(&server.state, now_ms() + 10 * 86_400_000).await.unwrap();
    assert_eq!(report.expired, 1);
    // One storage call that fails.
    assert!(server.state.storage().read_prefix("uploads/nobody/none", 10).await.is_err());

    let (text, after) = scrape(&server).await;
    let moved = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let s3 = [("plan", "S3")];
    assert_eq!(moved("upload_uploads_created_total", &s3), 4.0, "{text}");
    assert_eq!(moved("upload_uploads_completed_total", &s3), 2.0, "{text}");
    assert_eq!(moved("upload_bytes_recorded_total", &s3), 3500.0, "{text}");
    assert_eq!(
        moved("upload_uploads_failed_total", &[("plan", "S3"), ("reason", "content_not_accepted")]),
        1.0,
        "{text}"
    );
    assert_eq!(moved("upload_uploads_expired_total", &s3), 1.0, "{text}");
    assert_eq!(moved("upload_sweeper_runs_total", &[]), 1.0, "{text}");
    assert_eq!(moved("upload_sweeper_rows_total", &[("outcome", "expired")]), 1.0, "{text}");
    assert_eq!(moved("upload_sweeper_rows_total", &[("outcome", "cleaned")]), 1.0, "{text}");

    // Requests by route pattern, method and status; never by raw path.
    let latency = "upload_http_request_duration_seconds_count";
    let complete = ("route", "/api/v1/uploads/{id}/complete");
    assert_eq!(moved(latency, &[complete, ("method", "POST"), ("status", "200")]), 2.0, "{text}");
    assert_eq!(moved(latency, &[complete, ("method", "POST"), ("status", "422")]), 1.0, "{text}");
    assert_eq!(moved(latency, &[("route", "/api/v1/uploads"), ("status", "201")]), 4.0, "{text}");
    for id in &ids {
        assert!(!text.contains(id.as_str()), "an upload id in a label: {text}");
    }

    // Storage calls by operation: a read of the first bytes per completion
    // that got that far, a form per upload, the failed read counted as an error.
    let calls = "upload_storage_call_duration_seconds_count";
    assert_eq!(moved(calls, &[("operation", "presign_post")]), 4.0, "{text}");
    assert_eq!(moved(calls, &[("operation", "read_prefix")]), 4.0, "{text}");
    assert_eq!(moved(calls, &[("operation", "head_sealed")]), 3.0, "{text}");
    assert_eq!(
        moved("upload_storage_errors_total", &[("operation", "read_prefix"), ("kind", "not_found")]),
        1.0,
        "{text}"
    );
    // Nothing is waiting for the writer once every answer is in.
    assert!(text.lines().any(|l| l == "upload_db_writer_queue_depth 0"), "{text}");
}

async fn the_token_is_required_when_set(backend: Backend) {
    let server = TestServer::start(backend, |c| c.metrics_token(TOKEN)).await;
    let url = format!("{}/metrics", server.base);
    expect_error(server.http.get(&url).send().await.unwrap(), 401, "unauthorized").await;
    expect_error(server.http.get(&url).bearer_auth("not-the-token").send().await.unwrap(), 401, "unauthorized").await;
    // A user's token is not the scrape token.
    let user = upload_tests::token("alice", 3600);
    expect_error(server.http.get(&url).bearer_auth(user).send().await.unwrap(), 401, "unauthorized").await;
    assert_eq!(server.http.get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), StatusCode::OK);

    // Without a token configured, it is open.
    let open = TestServer::start(backend, |c| c).await;
    let response = open.http.get(format!("{}/metrics", open.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("# TYPE upload_db_writer_queue_depth gauge"));
}

on_every_backend!(counters_move_by_what_was_done, the_token_is_required_when_set);
