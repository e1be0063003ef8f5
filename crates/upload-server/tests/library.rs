//! The library as a user embeds it: a state assembled by hand with
//! `AppState::new` and the embedded store serves that store's signed URLs
//! from `app()`, with no patching, so a whole upload goes through.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use upload_server::auth::DevelopmentIdentity;

use upload_server::storage::local::LocalStorage;
use upload_server::{AppState, Config, Db, app};

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn json_request(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

/// The form's fields, then the file, as a browser sends them.
fn form_body(fields: &serde_json::Map<String, Value>, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        let value = value.as_str().unwrap();
        body.extend_from_slice(
            format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n");
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--B--\r\n");
    body
}

#[tokio::test]
async fn a_state_built_by_hand_with_the_embedded_store_serves_its_urls() {
    let dir = tempfile::tempdir().unwrap();
    let public_url = "http://127.0.0.1:9";
    let config = Config::builder().public_url(public_url).data_dir(dir.path()).dev_mode(true).build().unwrap();
    let storage = Arc::new(LocalStorage::open(dir.path().join("storage"), public_url).unwrap());
    let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display())).await.unwrap();
    let router = app(AppState::new(config, storage, db, Arc::new(DevelopmentIdentity)));

    let file = b"hello from a library user";
    let create = json!({"name": "a.txt", "size": file.len(), "type": "text/plain"});
    let (status, body) = call(&router, json_request("/api/v1/uploads", create)).await;
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    let url = created["upload"]["url"].as_str().unwrap();
    let path = url.strip_prefix(public_url).expect("the form is signed for the public URL");
    assert!(path.starts_with("/storage/v1/"), "{path}");

    let form = Request::post(path)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B")
        .body(Body::from(form_body(created["upload"]["fields"].as_object().unwrap(), file)))
        .unwrap();
    let (status, body) = call(&router, form).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&body));

    let id = created["id"].as_str().unwrap();
    let (status, body) = call(&router, json_request(&format!("/api/v1/uploads/{id}/complete"), json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let completed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(completed["file"]["size"], file.len(), "{completed}");
}
