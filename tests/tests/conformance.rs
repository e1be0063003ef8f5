//! The storage conformance suite: one set of checks of the `Storage` trait,
//! run against every backend (Garage through the S3 backend, and local
//! disk), with real HTTP requests to the URLs each backend signs.

use std::time::Duration;

use reqwest::StatusCode;
use time::OffsetDateTime;
use upload_server::storage::{PartTarget, PostTarget, Storage, StorageError};
use upload_tests::{Backend, TestServer, bytes, on_every_backend, sha256_b64};

const MIB: usize = 1024 * 1024;

fn unique_key(server: &TestServer, name: &str) -> String {
    format!("uploads/conformance/{}/{}", ulid_like(server), name)
}

fn ulid_like(server: &TestServer) -> String {
    // Unique per test server and call: the base URL's port and a counter.
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", server.base.rsplit(':').next().unwrap(), N.fetch_add(1, Ordering::Relaxed))
}

async fn put(
    server: &TestServer,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = server.http.put(url).body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    request.send().await.unwrap()
}

async fn post_object_head_get_delete(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let storage: &dyn Storage = server.state.storage();
    let key = unique_key(&server, "a file.txt");
    let data = bytes(3000, 1);
    let form = storage
        .presign_post(&PostTarget {
            key: &key,
            content_type: "text/plain",
            size: data.len() as u64,
            sha256: None,
            expires_at: OffsetDateTime::now_utc() + Duration::from_secs(60),
        })
        .await
        .unwrap();
    let mut multipart = reqwest::multipart::Form::new();
    for (k, v) in form.fields {
        multipart = multipart.text(k, v);
    }
    multipart = multipart.part("file", reqwest::multipart::Part::bytes(data.clone()));
    let response = server.http.post(&form.url).multipart(multipart).send().await.unwrap();
    assert!(response.status().is_success(), "{:?}", response.text().await);
    // As S3 answers a form: the object's location, the key at the end of its path.
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    let location = location.expect("a Location header");
    let encoded_key = key.replace(' ', "%20");
    assert!(location.ends_with(&format!("/{encoded_key}")), "{location} does not end with the key {encoded_key}");

    let info = storage.head(&key).await.unwrap().expect("stored");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("text/plain"));

    let get = storage.presign_get(&key, "attachment; filename=\"x.txt\"", Duration::from_secs(60)).await.unwrap();
    let response = server.http.get(&get.url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"x.txt\"");
    assert_eq!(sha256_b64(&response.bytes().await.unwrap()), sha256_b64(&data));
    // A tampered download URL is refused.
    let tampered = get.url.replace("x.txt", "y.txt").replace("x%2Etxt", "y%2Etxt");
    assert_ne!(tampered, get.url);
    assert_eq!(server.http.get(&tampered).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // The first bytes, for sniffing: exactly as many as asked, or the whole
    // object when it is shorter.
    assert_eq!(storage.read_prefix(&key, 100).await.unwrap(), data[..100]);
    assert_eq!(storage.read_prefix(&key, 8192).await.unwrap(), data);
    assert_eq!(storage.read_prefix(&key, data.len() as u64).await.unwrap(), data);

    storage.delete(&key).await.unwrap();
    assert!(matches!(storage.read_prefix(&key, 100).await, Err(StorageError::NotFound)));
    assert!(storage.head(&key).await.unwrap().is_none());
    storage.delete(&key).await.expect("deleting what is gone succeeds");
    assert!(storage.head(&unique_key(&server, "never-stored")).await.unwrap().is_none());
}

async fn multipart_parts_list_complete_abort(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let storage: &dyn Storage = server.state.storage();
    let key = unique_key(&server, "big.bin");
    let data = bytes(5 * MIB + 1234, 2);
    let upload_id = storage.create_multipart(&key, "application/x-test", true).await.unwrap();
    let ranges = [(1u32, 0..5 * MIB), (2, 5 * MIB..data.len())];
    // Part 2 first: order of arrival does not matter.
    for (number, range) in ranges.iter().rev() {
        let target = PartTarget {
            key: &key,
            upload_id: &upload_id,
            part_number: *number,
            length: range.len() as u64,
            sha256: Some(&sha256_b64(&data[range.clone()])),
        };
        let signed = storage.presign_part(&target, Duration::from_secs(60)).await.unwrap();
        let response = put(&server, &signed.url, &signed.headers, data[range.clone()].to_vec()).await;
        assert_eq!(response.status(), 200, "part {number}: {:?}", response.text().await);
    }
    let listed = storage.list_parts(&key, &upload_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| (p.part_number, p.size)).collect::<Vec<_>>(),
        vec![(1, 5 * MIB as u64), (2, 1234)]
    );
    assert!(listed.iter().all(|p| !p.etag.is_empty()));
    assert!(listed.iter().all(|p| p.sha256.is_some()), "part checksums are listed: {listed:?}");
    storage.complete_multipart(&key, &upload_id, &listed).await.unwrap();
    let info = storage.head(&key).await.unwrap().expect("assembled");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("application/x-test"));
    let get = storage.presign_get(&key, "attachment", Duration::from_secs(60)).await.unwrap();
    let body = server.http.get(&get.url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_b64(&body), sha256_b64(&data));

    // Abort: the parts are gone; aborting again (or an unknown id) succeeds.
    let key2 = unique_key(&server, "aborted.bin");
    let upload_id = storage.create_multipart(&key2, "application/octet-stream", false).await.unwrap();
    let target = PartTarget { key: &key2, upload_id: &upload_id, part_number: 1, length: 10, sha256: None };
    let signed = storage.presign_part(&target, Duration::from_secs(60)).await.unwrap();
    assert_eq!(put(&server, &signed.url, &signed.headers, bytes(10, 3)).await.status(), 200);
    storage.abort_multipart(&key2, &upload_id).await.unwrap();
    match storage.list_parts(&key2, &upload_id).await {
        Err(StorageError::NotFound) => {}
        other => panic!("parts still listed after abort: {other:?}"),
    }
    storage.abort_multipart(&key2, &upload_id).await.unwrap();
    // A part PUT to an aborted upload is refused.
    assert!(put(&server, &signed.url, &signed.headers, bytes(10, 3)).await.status().is_client_error());
}

/// aws-sdk-rust #1253 / #1103: a checksum signed into a presigned part URL
/// must make the store refuse other bytes.
async fn a_part_with_the_wrong_checksum_is_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let storage: &dyn Storage = server.state.storage();
    let key = unique_key(&server, "sum.bin");
    let upload_id = storage.create_multipart(&key, "application/octet-stream", true).await.unwrap();
    let good = bytes(1000, 4);
    let mut bad = good.clone();
    bad[500] ^= 0xff;
    let target =
        PartTarget { key: &key, upload_id: &upload_id, part_number: 1, length: 1000, sha256: Some(&sha256_b64(&good)) };
    let signed = storage.presign_part(&target, Duration::from_secs(60)).await.unwrap();
    assert!(
        signed.headers.keys().any(|h| h.eq_ignore_ascii_case("x-amz-checksum-sha256")),
        "the checksum must travel as a signed header: {:?}",
        signed.headers
    );
    let refused = put(&server, &signed.url, &signed.headers, bad).await;
    assert_eq!(refused.status(), 400, "a corrupted part was accepted");
    assert!(storage.list_parts(&key, &upload_id).await.unwrap().is_empty());
    // Dropping the checksum header breaks the signature.
    let stripped = put(&server, &signed.url, &Default::default(), good.clone()).await;
    assert!(stripped.status().is_client_error(), "a part without its signed checksum was accepted");
    let accepted = put(&server, &signed.url, &signed.headers, good).await;
    assert_eq!(accepted.status(), 200);
    storage.abort_multipart(&key, &upload_id).await.unwrap();
}

async fn forged_and_expired_part_urls_are_refused(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let storage: &dyn Storage = server.state.storage();
    let key = unique_key(&server, "forged.bin");
    let upload_id = storage.create_multipart(&key, "application/octet-stream", true).await.unwrap();
    let target = PartTarget { key: &key, upload_id: &upload_id, part_number: 1, length: 10, sha256: None };
    let signed = storage.presign_part(&target, Duration::from_secs(60)).await.unwrap();
    let last = signed.url.chars().last().unwrap();
    let forged = format!("{}{}", &signed.url[..signed.url.len() - 1], if last == '0' { '1' } else { '0' });
    // Garage answers 400 or 403 depending on what is wrong; S3 answers 403.
    let refused = |status: StatusCode| status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST;
    let status = put(&server, &forged, &signed.headers, bytes(10, 5)).await.status();
    assert!(refused(status), "forged URL: {status}");
    let short = storage.presign_part(&target, Duration::from_secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let status = put(&server, &short.url, &short.headers, bytes(10, 5)).await.status();
    assert!(refused(status), "expired URL: {status}");
    assert!(storage.list_parts(&key, &upload_id).await.unwrap().is_empty());
    storage.abort_multipart(&key, &upload_id).await.unwrap();
}

on_every_backend!(
    post_object_head_get_delete,
    multipart_parts_list_complete_abort,
    a_part_with_the_wrong_checksum_is_refused,
    forged_and_expired_part_urls_are_refused,
);
