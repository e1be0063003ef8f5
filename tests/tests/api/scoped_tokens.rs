//! Upload-scoped tokens: the create answer handed to a browser as it is
//! (what an app's server does for LiveView or pyview) is enough to send,
//! complete and abort that one upload, and nothing else.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_tests::{
    Backend, Client, TestServer, bytes, expect_error, json_ok, on_every_backend, post_form, sha256_b64,
};

const MIB: usize = 1024 * 1024;

/// A client holding only an upload's scoped token, as the browser does.
fn holding_token<'a>(server: &'a TestServer, created: &Value) -> Client<'a> {
    Client { server, token: Some(created["token"].as_str().expect("the answer carries a token").to_owned()) }
}

/// What the browser is handed names its uploader at the top level and says
/// where the API is; the token is not the user's.
fn check_answer_shape(server: &TestServer, created: &Value, uploader: &str) {
    assert_eq!(created["uploader"], uploader, "{created}");
    assert_eq!(created["upload"]["uploader"], uploader, "{created}");
    assert_eq!(created["endpoint"], server.url(""), "{created}");
    assert!(created["token_expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{created}");
}

async fn a_scoped_token_sends_and_completes_a_single_post(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let app = server.as_owner("erin");
    let data = bytes(70_000, 11);
    let created = app.create("photo.jpg", data.len(), "image/jpeg").await;
    check_answer_shape(&server, &created, "S3");
    assert_ne!(created["token"].as_str(), app.token.as_deref());
    let id = created["id"].as_str().unwrap();
    let browser = holding_token(&server, &created);

    let status = json_ok(browser.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "pending");
    let (stored, body) = post_form(&server.http, &created, &BTreeMap::new(), data.clone()).await;
    assert!((200..300).contains(&stored), "store refused the form: {stored} {body}");
    let completed = json_ok(browser.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(completed["file"]["owner"], "erin");
    assert_eq!(completed["file"]["size"], data.len());

    // The owner sees the file the browser completed, once.
    let listed = json_ok(app.get("/files").await, StatusCode::OK).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 1);
    let download = json_ok(app.get(&format!("/files/{id}")).await, StatusCode::OK).await;
    let body = server.http.get(download["download_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_b64(&body), sha256_b64(&data));
}

async fn a_scoped_token_signs_parts_completes_and_aborts_multipart(backend: Backend) {
    let server = TestServer::start(backend, |c| c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64)).await;
    let app = server.as_owner("finn");
    let data = bytes(5 * MIB + 3, 12);
    let created = app.create("clip.mp4", data.len(), "video/mp4").await;
    check_answer_shape(&server, &created, "S3Multipart");
    let id = created["id"].as_str().unwrap();
    let browser = holding_token(&server, &created);

    let signed =
        json_ok(browser.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1, 2]})).await, StatusCode::OK)
            .await;
    let mut parts = Vec::new();
    for (i, part) in signed["parts"].as_array().unwrap().iter().enumerate() {
        let chunk = data[i * 5 * MIB..((i + 1) * 5 * MIB).min(data.len())].to_vec();
        let mut request = server.http.put(part["url"].as_str().unwrap()).body(chunk);
        for (k, v) in part["headers"].as_object().unwrap() {
            request = request.header(k, v.as_str().unwrap());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        parts.push(json!({"part_number": i + 1, "etag": response.headers()["etag"].to_str().unwrap()}));
    }
    let completed =
        json_ok(browser.post(&format!("/uploads/{id}/complete"), json!({"parts": parts})).await, StatusCode::OK).await;
    assert_eq!(completed["file"]["size"], data.len());

    // Abort with the token of another pending upload.
    let second = app.create("other.mp4", data.len(), "video/mp4").await;
    let second_id = second["id"].as_str().unwrap();
    let second_browser = holding_token(&server, &second);
    assert_eq!(second_browser.delete(&format!("/uploads/{second_id}")).await.status(), StatusCode::NO_CONTENT);
    let status = json_ok(app.get(&format!("/uploads/{second_id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "aborted");
}

async fn a_scoped_token_is_refused_for_any_other_upload(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let app = server.as_owner("gus");
    let first = app.create("a.txt", 10, "text/plain").await;
    let second = app.create("b.txt", 10, "text/plain").await;
    let stranger = server.as_owner("hal").create("c.txt", 10, "text/plain").await;
    let browser = holding_token(&server, &first);
    for other in [&second, &stranger] {
        let id = other["id"].as_str().unwrap();
        expect_error(browser.get(&format!("/uploads/{id}")).await, 404, "not_found").await;
        expect_error(browser.post(&format!("/uploads/{id}/complete"), json!({})).await, 404, "not_found").await;
        expect_error(
            browser.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await,
            404,
            "not_found",
        )
        .await;
        expect_error(browser.delete(&format!("/uploads/{id}")).await, 404, "not_found").await;
    }
    // Not an upload id at all.
    expect_error(browser.get("/uploads/not-an-id").await, 404, "not_found").await;
    // Nothing was touched.
    for other in [&second, &stranger] {
        let owner = if other == &second { "gus" } else { "hal" };
        let status = json_ok(
            server.as_owner(owner).get(&format!("/uploads/{}", other["id"].as_str().unwrap())).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(status["state"], "pending");
    }
}

async fn a_scoped_token_is_not_a_user_token(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let app = server.as_owner("ida");
    let data = bytes(1000, 13);
    let created = app.create("kept.txt", data.len(), "text/plain").await;
    let id = created["id"].as_str().unwrap();
    let (stored, _) = post_form(&server.http, &created, &BTreeMap::new(), data).await;
    assert!((200..300).contains(&stored));
    json_ok(app.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;

    let browser = holding_token(&server, &created);
    let refused = [
        browser.post("/uploads", json!({"name": "more.txt", "size": 1})).await,
        browser.get("/files").await,
        browser.get(&format!("/files/{id}")).await,
        browser.delete(&format!("/files/{id}")).await,
    ];
    for response in refused {
        let message = expect_error(response, 401, "unauthorized").await;
        assert!(message.contains("upload-scoped"), "{message}");
    }
    // The file is still there.
    json_ok(app.get(&format!("/files/{id}")).await, StatusCode::OK).await;
}

async fn expired_and_tampered_scoped_tokens_are_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let app = server.as_owner("jay");
    let created = app.create("a.txt", 10, "text/plain").await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/uploads/{id}");

    let expired = server.state.upload_tokens().issue(id, "jay", upload_tests::now_ms() - 60_000);
    let message =
        expect_error(Client { server: &server, token: Some(expired) }.get(&path).await, 401, "unauthorized").await;
    assert!(message.contains("expired"), "{message}");

    let token = created["token"].as_str().unwrap();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = [
        format!("{signed}.{flipped}{}", &signature[1..]),
        // Another upload's claims under this token's signature.
        format!(
            "{}.{signature}",
            app.create("b.txt", 10, "text/plain").await["token"].as_str().unwrap().rsplit_once('.').unwrap().0
        ),
        format!("{signed}."),
        // Signed by a server with another secret.
        {
            let elsewhere = upload_server::upload_token::UploadTokens::new(Some(b"another server's secret".as_slice()));
            elsewhere.issue(id, "jay", upload_tests::now_ms() + 60_000)
        },
    ];
    for token in tampered {
        let client = Client { server: &server, token: Some(token) };
        expect_error(client.get(&path).await, 401, "unauthorized").await;
        expect_error(client.post(&format!("{path}/complete"), json!({})).await, 401, "unauthorized").await;
        expect_error(client.delete(&path).await, 401, "unauthorized").await;
    }
    let status = json_ok(app.get(&path).await, StatusCode::OK).await;
    assert_eq!(status["state"], "pending");
}

on_every_backend!(
    a_scoped_token_sends_and_completes_a_single_post,
    a_scoped_token_signs_parts_completes_and_aborts_multipart,
    a_scoped_token_is_refused_for_any_other_upload,
    a_scoped_token_is_not_a_user_token,
    expired_and_tampered_scoped_tokens_are_refused,
);
