//! An application's hooks (library mode): one that refuses, one that cannot
//! decide yet, one that observes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_server::hooks::{FileCandidate, FileRecord, Refusal, UploadHooks};
use upload_tests::{Backend, Client, TestServer, expect_error, json_ok, on_every_backend, post_form};

/// Refuses any file whose bytes carry the EICAR test string, as a virus
/// scanner would, reading them from the store like a real one; records what
/// it saw of every candidate and every recorded file.
#[derive(Default)]
struct Scanner {
    storage: Mutex<Option<upload_server::AppState>>,
    seen: Mutex<Vec<FileCandidate>>,
    recorded: Mutex<Vec<FileRecord>>,
}

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[async_trait::async_trait]
impl UploadHooks for Scanner {
    async fn before_record(&self, file: &FileCandidate) -> Result<(), Refusal> {
        self.seen.lock().unwrap().push(file.clone());
        let state = self.storage.lock().unwrap().clone().expect("the state is set");
        let bytes =
            state.storage().read_prefix(&file.key, 4096).await.map_err(|e| Refusal::unavailable(e.to_string()))?;
        if bytes.windows(EICAR.len()).any(|w| w == EICAR) {
            return Err(Refusal::reject("the scanner found EICAR-Test-File"));
        }
        Ok(())
    }

    async fn after_record(&self, file: &FileRecord) {
        self.recorded.lock().unwrap().push(file.clone());
    }
}

async fn upload(
    server: &TestServer,
    client: &Client<'_>,
    name: &str,
    data: &[u8],
    meta: Value,
) -> (Value, reqwest::Response) {
    let created =
        client.post("/uploads", json!({"name": name, "size": data.len(), "type": "text/plain", "meta": meta})).await;
    let upload = json_ok(created, StatusCode::CREATED).await;
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.to_vec()).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let id = upload["id"].as_str().unwrap();
    let response = client.post(&format!("/uploads/{id}/complete"), json!({})).await;
    (upload, response)
}

/// `after_record` runs on a task of its own: wait for it.
async fn wait_for_records(scanner: &Scanner, n: usize) -> Vec<FileRecord> {
    for _ in 0..200 {
        let recorded = scanner.recorded.lock().unwrap().clone();
        if recorded.len() >= n {
            return recorded;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("after_record ran {} times, expected {n}", scanner.recorded.lock().unwrap().len());
}

async fn a_hook_refuses_and_observes(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let scanner = Arc::new(Scanner::default());
    *scanner.storage.lock().unwrap() = Some(server.state.clone());
    server.state.set_hooks(scanner.clone());
    let alice = server.as_owner("alice");

    // Refused: failed, object deleted, no file, and no after_record.
    let mut infected = b"an attachment: ".to_vec();
    infected.extend_from_slice(EICAR);
    let (bad, response) = upload(&server, &alice, "invoice.txt", &infected, json!({})).await;
    let message = expect_error(response, 422, "refused_by_app").await;
    assert!(message.contains("EICAR-Test-File"), "{message}");
    let id = bad["id"].as_str().unwrap();
    assert_eq!(json_ok(alice.get(&format!("/uploads/{id}")).await, StatusCode::OK).await["state"], "failed");
    assert!(server.state.storage().head(bad["key"].as_str().unwrap()).await.unwrap().is_none(), "object left behind");
    assert_eq!(alice.get(&format!("/files/{id}")).await.status(), StatusCode::NOT_FOUND);

    // Let through: recorded, and after_record sees the record once.
    let (good, response) = upload(&server, &alice, "notes.txt", b"clean words", json!({"folder": "inbox"})).await;
    let file = json_ok(response, StatusCode::OK).await["file"].clone();
    let id = good["id"].as_str().unwrap();
    // Completing again answers the same file without running the hooks again.
    json_ok(alice.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;

    let recorded = wait_for_records(&scanner, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(scanner.recorded.lock().unwrap().len(), 1, "after_record ran more than once");
    assert_eq!(serde_json::to_value(&recorded[0]).unwrap(), file);

    // before_record saw both candidates, with what was verified.
    let seen = scanner.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let candidate = &seen[1];
    assert_eq!((candidate.id.as_str(), candidate.owner.as_str(), candidate.name.as_str()), (id, "alice", "notes.txt"));
    assert_eq!(candidate.size, 11);
    assert_eq!(candidate.key, good["key"].as_str().unwrap());
    assert_eq!(candidate.meta.get("folder").map(String::as_str), Some("inbox"));
    assert_eq!(seen[0].size, infected.len() as u64);
}

/// Cannot decide once, then lets the file through.
struct ScannerDown {
    down: AtomicBool,
}

#[async_trait::async_trait]
impl UploadHooks for ScannerDown {
    async fn before_record(&self, _file: &FileCandidate) -> Result<(), Refusal> {
        if self.down.swap(false, Ordering::SeqCst) {
            return Err(Refusal::unavailable("the scanner did not answer"));
        }
        Ok(())
    }
}

async fn a_hook_that_cannot_decide_leaves_the_upload_pending(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    server.state.set_hooks(Arc::new(ScannerDown { down: AtomicBool::new(true) }));
    let bob = server.as_owner("bob");
    let (upload, response) = upload(&server, &bob, "a.txt", b"some text", json!({})).await;
    let message = expect_error(response, 503, "storage_unavailable").await;
    assert!(message.contains("scanner"), "{message}");
    let id = upload["id"].as_str().unwrap();
    assert_eq!(json_ok(bob.get(&format!("/uploads/{id}")).await, StatusCode::OK).await["state"], "pending");
    let file = json_ok(bob.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(file["file"]["size"], 9);
}

on_every_backend!(a_hook_refuses_and_observes, a_hook_that_cannot_decide_leaves_the_upload_pending);
