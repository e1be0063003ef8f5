//! Abandoned uploads disappear from the store and their records become expired.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use upload_server::storage::StorageError;
use upload_server::sweeper::{sweep_once, sweep_until};
use upload_tests::{Backend, TestServer, bytes, json_ok, now_ms, on_every_backend, post_form};

const MIB: usize = 1024 * 1024;

async fn abandoned_uploads_are_expired_and_removed(backend: Backend) {
    let server = TestServer::start(backend, |c| {
        c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64).url_ttl_secs(60).multipart_window_secs(60)
    })
    .await;
    let client = server.as_owner("walker");

    // A multipart upload with one part stored, never completed.
    let multipart = client.create("big.bin", 6 * MIB, "").await;
    let id = multipart["id"].as_str().unwrap();
    let signed =
        json_ok(client.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await, StatusCode::OK).await;
    let response =
        server.http.put(signed["parts"][0]["url"].as_str().unwrap()).body(bytes(5 * MIB, 1)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // A single POST whose bytes arrived but which was never completed.
    let single = client.create("small.txt", 100, "text/plain").await;
    let (status, body) = post_form(&server.http, &single, &BTreeMap::new(), bytes(100, 2)).await;
    assert!(status < 300, "{status} {body}");
    let key = single["key"].as_str().unwrap();
    assert!(server.state.storage().head(key).await.unwrap().is_some());

    // Inside the window nothing is touched.
    let report = sweep_once(&server.state, Duration::ZERO).await.unwrap();
    assert_eq!(report.expired, 0);

    // Two minutes on: both windows have closed.
    let report = sweep_until(&server.state, now_ms() + 120_000).await.unwrap();
    assert_eq!((report.expired, report.cleaned, report.failed), (2, 2, 0), "{report:?}");

    for upload in [&multipart, &single] {
        let id = upload["id"].as_str().unwrap();
        let status = json_ok(client.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
        assert_eq!(status["state"], "expired");
    }
    assert!(server.state.storage().head(key).await.unwrap().is_none(), "the stray object is still stored");
    let upload_id = multipart["upload"]["upload_id"].as_str().unwrap();
    match server.state.storage().list_parts(multipart["key"].as_str().unwrap(), upload_id).await {
        Err(StorageError::NotFound) => {}
        Ok(parts) => assert!(parts.is_empty(), "parts left in the store: {parts:?}"),
        Err(e) => panic!("{e}"),
    }
    // A second sweep finds nothing to do.
    assert_eq!(sweep_until(&server.state, now_ms() + 120_000).await.unwrap(), Default::default());
}

async fn concurrent_sweeps_expire_each_upload_once(backend: Backend) {
    let server = TestServer::start(backend, |c| c.max_files(50)).await;
    let client = server.as_owner("many");
    for i in 0..20 {
        client.create(&format!("{i}.txt"), 10, "text/plain").await;
    }
    // Four sweepers at once, each two hours ahead.
    let cutoff = now_ms() + 7_200_000;
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let state = server.state.clone();
            tokio::spawn(async move { sweep_until(&state, cutoff).await.unwrap() })
        })
        .collect();
    let mut expired = 0;
    for sweep in sweeps {
        expired += sweep.await.unwrap().expired;
    }
    assert_eq!(expired, 20, "every upload expired exactly once across the sweeps");
}

on_every_backend!(abandoned_uploads_are_expired_and_removed, concurrent_sweeps_expire_each_upload_once);
