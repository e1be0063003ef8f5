//! The hostile-input suite: a table of malformed and hostile requests
//! across every route (bad JSON, wrong types, huge and negative numbers,
//! unicode and control characters in names and meta, path tricks, wrong
//! methods, missing and duplicate headers, forged, expired and cross-upload
//! signatures, oversized bodies). Each row is a request and the answer it
//! must get: a 4xx with the contract's error body and a known code for the
//! API and `/healthz`, a 4xx with the store's S3-style refusal for the
//! embedded store's `/storage/v1`. Never a 5xx, never a dropped connection
//! (a panic), never a hang. Afterwards the server still serves and no
//! database row has changed.
//!
//! Requests go out byte for byte over a plain TCP connection: an HTTP client
//! library would normalise the paths (`..`, `%2e`) and refuse the malformed
//! headers that are the point of the exercise.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use upload_core::ErrorCode;
use upload_tests::{
    Backend, JWT_SECRET, Store, TestServer, bytes, json_ok, on_every_backend, post_form, sha256_b64, token,
    token_with_secret,
};

const MIB: usize = 1024 * 1024;

/// What a row expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, the contract's `{"error": {"code", "message"}}` with this code.
    Api(u16, &'static str),
    /// This status from the embedded store, with a body `<S3 code>: <message>`.
    Store(u16),
}

/// One hostile request: sent as written, with only `Host`, `Connection:
/// close` and (unless `framed`) `Content-Length` added.
struct Case {
    name: String,
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, method: &str, target: impl Into<String>, expect: Expect) -> Case {
        Case {
            name: name.into(),
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            expect,
        }
    }

    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Case {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn bearer(self, token: &str) -> Case {
        self.header("Authorization", format!("Bearer {token}"))
    }

    fn json(self, body: impl Into<Vec<u8>>) -> Case {
        let mut case = self.header("Content-Type", "application/json");
        case.body = body.into();
        case
    }

    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Case {
        if !content_type.is_empty() {
            self = self.header("Content-Type", content_type);
        }
        self.body = body.into();
        self
    }
}

/// The S3 error codes the embedded store answers with.
const STORE_CODES: &[&str] = &[
    "AccessDenied",
    "MalformedPOSTRequest",
    "EntityTooLarge",
    "EntityTooSmall",
    "BadDigest",
    "IncompleteBody",
    "InvalidRange",
    "InvalidRequest",
    "InvalidArgument",
    "MethodNotAllowed",
    "NoSuchUpload",
    "NoSuchKey",
    "OperationAborted",
];

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Sends `case` to `addr` on a fresh connection and reads the whole answer.
async fn send(addr: &str, case: &Case) -> Result<RawResponse, String> {
    let mut request =
        format!("{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n", case.method, case.target).into_bytes();
    for (name, value) in &case.headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    if !case.body.is_empty() || matches!(case.method.as_str(), "POST" | "PUT" | "PATCH") {
        request.extend_from_slice(format!("Content-Length: {}\r\n", case.body.len()).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&case.body);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        // The server may answer (and close) before reading a refused body.
        let _ = stream.write_all(&request).await;
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw).await;
        if raw.is_empty() {
            return Err(format!("no answer at all (a panic?): {read:?}"));
        }
        Ok(raw)
    };
    let raw =
        tokio::time::timeout(Duration::from_secs(20), exchange).await.map_err(|_| "no answer in 20 s".to_owned())??;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<RawResponse, String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Ok(RawResponse { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("short chunk")?);
        data = data.get(size + 2..).ok_or("chunk end")?;
    }
}

/// Checks one answer against its row; the failure says which row and why.
fn check(case: &Case, response: &RawResponse) -> Result<(), String> {
    let body = String::from_utf8_lossy(&response.body);
    let header = |name: &str| response.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if !(400..500).contains(&response.status) {
        return Err(format!("answered {} (not a 4xx): {body}", response.status));
    }
    match case.expect {
        Expect::Api(status, code) => {
            if !header("content-type").is_some_and(|t| t.starts_with("application/json")) {
                return Err(format!(
                    "answered {} with content-type {:?}: {body}",
                    response.status,
                    header("content-type")
                ));
            }
            let value: Value =
                serde_json::from_slice(&response.body).map_err(|_| format!("body is not JSON: {body}"))?;
            let got = value["error"]["code"].as_str().ok_or(format!("no error.code: {body}"))?;
            if ErrorCode::parse(got).is_none() {
                return Err(format!("unknown code {got}: {body}"));
            }
            if value["error"]["message"].as_str().is_none_or(str::is_empty) {
                return Err(format!("no error.message: {body}"));
            }
            if (response.status, got) != (status, code) {
                return Err(format!("expected {status} {code}, answered {} {got}: {body}", response.status));
            }
        }
        Expect::Store(status) => {
            let code = body.split(':').next().unwrap_or_default();
            if !STORE_CODES.contains(&code) {
                return Err(format!("answered {} without a store error code: {body}", response.status));
            }
            if response.status != status {
                return Err(format!("expected {status}, answered {}: {body}", response.status));
            }
        }
    }
    Ok(())
}

/// Every row of every table in the database, each as text (SQLite:
/// each value `quote()`d; PostgreSQL: the row cast to text), so a changed
/// record shows up whatever the schema.
async fn snapshot(server: &TestServer) -> BTreeMap<String, Vec<String>> {
    use sqlx::{Connection as _, Row as _};
    let url = &server.state.config().database_url;
    let mut all = BTreeMap::new();
    if !url.starts_with("sqlite:") {
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t ORDER BY 1"))
                .fetch_all(&mut db)
                .await
                .unwrap();
            all.insert(table, rows);
        }
        return all;
    }
    let mut db = sqlx::SqliteConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    for table in tables {
        let columns: Vec<String> = sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let select = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || ',' || ");
        let rows: Vec<String> = sqlx::query(&format!("SELECT {select} FROM \"{table}\" ORDER BY 1"))
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        all.insert(table, rows);
    }
    all
}

/// What the table's rows point at: uploads and a file of `ann`, one of `bob`.
struct Fixtures {
    /// Pending single POST (`S3`) upload, its plan and a form for it.
    post: Value,
    /// Pending multipart upload of 2 parts, and part URLs for it.
    multipart: Value,
    parts: Value,
    /// A completed upload (and its file) and its download URL.
    file_id: String,
    download_url: String,
    /// An aborted upload.
    aborted: String,
    /// Bob's pending upload.
    bobs: String,
    /// A pending `Chunked` upload (local backend only).
    chunked: Option<Value>,
}

/// Uploads on a server with 1 s URLs and 2 s multipart windows, used once both have passed.
struct Late {
    post: Value,
    multipart: Value,
    parts: Value,
    chunked: Option<Value>,
}

async fn late_fixtures(server: &TestServer) -> Late {
    let ann = server.as_owner("ann");
    let post = ann.create("a.txt", 10, "text/plain").await;
    let multipart = ann.create("m.bin", 6 * MIB, "application/octet-stream").await;
    let mid = multipart["id"].as_str().unwrap();
    let parts =
        json_ok(ann.post(&format!("/uploads/{mid}/parts"), json!({"part_numbers": [1]})).await, StatusCode::OK).await;
    let chunked = match server.backend.store() {
        Store::Local => Some(
            json_ok(
                ann.post("/uploads", json!({"name": "c.bin", "size": 1000, "uploader": "Chunked"})).await,
                StatusCode::CREATED,
            )
            .await,
        ),
        Store::Garage => None,
    };
    Late { post, multipart, parts, chunked }
}

async fn fixtures(server: &TestServer) -> Fixtures {
    let ann = server.as_owner("ann");
    let post = ann.create("a.txt", 10, "text/plain").await;
    let multipart = ann.create("m.bin", 6 * MIB, "application/octet-stream").await;
    let mid = multipart["id"].as_str().unwrap();
    let parts =
        json_ok(ann.post(&format!("/uploads/{mid}/parts"), json!({"part_numbers": [1, 2]})).await, StatusCode::OK)
            .await;
    let data = bytes(20, 3);
    let done = ann.create("done.txt", data.len(), "text/plain").await;
    let (status, body) = post_form(&server.http, &done, &BTreeMap::new(), data).await;
    assert!(status < 300, "{status} {body}");
    let file_id = done["id"].as_str().unwrap().to_owned();
    json_ok(ann.post(&format!("/uploads/{file_id}/complete"), json!({})).await, StatusCode::OK).await;
    let download_url = json_ok(ann.get(&format!("/files/{file_id}")).await, StatusCode::OK).await["download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let aborted = ann.create("x.txt", 10, "text/plain").await["id"].as_str().unwrap().to_owned();
    assert_eq!(ann.delete(&format!("/uploads/{aborted}")).await.status(), StatusCode::NO_CONTENT);
    let bobs = server.as_owner("bob").create("b.txt", 10, "text/plain").await["id"].as_str().unwrap().to_owned();
    let chunked = match server.backend.store() {
        Store::Local => Some(
            json_ok(
                ann.post("/uploads", json!({"name": "c.bin", "size": 1000, "uploader": "Chunked"})).await,
                StatusCode::CREATED,
            )
            .await,
        ),
        Store::Garage => None,
    };
    Fixtures { post, multipart, parts, file_id, download_url, aborted, bobs, chunked }
}

/// A token for `claims`, signed with `secret` and `alg`.
fn jwt(claims: Value, secret: &str, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The request target (path and query) of an absolute URL.
fn target_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Rows against the API (`/api/v1`) and `/healthz`.
fn api_cases(f: &Fixtures, late: &Late, backend: Backend) -> Vec<Case> {
    use Expect::Api;
    let ann = token("ann", 3600);
    let api = |name: &str, method: &str, path: &str, expect: Expect| {
        Case::new(name, method, format!("/api/v1{path}"), expect).bearer(&ann)
    };
    let post_id = f.post["id"].as_str().unwrap();
    let multi_id = f.multipart["id"].as_str().unwrap();
    let file_id = f.file_id.as_str();
    let mut cases = Vec::new();
    let bad_request = Api(400, "invalid_request");
    let not_found = Api(404, "not_found");
    let unauthorized = Api(401, "unauthorized");

    // --- Identity: every route that needs one, with every kind of bad token.
    let routes: Vec<(&str, String, &str)> = vec![
        ("POST", "/uploads".into(), r#"{"name": "a.txt", "size": 1}"#),
        ("GET", format!("/uploads/{post_id}"), ""),
        ("DELETE", format!("/uploads/{post_id}"), ""),
        ("POST", format!("/uploads/{multi_id}/parts"), r#"{"part_numbers": [1]}"#),
        ("POST", format!("/uploads/{post_id}/complete"), "{}"),
        ("GET", "/files".into(), ""),
        ("GET", format!("/files/{file_id}"), ""),
        ("DELETE", format!("/files/{file_id}"), ""),
    ];
    let exp = now() + 3600;
    let bad_auth: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("no Authorization", None),
        ("empty Authorization", Some(b"".to_vec())),
        ("Bearer and nothing", Some(b"Bearer".to_vec())),
        ("Bearer and a space", Some(b"Bearer ".to_vec())),
        (
            "Basic scheme",
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ann:pw")).into_bytes()),
        ),
        ("three dots", Some(b"Bearer a.b.c".to_vec())),
        ("expired", Some(format!("Bearer {}", token("ann", -600)).into_bytes())),
        (
            "forged (other secret)",
            Some(format!("Bearer {}", token_with_secret("ann", 600, "not-the-secret")).into_bytes()),
        ),
        (
            "alg none",
            Some({
                let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
                format!(
                    "Bearer {}.{}.",
                    b64(json!({"alg": "none", "typ": "JWT"})),
                    b64(json!({"sub": "ann", "exp": exp}))
                )
                .into_bytes()
            }),
        ),
        (
            "HS512",
            Some(
                format!(
                    "Bearer {}",
                    jwt(json!({"sub": "ann", "exp": exp}), JWT_SECRET, jsonwebtoken::Algorithm::HS512)
                )
                .into_bytes(),
            ),
        ),
        (
            "no exp",
            Some(
                format!("Bearer {}", jwt(json!({"sub": "ann"}), JWT_SECRET, jsonwebtoken::Algorithm::HS256))
                    .into_bytes(),
            ),
        ),
        (
            "no sub",
            Some(
                format!("Bearer {}", jwt(json!({"exp": exp}), JWT_SECRET, jsonwebtoken::Algorithm::HS256)).into_bytes(),
            ),
        ),
        (
            "empty sub",
            Some(
                format!("Bearer {}", jwt(json!({"sub": "", "exp": exp}), JWT_SECRET, jsonwebtoken::Algorithm::HS256))
                    .into_bytes(),
            ),
        ),
        (
            "sub of 129 bytes",
            Some(
                format!(
                    "Bearer {}",
                    jwt(json!({"sub": "a".repeat(129), "exp": exp}), JWT_SECRET, jsonwebtoken::Algorithm::HS256)
                )
                .into_bytes(),
            ),
        ),
        (
            "sub a number",
            Some(
                format!("Bearer {}", jwt(json!({"sub": 42, "exp": exp}), JWT_SECRET, jsonwebtoken::Algorithm::HS256))
                    .into_bytes(),
            ),
        ),
        (
            "exp a string",
            Some(
                format!(
                    "Bearer {}",
                    jwt(json!({"sub": "ann", "exp": "never"}), JWT_SECRET, jsonwebtoken::Algorithm::HS256)
                )
                .into_bytes(),
            ),
        ),
        ("a byte over 0x7f", Some(b"Bearer \xff\xfe".to_vec())),
        (
            "a tampered payload",
            Some({
                let good = token("ann", 600);
                let mut parts: Vec<&str> = good.split('.').collect();
                let other = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(json!({"sub": "bob", "exp": exp}).to_string());
                parts[1] = &other;
                format!("Bearer {}", parts.join(".")).into_bytes()
            }),
        ),
    ];
    for (method, path, body) in &routes {
        for (what, header) in &bad_auth {
            let mut case =
                Case::new(format!("{method} {path}: {what}"), method, format!("/api/v1{path}"), unauthorized);
            if let Some(value) = header {
                case = case.header("Authorization", value.clone());
            }
            if !body.is_empty() {
                case = case.json(*body);
            }
            cases.push(case);
        }
        // Two Authorization headers are ambiguous (a proxy may read the other one): refused in either order.
        for (first, second) in
            [(format!("Bearer {ann}"), "Bearer a.b.c".to_owned()), ("Bearer a.b.c".to_owned(), format!("Bearer {ann}"))]
        {
            let mut case = Case::new(
                format!("{method} {path}: two Authorization headers"),
                method,
                format!("/api/v1{path}"),
                unauthorized,
            )
            .header("Authorization", first)
            .header("Authorization", second);
            if !body.is_empty() {
                case = case.json(*body);
            }
            cases.push(case);
        }
    }

    // --- POST /uploads: bodies that are not JSON, or not the right JSON.
    let create = |name: &str, body: &[u8], expect: Expect| {
        api(&format!("POST /uploads: {name}"), "POST", "/uploads", expect).json(body.to_vec())
    };
    for (name, body) in [
        ("empty body", b"".to_vec()),
        ("not JSON", b"{not json".to_vec()),
        ("unterminated", br#"{"name": "a", "size": 1"#.to_vec()),
        ("trailing garbage", br#"{"name": "a", "size": 1} x"#.to_vec()),
        ("an array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        ("a number", b"1".to_vec()),
        ("a string", br#""a""#.to_vec()),
        ("a byte-order mark", b"\xef\xbb\xbf{\"name\": \"a\", \"size\": 1}".to_vec()),
        ("invalid UTF-8 in a string", b"{\"name\": \"a\xff\", \"size\": 1}".to_vec()),
        ("a lone surrogate", br#"{"name": "\ud800", "size": 1}"#.to_vec()),
        ("a raw control character in a string", b"{\"name\": \"a\x01b\", \"size\": 1}".to_vec()),
        ("single quotes", b"{'name': 'a', 'size': 1}".to_vec()),
        ("a comment", br#"{"name": "a", /* x */ "size": 1}"#.to_vec()),
        ("NaN", br#"{"name": "a", "size": NaN}"#.to_vec()),
        ("nested 10,000 deep", b"[".repeat(10_000)),
        ("a key twice", br#"{"name": "a", "name": "b", "size": 1}"#.to_vec()),
    ] {
        cases.push(create(name, &body, bad_request));
    }
    for (name, body) in [
        ("no name", json!({"size": 1})),
        ("no size", json!({"name": "a"})),
        ("name a number", json!({"name": 1, "size": 1})),
        ("name null", json!({"name": null, "size": 1})),
        ("name an array", json!({"name": ["a"], "size": 1})),
        ("name an object", json!({"name": {"a": 1}, "size": 1})),
        ("size a string", json!({"name": "a", "size": "1"})),
        ("size negative", json!({"name": "a", "size": -1})),
        ("size i64::MIN", json!({"name": "a", "size": i64::MIN})),
        ("size a fraction", json!({"name": "a", "size": 1.5})),
        ("size in exponent form", json!({"name": "a", "size": 1e3})),
        ("size true", json!({"name": "a", "size": true})),
        ("size null", json!({"name": "a", "size": null})),
        ("size zero", json!({"name": "a", "size": 0})),
        ("type a number", json!({"name": "a", "size": 1, "type": 7})),
        ("type not a MIME type", json!({"name": "a", "size": 1, "type": "not a type"})),
        ("type with CRLF", json!({"name": "a", "size": 1, "type": "text/html\r\nX-Evil: 1"})),
        ("type with a NUL", json!({"name": "a", "size": 1, "type": "text/plain\u{0}"})),
        ("type with unicode", json!({"name": "a", "size": 1, "type": "text/plän"})),
        ("type with three parts", json!({"name": "a", "size": 1, "type": "a/b/c"})),
        ("type of 10,000 bytes", json!({"name": "a", "size": 1, "type": format!("text/{}", "x".repeat(10_000))})),
        ("sha256 a number", json!({"name": "a", "size": 1, "sha256": 1})),
        ("sha256 too short", json!({"name": "a", "size": 1, "sha256": "abc"})),
        (
            "sha256 in hex",
            json!({"name": "a", "size": 1, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}),
        ),
        ("sha256 with bad padding bits", json!({"name": "a", "size": 1, "sha256": format!("{}B=", "A".repeat(42))})),
        ("sha256 base64url", json!({"name": "a", "size": 1, "sha256": format!("{}-_A=", "A".repeat(40))})),
        ("meta an array", json!({"name": "a", "size": 1, "meta": ["a"]})),
        ("meta a string", json!({"name": "a", "size": 1, "meta": "a=b"})),
        ("meta value a number", json!({"name": "a", "size": 1, "meta": {"a": 1}})),
        ("meta value null", json!({"name": "a", "size": 1, "meta": {"a": null}})),
        ("meta value an object", json!({"name": "a", "size": 1, "meta": {"a": {"b": "c"}}})),
        (
            "meta with 33 entries",
            json!({"name": "a", "size": 1, "meta": (0..33).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
        ),
        ("meta with an empty key", json!({"name": "a", "size": 1, "meta": {"": "v"}})),
        ("meta key of 65 bytes", json!({"name": "a", "size": 1, "meta": {"k".repeat(65): "v"}})),
        ("meta key of 17 emoji (68 bytes)", json!({"name": "a", "size": 1, "meta": {"😀".repeat(17): "v"}})),
        ("meta value of 1025 bytes", json!({"name": "a", "size": 1, "meta": {"k": "v".repeat(1025)}})),
        ("meta value of 342 euro signs (1026 bytes)", json!({"name": "a", "size": 1, "meta": {"k": "€".repeat(342)}})),
        (
            "meta value of control characters over the limit",
            json!({"name": "a", "size": 1, "meta": {"k": "\u{1}\u{7f}\u{202e}".repeat(300)}}),
        ),
        ("name empty", json!({"name": "", "size": 1})),
        ("name only spaces", json!({"name": "   ", "size": 1})),
        ("name only newlines and tabs", json!({"name": "\n\t\r", "size": 1})),
        ("name of 1025 bytes", json!({"name": "a".repeat(1025), "size": 1})),
        ("name of 342 euro signs (1026 bytes)", json!({"name": "€".repeat(342), "size": 1})),
        ("name of 257 emoji (1028 bytes)", json!({"name": "😀".repeat(257), "size": 1})),
        ("name of bidi overrides over the limit", json!({"name": "\u{202e}".repeat(400), "size": 1})),
        ("uploader unknown", json!({"name": "a", "size": 1, "uploader": "FTP"})),
        ("uploader lowercase", json!({"name": "a", "size": 1, "uploader": "s3"})),
        ("uploader a number", json!({"name": "a", "size": 1, "uploader": 1})),
        ("part_checksums a string", json!({"name": "a", "size": 1, "part_checksums": "yes"})),
    ] {
        cases.push(create(name, body.to_string().as_bytes(), bad_request));
    }
    if backend.store() == Store::Garage {
        cases.push(create(
            "Chunked on S3",
            json!({"name": "a", "size": 1, "uploader": "Chunked"}).to_string().as_bytes(),
            bad_request,
        ));
    }
    for (name, size) in
        [("size u64::MAX", json!(u64::MAX)), ("size over the limit", json!(100 * 1024 * 1024 * 1024u64 + 1))]
    {
        cases.push(create(name, json!({"name": "a", "size": size}).to_string().as_bytes(), Api(413, "file_too_large")));
    }
    // Numbers JSON can write but no integer type holds.
    for (name, size) in [
        ("size 2^64", "18446744073709551616"),
        ("size 1e400", "1e400"),
        ("size -0", "-0.0"),
        ("size of 400 digits", "9".repeat(400).as_str()),
    ] {
        cases.push(create(name, format!(r#"{{"name": "a", "size": {size}}}"#).as_bytes(), bad_request));
    }
    // The body's framing and type.
    cases.push(
        api("POST /uploads: no Content-Type", "POST", "/uploads", bad_request).body("", r#"{"name": "a", "size": 1}"#),
    );
    cases.push(
        api("POST /uploads: text/plain", "POST", "/uploads", bad_request)
            .body("text/plain", r#"{"name": "a", "size": 1}"#),
    );
    cases.push(
        api("POST /uploads: a form", "POST", "/uploads", bad_request)
            .body("application/x-www-form-urlencoded", "name=a&size=1"),
    );
    cases.push(
        api("POST /uploads: multipart", "POST", "/uploads", bad_request)
            .body("multipart/form-data; boundary=x", "--x--\r\n"),
    );
    cases.push(
        api("POST /uploads: Content-Type text/plain then JSON", "POST", "/uploads", bad_request)
            .header("Content-Type", "text/plain")
            .json(r#"{"name": "a", "size": 1}"#),
    );
    cases.push(
        api("POST /uploads: 1 MiB + 1 of JSON", "POST", "/uploads", Api(413, "request_too_large"))
            .json(format!(r#"{{"name": "{}", "size": 1}}"#, "a".repeat(MIB))),
    );
    cases.push(
        api("POST /uploads: 4 MiB of spaces", "POST", "/uploads", Api(413, "request_too_large"))
            .json(vec![b' '; 4 * MIB]),
    );

    // --- Ids in paths: not ULIDs, someone else's, path tricks.
    let bobs = f.bobs.as_str();
    let ids: Vec<(&str, String)> = vec![
        ("an empty id", String::new()),
        ("a short id", "x".into()),
        ("25 characters", post_id[..25].into()),
        ("27 characters", format!("{post_id}A")),
        ("lower case", post_id.to_ascii_lowercase()),
        ("bob's upload", bobs.into()),
        ("dot dot", "..".into()),
        ("encoded dot dot", "%2e%2e".into()),
        ("encoded slash", format!("%2F{}", &post_id[1..])),
        ("a NUL", format!("{}%00", &post_id[..25])),
        ("invalid UTF-8", "%FF%FE".into()),
        ("unicode", "ü".repeat(13)),
        ("an encoded newline", format!("{}%0A", &post_id[..25])),
        ("SQL", "'%20OR%20'1'='1".into()),
        ("4,000 characters", "A".repeat(4000)),
    ];
    for (what, id) in &ids {
        cases.push(api(&format!("GET /uploads/{{{what}}}"), "GET", &format!("/uploads/{id}"), not_found));
        cases.push(api(&format!("DELETE /uploads/{{{what}}}"), "DELETE", &format!("/uploads/{id}"), not_found));
        cases.push(
            api(&format!("POST /uploads/{{{what}}}/parts"), "POST", &format!("/uploads/{id}/parts"), not_found)
                .json(r#"{"part_numbers": [1]}"#),
        );
        cases.push(
            api(&format!("POST /uploads/{{{what}}}/complete"), "POST", &format!("/uploads/{id}/complete"), not_found)
                .json("{}"),
        );
        cases.push(api(&format!("GET /files/{{{what}}}"), "GET", &format!("/files/{id}"), not_found));
        cases.push(api(&format!("DELETE /files/{{{what}}}"), "DELETE", &format!("/files/{id}"), not_found));
    }
    for (what, path) in [
        ("a trailing slash", format!("/api/v1/uploads/{post_id}/")),
        ("a double slash", format!("/api/v1//uploads/{post_id}")),
        ("dot segments up to /files", format!("/api/v1/uploads/{post_id}/../../files")),
        ("an encoded slash between segments", format!("/api/v1/uploads%2F{post_id}")),
        ("an unknown version", "/api/v2/config".into()),
        ("an unknown endpoint", "/api/v1/admin".into()),
        ("a query on an unknown endpoint", "/api/v1/admin?x=%FF".into()),
        ("a pending upload as a file", format!("/api/v1/files/{post_id}")),
        ("the upload of a file under /files/{id}/complete", format!("/api/v1/files/{file_id}/complete")),
    ] {
        cases.push(Case::new(format!("GET {what}"), "GET", path, not_found).bearer(&ann));
    }

    // --- POST /uploads/{id}/parts.
    let parts = |name: &str, id: &str, body: String, expect: Expect| {
        api(&format!("POST /uploads/{{id}}/parts: {name}"), "POST", &format!("/uploads/{id}/parts"), expect).json(body)
    };
    let good_sha = sha256_b64(b"x");
    for (name, body) in [
        ("no part_numbers", json!({})),
        ("part_numbers empty", json!({"part_numbers": []})),
        ("part 0", json!({"part_numbers": [0]})),
        ("part 3 of 2", json!({"part_numbers": [3]})),
        ("part 10001", json!({"part_numbers": [10001]})),
        ("a negative part", json!({"part_numbers": [-1]})),
        ("a fractional part", json!({"part_numbers": [1.5]})),
        ("a part as a string", json!({"part_numbers": ["1"]})),
        ("part 2^32", json!({"part_numbers": [4294967296u64]})),
        ("a part twice", json!({"part_numbers": [1, 1]})),
        ("101 parts", json!({"part_numbers": (1..=101).collect::<Vec<_>>()})),
        ("part_numbers null", json!({"part_numbers": null})),
        ("part_numbers an object", json!({"part_numbers": {"1": 1}})),
        ("a bad checksum", json!({"part_numbers": [1], "sha256": {"1": "abc"}})),
        ("a checksum for an unlisted part", json!({"part_numbers": [1], "sha256": {"2": good_sha}})),
        ("a checksum keyed by a word", json!({"part_numbers": [1], "sha256": {"one": good_sha}})),
        ("sha256 an array", json!({"part_numbers": [1], "sha256": [good_sha]})),
    ] {
        cases.push(parts(name, multi_id, body.to_string(), bad_request));
    }
    cases.push(parts("not JSON", multi_id, "{".into(), bad_request));
    cases.push(parts(
        "1 MiB + 1",
        multi_id,
        format!(r#"{{"part_numbers": [1{}]}}"#, " ".repeat(MIB)),
        Api(413, "request_too_large"),
    ));
    let one = json!({"part_numbers": [1]}).to_string();
    cases.push(parts("a single POST upload", post_id, one.clone(), Api(409, "invalid_state")));
    cases.push(parts("an aborted upload", &f.aborted, one.clone(), Api(409, "invalid_state")));
    cases.push(parts("a completed upload", file_id, one.clone(), Api(409, "invalid_state")));
    cases.push(parts("bob's upload", bobs, one.clone(), not_found));
    cases.push(parts("expired", late.multipart["id"].as_str().unwrap(), one, Api(410, "upload_expired")));
    if let Some(chunked) = &f.chunked {
        cases.push(parts(
            "a Chunked upload",
            chunked["id"].as_str().unwrap(),
            json!({"part_numbers": [1]}).to_string(),
            Api(409, "invalid_state"),
        ));
    }

    // --- POST /uploads/{id}/complete.
    let complete = |name: &str, id: &str, body: String, expect: Expect| {
        api(&format!("POST /uploads/{{id}}/complete: {name}"), "POST", &format!("/uploads/{id}/complete"), expect)
            .json(body)
    };
    let etag = "\"0123456789abcdef0123456789abcdef\"";
    for (name, body) in [
        ("no parts for multipart", json!({})),
        ("parts empty", json!({"parts": []})),
        ("part 2 missing", json!({"parts": [{"part_number": 1, "etag": etag}]})),
        ("part 0", json!({"parts": [{"part_number": 0, "etag": etag}, {"part_number": 1, "etag": etag}]})),
        (
            "part 3 of 2",
            json!({"parts": [{"part_number": 1, "etag": etag}, {"part_number": 2, "etag": etag}, {"part_number": 3, "etag": etag}]}),
        ),
        ("a part twice", json!({"parts": [{"part_number": 1, "etag": etag}, {"part_number": 1, "etag": etag}]})),
        ("a negative part", json!({"parts": [{"part_number": -1, "etag": etag}, {"part_number": 2, "etag": etag}]})),
        ("etag a number", json!({"parts": [{"part_number": 1, "etag": 1}, {"part_number": 2, "etag": etag}]})),
        ("no etag", json!({"parts": [{"part_number": 1}, {"part_number": 2, "etag": etag}]})),
        ("parts an object", json!({"parts": {"1": etag}})),
        ("parts a string", json!({"parts": "1,2"})),
        (
            "10,001 parts",
            json!({"parts": (1..=10_001).map(|n| json!({"part_number": n, "etag": "\"e\""})).collect::<Vec<_>>()}),
        ),
    ] {
        cases.push(complete(name, multi_id, body.to_string(), bad_request));
    }
    cases.push(complete("not JSON", multi_id, "{".into(), bad_request));
    cases.push(complete("a JSON string", post_id, r#""{}""#.into(), bad_request));
    cases.push(complete("nothing stored yet", post_id, "{}".into(), Api(409, "upload_incomplete")));
    cases.push(complete(
        "parts not in storage",
        multi_id,
        json!({"parts": [{"part_number": 1, "etag": etag}, {"part_number": 2, "etag": etag}]}).to_string(),
        Api(409, "upload_incomplete"),
    ));
    cases.push(complete("an aborted upload", &f.aborted, "{}".into(), Api(409, "invalid_state")));
    cases.push(complete("bob's upload", bobs, "{}".into(), not_found));
    cases.push(complete(
        "1 MiB + 1",
        multi_id,
        format!(r#"{{"parts": []{}}}"#, " ".repeat(MIB)),
        Api(413, "request_too_large"),
    ));

    // --- DELETE in a state that does not allow it.
    cases.push(api("DELETE /uploads/{completed}", "DELETE", &format!("/uploads/{file_id}"), Api(409, "invalid_state")));

    // --- GET /files: the query.
    for (name, query) in [
        ("limit 0", "limit=0".to_owned()),
        ("limit -1", "limit=-1".into()),
        ("limit 101", "limit=101".into()),
        ("limit 2^32", "limit=4294967296".into()),
        ("limit a word", "limit=ten".into()),
        ("limit empty", "limit=".into()),
        ("limit 1e2", "limit=1e2".into()),
        ("limit twice", "limit=1&limit=2".into()),
        ("limit with a NUL", "limit=1%00".into()),
        ("cursor garbage", "cursor=garbage".into()),
        ("cursor a dot", "cursor=.".into()),
        ("cursor without an id", "cursor=1.".into()),
        ("cursor with a word for time", format!("cursor=x.{file_id}")),
        ("cursor with a short id", "cursor=1.ABC".into()),
        ("cursor of 10,000 bytes", format!("cursor={}", "9".repeat(10_000))),
        ("cursor invalid UTF-8", "cursor=%FF%FE".into()),
        ("cursor with a negative time and SQL", format!("cursor=-1.{}%27%20OR%201=1", &file_id[..20])),
        ("cursor time over i64", format!("cursor=99999999999999999999.{file_id}")),
        ("cursor twice", format!("cursor=1.{file_id}&cursor=2.{file_id}")),
    ] {
        cases.push(api(&format!("GET /files?{name}"), "GET", &format!("/files?{query}"), bad_request));
    }

    // --- Methods the routes do not have.
    let method_not_allowed = Api(405, "method_not_allowed");
    for (method, path) in [
        ("POST", "/config".to_owned()),
        ("PUT", "/config".into()),
        ("DELETE", "/config".into()),
        ("GET", "/uploads".into()),
        ("PUT", "/uploads".into()),
        ("DELETE", "/uploads".into()),
        ("PATCH", "/uploads".into()),
        ("PUT", format!("/uploads/{post_id}")),
        ("PATCH", format!("/uploads/{post_id}")),
        ("POST", format!("/uploads/{post_id}")),
        ("GET", format!("/uploads/{multi_id}/parts")),
        ("PUT", format!("/uploads/{multi_id}/parts")),
        ("DELETE", format!("/uploads/{multi_id}/parts")),
        ("GET", format!("/uploads/{post_id}/complete")),
        ("PUT", format!("/uploads/{post_id}/complete")),
        ("DELETE", format!("/uploads/{post_id}/complete")),
        ("POST", "/files".into()),
        ("DELETE", "/files".into()),
        ("PUT", format!("/files/{file_id}")),
        ("POST", format!("/files/{file_id}")),
        ("PATCH", format!("/files/{file_id}")),
        ("BREW", "/files".into()),
    ] {
        cases.push(api(&format!("{method} {path}"), method, &path, method_not_allowed));
    }
    for method in ["POST", "PUT", "DELETE"] {
        cases.push(Case::new(format!("{method} /healthz"), method, "/healthz", method_not_allowed));
    }
    cases
}

/// Rows against the embedded store's `/storage/v1` (local backend).
fn store_cases(f: &Fixtures, late: &Late) -> Vec<Case> {
    use Expect::Store;
    let mut cases = Vec::new();
    let denied = Store(403);
    let bad = Store(400);

    // --- The POST form.
    let plan = &f.post["upload"];
    let form_target = target_of(plan["url"].as_str().unwrap());
    let fields: BTreeMap<String, String> =
        plan["fields"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    let boundary = "hostileboundary7MA4YWxkTrZu0gW";
    let form = |fields: &[(String, Vec<u8>)], file: Option<&[u8]>| -> Vec<u8> {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        if let Some(file) = file {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(file);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    };
    let with = |changes: &[(&str, Option<&str>)]| -> Vec<(String, Vec<u8>)> {
        let mut out = fields.clone();
        for (k, v) in changes {
            // Field names are case-insensitive (`Content-Type`, `content-type`).
            out.retain(|name, _| !name.eq_ignore_ascii_case(k));
            if let Some(v) = v {
                out.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        out.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
    };
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let post_form_case = |name: &str, body: Vec<u8>, expect: Expect| {
        Case::new(format!("POST /storage/v1/form: {name}"), "POST", form_target.clone(), expect)
            .body(&content_type, body)
    };
    let file = vec![b'x'; 10];
    let other_key = f.multipart["key"].as_str().unwrap();
    let mut forged_signature = fields["x-amz-signature"].clone();
    forged_signature.replace_range(..4, if forged_signature.starts_with("0000") { "1111" } else { "0000" });
    for (name, changes, expect) in [
        ("no policy", vec![("policy", None)], denied),
        ("no signature", vec![("x-amz-signature", None)], denied),
        ("a forged signature", vec![("x-amz-signature", Some(forged_signature.as_str()))], denied),
        ("another key (cross-upload)", vec![("key", Some(other_key))], denied),
        ("a traversal key", vec![("key", Some("../../../etc/passwd"))], denied),
        ("another content type", vec![("content-type", Some("text/html"))], denied),
        ("an extra field", vec![("x-evil", Some("1"))], denied),
        ("another algorithm", vec![("x-amz-algorithm", Some("AWS4-HMAC-SHA1"))], denied),
        ("a malformed date", vec![("x-amz-date", Some("2026"))], denied),
        (
            "another credential",
            vec![("x-amz-credential", Some("AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request"))],
            denied,
        ),
        ("a policy that is not base64", vec![("policy", Some("%%%"))], denied),
        ("a checksum the policy does not name", vec![("x-amz-checksum-sha256", Some(good_b64().as_str()))], denied),
    ] {
        cases.push(post_form_case(name, form(&with(&changes), Some(file.as_slice())), expect));
    }
    cases.push(post_form_case("a file over the signed size", form(&with(&[]), Some(&[b'x'; 11][..])), bad));
    cases.push(post_form_case("a file under the signed size", form(&with(&[]), Some(&[b'x'; 9][..])), bad));
    cases.push(post_form_case("no file", form(&with(&[]), None), bad));
    let mut after_file = form(&with(&[]), Some(file.as_slice()));
    after_file.truncate(after_file.len() - format!("--{boundary}--\r\n").len());
    after_file.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--{boundary}--\r\n").as_bytes(),
    );
    cases.push(post_form_case("a field after the file", after_file, bad));
    let many: Vec<(String, Vec<u8>)> = (0..40).map(|i| (format!("f{i}"), b"v".to_vec())).collect();
    cases.push(post_form_case("40 fields", form(&many, Some(file.as_slice())), bad));
    cases.push(post_form_case(
        "a field of 100 KiB",
        form(&[("policy".into(), vec![b'a'; 100 * 1024])], Some(file.as_slice())),
        bad,
    ));
    cases.push(post_form_case(
        "a field that is not UTF-8",
        form(&[("policy".into(), b"\xff\xfe".to_vec())], Some(file.as_slice())),
        bad,
    ));
    cases.push(post_form_case(
        "an unterminated form",
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb").into_bytes(),
        bad,
    ));
    cases.push(
        Case::new("POST /storage/v1/form: not a form", "POST", form_target.clone(), bad).body("application/json", "{}"),
    );
    cases.push(
        Case::new("POST /storage/v1/form: no boundary", "POST", form_target.clone(), bad)
            .body("multipart/form-data", "--x--"),
    );
    cases.push(Case::new("POST /storage/v1/form: no Content-Type", "POST", form_target.clone(), bad).body("", "x"));
    cases.push(Case::new("POST /storage/v1/form: empty", "POST", form_target.clone(), bad).body(&content_type, ""));
    // An expired form, otherwise right.
    let late_plan = &late.post["upload"];
    let late_fields: Vec<(String, Vec<u8>)> = late_plan["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
        .collect();
    cases.push(
        Case::new("POST /storage/v1/form: expired", "POST", target_of(late_plan["url"].as_str().unwrap()), denied)
            .body(&content_type, form(&late_fields, Some(file.as_slice()))),
    );

    // --- Part PUTs.
    let part1 = f.parts["parts"][0]["url"].as_str().unwrap();
    let part2 = f.parts["parts"][1]["url"].as_str().unwrap();
    let part1_target = target_of(part1);
    let (part1_path, part1_query) = part1_target.split_once('?').unwrap();
    let upload_id = f.multipart["upload"]["upload_id"].as_str().unwrap();
    let put = |name: &str, target: String, body: Vec<u8>, expect: Expect| {
        Case::new(format!("PUT /storage/v1/multipart: {name}"), "PUT", target, expect).body("", body)
    };
    let five = vec![b'p'; 5 * MIB];
    let query_with = |key: &str, value: &str| -> String {
        part1_query
            .split('&')
            .map(|kv| if kv.split('=').next() == Some(key) { format!("{key}={value}") } else { kv.to_owned() })
            .collect::<Vec<_>>()
            .join("&")
    };
    cases.push(put(
        "a forged signature",
        format!("{part1_path}?{}", query_with("signature", &"0".repeat(64))),
        five.clone(),
        denied,
    ));
    cases.push(put("another length", format!("{part1_path}?{}", query_with("length", "10")), vec![b'p'; 10], denied));
    cases.push(put(
        "a later expiry",
        format!("{part1_path}?{}", query_with("expires", "99999999999")),
        five.clone(),
        denied,
    ));
    cases.push(put(
        "part 1's URL for part 2",
        format!("{}/2?{part1_query}", part1_path.rsplit_once('/').unwrap().0),
        five.clone(),
        denied,
    ));
    cases.push(put(
        "another upload id",
        format!("{}?{part1_query}", part1_path.replace(upload_id, &"0".repeat(upload_id.len()))),
        five.clone(),
        denied,
    ));
    cases.push(put(
        "a traversal upload id",
        format!("/storage/v1/multipart/..%2F..%2Fstorage/1?{part1_query}"),
        five.clone(),
        denied,
    ));
    cases.push(put("no query", part1_path.to_owned(), five.clone(), bad));
    cases.push(put(
        "no signature",
        format!(
            "{part1_path}?{}",
            part1_query.split('&').filter(|kv| !kv.starts_with("signature=")).collect::<Vec<_>>().join("&")
        ),
        five.clone(),
        bad,
    ));
    cases.push(put("length a word", format!("{part1_path}?{}", query_with("length", "ten")), five.clone(), bad));
    cases.push(put("length negative", format!("{part1_path}?{}", query_with("length", "-1")), five.clone(), bad));
    let (part_base, _) = part1_path.rsplit_once('/').unwrap();
    cases.push(put("part 1's URL for part 0", format!("{part_base}/0?{part1_query}"), five.clone(), denied));
    for part in ["-1", "abc", "4294967296", "1.5", "%FF"] {
        cases.push(put(&format!("part number {part}"), format!("{part_base}/{part}?{part1_query}"), five.clone(), bad));
    }
    cases.push(put("one byte short", part1_target.clone(), vec![b'p'; 5 * MIB - 1], bad));
    cases.push(put("one byte over", part1_target.clone(), vec![b'p'; 5 * MIB + 1], bad));
    cases.push(
        put("a checksum the URL does not sign", part1_target.clone(), five.clone(), denied)
            .header("x-amz-checksum-sha256", sha256_b64(&five)),
    );
    cases.push(put("part 2 with part 1's bytes count", target_of(part2), five.clone(), bad));
    let late_part = late.parts["parts"][0]["url"].as_str().unwrap();
    cases.push(put("expired", target_of(late_part), five.clone(), denied));
    for method in ["GET", "POST", "DELETE"] {
        cases.push(Case::new(format!("{method} /storage/v1/multipart"), method, part1_target.clone(), Store(405)));
    }

    // --- Object GETs.
    let download = target_of(&f.download_url);
    let (download_path, download_query) = download.split_once('?').unwrap();
    let get = |name: &str, target: String, expect: Expect| {
        Case::new(format!("GET /storage/v1/objects: {name}"), "GET", target, expect)
    };
    let swap = |query: &str, key: &str, value: &str| -> String {
        query
            .split('&')
            .map(|kv| if kv.split('=').next() == Some(key) { format!("{key}={value}") } else { kv.to_owned() })
            .collect::<Vec<_>>()
            .join("&")
    };
    cases.push(get(
        "a forged signature",
        format!("{download_path}?{}", swap(download_query, "signature", &"0".repeat(64))),
        denied,
    ));
    cases.push(get(
        "another disposition",
        format!("{download_path}?{}", swap(download_query, "disposition", "inline")),
        denied,
    ));
    cases.push(get(
        "a later expiry",
        format!("{download_path}?{}", swap(download_query, "expires", "99999999999")),
        denied,
    ));
    cases.push(get(
        "an expiry in the past",
        format!("{download_path}?{}", swap(download_query, "expires", "1")),
        denied,
    ));
    cases.push(get("another object", format!("/storage/v1/objects/{}?{download_query}", "ab".repeat(32)), denied));
    cases.push(get("a traversal", format!("/storage/v1/objects/..%2F..%2Fkey?{download_query}"), denied));
    cases.push(get("no query", download_path.to_owned(), bad));
    cases.push(get("expires a word", format!("{download_path}?{}", swap(download_query, "expires", "soon")), denied));
    for method in ["PUT", "POST", "DELETE"] {
        cases.push(Case::new(format!("{method} /storage/v1/objects"), method, download.clone(), Store(405)));
    }

    // --- Chunked sessions.
    if let Some(chunked) = &f.chunked {
        let url = target_of(chunked["upload"]["url"].as_str().unwrap());
        let (path, query) = url.split_once('?').unwrap();
        let chunk = |name: &str, target: String, range: Option<&str>, body: Vec<u8>, expect: Expect| {
            let mut case = Case::new(format!("PUT /storage/v1/chunked: {name}"), "PUT", target, expect).body("", body);
            if let Some(range) = range {
                case = case.header("Content-Range", range);
            }
            case
        };
        let hundred = vec![b'c'; 100];
        cases.push(chunk(
            "a forged signature",
            format!("{path}?{}", swap(query, "signature", &"0".repeat(64))),
            Some("bytes 0-99/1000"),
            hundred.clone(),
            denied,
        ));
        cases.push(chunk(
            "another size",
            format!("{path}?{}", swap(query, "size", "100")),
            Some("bytes 0-99/100"),
            hundred.clone(),
            denied,
        ));
        cases.push(chunk(
            "another session",
            format!("/storage/v1/chunked/{}?{query}", "0".repeat(26)),
            Some("bytes 0-99/1000"),
            hundred.clone(),
            denied,
        ));
        cases.push(chunk("no Content-Range", url.clone(), None, hundred.clone(), bad));
        for range in [
            "bytes 0-99",
            "0-99/1000",
            "bytes 99-0/1000",
            "bytes 0-1000/1000",
            "bytes a-b/1000",
            "bytes 0-99/999",
            "bytes -1-99/1000",
            "bytes 0-99/-1",
            "bytes 0-18446744073709551616/1000",
        ] {
            cases.push(chunk(&format!("Content-Range {range}"), url.clone(), Some(range), hundred.clone(), bad));
        }
        cases.push(chunk("a body over the range", url.clone(), Some("bytes 0-99/1000"), vec![b'c'; 101], bad));
        cases.push(chunk("a body under the range", url.clone(), Some("bytes 0-99/1000"), vec![b'c'; 99], bad));
        cases.push(chunk("no query", path.to_owned(), Some("bytes 0-99/1000"), hundred.clone(), bad));
        cases.push(chunk(
            "size a word",
            format!("{path}?{}", swap(query, "size", "big")),
            Some("bytes 0-99/1000"),
            hundred,
            bad,
        ));
        let late_chunked = late.chunked.as_ref().unwrap();
        cases.push(chunk(
            "expired",
            target_of(late_chunked["upload"]["url"].as_str().unwrap()),
            Some("bytes 0-99/1000"),
            vec![b'c'; 100],
            denied,
        ));
        for method in ["GET", "POST"] {
            cases.push(Case::new(format!("{method} /storage/v1/chunked"), method, url.clone(), Store(405)));
        }
    }
    cases
}

fn good_b64() -> String {
    sha256_b64(b"hostile")
}

async fn hostile_requests_get_4xx_in_the_contract_shape(backend: Backend) {
    let tiny = |c: upload_server::ConfigBuilder| c.multipart_threshold(5 * MIB as u64).part_size(5 * MIB as u64);
    let server = TestServer::start(backend, tiny).await;
    let f = fixtures(&server).await;
    // Signed URLs and uploads whose window has passed (rows named `...: expired`).
    let late_server = TestServer::start(backend, |c| tiny(c).url_ttl_secs(1).multipart_window_secs(2)).await;
    let late = late_fixtures(&late_server).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut cases = api_cases(&f, &late, backend);
    if backend.store() == Store::Local {
        cases.extend(store_cases(&f, &late));
    }
    let before = snapshot(&server).await;

    let addr = server.base.trim_start_matches("http://").to_owned();
    let late_addr = late_server.base.trim_start_matches("http://").to_owned();
    let mut failures = Vec::new();
    for case in &cases {
        // Expired URLs point at their own server.
        let target_addr = if case.name.ends_with(": expired") { &late_addr } else { &addr };
        match send(target_addr, case).await {
            Ok(response) => {
                if let Err(why) = check(case, &response) {
                    failures.push(format!("{}: {why}", case.name));
                }
            }
            Err(why) => failures.push(format!("{}: {why}", case.name)),
        }
    }
    let total = cases.len();
    assert!(total >= 300, "the table has only {total} rows for {backend:?}");
    eprintln!("{total} hostile requests on {backend:?}, {} answered otherwise than their row says", failures.len());
    assert!(failures.is_empty(), "{} of {total} hostile requests:\n{}", failures.len(), failures.join("\n"));

    assert_eq!(snapshot(&server).await, before, "a hostile request changed a record");
    // Still serving: a whole upload goes through.
    let ann = server.as_owner("ann");
    let data = bytes(33, 8);
    let upload = ann.create("after.txt", data.len(), "text/plain").await;
    let (status, body) = post_form(&server.http, &upload, &BTreeMap::new(), data).await;
    assert!(status < 300, "{status} {body}");
    let id = upload["id"].as_str().unwrap();
    json_ok(ann.post(&format!("/uploads/{id}/complete"), json!({})).await, StatusCode::OK).await;
}

on_every_backend!(hostile_requests_get_4xx_in_the_contract_shape);
