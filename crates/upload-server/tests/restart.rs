//! The real binary, killed without warning and started again on the same
//! data directory: in the middle of a multipart upload (the upload is still
//! pending, the stored parts are listed, and it resumes and completes), and
//! between a file's commit and its webhook's delivery (the event arrives
//! after the restart, signed).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

const MIB: usize = 1024 * 1024;

/// Built by cargo for this test (an integration test of the binary's own
/// package), so a plain `cargo test` needs nothing built beforehand.
fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_upload-server"))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Base64 SHA-256, as the contract carries it.
fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data_dir: &std::path::Path, port: u16) -> Server {
    start_with(data_dir, port, &[]).await
}

async fn start_with(data_dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Server {
    let child = Command::new(server_binary())
        .env_clear()
        .envs(env.iter().copied())
        .env("UPLOAD_LISTEN", format!("127.0.0.1:{port}"))
        .env("UPLOAD_DATA_DIR", data_dir)
        .env("UPLOAD_MULTIPART_THRESHOLD", (5 * MIB).to_string())
        .env("UPLOAD_PART_SIZE", (5 * MIB).to_string())
        .env("UPLOAD_STATIC_DIR", data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child };
    for _ in 0..100 {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_ok_and(|r| r.status() == 200) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not start");
}

async fn json(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_killed_server_resumes_a_multipart_upload_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::new();
    let data = bytes(12 * MIB + 5, 77);

    let mut server = start(dir.path(), port).await;
    let upload = json(
        http.post(format!("{api}/uploads"))
            .json(&json!({"name": "movie.mkv", "size": data.len()}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let id = upload["id"].as_str().unwrap().to_owned();
    assert_eq!(upload["upload"]["part_count"], 3);
    let signed = json(
        http.post(format!("{api}/uploads/{id}/parts")).json(&json!({"part_numbers": [1, 2, 3]})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let part1 =
        http.put(signed["parts"][0]["url"].as_str().unwrap()).body(data[..5 * MIB].to_vec()).send().await.unwrap();
    assert_eq!(part1.status(), 200);

    // Killed without warning, mid-upload.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let _server = start(dir.path(), port).await;

    let status = json(http.get(format!("{api}/uploads/{id}")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(status["state"], "pending");
    let stored: Vec<u64> =
        status["parts"].as_array().unwrap().iter().map(|p| p["part_number"].as_u64().unwrap()).collect();
    assert_eq!(stored, vec![1], "{status}");

    // Resume: only the missing parts, with URLs signed before the restart
    // for part 2 (the signing key survived) and a fresh one for part 3.
    let part2 = http
        .put(signed["parts"][1]["url"].as_str().unwrap())
        .body(data[5 * MIB..10 * MIB].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(part2.status(), 200);
    let fresh = json(
        http.post(format!("{api}/uploads/{id}/parts")).json(&json!({"part_numbers": [3]})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let part3 =
        http.put(fresh["parts"][0]["url"].as_str().unwrap()).body(data[10 * MIB..].to_vec()).send().await.unwrap();
    assert_eq!(part3.status(), 200);

    let status = json(http.get(format!("{api}/uploads/{id}")).send().await.unwrap(), StatusCode::OK).await;
    let parts: Vec<Value> = status["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!({"part_number": p["part_number"], "etag": p["etag"]}))
        .collect();
    assert_eq!(parts.len(), 3);
    let done = json(
        http.post(format!("{api}/uploads/{id}/complete")).json(&json!({"parts": parts})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["file"]["size"], data.len());
    assert_eq!(done["file"]["sha256"], sha256_b64(&data));

    let file = json(http.get(format!("{api}/files/{id}")).send().await.unwrap(), StatusCode::OK).await;
    let body = http.get(file["download_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_b64(&body), sha256_b64(&data));
}

/// A Standard Webhooks secret (24 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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
async fn a_killed_server_delivers_its_webhook_after_restart() {
    use hmac::Mac as _;

    let dir = tempfile::tempdir().unwrap();
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, hook_port) = (free_port(), free_port());
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let hook_url = format!("http://127.0.0.1:{hook_port}/hook");
    let env = [("UPLOAD_WEBHOOK_URL", hook_url.as_str()), ("UPLOAD_WEBHOOK_SECRET", SECRET)];
    let http = reqwest::Client::new();

    // The receiver is not up yet: the first server commits the file, its
    // delivery fails, and it is killed before the retry.
    let mut server = start_with(dir.path(), port, &env).await;
    let file = b"delivered after a crash";
    let upload = json(
        http.post(format!("{api}/uploads"))
            .json(&json!({"name": "a.txt", "size": file.len(), "type": "text/plain"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let id = upload["id"].as_str().unwrap().to_owned();
    let form = http
        .post(upload["upload"]["url"].as_str().unwrap())
        .header("content-type", "multipart/form-data; boundary=B")
        .body(form_body(upload["upload"]["fields"].as_object().unwrap(), file))
        .send()
        .await
        .unwrap();
    assert!(form.status().is_success(), "{:?}", form.text().await);
    json(http.post(format!("{api}/uploads/{id}/complete")).json(&json!({})).send().await.unwrap(), StatusCode::OK)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sender = sender.clone();
            async move {
                let header = |n: &str| headers[n].to_str().unwrap().to_owned();
                sender
                    .send((header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"), body))
                    .unwrap();
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", hook_port)).await.unwrap();
    let receiving = tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let _server = start_with(dir.path(), port, &env).await;

    // The retry comes 5 s after the failed attempt.
    let (webhook_id, timestamp, signature, body) = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("no webhook after the restart")
        .unwrap();
    receiving.abort();
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{webhook_id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(signature, expected);
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "file.completed");
    assert_eq!(event["data"]["id"], id);
    assert_eq!(event["data"]["size"], file.len());
}
