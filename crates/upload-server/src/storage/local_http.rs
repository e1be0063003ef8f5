//! The HTTP side of the local backend: the signed URLs that
//! [`LocalStorage`] hands out point here, and this module checks them as
//! strictly as S3 does before writing a byte into place: the signature, the
//! expiry, the POST policy's every condition (exact key, Content-Type, size
//! range, no stray fields), a part's exact length, and a checksum when one
//! was signed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::StorageError;
use super::local::{CHECKSUM_HEADER, LOCAL_ACCESS_KEY, LOCAL_BUCKET, LocalStorage, ObjectMeta, PartMeta, is_upload_id};
use super::post_policy::sign_policy;

/// Most bytes of all text fields of a POST form together, read before the
/// signature can be checked; the fields we sign (key, type, policy,
/// credential, date, signature, checksum) are about 2 KB.
const MAX_FORM_FIELDS_BYTES: usize = 16 * 1024;
/// Most text fields of a POST form, repeated names counted each time.
const MAX_FORM_FIELDS: usize = 16;

/// A refusal, in the manner of S3: a status and an error code.
#[derive(Debug)]
pub(crate) struct StoreError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> StoreError {
    StoreError { status, code, message: message.into() }
}

fn denied(message: impl Into<String>) -> StoreError {
    refuse(StatusCode::FORBIDDEN, "AccessDenied", message)
}

/// What axum's extractors refuse (a path, query or form that does not
/// parse), answered as the store answers everything, not in axum's plain text.
fn bad_argument(rejection: impl std::fmt::Display) -> StoreError {
    refuse(StatusCode::BAD_REQUEST, "InvalidArgument", rejection.to_string())
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => refuse(StatusCode::NOT_FOUND, "NoSuchUpload", "no such upload"),
            StorageError::Rejected(why) => denied(why),
            other => {
                tracing::error!(error = %other, "local storage");
                refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error")
            }
        }
    }
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}: {}", self.code, self.message))
            .into_response()
    }
}

/// The routes under `/storage/v1`, allowed for `origins` as the bucket CORS
/// rule would be.
pub(crate) fn router(store: Arc<LocalStorage>, origins: &[String]) -> Router {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::HEAD])
        .allow_headers(tower_http::cors::Any)
        .expose_headers([header::ETAG, header::RANGE])
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route("/form", post(post_form))
        .route("/multipart/{upload_id}/{part}", put(put_part))
        .route("/objects/{hex}", get(get_object))
        .route("/chunked/{session}", put(put_chunk))
        .method_not_allowed_fallback(|| async {
            refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the method is not allowed against this resource",
            )
        })
        // Sizes are bounded by what was signed, checked while streaming.
        .layer(DefaultBodyLimit::disable())
        .layer(cors)
        .with_state(store)
}

/// Deletes a temporary file unless it was moved into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Percent-encodes all but the unreserved characters and `/`.
const KEY_IN_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn check_expiry(expires: &str) -> Result<(), StoreError> {
    let expires: i64 = expires.parse().map_err(|_| denied("malformed expiry"))?;
    if unix_now() >= expires {
        return Err(denied("Request has expired"));
    }
    Ok(())
}

/// What a verified policy allows.
struct Allowed {
    key: String,
    content_type: String,
    min: u64,
    max: u64,
    sha256: Option<String>,
}

async fn post_form(
    State(store): State<Arc<LocalStorage>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, StoreError> {
    let mut form = form.map_err(|e| refuse(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", e.to_string()))?;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        refuse(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", e.body_text())
    };
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    let too_much = || {
        refuse(
            StatusCode::BAD_REQUEST,
            "MalformedPOSTRequest",
            format!(
                "the form's fields before the file exceed {MAX_FORM_FIELDS} fields or {MAX_FORM_FIELDS_BYTES} bytes"
            ),
        )
    };
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != "file" {
            // Every field counts, a repeated name too, and all of them share
            // one small budget: nothing is signed-checked before the file.
            count += 1;
            bytes += name.len();
            if count > MAX_FORM_FIELDS || bytes > MAX_FORM_FIELDS_BYTES {
                return Err(too_much());
            }
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                bytes += chunk.len();
                if bytes > MAX_FORM_FIELDS_BYTES {
                    return Err(too_much());
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value).map_err(|_| {
                refuse(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", format!("field {name} is not UTF-8"))
            })?;
            if fields.insert(name.to_ascii_lowercase(), value).is_some() {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "MalformedPOSTRequest",
                    format!("field {name} is given twice"),
                ));
            }
            continue;
        }
        // The policy is checked before a byte of the file is written.
        let allowed = verify_policy(&store, &fields)?;
        if !store.is_open(&allowed.key).await {
            return Err(denied("the upload of this key is no longer pending: a form cannot be used again"));
        }
        let temp = TempFile(Some(store.temp_path()));
        let path = temp.0.clone().expect("set above");
        let mut out = tokio::fs::File::create(&path).await.map_err(StorageError::other("writing an upload"))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            size += chunk.len() as u64;
            if size > allowed.max {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    format!("over the policy's {} bytes", allowed.max),
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(StorageError::other("writing an upload"))?;
        }
        if size < allowed.min {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                format!("under the policy's {} bytes", allowed.min),
            ));
        }
        let sha256 = BASE64.encode(hasher.finalize());
        if let Some(declared) = &allowed.sha256
            && *declared != sha256
        {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "the SHA-256 of the file differs from the signed one",
            ));
        }
        out.sync_all().await.map_err(StorageError::other("writing an upload"))?;
        drop(out);
        drop(field);
        if form.next_field().await.map_err(malformed)?.is_some() {
            return Err(refuse(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", "the file must be the last field"));
        }
        // As S3 answers a form with 204: the object's location, the key in its path.
        let location = format!(
            "{}/{LOCAL_BUCKET}/{}",
            store.base_url,
            percent_encoding::utf8_percent_encode(&allowed.key, KEY_IN_PATH)
        );
        let meta = ObjectMeta { key: allowed.key, size, content_type: allowed.content_type, sha256 };
        store.commit_form_object(&path, &meta).await?;
        let mut temp = temp;
        temp.0 = None;
        return Ok((StatusCode::NO_CONTENT, [(header::LOCATION, location)]).into_response());
    }
    Err(refuse(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", "no `file` field"))
}

/// Checks the SigV4 signature of the policy, its expiry, and that every
/// field is one the policy allows and every condition holds.
fn verify_policy(store: &LocalStorage, fields: &BTreeMap<String, String>) -> Result<Allowed, StoreError> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let policy_b64 = field("policy").ok_or_else(|| denied("no policy"))?;
    let signature = field("x-amz-signature").ok_or_else(|| denied("no signature"))?;
    if field("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(denied("only AWS4-HMAC-SHA256 is accepted"));
    }
    let amz_date = field("x-amz-date").ok_or_else(|| denied("no x-amz-date"))?;
    let signed_at = time::PrimitiveDateTime::parse(
        amz_date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|_| denied("malformed x-amz-date"))?
    .assume_utc();
    let credential = field("x-amz-credential").ok_or_else(|| denied("no x-amz-credential"))?;
    let expected_credential = format!("{LOCAL_ACCESS_KEY}/{}/{LOCAL_BUCKET}/s3/aws4_request", &amz_date[..8]);
    if credential != expected_credential {
        return Err(denied("unknown credential"));
    }
    let (secret, _) = store.credentials();
    let expected = sign_policy(policy_b64, &secret, signed_at.into(), LOCAL_BUCKET);
    if !constant_time_eq(&expected, signature) {
        return Err(denied("The request signature we calculated does not match the signature you provided"));
    }
    let policy: Value = BASE64
        .decode(policy_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| denied("malformed policy"))?;
    let expiration = policy["expiration"]
        .as_str()
        .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok())
        .ok_or_else(|| denied("policy without a valid expiration"))?;
    if OffsetDateTime::now_utc() >= expiration {
        return Err(denied("Invalid according to Policy: Policy expired"));
    }
    let mut covered: Vec<String> = vec!["policy".into(), "x-amz-signature".into()];
    let mut range = None;
    let violation = |what: String| denied(format!("Invalid according to Policy: Policy Condition failed: {what}"));
    for condition in policy["conditions"].as_array().ok_or_else(|| denied("policy without conditions"))? {
        match condition {
            Value::Object(map) if map.len() == 1 => {
                let (name, value) = map.iter().next().expect("one entry");
                let value = value.as_str().ok_or_else(|| denied("malformed condition"))?;
                let name = name.to_ascii_lowercase();
                if name == "bucket" {
                    if value != LOCAL_BUCKET {
                        return Err(violation(format!("bucket {value}")));
                    }
                    continue;
                }
                if field(&name) != Some(value) {
                    return Err(violation(format!("[\"eq\", \"${name}\", \"{value}\"]")));
                }
                covered.push(name);
            }
            Value::Array(items) => match items.as_slice() {
                [Value::String(op), Value::String(name), Value::String(value)] if op == "eq" || op == "starts-with" => {
                    let name = name.trim_start_matches('$').to_ascii_lowercase();
                    let actual = field(&name).unwrap_or("");
                    let holds = if op == "eq" { actual == value } else { actual.starts_with(value.as_str()) };
                    if !holds || (op == "eq" && field(&name).is_none()) {
                        return Err(violation(format!("[\"{op}\", \"${name}\", \"{value}\"]")));
                    }
                    covered.push(name);
                }
                [Value::String(op), min, max] if op == "content-length-range" => {
                    let (Some(min), Some(max)) = (min.as_u64(), max.as_u64()) else {
                        return Err(denied("malformed content-length-range"));
                    };
                    range = Some((min, max));
                }
                _ => return Err(denied("unknown policy condition")),
            },
            _ => return Err(denied("unknown policy condition")),
        }
    }
    if let Some(extra) = fields.keys().find(|name| !covered.contains(name)) {
        return Err(denied(format!("Invalid according to Policy: Extra input fields: {extra}")));
    }
    let key = field("key").ok_or_else(|| denied("no key"))?.to_owned();
    let (min, max) = range.ok_or_else(|| denied("policy without content-length-range"))?;
    Ok(Allowed {
        key,
        content_type: field("content-type").unwrap_or("application/octet-stream").to_owned(),
        min,
        max,
        sha256: field("x-amz-checksum-sha256").map(str::to_owned),
    })
}

#[derive(Deserialize)]
struct SignedQuery {
    expires: String,
    signature: String,
    length: Option<u64>,
    disposition: Option<String>,
}

async fn put_part(
    State(store): State<Arc<LocalStorage>>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let (Path((upload_id, part)), Query(query)) = (path.map_err(bad_argument)?, query.map_err(bad_argument)?);
    let checksum = headers.get(CHECKSUM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let length = query.length.ok_or_else(|| denied("no length"))?;
    let part_text = part.to_string();
    let length_text = length.to_string();
    let signed =
        ["PUT part", upload_id.as_str(), part_text.as_str(), length_text.as_str(), checksum, query.expires.as_str()];
    if !store.verify(&signed, &query.signature) {
        return Err(denied("The request signature we calculated does not match the signature you provided"));
    }
    check_expiry(&query.expires)?;
    if !is_upload_id(&upload_id) {
        return Err(StorageError::NotFound.into());
    }
    store.read_multipart(&upload_id).await?;

    let temp = TempFile(Some(store.temp_path()));
    let path = temp.0.clone().expect("set above");
    let mut out = tokio::fs::File::create(&path).await.map_err(StorageError::other("writing an upload"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| refuse(StatusCode::BAD_REQUEST, "IncompleteBody", e.to_string()))?;
        size += chunk.len() as u64;
        if size > length {
            return Err(refuse(StatusCode::BAD_REQUEST, "EntityTooLarge", format!("the part must be {length} bytes")));
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(StorageError::other("writing an upload"))?;
    }
    if size != length {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            format!("got {size} bytes, the part must be {length}"),
        ));
    }
    let digest = hasher.finalize();
    let sha256 = BASE64.encode(digest);
    if !checksum.is_empty() && checksum != sha256 {
        return Err(refuse(StatusCode::BAD_REQUEST, "BadDigest", "the part's SHA-256 differs from the signed one"));
    }
    out.sync_all().await.map_err(StorageError::other("writing an upload"))?;
    drop(out);
    let etag = format!("\"{}\"", &hex::encode(digest)[..32]);
    store.commit_part(&upload_id, part, &path, &PartMeta { etag: etag.clone(), size, sha256 }).await?;
    let mut temp = temp;
    temp.0 = None;
    Ok((StatusCode::OK, [(header::ETAG, etag)]).into_response())
}

async fn get_object(
    State(store): State<Arc<LocalStorage>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SignedQuery>, QueryRejection>,
) -> Result<Response, StoreError> {
    let (Path(hex), Query(query)) = (path.map_err(bad_argument)?, query.map_err(bad_argument)?);
    let disposition = query.disposition.unwrap_or_default();
    if !store.verify(&["GET object", &hex, &disposition, &query.expires], &query.signature) {
        return Err(denied("The request signature we calculated does not match the signature you provided"));
    }
    check_expiry(&query.expires)?;
    let not_found = || refuse(StatusCode::NOT_FOUND, "NoSuchKey", "no such object");
    let meta = store.read_object_meta_by_hex(&hex).await?.ok_or_else(not_found)?;
    let file = tokio::fs::File::open(store.object_path(&hex)).await.map_err(|_| not_found())?;
    let etag = format!("\"{}\"", meta.sha256);
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    let value =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, value(&meta.content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    headers.insert(header::ETAG, value(&etag));
    // Served from the app's own origin, whatever the uploader declared (an
    // HTML file, an SVG with script): a download, never a page. Always
    // `attachment`, the signed filename when there is a usable one; no type
    // sniffing; and a sandbox with nothing allowed, should a browser render it anyway.
    let disposition = Some(disposition.as_str())
        .filter(|d| d.get(..10).is_some_and(|a| a.eq_ignore_ascii_case("attachment")))
        .and_then(|d| HeaderValue::from_str(d).ok())
        .unwrap_or_else(|| HeaderValue::from_static("attachment"));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

#[derive(Deserialize)]
struct ChunkQuery {
    size: u64,
    expires: String,
    signature: String,
}

/// Sessions with a chunk being written: one writer per session at a time.
static BUSY_SESSIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct SessionGuard(String);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut busy = BUSY_SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
        busy.retain(|s| *s != self.0);
    }
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

/// One chunk of a `Chunked` upload: `Content-Range: bytes a-b/total` must
/// start where the stored bytes end (else the answer says where they end);
/// `bytes */total` with no body asks how much is stored. The last chunk
/// moves the whole file into place.
async fn put_chunk(
    State(store): State<Arc<LocalStorage>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ChunkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let (Path(session), Query(query)) = (path.map_err(bad_argument)?, query.map_err(bad_argument)?);
    let size_text = query.size.to_string();
    if !store.verify(&["PUT chunked", &session, &size_text, &query.expires], &query.signature) {
        return Err(denied("The request signature we calculated does not match the signature you provided"));
    }
    check_expiry(&query.expires)?;
    let meta = store.read_chunked(&session).await?;
    if meta.size != query.size {
        return Err(denied("the session was signed for another size"));
    }
    let bad_range = || refuse(StatusCode::BAD_REQUEST, "InvalidRange", "expected Content-Range: bytes a-b/total");
    let range = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).ok_or_else(bad_range)?;
    let (span, total) = range.strip_prefix("bytes ").and_then(|r| r.split_once('/')).ok_or_else(bad_range)?;
    if total.parse::<u64>().ok() != Some(meta.size) {
        return Err(refuse(StatusCode::BAD_REQUEST, "InvalidRange", format!("the total must be {}", meta.size)));
    }
    let _guard = {
        let mut busy = BUSY_SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
        if busy.contains(&session) {
            return Err(refuse(
                StatusCode::CONFLICT,
                "OperationAborted",
                "another chunk of this upload is being written",
            ));
        }
        busy.push(session.clone());
        SessionGuard(session.clone())
    };
    let dir = store.chunked_dir(&session);
    let data = dir.join("data");
    let stored = tokio::fs::metadata(&data).await.map_err(StorageError::other("writing an upload"))?.len();
    if span == "*" {
        return Ok(resume_incomplete(stored));
    }
    let (first, last) = span
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a <= b && *b < meta.size)
        .ok_or_else(bad_range)?;
    if first != stored {
        // Not where the stored bytes end: say where they do.
        return Ok(resume_incomplete(stored));
    }
    let length = last - first + 1;
    let mut out = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .await
        .map_err(StorageError::other("writing an upload"))?;
    let mut written = 0u64;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            failure = Some(refuse(StatusCode::BAD_REQUEST, "IncompleteBody", "the chunk was cut short"));
            break;
        };
        written += chunk.len() as u64;
        if written > length {
            failure =
                Some(refuse(StatusCode::BAD_REQUEST, "EntityTooLarge", format!("the chunk must be {length} bytes")));
            break;
        }
        out.write_all(&chunk).await.map_err(StorageError::other("writing an upload"))?;
    }
    if failure.is_none() && written != length {
        failure = Some(refuse(StatusCode::BAD_REQUEST, "IncompleteBody", format!("got {written} of {length} bytes")));
    }
    if let Some(failure) = failure {
        // Keep only whole chunks: the next try starts where this one did.
        out.set_len(stored).await.map_err(StorageError::other("writing an upload"))?;
        return Err(failure);
    }
    out.sync_all().await.map_err(StorageError::other("writing an upload"))?;
    drop(out);
    let now_stored = stored + length;
    if now_stored < meta.size {
        return Ok(resume_incomplete(now_stored));
    }
    // The last chunk: hash the whole file, then move it into place.
    let mut file = tokio::fs::File::open(&data).await.map_err(StorageError::other("writing an upload"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
            .await
            .map_err(StorageError::other("writing an upload"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha256 = BASE64.encode(hasher.finalize());
    let object = ObjectMeta { key: meta.key, size: meta.size, content_type: meta.content_type, sha256: sha256.clone() };
    store.commit_object(&data, &object).await?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok((StatusCode::OK, [(header::ETAG, format!("\"{sha256}\""))]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt as _;

    /// A form that repeats one small field for ever is refused while it is
    /// read: nothing unsigned may make the store read without end.
    #[tokio::test]
    async fn a_form_with_endless_fields_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStorage::open(dir.path(), "http://127.0.0.1:1").unwrap());
        let field = axum::body::Bytes::from_static(b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n");
        // Each field arrives on its own, as from a socket: the multipart
        // parser reads whatever is ready at once, so a stream that is never
        // pending would never let it stop to look.
        let endless = futures_util::stream::unfold(field, |field| async move {
            tokio::task::yield_now().await;
            Some((Ok::<_, std::io::Error>(field.clone()), field))
        });
        let request = Request::post("/form")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B")
            .body(Body::from_stream(endless))
            .unwrap();
        // Without a bound the handler reads for ever; the test's own limit
        // only turns that hang into a failure.
        let response = tokio::time::timeout(Duration::from_secs(30), router(store, &[]).oneshot(request))
            .await
            .expect("still reading the form's fields after 30 s")
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        assert!(body.starts_with(b"MalformedPOSTRequest"), "{body:?}");
    }
}
