//! Issue 13's regressions through the real server: replayed forms, the
//! `Chunked` plan's declared digest, downloads served inert.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_tests::{
    Backend, Client, Store, TestServer, bytes, expect_error, json_ok, on_every_backend, post_form, sha256_b64,
};

async fn create_with(client: &Client<'_>, body: Value) -> Value {
    json_ok(client.post("/uploads", body).await, StatusCode::CREATED).await
}

async fn download(server: &TestServer, client: &Client<'_>, id: &str) -> reqwest::Response {
    let file = json_ok(client.get(&format!("/files/{id}")).await, StatusCode::OK).await;
    let response = server.http.get(file["download_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// A single-POST form replayed after complete with other bytes of the same
/// size never changes the recorded file. S3 cannot revoke a signed POST, but
/// the declared SHA-256 is pinned in its policy, so the store refuses other
/// bytes; the embedded store refuses the form itself once the upload was
/// verified, with or without a digest.
async fn a_form_replayed_after_complete_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("replay");
    let data = bytes(5000, 41);
    let mut other = data.clone();
    other[10] ^= 0xff;
    let upload = create_with(&client, json!({"name": "r.bin", "size": data.len(), "sha256": sha256_b64(&data)})).await;
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.clone()).await;
    assert!(status < 300, "{status} {body}");
    let id = upload["id"].as_str().unwrap();
    json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;

    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), other.clone()).await;
    assert!((400..500).contains(&status), "a replayed form with other bytes was accepted: {status} {body}");
    let stored = download(&server, &client, id).await.bytes().await.unwrap();
    assert_eq!(sha256_b64(&stored), sha256_b64(&data), "the recorded file's bytes changed");

    if backend.store() == Store::Local {
        // No digest declared: the embedded store still refuses the replay,
        // even with the very same bytes.
        let upload = create_with(&client, json!({"name": "s.bin", "size": data.len()})).await;
        let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.clone()).await;
        assert!(status < 300, "{status} {body}");
        let id = upload["id"].as_str().unwrap();
        json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
        for replay in [other.clone(), data.clone()] {
            let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), replay).await;
            assert_eq!(status, 403, "a replayed form was accepted: {body}");
        }
        let stored = download(&server, &client, id).await.bytes().await.unwrap();
        assert_eq!(sha256_b64(&stored), sha256_b64(&data));
    }
}

/// After an abort, the embedded store refuses the upload's form: no object
/// appears that no record tracks. (S3 cannot revoke a signed POST: there the
/// form's short life is the bound; see docs/security.md.)
#[tokio::test]
async fn a_form_replayed_after_abort_stores_nothing() {
    let server = TestServer::start(Backend::Local, |c| c).await;
    let client = server.as_owner("replay-abort");
    let data = bytes(3000, 42);
    let upload = create_with(&client, json!({"name": "a.bin", "size": data.len()})).await;
    let (id, key) = (upload["id"].as_str().unwrap(), upload["key"].as_str().unwrap());
    assert_eq!(client.delete(&format!("/uploads/{id}")).await.status(), StatusCode::NO_CONTENT);
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.clone()).await;
    assert_eq!(status, 403, "the form of an aborted upload was accepted: {body}");
    assert!(server.state.storage().head(key).await.unwrap().is_none(), "an untracked object was stored");

    // The same after the upload was sent once and then aborted.
    let upload = create_with(&client, json!({"name": "b.bin", "size": data.len()})).await;
    let (id, key) = (upload["id"].as_str().unwrap(), upload["key"].as_str().unwrap());
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.clone()).await;
    assert!(status < 300, "{status} {body}");
    assert_eq!(client.delete(&format!("/uploads/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert!(server.state.storage().head(key).await.unwrap().is_none(), "abort left the object");
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data).await;
    assert_eq!(status, 403, "the form of an aborted upload was accepted: {body}");
    assert!(server.state.storage().head(key).await.unwrap().is_none(), "an untracked object was stored");
}

/// A form may be sent again while its upload is pending (a retry after a
/// lost answer): only completion and deletion close it.
#[tokio::test]
async fn a_form_may_be_retried_while_pending() {
    let server = TestServer::start(Backend::Local, |c| c).await;
    let client = server.as_owner("retry");
    let data = bytes(2000, 43);
    let upload = create_with(&client, json!({"name": "c.bin", "size": data.len()})).await;
    for _ in 0..2 {
        let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.clone()).await;
        assert!(status < 300, "{status} {body}");
    }
    let id = upload["id"].as_str().unwrap();
    let done = json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(done["file"]["sha256"], sha256_b64(&data));
}

/// A `Chunked` upload whose bytes differ from its declared SHA-256 is not
/// recorded: 422 `upload_mismatch`, the object deleted, the upload failed.
#[tokio::test]
async fn a_chunked_upload_with_a_wrong_declared_digest_is_refused() {
    let server = TestServer::start(Backend::Local, |c| c).await;
    let client = server.as_owner("chunked-digest");
    let data = bytes(70_000, 44);
    let mut declared = data.clone();
    declared[0] ^= 1;
    let upload = create_with(
        &client,
        json!({"name": "c.bin", "size": data.len(), "uploader": "Chunked", "sha256": sha256_b64(&declared)}),
    )
    .await;
    let (id, key) = (upload["id"].as_str().unwrap(), upload["key"].as_str().unwrap());
    let url = upload["upload"]["url"].as_str().unwrap();
    let range = format!("bytes 0-{}/{}", data.len() - 1, data.len());
    let sent = server.http.put(url).header("content-range", range).body(data.clone()).send().await.unwrap();
    assert_eq!(sent.status(), 200);

    let message =
        expect_error(client.post(&format!("/uploads/{id}/complete"), json!({})).await, 422, "upload_mismatch").await;
    assert!(message.contains("SHA-256"), "{message}");
    assert!(server.state.storage().head(key).await.unwrap().is_none(), "the object was kept");
    let status = json_ok(client.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "failed");
    let files = json_ok(client.get("/files").await, StatusCode::OK).await;
    assert!(files["files"].as_array().unwrap().is_empty(), "a file was recorded: {files}");

    // The right digest goes through, and is recorded.
    let upload = create_with(
        &client,
        json!({"name": "d.bin", "size": data.len(), "uploader": "Chunked", "sha256": sha256_b64(&data)}),
    )
    .await;
    let id = upload["id"].as_str().unwrap();
    let range = format!("bytes 0-{}/{}", data.len() - 1, data.len());
    let url = upload["upload"]["url"].as_str().unwrap();
    let sent = server.http.put(url).header("content-range", range).body(data.clone()).send().await.unwrap();
    assert_eq!(sent.status(), 200);
    let done = json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(done["file"]["sha256"], sha256_b64(&data));
}

/// An uploaded HTML file is downloaded, never rendered: `attachment`
/// always; and where the app's own origin serves it (the embedded store),
/// no sniffing and a sandbox that allows nothing.
async fn a_text_html_download_is_served_inert(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("html");
    let page = b"<!doctype html><script>alert(document.domain)</script>".to_vec();
    let upload = client.create("page.html", page.len(), "text/html").await;
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), page.clone()).await;
    assert!(status < 300, "{status} {body}");
    let id = upload["id"].as_str().unwrap();
    json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;

    let response = download(&server, &client, id).await;
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let disposition = header("content-disposition").unwrap_or_default();
    assert!(disposition.starts_with("attachment;"), "served inline: {disposition:?}");
    if backend.store() == Store::Local {
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        let csp = header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("sandbox") && csp.contains("default-src 'none'"), "no sandbox: {csp:?}");
    }
    assert_eq!(response.bytes().await.unwrap(), page);
}

on_every_backend!(a_form_replayed_after_complete_changes_nothing, a_text_html_download_is_served_inert);
