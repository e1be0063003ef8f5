//! Hostile names land under the owner's prefix with a safe name.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;
use upload_tests::{Backend, TestServer, bytes, json_ok, on_every_backend, post_form};

async fn traversal_names_stay_under_the_owner_prefix(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let eve = server.as_owner("eve");
    for (name, safe) in [("../../etc/passwd\u{0}.png", "passwd.png"), ("..\\x.png", "x.png"), ("...", "file")] {
        let data = bytes(10, 5);
        let upload = eve.create(name, data.len(), "image/png").await;
        let key = upload["key"].as_str().unwrap();
        let id = upload["id"].as_str().unwrap();
        assert!(key.starts_with("uploads/eve/"), "{key}");
        assert!(key.ends_with(&format!("/{id}/{safe}")), "{key}");
        assert!(!key.contains(".."), "{key}");
        let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data).await;
        assert!(status < 300, "{status} {body}");
        let done = json_ok(eve.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
        assert_eq!(done["file"]["name"], safe);
        assert_eq!(done["file"]["key"], key);
    }
}

async fn an_owner_id_with_slashes_cannot_escape_its_prefix(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let mallory = server.as_owner("../alice");
    let upload = mallory.create("a.txt", 3, "text/plain").await;
    let key = upload["key"].as_str().unwrap();
    assert!(key.starts_with("uploads/=2E=2E=2Falice/"), "{key}");
}

on_every_backend!(traversal_names_stay_under_the_owner_prefix, an_owner_id_with_slashes_cannot_escape_its_prefix);
