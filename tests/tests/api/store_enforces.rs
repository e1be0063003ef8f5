//! The store itself refuses what the signature does not allow, and nothing is recorded.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_tests::{Backend, Client, Store, TestServer, bytes, expect_error, json_ok, on_every_backend, post_form};

/// Posts the form with `overrides` and `file`, expects the store to refuse it,
/// then checks nothing was stored or recorded.
async fn refused(
    server: &TestServer,
    client: &Client<'_>,
    upload: &Value,
    overrides: &[(&str, String)],
    file: Vec<u8>,
) {
    let overrides: BTreeMap<String, String> = overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let (status, body) = post_form(&server.http, upload, &overrides, file).await;
    assert!((400..500).contains(&status), "the store accepted it: {status} {body}");
    let id = upload["id"].as_str().unwrap();
    let key = upload["key"].as_str().unwrap();
    assert!(server.state.storage().head(key).await.unwrap().is_none(), "object stored despite refusal");
    expect_error(client.post(&format!("/uploads/{id}/complete"), json!({})).await, 409, "upload_incomplete").await;
    let files = json_ok(client.get("/files").await, StatusCode::OK).await;
    assert!(files["files"].as_array().unwrap().is_empty(), "a file was recorded: {files}");
}

async fn one_byte_more_than_declared_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("size");
    let upload = client.create("a.bin", 1000, "application/octet-stream").await;
    refused(&server, &client, &upload, &[], bytes(1001, 1)).await;
    let upload = client.create("b.bin", 1000, "application/octet-stream").await;
    refused(&server, &client, &upload, &[], bytes(999, 1)).await;
}

async fn a_different_content_type_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("type");
    let upload = client.create("cat.png", 100, "image/png").await;
    refused(&server, &client, &upload, &[("Content-Type", "text/html".into())], bytes(100, 2)).await;
}

async fn another_key_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("key");
    let upload = client.create("cat.png", 100, "image/png").await;
    refused(&server, &client, &upload, &[("key", "uploads/other/evil.png".into())], bytes(100, 3)).await;
    assert!(server.state.storage().head("uploads/other/evil.png").await.unwrap().is_none());
}

async fn a_tampered_policy_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("tamper");
    let upload = client.create("a.bin", 100, "application/octet-stream").await;
    // Widen the size range in the policy; the signature no longer matches.
    let policy = upload["upload"]["fields"]["policy"].as_str().unwrap();
    let text = String::from_utf8(BASE64.decode(policy).unwrap()).unwrap();
    let widened = text.replace("[\"content-length-range\",100,100]", "[\"content-length-range\",1,100000]");
    assert_ne!(text, widened, "the policy should pin the size: {text}");
    refused(&server, &client, &upload, &[("policy", BASE64.encode(widened))], bytes(5000, 4)).await;
}

async fn a_stray_field_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("stray");
    let upload = client.create("a.bin", 100, "application/octet-stream").await;
    refused(&server, &client, &upload, &[("x-amz-meta-evil", "1".into())], bytes(100, 5)).await;
}

async fn an_expired_form_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c.url_ttl_secs(1)).await;
    let client = server.as_owner("late");
    let upload = client.create("a.bin", 100, "application/octet-stream").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), bytes(100, 6)).await;
    assert!((400..500).contains(&status), "the store accepted an expired form: {status} {body}");
    let id = upload["id"].as_str().unwrap();
    // Past its window and with nothing stored, the upload is expired.
    expect_error(client.post(&format!("/uploads/{id}/complete"), json!({})).await, 410, "upload_expired").await;
    let status = json_ok(client.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "expired");
}

async fn a_tampered_part_url_is_refused(backend: Backend) {
    const MIB: usize = 1024 * 1024;
    let server = TestServer::start(backend, |c| c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64)).await;
    let client = server.as_owner("parts");
    let upload = client.create("big.bin", 6 * MIB, "").await;
    let id = upload["id"].as_str().unwrap();
    let signed =
        json_ok(client.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await, StatusCode::OK).await;
    let signed_url = signed["parts"][0]["url"].as_str().unwrap();
    let url = match backend.store() {
        Store::Garage => signed_url.replace("partNumber=1", "partNumber=2"),
        Store::Local => signed_url.replace("/1?", "/2?"),
    };
    assert_ne!(url, signed_url);
    let response = server.http.put(url).body(bytes(MIB, 7)).send().await.unwrap();
    assert_eq!(response.status(), 403, "a part URL signed for part 1 was accepted for part 2");
}

async fn a_declared_sha256_is_enforced_for_single_posts(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("sum");
    let data = bytes(4096, 8);
    let good = client
        .post("/uploads", json!({"name": "a.bin", "size": data.len(), "sha256": upload_tests::sha256_b64(&data)}))
        .await;
    let good = json_ok(good, StatusCode::CREATED).await;
    let (status, body) = post_form(&server.http, &good, &BTreeMap::new(), data.clone()).await;
    assert!(status < 300, "{status} {body}");
    let id = good["id"].as_str().unwrap();
    let done = json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(done["file"]["sha256"], upload_tests::sha256_b64(&data));

    // The same bytes against another declared digest: the store refuses them.
    let client = server.as_owner("sum2");
    let mut other = data.clone();
    other[0] ^= 1;
    let bad = client
        .post("/uploads", json!({"name": "b.bin", "size": data.len(), "sha256": upload_tests::sha256_b64(&other)}))
        .await;
    let bad = json_ok(bad, StatusCode::CREATED).await;
    refused(&server, &client, &bad, &[], data).await;
}

on_every_backend!(
    one_byte_more_than_declared_is_refused,
    a_different_content_type_is_refused,
    another_key_is_refused,
    a_tampered_policy_is_refused,
    a_stray_field_is_refused,
    an_expired_form_is_refused,
    a_tampered_part_url_is_refused,
    a_declared_sha256_is_enforced_for_single_posts
);
