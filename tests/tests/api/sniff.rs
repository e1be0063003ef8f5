//! The type from the bytes (`UPLOAD_SNIFF`): completion reads the start of
//! the stored object, records what it is beside the declared type, and
//! refuses bytes that contradict the accept list (422
//! `content_not_accepted`: the upload fails and the object is deleted).

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_server::{ConfigBuilder, SniffMode};
use upload_tests::{Backend, Client, TestServer, bytes, expect_error, json_ok, on_every_backend, post_form};

const MIB: usize = 1024 * 1024;

/// A whole 1x1 PNG: 67 bytes, far shorter than the 8 KiB sniff window.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0a, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

const HTML: &[u8] = b"<!DOCTYPE html>\n<html><body><script>fetch('/api/v1/files')</script></body></html>\n";

fn images_only(c: ConfigBuilder) -> ConfigBuilder {
    c.accept(vec!["image/*".into()])
}

/// Creates a single-POST upload, sends `data` through its form and asks to
/// complete it; returns the create answer and the complete response.
async fn send(
    server: &TestServer,
    client: &Client<'_>,
    name: &str,
    content_type: &str,
    data: &[u8],
) -> (Value, reqwest::Response) {
    let upload = client.create(name, data.len(), content_type).await;
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.to_vec()).await;
    assert!((200..300).contains(&status), "the store refused the form: {status} {body}");
    let id = upload["id"].as_str().unwrap();
    let response = client.post(&format!("/uploads/{id}/complete"), json!({})).await;
    (upload, response)
}

/// After a refusal: the upload is failed, its object gone, no file recorded.
async fn assert_refused_and_discarded(
    server: &TestServer,
    client: &Client<'_>,
    upload: &Value,
    response: reqwest::Response,
) -> String {
    let message = expect_error(response, 422, "content_not_accepted").await;
    let id = upload["id"].as_str().unwrap();
    let status = json_ok(client.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "failed");
    assert!(
        server.state.storage().head(upload["key"].as_str().unwrap()).await.unwrap().is_none(),
        "object left behind"
    );
    assert_eq!(client.get(&format!("/files/{id}")).await.status(), StatusCode::NOT_FOUND);
    // Completing again does not bring it back.
    expect_error(client.post(&format!("/uploads/{id}/complete"), json!({})).await, 409, "invalid_state").await;
    message
}

async fn html_declared_as_png_is_refused(backend: Backend) {
    let server = TestServer::start(backend, images_only).await;
    let client = server.as_owner("mallory");
    let (upload, response) = send(&server, &client, "cat.png", "image/png", HTML).await;
    let message = assert_refused_and_discarded(&server, &client, &upload, response).await;
    assert!(message.contains("text/html"), "{message}");
}

async fn a_zip_declared_as_png_is_refused(backend: Backend) {
    let server = TestServer::start(backend, images_only).await;
    let client = server.as_owner("mallory");
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend(bytes(20_000, 7));
    let (upload, response) = send(&server, &client, "cat.png", "image/png", &zip).await;
    let message = assert_refused_and_discarded(&server, &client, &upload, response).await;
    assert!(message.contains("application/zip"), "{message}");
}

/// A PNG cut short before its signature ends, and one of a single byte:
/// nothing recognisable, which a PNG cannot be. (An empty file never gets
/// this far: a declared size of 0 is refused at creation.)
async fn a_truncated_png_is_refused(backend: Backend) {
    let server = TestServer::start(backend, images_only).await;
    let client = server.as_owner("mallory");
    for cut in [&TINY_PNG[..3], &TINY_PNG[..1]] {
        let (upload, response) = send(&server, &client, "cat.png", "image/png", cut).await;
        let message = assert_refused_and_discarded(&server, &client, &upload, response).await;
        assert!(message.contains("signature"), "{message}");
    }
    let empty = client.post("/uploads", json!({"name": "cat.png", "size": 0, "type": "image/png"})).await;
    expect_error(empty, 400, "invalid_request").await;
}

/// A whole file shorter than the sniff window is read whole and recorded;
/// so is a text file, whose format has no signature to find.
async fn short_genuine_files_are_recorded_with_their_detected_type(backend: Backend) {
    let server = TestServer::start(backend, |c| c.accept(vec!["image/*".into(), "text/plain".into()])).await;
    let client = server.as_owner("alice");
    let (_, response) = send(&server, &client, "dot.png", "image/png", TINY_PNG).await;
    let file = json_ok(response, StatusCode::OK).await["file"].clone();
    assert_eq!(file["type"], "image/png");
    assert_eq!(file["detected_type"], "image/png");
    // The same record in the listing and the download answer.
    let id = file["id"].as_str().unwrap();
    assert_eq!(json_ok(client.get(&format!("/files/{id}")).await, StatusCode::OK).await["detected_type"], "image/png");
    assert_eq!(json_ok(client.get("/files").await, StatusCode::OK).await["files"][0]["detected_type"], "image/png");

    let (_, response) = send(&server, &client, "notes.txt", "text/plain", b"x").await;
    let file = json_ok(response, StatusCode::OK).await["file"].clone();
    assert_eq!(file["type"], "text/plain");
    assert!(file["detected_type"].is_null(), "{file}");
    // A JPEG declared as one but holding a PNG is still an image: recorded as what it is.
    let (_, response) = send(&server, &client, "dot.jpg", "image/jpeg", TINY_PNG).await;
    let file = json_ok(response, StatusCode::OK).await["file"].clone();
    assert_eq!((file["type"].as_str(), file["detected_type"].as_str()), (Some("image/jpeg"), Some("image/png")));
}

/// A multipart upload is sniffed after assembly, on its first part's bytes
/// only (the object is far longer than the window).
async fn a_multipart_upload_is_sniffed_once_assembled(backend: Backend) {
    let server =
        TestServer::start(backend, |c| images_only(c).multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64))
            .await;
    let client = server.as_owner("bob");
    for (start, verdict) in [(TINY_PNG, Ok("image/png")), (HTML, Err("text/html"))] {
        let mut data = start.to_vec();
        data.extend(bytes(6 * MIB, 9));
        let upload = client.create("big.png", data.len(), "image/png").await;
        let id = upload["id"].as_str().unwrap();
        let signed = json_ok(
            client.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1, 2]})).await,
            StatusCode::OK,
        )
        .await;
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(5 * MIB).enumerate() {
            let part = &signed["parts"][i];
            let mut request = server.http.put(part["url"].as_str().unwrap()).body(chunk.to_vec());
            for (k, v) in part["headers"].as_object().unwrap() {
                request = request.header(k, v.as_str().unwrap());
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            parts.push(json!({"part_number": i + 1, "etag": response.headers()["etag"].to_str().unwrap()}));
        }
        let response = client.post(&format!("/uploads/{id}/complete"), json!({"parts": parts})).await;
        match verdict {
            Ok(detected) => {
                let file = json_ok(response, StatusCode::OK).await["file"].clone();
                assert_eq!(file["detected_type"], detected);
            }
            Err(detected) => {
                let message = assert_refused_and_discarded(&server, &client, &upload, response).await;
                assert!(message.contains(detected), "{message}");
            }
        }
    }
}

/// `record` detects and keeps what it saw but refuses nothing; `off` reads nothing.
async fn record_and_off_modes_refuse_nothing(backend: Backend) {
    let record = TestServer::start(backend, |c| images_only(c).sniff(SniffMode::Record)).await;
    let client = record.as_owner("alice");
    let (_, response) = send(&record, &client, "cat.png", "image/png", HTML).await;
    let file = json_ok(response, StatusCode::OK).await["file"].clone();
    assert_eq!((file["type"].as_str(), file["detected_type"].as_str()), (Some("image/png"), Some("text/html")));

    let off = TestServer::start(backend, |c| images_only(c).sniff(SniffMode::Off)).await;
    let client = off.as_owner("alice");
    for data in [HTML, TINY_PNG] {
        let (_, response) = send(&off, &client, "cat.png", "image/png", data).await;
        let file = json_ok(response, StatusCode::OK).await["file"].clone();
        assert!(file["detected_type"].is_null(), "{file}");
    }
}

/// Without an accept list, `enforce` (the default) has nothing to enforce:
/// it records.
async fn without_an_accept_list_the_type_is_only_recorded(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let client = server.as_owner("alice");
    let (_, response) = send(&server, &client, "cat.png", "image/png", HTML).await;
    let file = json_ok(response, StatusCode::OK).await["file"].clone();
    assert_eq!(file["detected_type"], "text/html");
}

on_every_backend!(
    html_declared_as_png_is_refused,
    a_zip_declared_as_png_is_refused,
    a_truncated_png_is_refused,
    short_genuine_files_are_recorded_with_their_detected_type,
    a_multipart_upload_is_sniffed_once_assembled,
    record_and_off_modes_refuse_nothing,
    without_an_accept_list_the_type_is_only_recorded,
);
