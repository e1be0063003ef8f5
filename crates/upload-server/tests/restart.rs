//! The real binary, killed in the middle of a multipart upload and started
//! again on the same data directory: the upload is still pending, the stored
//! parts are listed, and the upload resumes and completes.

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
    let child = Command::new(server_binary())
        .env_clear()
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
