//! Whole uploads through the real store: single POST, multipart, download, delete.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;
use upload_tests::{Backend, Store, TestServer, bytes, json_ok, on_every_backend, post_form, sha256_b64};

async fn single_post_upload_download_and_delete(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let alice = server.as_owner("alice");
    let data = bytes(100_000, 1);
    let upload = alice.create("résumé 2026.pdf", data.len(), "application/pdf").await;
    let id = upload["id"].as_str().unwrap();
    assert!(upload["key"].as_str().unwrap().starts_with("uploads/alice/"), "{upload}");
    assert_eq!(upload["complete_url"], format!("/api/v1/uploads/{id}/complete"));

    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data.clone()).await;
    assert!(status == 204 || status == 200 || status == 201, "store refused the form: {status} {body}");

    let completed = json_ok(alice.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    let file = &completed["file"];
    assert_eq!(file["id"], id);
    assert_eq!(file["size"], data.len());
    assert_eq!(file["type"], "application/pdf");
    assert_eq!(file["owner"], "alice");
    assert_eq!(file["name"], "résumé 2026.pdf");

    // Completing again answers the same file.
    let again = json_ok(alice.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(again["file"], *file);

    let status = json_ok(alice.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "completed");

    let listed = json_ok(alice.get("/files").await, StatusCode::OK).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), 1);
    assert_eq!(listed["files"][0]["id"], id);
    assert!(listed["next_cursor"].is_null());

    let download = json_ok(alice.get(&format!("/files/{id}")).await, StatusCode::OK).await;
    let response = server.http.get(download["download_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert_eq!(disposition, "attachment; filename=\"r_sum_ 2026.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf");
    let downloaded = response.bytes().await.unwrap();
    assert_eq!(sha256_b64(&downloaded), sha256_b64(&data));

    let deleted = alice.delete(&format!("/files/{id}")).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(server.state.storage().head(file["key"].as_str().unwrap()).await.unwrap().is_none(), "object left behind");
    assert_eq!(alice.get(&format!("/files/{id}")).await.status(), StatusCode::NOT_FOUND);
    let listed = json_ok(alice.get("/files").await, StatusCode::OK).await;
    assert!(listed["files"].as_array().unwrap().is_empty());
}

async fn multipart_upload_with_part_puts_then_download(backend: Backend) {
    const MIB: usize = 1024 * 1024;
    let server = TestServer::start(backend, |c| c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64)).await;
    let bob = server.as_owner("bob");
    let data = bytes(12 * MIB + 17, 2);
    let upload = bob.create("video.mp4", data.len(), "video/mp4").await;
    let id = upload["id"].as_str().unwrap();
    let plan = &upload["upload"];
    assert_eq!(plan["uploader"], "S3Multipart", "{upload}");
    assert_eq!(plan["part_size"], 5 * MIB);
    assert_eq!(plan["part_count"], 3);

    let signed =
        json_ok(bob.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1, 2, 3]})).await, StatusCode::OK)
            .await;
    let mut etags = Vec::new();
    for (i, part) in signed["parts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(part["part_number"], i + 1);
        assert_eq!(part["method"], "PUT");
        let start = i * 5 * MIB;
        let end = (start + 5 * MIB).min(data.len());
        let mut request = server.http.put(part["url"].as_str().unwrap()).body(data[start..end].to_vec());
        for (k, v) in part["headers"].as_object().unwrap() {
            request = request.header(k, v.as_str().unwrap());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "part {} refused: {:?}", i + 1, response.text().await);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        etags.push(json!({"part_number": i + 1, "etag": etag}));
    }

    // The state endpoint reports what the store holds, for resuming.
    let status = json_ok(bob.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "pending");
    let parts = status["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2]["size"], 2 * MIB + 17);

    let completed =
        json_ok(bob.post(&format!("/uploads/{id}/complete"), json!({"parts": etags})).await, StatusCode::OK).await;
    assert_eq!(completed["file"]["size"], data.len());
    let again =
        json_ok(bob.post(&format!("/uploads/{id}/complete"), json!({"parts": etags})).await, StatusCode::OK).await;
    assert_eq!(again["file"], completed["file"]);

    let download = json_ok(bob.get(&format!("/files/{id}")).await, StatusCode::OK).await;
    let body = server.http.get(download["download_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_b64(&body), sha256_b64(&data));
}

async fn aborting_a_multipart_upload_removes_it_from_the_store(backend: Backend) {
    const MIB: usize = 1024 * 1024;
    let server = TestServer::start(backend, |c| c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64)).await;
    let carol = server.as_owner("carol");
    let data = bytes(6 * MIB, 3);
    let upload = carol.create("big.bin", data.len(), "").await;
    let id = upload["id"].as_str().unwrap();
    let signed =
        json_ok(carol.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await, StatusCode::OK).await;
    let response = server
        .http
        .put(signed["parts"][0]["url"].as_str().unwrap())
        .body(data[..5 * MIB].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(carol.delete(&format!("/uploads/{id}")).await.status(), StatusCode::NO_CONTENT);
    let status = json_ok(carol.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["state"], "aborted");
    let key = upload["key"].as_str().unwrap();
    let upload_id = upload["upload"]["upload_id"].as_str().unwrap();
    let listed = server.state.storage().list_parts(key, upload_id).await;
    assert!(listed.is_err() || listed.unwrap().is_empty(), "parts still in the store after abort");
    // Aborting again is harmless.
    assert_eq!(carol.delete(&format!("/uploads/{id}")).await.status(), StatusCode::NO_CONTENT);
}

async fn files_are_listed_newest_first_with_cursor_paging(backend: Backend) {
    let server = TestServer::start(backend, |c| c).await;
    let dave = server.as_owner("dave");
    let mut ids = Vec::new();
    for i in 0..5 {
        let data = bytes(1000 + i, 10 + i as u64);
        let upload = dave.create(&format!("f{i}.txt"), data.len(), "text/plain").await;
        let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data).await;
        assert!(status < 300, "{status} {body}");
        let id = upload["id"].as_str().unwrap().to_owned();
        json_ok(dave.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
        ids.push(id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/files?limit=2&cursor={c}"),
            None => "/files?limit=2".to_owned(),
        };
        let page = json_ok(dave.get(&path).await, StatusCode::OK).await;
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= 2);
        seen.extend(files.iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every file once, newest first");
}

async fn multipart_with_part_checksums(backend: Backend) {
    const MIB: usize = 1024 * 1024;
    let server = TestServer::start(backend, |c| c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64)).await;
    let client = server.as_owner("sums");
    let data = bytes(7 * MIB, 21);
    let response = client.post("/uploads", json!({"name": "x.bin", "size": data.len(), "part_checksums": true})).await;
    let upload = json_ok(response, StatusCode::CREATED).await;
    let id = upload["id"].as_str().unwrap();
    // The plan says so, for a browser that did not create the upload itself.
    assert_eq!(upload["upload"]["part_checksums"], true);
    // Every part must come with its checksum.
    upload_tests::expect_error(
        client.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await,
        400,
        "invalid_request",
    )
    .await;
    let ranges = [0..5 * MIB, 5 * MIB..data.len()];
    let sums: serde_json::Map<String, serde_json::Value> =
        ranges.iter().enumerate().map(|(i, r)| ((i + 1).to_string(), json!(sha256_b64(&data[r.clone()])))).collect();
    let signed = json_ok(
        client.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1, 2], "sha256": sums})).await,
        StatusCode::OK,
    )
    .await;
    let mut parts = Vec::new();
    for (i, range) in ranges.iter().enumerate() {
        let part = &signed["parts"][i];
        let send = |body: Vec<u8>| {
            let mut request = server.http.put(part["url"].as_str().unwrap()).body(body);
            for (k, v) in part["headers"].as_object().unwrap() {
                request = request.header(k, v.as_str().unwrap());
            }
            request.send()
        };
        // A corrupted copy is refused by the store; the right bytes pass.
        let mut corrupted = data[range.clone()].to_vec();
        corrupted[1000] ^= 0x40;
        assert_eq!(send(corrupted).await.unwrap().status(), 400, "part {} corrupted but accepted", i + 1);
        let response = send(data[range.clone()].to_vec()).await.unwrap();
        assert_eq!(response.status(), 200);
        parts.push(json!({"part_number": i + 1, "etag": response.headers()["etag"].to_str().unwrap()}));
    }
    let status = json_ok(client.get(&format!("/uploads/{id}")).await, StatusCode::OK).await;
    assert_eq!(status["part_checksums"], true);
    assert_eq!(status["parts"][0]["sha256"], sums["1"]);
    let done =
        json_ok(client.post(&format!("/uploads/{id}/complete"), json!({"parts": parts})).await, StatusCode::OK).await;
    assert_eq!(done["file"]["size"], data.len());
    // The store's verified digest: the whole file's on local disk, S3's
    // composite (a digest of the part digests, with the part count) on Garage.
    let recorded = done["file"]["sha256"].as_str().expect("a verified digest is recorded");
    match backend.store() {
        Store::Local => assert_eq!(recorded, sha256_b64(&data)),
        Store::Garage => assert!(recorded.ends_with("-2"), "composite checksum expected: {recorded}"),
    }
    let download = json_ok(client.get(&format!("/files/{id}")).await, StatusCode::OK).await;
    let body = server.http.get(download["download_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_b64(&body), sha256_b64(&data));
}

async fn chunked_uploads_with_content_range(backend: Backend) {
    let server = TestServer::start(backend, |c| c.part_size(5 * 1024 * 1024)).await;
    let client = server.as_owner("chunky");
    let data = bytes(12 * 1024 * 1024 + 3, 31);
    let created = client.post("/uploads", json!({"name": "c.bin", "size": data.len(), "uploader": "Chunked"})).await;
    if backend.store() == Store::Garage {
        // S3 has no Content-Range sessions: the plan is refused, not faked.
        upload_tests::expect_error(created, 400, "invalid_request").await;
        return;
    }
    let upload = json_ok(created, StatusCode::CREATED).await;
    let id = upload["id"].as_str().unwrap();
    let plan = &upload["upload"];
    assert_eq!(plan["uploader"], "Chunked", "{upload}");
    let url = plan["url"].as_str().unwrap();
    let chunk = plan["chunk_size"].as_u64().unwrap() as usize;
    let total = data.len();
    let put = |start: usize, end: usize, body: Vec<u8>| {
        let range =
            if start == end { format!("bytes */{total}") } else { format!("bytes {start}-{}/{total}", end - 1) };
        server.http.put(url).header("content-range", range).body(body).send()
    };
    let stored_range = |r: &reqwest::Response| r.headers().get("range").map(|v| v.to_str().unwrap().to_owned());

    let first = put(0, chunk, data[..chunk].to_vec()).await.unwrap();
    assert_eq!(first.status(), 308);
    assert_eq!(stored_range(&first), Some(format!("bytes=0-{}", chunk - 1)));
    // Asking how much is stored, and a chunk that skips ahead, both answer where it ends.
    let asked = put(0, 0, Vec::new()).await.unwrap();
    assert_eq!((asked.status().as_u16(), stored_range(&asked)), (308, Some(format!("bytes=0-{}", chunk - 1))));
    let skipped = put(2 * chunk, total, data[2 * chunk..].to_vec()).await.unwrap();
    assert_eq!((skipped.status().as_u16(), stored_range(&skipped)), (308, Some(format!("bytes=0-{}", chunk - 1))));
    // A chunk shorter than its range is refused and leaves the stored bytes as they were.
    let short = put(chunk, 2 * chunk, data[chunk..2 * chunk - 1].to_vec()).await.unwrap();
    assert_eq!(short.status(), 400);
    // Completing before the last chunk: nothing is in place yet.
    upload_tests::expect_error(
        client.post(&format!("/uploads/{id}/complete"), json!({})).await,
        409,
        "upload_incomplete",
    )
    .await;
    let second = put(chunk, 2 * chunk, data[chunk..2 * chunk].to_vec()).await.unwrap();
    assert_eq!(second.status(), 308);
    let last = put(2 * chunk, total, data[2 * chunk..].to_vec()).await.unwrap();
    assert_eq!(last.status(), 200);

    let done = json_ok(client.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
    assert_eq!(done["file"]["size"], total);
    assert_eq!(done["file"]["sha256"], sha256_b64(&data));
    let download = json_ok(client.get(&format!("/files/{id}")).await, StatusCode::OK).await;
    let body = server.http.get(download["download_url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_b64(&body), sha256_b64(&data));
}

on_every_backend!(
    chunked_uploads_with_content_range,
    multipart_with_part_checksums,
    single_post_upload_download_and_delete,
    multipart_upload_with_part_puts_then_download,
    aborting_a_multipart_upload_removes_it_from_the_store,
    files_are_listed_newest_first_with_cursor_paging
);
