//! `PUT /chunked/{session}`: the `Chunked` plan, consecutive
//! `Content-Range` PUTs answered `308 Resume Incomplete` until the last, as
//! Google Cloud Storage's resumable uploads are.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{StoreError, bad_argument, bad_request, bad_signature, check_expiry, denied, refuse};
use crate::storage::local::LocalStorage;
use crate::storage::local::disk::{ChunkedMeta, ObjectMeta, Sink, SinkError, file_stream, io_err};

#[derive(Deserialize)]
pub(super) struct ChunkQuery {
    size: u64,
    expires: String,
    signature: String,
}

/// What a `Content-Range` asks.
enum RangeAsk {
    /// `bytes */total`: how much is stored?
    Status,
    /// `bytes first-last/total`: these bytes follow.
    Bytes { first: u64, last: u64 },
}

/// One chunk of a `Chunked` upload: `Content-Range: bytes a-b/total` must
/// start where the stored bytes end (else the answer says where they end);
/// `bytes */total` with no body asks how much is stored. The last chunk
/// moves the whole file into place.
pub(super) async fn put_chunk(
    State(store): State<Arc<LocalStorage>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChunkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let (Path(session), Query(query)) = (path.map_err(bad_argument)?, query.map_err(bad_argument)?);
    if !store.verify(&["PUT chunked", &session, &query.size.to_string(), &query.expires], &query.signature) {
        return Err(bad_signature());
    }
    check_expiry(&query.expires)?;
    let meta = store.read_chunked(&session).await?;
    if meta.size != query.size {
        return Err(denied("the session was signed for another size"));
    }
    let span = content_range_span(&headers, meta.size)?;
    let _writer = store.claim_session(&session).ok_or_else(|| {
        refuse(StatusCode::CONFLICT, "OperationAborted", "another chunk of this upload is being written")
    })?;
    let data = store.chunked_dir(&session).join("data");
    let stored = tokio::fs::metadata(&data).await.map_err(|e| io_err("reading a chunked session", e))?.len();
    let (first, last) = match parse_span(span, meta.size)? {
        RangeAsk::Bytes { first, last } if first == stored => (first, last),
        // A status question, or bytes not where the stored ones end: say where they do.
        _ => return Ok(resume_incomplete(stored)),
    };
    append_chunk(&data, stored, last - first + 1, body).await?;
    let now_stored = last + 1;
    if now_stored < meta.size {
        return Ok(resume_incomplete(now_stored));
    }
    finish_session(&store, &session, meta).await
}

fn bad_range() -> StoreError {
    bad_request("InvalidRange", "expected Content-Range: bytes a-b/total")
}

/// The span of `Content-Range: bytes <span>/<size>`, whose total must be the session's size.
fn content_range_span(headers: &HeaderMap, size: u64) -> Result<&str, StoreError> {
    let range = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).ok_or_else(bad_range)?;
    let (span, total) = range.strip_prefix("bytes ").and_then(|r| r.split_once('/')).ok_or_else(bad_range)?;
    if total.parse::<u64>().ok() != Some(size) {
        return Err(bad_request("InvalidRange", format!("the total must be {size}")));
    }
    Ok(span)
}

/// `*`, or `first-last` within the session's size.
fn parse_span(span: &str, size: u64) -> Result<RangeAsk, StoreError> {
    if span == "*" {
        return Ok(RangeAsk::Status);
    }
    span.split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b && *b < size)
        .map(|(first, last)| RangeAsk::Bytes { first, last })
        .ok_or_else(bad_range)
}

/// Appends exactly `length` bytes of `body` to `data`, which holds `stored`,
/// and syncs it; on any failure cuts it back, so only whole chunks are kept
/// and the next try starts where this one did.
async fn append_chunk(data: &std::path::Path, stored: u64, length: u64, body: Body) -> Result<(), StoreError> {
    let out = tokio::fs::OpenOptions::new().append(true).open(data).await.map_err(|e| io_err("writing a chunk", e))?;
    let mut sink = Sink::new(out);
    let poured = sink.pour(body.into_data_stream(), length).await;
    let (out, written, _) = sink.finish().await.map_err(|e| io_err("writing a chunk", e))?;
    let failure = match poured {
        Ok(()) if written == length => None,
        Ok(()) => Some(bad_request("IncompleteBody", format!("got {written} of {length} bytes"))),
        Err(SinkError::TooLong) => Some(bad_request("EntityTooLarge", format!("the chunk must be {length} bytes"))),
        Err(SinkError::Input(_)) => Some(bad_request("IncompleteBody", "the chunk was cut short")),
        Err(SinkError::Disk(e)) => Some(io_err("writing a chunk", e).into()),
    };
    if let Some(failure) = failure {
        out.set_len(stored).await.map_err(|e| io_err("cutting back a failed chunk", e))?;
        return Err(failure);
    }
    out.sync_all().await.map_err(|e| io_err("writing a chunk", e))?;
    Ok(())
}

/// The last chunk arrived: hashes the whole file (through the same sink,
/// writing nowhere) and moves it into place.
async fn finish_session(store: &LocalStorage, session: &str, meta: ChunkedMeta) -> Result<Response, StoreError> {
    let dir = store.chunked_dir(session);
    let data = dir.join("data");
    let hashing = |e| io_err("hashing a chunked upload", e);
    let mut hasher = Sink::new(tokio::io::sink());
    hasher.pour(file_stream(&data).await.map_err(hashing)?, u64::MAX).await.map_err(|e| match e {
        SinkError::Input(e) | SinkError::Disk(e) => hashing(e),
        SinkError::TooLong => unreachable!("no limit"),
    })?;
    let (_, _, digest) = hasher.finish().await.map_err(hashing)?;
    let sha256 = digest.base64();
    let object = ObjectMeta { key: meta.key, size: meta.size, content_type: meta.content_type, sha256: sha256.clone() };
    store.commit_object(&data, &object).await?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok((StatusCode::OK, [(header::ETAG, format!("\"{sha256}\""))]).into_response())
}

/// `308 Resume Incomplete` with the stored range, as Google Cloud Storage answers.
fn resume_incomplete(stored: u64) -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    if stored > 0 {
        let range = HeaderValue::from_str(&format!("bytes=0-{}", stored - 1)).expect("ASCII");
        response.headers_mut().insert(header::RANGE, range);
    }
    response
}
