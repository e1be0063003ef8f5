//! Webhooks end to end: a real receiver, events committed by one server
//! that stops before delivering any, delivered after the restart by two
//! deliverers sharing the database, each once, signed per Standard Webhooks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use upload_tests::{Backend, TestServer, expect_error, json_ok, now_ms, on_every_backend, post_form};

/// 24 random bytes, as a Standard Webhooks secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

/// A receiver on a real port that answers 500 to its first `fail_first`
/// requests, then 204.
struct Receiver {
    url: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receiver(fail_first: usize) -> Receiver {
    let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let seen = deliveries.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let answered = if seen.len() < fail_first { 500 } else { 204 };
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.push(Delivery {
                    id: header("webhook-id"),
                    timestamp: header("webhook-timestamp"),
                    signature: header("webhook-signature"),
                    body,
                    answered,
                });
                AxumStatus::from_u16(answered).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, deliveries, task }
}

/// Verifies a delivery as a receiver following the specification would.
fn verify(delivery: &Delivery) {
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", delivery.id, delivery.timestamp, delivery.body).as_bytes());
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(delivery.signature, expected, "bad signature on {delivery:?}");
    let timestamp: i64 = delivery.timestamp.parse().unwrap();
    assert!((timestamp - now_ms() / 1000).abs() < 60, "stale webhook-timestamp {timestamp}");
    assert!(delivery.id.starts_with("msg_"), "{delivery:?}");
}

async fn events_survive_a_restart_and_arrive_once_signed(backend: Backend) {
    let hook = receiver(1).await;
    let (database, _shared) = backend.fresh_database().await;
    let configure = |c: upload_server::ConfigBuilder| {
        c.database_url(&database).webhook(&hook.url, SECRET).accept(vec!["image/*".into()]).sweep_interval_secs(0)
    };

    // The first server commits four changes and stops before delivering any.
    let (completed_id, failed_id, expired_id) = {
        let first = TestServer::start(backend, configure).await;
        let alice = first.as_owner("alice");
        let png = b"\x89PNG\r\n\x1a\nsome image bytes".to_vec();
        let upload = alice.create("a.png", png.len(), "image/png").await;
        post_form(&first.http, &upload, &BTreeMap::new(), png).await;
        let completed = upload["id"].as_str().unwrap().to_owned();
        json_ok(alice.post(&format!("/uploads/{completed}/complete"), json!({})).await, StatusCode::OK).await;
        assert_eq!(alice.delete(&format!("/files/{completed}")).await.status(), StatusCode::NO_CONTENT);

        let html = b"<html><body>no</body></html>".to_vec();
        let upload = alice.create("b.png", html.len(), "image/png").await;
        post_form(&first.http, &upload, &BTreeMap::new(), html).await;
        let failed = upload["id"].as_str().unwrap().to_owned();
        expect_error(alice.post(&format!("/uploads/{failed}/complete"), json!({})).await, 422, "content_not_accepted")
            .await;

        let expired = alice.create("c.png", 10, "image/png").await["id"].as_str().unwrap().to_owned();
        upload_server::sweeper::sweep_until(&first.state, now_ms() + 10 * 86_400_000).await.unwrap();
        (completed, failed, expired)
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hook.deliveries.lock().unwrap().is_empty(), "delivered before any deliverer ran");

    // After the restart: two instances, each with its deliverer.
    let second = TestServer::start(backend, configure).await;
    let third = TestServer::start(backend, configure).await;
    let deliverers = [
        tokio::spawn(upload_server::webhooks::run(second.state.clone())),
        tokio::spawn(upload_server::webhooks::run(third.state.clone())),
    ];

    // The first attempt is answered 500 and retried after 5 s.
    let accepted_count = || hook.deliveries.lock().unwrap().iter().filter(|d| d.answered == 204).count();
    for _ in 0..300 {
        if accepted_count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for a second delivery of any event to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for deliverer in deliverers {
        deliverer.abort();
    }
    let all = hook.deliveries.lock().unwrap().clone();
    let accepted: Vec<Delivery> = all.iter().filter(|d| d.answered == 204).cloned().collect();
    assert_eq!(accepted.len(), 4, "every event accepted exactly once: {all:#?}");
    let ids: BTreeSet<&str> = accepted.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "an event accepted twice: {all:#?}");
    // The refused attempt was retried with the same id.
    let refused = all.iter().find(|d| d.answered == 500).expect("the first attempt");
    assert!(ids.contains(refused.id.as_str()), "{all:#?}");
    for delivery in &all {
        verify(delivery);
    }

    let events: BTreeMap<String, Value> = accepted
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_str(&d.body).unwrap();
            (body["type"].as_str().unwrap().to_owned(), body)
        })
        .collect();
    let types: Vec<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(types, ["file.completed", "file.deleted", "upload.expired", "upload.failed"]);
    let completed = &events["file.completed"]["data"];
    assert_eq!((completed["id"].as_str(), completed["owner"].as_str()), (Some(completed_id.as_str()), Some("alice")));
    assert_eq!(completed["detected_type"], "image/png");
    assert_eq!(completed["meta"], json!({}));
    assert_eq!(events["file.deleted"]["data"]["id"], completed_id);
    assert_eq!(events["upload.failed"]["data"]["id"], failed_id);
    assert_eq!(events["upload.failed"]["data"]["state"], "failed");
    assert_eq!(events["upload.expired"]["data"]["id"], expired_id);
    assert!(events["upload.expired"]["timestamp"].as_str().unwrap().ends_with('Z'));

    // The outbox is empty now, as /metrics says.
    let scrape = second.http.get(format!("{}/metrics", second.base)).send().await.unwrap().text().await.unwrap();
    assert!(scrape.lines().any(|l| l == "upload_webhook_outbox_undelivered 0"), "{scrape}");
}

/// Without a webhook configured, nothing is written to the outbox.
async fn no_webhook_no_events(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let alice = server.as_owner("alice");
    let data = b"plain".to_vec();
    let upload = alice.create("a.txt", data.len(), "text/plain").await;
    post_form(&server.http, &upload, &BTreeMap::new(), data).await;
    let id = upload["id"].as_str().unwrap();
    json_ok(alice.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    let report = upload_server::webhooks::deliver_due(&server.state, "test").await.unwrap();
    assert_eq!(report, Default::default());
    assert_eq!(upload_tests::count_rows(&server.state.config().database_url, "webhook_outbox").await, 0);
}

on_every_backend!(events_survive_a_restart_and_arrive_once_signed, no_webhook_no_events);
