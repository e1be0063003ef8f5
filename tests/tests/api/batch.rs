//! `POST /uploads/batch` and `POST /uploads/batch/complete`: each file of a
//! batch gets what its single request would answer, in order; the batch is
//! bounded, names only its owner's uploads, counts against the pending
//! limit and the rate limit per file, and takes no upload-scoped token.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_tests::{Backend, TestServer, bytes, expect_error, json_ok, on_every_backend, post_form, sha256_b64};

on_every_backend!(
    a_folder_uploads_in_two_requests,
    each_file_keeps_its_own_refusal,
    a_batch_completes_only_its_owners_uploads,
    batches_are_bounded_and_take_no_scoped_token,
    the_pending_limit_counts_every_file_of_a_batch,
    a_batch_costs_its_files_against_the_rate_limit,
);

fn declaration(name: &str, data: &[u8]) -> Value {
    json!({"name": name, "size": data.len(), "type": "application/octet-stream", "sha256": sha256_b64(data)})
}

/// Creates every file of `files` in one batch, expecting all of them created.
async fn create_all(client: &upload_tests::Client<'_>, files: &[(String, Vec<u8>)]) -> Vec<Value> {
    let body = json!({"files": files.iter().map(|(name, data)| declaration(name, data)).collect::<Vec<_>>()});
    let answer = json_ok(client.post("/uploads/batch", body).await, StatusCode::OK).await;
    let uploads = answer["uploads"].as_array().unwrap().clone();
    assert_eq!(uploads.len(), files.len());
    for upload in &uploads {
        assert!(upload["id"].is_string(), "not created: {upload}");
    }
    uploads
}

/// Twenty files: one request creates them, their forms go to the store, one
/// request completes them; every file is recorded with its bytes' digest,
/// in the order given, and listed.
async fn a_folder_uploads_in_two_requests(backend: Backend) {
    let server = TestServer::start(backend, |c| c.max_files(50)).await;
    let alice = server.as_owner("alice");
    let files: Vec<(String, Vec<u8>)> =
        (0..20).map(|n| (format!("photo-{n:02}.jpg"), bytes(1000 + n * 37, n as u64 + 1))).collect();
    let uploads = create_all(&alice, &files).await;
    for (upload, (name, data)) in uploads.iter().zip(&files) {
        assert!(upload["key"].as_str().unwrap().ends_with(name.as_str()), "{upload}");
        assert!(upload["token"].is_string());
        let (status, body) = post_form(&server.http, upload, &BTreeMap::new(), data.clone()).await;
        assert_eq!(status, 204, "{body}");
    }
    let ids: Vec<&str> = uploads.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let body = json!({"uploads": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
    let answer = json_ok(alice.post("/uploads/batch/complete", body).await, StatusCode::OK).await;
    let outcomes = answer["files"].as_array().unwrap();
    assert_eq!(outcomes.len(), files.len());
    for ((outcome, id), (name, data)) in outcomes.iter().zip(&ids).zip(&files) {
        let file = &outcome["file"];
        assert_eq!(file["id"], *id, "{outcome}");
        assert_eq!((file["name"].as_str(), file["size"].as_u64()), (Some(name.as_str()), Some(data.len() as u64)));
        assert_eq!(file["sha256"], sha256_b64(data));
    }
    let listed = json_ok(alice.get("/files?limit=100").await, StatusCode::OK).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), files.len());
    // Completing again is idempotent, as for a single upload: the same files.
    let body = json!({"uploads": [{"id": ids[3]}]});
    let again = json_ok(alice.post("/uploads/batch/complete", body).await, StatusCode::OK).await;
    assert_eq!(again["files"][0], outcomes[3]);
}

/// A batch of good and bad declarations: the good ones are created, each
/// bad one answers the code its single create would, and completing a mix
/// of stored, unsent and mismatched uploads records only the stored one.
async fn each_file_keeps_its_own_refusal(backend: Backend) {
    let server =
        TestServer::start(backend, |c| c.max_file_size(10_000).accept(vec![".bin".into(), "text/*".into()])).await;
    let alice = server.as_owner("alice");
    let (good, other) = (bytes(500, 1), bytes(600, 2));
    let body = json!({"files": [
        declaration("a.bin", &good),
        {"name": "big.bin", "size": 20_000, "type": "application/octet-stream"},
        {"name": "page.html", "size": 10, "type": "application/zip"},
        {"name": "zero.bin", "size": 0, "type": "application/octet-stream"},
        {"name": "b.bin", "size": other.len(), "type": "application/octet-stream"},
        {"name": "c.bin", "size": 10, "type": "application/octet-stream"},
    ]});
    let answer = json_ok(alice.post("/uploads/batch", body).await, StatusCode::OK).await;
    let outcomes = answer["uploads"].as_array().unwrap();
    let codes: Vec<&str> = outcomes.iter().map(|o| o["error"]["code"].as_str().unwrap_or("created")).collect();
    assert_eq!(codes, ["created", "file_too_large", "type_not_accepted", "invalid_request", "created", "created"]);
    for refused in [&outcomes[1], &outcomes[2], &outcomes[3]] {
        assert!(!refused["error"]["message"].as_str().unwrap().is_empty());
        assert!(refused.get("id").is_none(), "{refused}");
    }
    assert_eq!(post_form(&server.http, &outcomes[0], &BTreeMap::new(), good).await.0, 204);
    // c.bin is never sent.
    assert_eq!(post_form(&server.http, &outcomes[4], &BTreeMap::new(), other).await.0, 204);
    let ids: Vec<&str> = [0, 4, 5].iter().map(|&n| outcomes[n]["id"].as_str().unwrap()).collect();
    let body = json!({"uploads": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()});
    let answer = json_ok(alice.post("/uploads/batch/complete", body).await, StatusCode::OK).await;
    let files = answer["files"].as_array().unwrap();
    assert_eq!(files[0]["file"]["id"], ids[0]);
    assert_eq!(files[1]["file"]["size"], 600);
    assert_eq!(files[2]["error"]["code"], "upload_incomplete", "{answer}");
    // The unsent one is still pending and can be completed once sent.
    let status = json_ok(alice.get(&format!("/uploads/{}", ids[2])).await, StatusCode::OK).await;
    assert_eq!(status["state"], "pending");
}

/// Another owner's ids, ids that do not exist and ids that are not ids are
/// each `not_found`, and nothing of theirs changes; the owner's own upload
/// in the same batch completes.
async fn a_batch_completes_only_its_owners_uploads(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let (alice, mallory) = (server.as_owner("alice"), server.as_owner("mallory"));
    let (hers, his) = (bytes(300, 1), bytes(300, 2));
    let alice_upload = &create_all(&alice, &[("a.bin".into(), hers.clone())]).await[0];
    let mallory_upload = &create_all(&mallory, &[("m.bin".into(), his.clone())]).await[0];
    assert_eq!(post_form(&server.http, alice_upload, &BTreeMap::new(), hers).await.0, 204);
    assert_eq!(post_form(&server.http, mallory_upload, &BTreeMap::new(), his).await.0, 204);
    let body = json!({"uploads": [
        {"id": alice_upload["id"]},
        {"id": mallory_upload["id"]},
        {"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        {"id": "../../etc/passwd"},
    ]});
    let answer = json_ok(mallory.post("/uploads/batch/complete", body).await, StatusCode::OK).await;
    let files = answer["files"].as_array().unwrap();
    assert_eq!(files[0]["error"]["code"], "not_found", "alice's upload, asked by mallory: {answer}");
    assert_eq!(files[1]["file"]["owner"], "mallory");
    assert_eq!(files[2]["error"]["code"], "not_found");
    assert_eq!(files[3]["error"]["code"], "not_found");
    let status =
        json_ok(alice.get(&format!("/uploads/{}", alice_upload["id"].as_str().unwrap())).await, StatusCode::OK).await;
    assert_eq!(status["state"], "pending", "mallory's batch changed alice's upload");
}

/// No files, more than 100, an id twice, malformed JSON: 400 for the whole
/// batch. An upload-scoped token (all a browser holds when an app created
/// the upload for it) is refused: a batch acts for the owner.
async fn batches_are_bounded_and_take_no_scoped_token(backend: Backend) {
    let server = TestServer::start(backend, |c| c.max_files(500)).await;
    let alice = server.as_owner("alice");
    let one = |n: usize| json!({"name": format!("f{n}.bin"), "size": 10, "type": "application/octet-stream"});
    let too_many = json!({"files": (0..101).map(one).collect::<Vec<_>>()});
    for (path, body) in [
        ("/uploads/batch", json!({"files": []})),
        ("/uploads/batch", too_many),
        ("/uploads/batch", json!({"files": "all of them"})),
        ("/uploads/batch/complete", json!({"uploads": []})),
        (
            "/uploads/batch/complete",
            json!({"uploads": [{"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, {"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}]}),
        ),
        ("/uploads/batch/complete", json!({"uploads": [{"parts": []}]})),
    ] {
        expect_error(alice.post(path, body).await, 400, "invalid_request").await;
    }
    expect_error(alice.post_raw("/uploads/batch", "{\"files\": [").await, 400, "invalid_request").await;
    // Nothing was created by the refused batches.
    let full = json!({"files": (0..100).map(one).collect::<Vec<_>>()});
    let answer = json_ok(alice.post("/uploads/batch", full).await, StatusCode::OK).await;
    let uploads = answer["uploads"].as_array().unwrap();
    assert!(uploads.iter().all(|u| u["id"].is_string()), "a batch of exactly 100 is created whole");

    let scoped = upload_tests::Client { server: &server, token: uploads[0]["token"].as_str().map(str::to_owned) };
    let id = uploads[0]["id"].as_str().unwrap();
    expect_error(scoped.post("/uploads/batch", json!({"files": [one(1)]})).await, 401, "unauthorized").await;
    let complete = json!({"uploads": [{"id": id}]});
    expect_error(scoped.post("/uploads/batch/complete", complete).await, 401, "unauthorized").await;
    expect_error(server.anonymous().post("/uploads/batch", json!({"files": [one(1)]})).await, 401, "unauthorized")
        .await;
}

/// The pending limit holds inside a batch: with room for three, a batch of
/// five creates three and refuses two with `too_many_files`.
async fn the_pending_limit_counts_every_file_of_a_batch(backend: Backend) {
    let server = TestServer::start(backend, |c| c.max_files(3)).await;
    let alice = server.as_owner("alice");
    let files: Vec<Value> = (0..5).map(|n| declaration(&format!("f{n}.bin"), &bytes(10, n as u64))).collect();
    let answer = json_ok(alice.post("/uploads/batch", json!({"files": files})).await, StatusCode::OK).await;
    let outcomes = answer["uploads"].as_array().unwrap();
    let created = outcomes.iter().filter(|o| o["id"].is_string()).count();
    let refused = outcomes.iter().filter(|o| o["error"]["code"] == "too_many_files").count();
    assert_eq!((created, refused), (3, 2), "{answer}");
    let single = alice.post("/uploads", json!({"name": "g.bin", "size": 10, "type": "text/plain"})).await;
    expect_error(single, 409, "too_many_files").await;
}

/// With 5 requests per second allowed (bursts of 10), a batch of 50 goes
/// through once; the owner's next request waits for the debt to refill. A
/// batch refused as malformed costs one request, not its files.
async fn a_batch_costs_its_files_against_the_rate_limit(backend: Backend) {
    let server = TestServer::start(backend, |c| c.rate_limit(5).max_files(100)).await;
    let alice = server.as_owner("alice");
    let twice: Vec<Value> = (0..50).map(|_| json!({"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})).collect();
    expect_error(alice.post("/uploads/batch/complete", json!({"uploads": twice})).await, 400, "invalid_request").await;
    let files: Vec<Value> = (0..50).map(|n| declaration(&format!("f{n}.bin"), &bytes(10, n as u64))).collect();
    let answer = json_ok(alice.post("/uploads/batch", json!({"files": files})).await, StatusCode::OK).await;
    assert!(answer["uploads"].as_array().unwrap().iter().all(|u| u["id"].is_string()));
    let next = alice.post("/uploads/batch", json!({"files": [declaration("g.bin", &bytes(10, 99))]})).await;
    assert_eq!(next.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()).as_deref(), Some("1"));
    expect_error(next, 429, "rate_limited").await;
    // Another owner is not held back by alice's debt.
    let bob = server.as_owner("bob");
    json_ok(bob.post("/uploads/batch", json!({"files": [declaration("b.bin", &bytes(10, 1))]})).await, StatusCode::OK)
        .await;
}
