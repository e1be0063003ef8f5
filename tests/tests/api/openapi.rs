//! `GET /api/v1/openapi.json` against the server's real answers: every
//! route is in the document, the document lists every method a path
//! answers, and every answer below, success or error, is validated (with
//! `jsonschema`, draft 2020-12, OpenAPI 3.1's dialect) against the schema
//! the document declares for its route and status; a status the document
//! does not declare for the route fails the test. Deliberately wrong bodies
//! are refused by the same validators, so they are not vacuous.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use upload_tests::{Backend, Client, Store, TestServer, bytes, on_every_backend, post_form};

const MIB: usize = 1024 * 1024;
const METRICS_TOKEN: &str = "openapi-test-scrape";
/// A well-formed id that names nothing.
const NO_SUCH_ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

/// Every route the router serves, as the document must name it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/config"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/uploads"),
    ("get", "/api/v1/uploads/{id}"),
    ("delete", "/api/v1/uploads/{id}"),
    ("post", "/api/v1/uploads/{id}/parts"),
    ("post", "/api/v1/uploads/{id}/complete"),
    ("post", "/api/v1/uploads/batch"),
    ("post", "/api/v1/uploads/batch/complete"),
    ("get", "/api/v1/files"),
    ("get", "/api/v1/files/{id}"),
    ("delete", "/api/v1/files/{id}"),
    ("get", "/healthz"),
    ("get", "/metrics"),
];

/// The document and what was checked against it.
struct Spec {
    doc: Value,
    /// `(method, path template, status)` of every answer validated.
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Spec {
    async fn fetch(server: &TestServer) -> Spec {
        // No token: the document is public.
        let response = server.http.get(server.url("/openapi.json")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["openapi"], "3.1.0", "an OpenAPI 3.1 document");
        assert_eq!(doc["servers"][0]["url"], server.base.as_str());
        let spec = Spec { doc, seen: Mutex::default() };
        // The document's own answer, validated like every other.
        let again = server.http.get(server.url("/openapi.json")).send().await.unwrap();
        spec.check("get", "/api/v1/openapi.json", again).await;
        spec
    }

    /// The path template of the document that `path` (no query) falls under.
    fn template(&self, path: &str) -> String {
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object().unwrap();
        // Literal segments win over parameters, as in the router
        // (`/uploads/batch` is not the upload `batch`).
        let literal_matches = |template: &str| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits = parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')));
            fits.then(|| parts.iter().zip(&segments).filter(|(t, s)| t == s).count())
        };
        let mut matching: Vec<(usize, &String)> =
            paths.keys().filter_map(|template| Some((literal_matches(template)?, template))).collect();
        matching.sort();
        let best = matching.last().unwrap_or_else(|| panic!("{path} matches none of the document's paths"));
        assert!(
            matching.iter().filter(|(literal, _)| *literal == best.0).count() == 1,
            "{path} matches {matching:?} of the document's paths equally"
        );
        best.1.clone()
    }

    /// The response object the document declares for this route and status.
    fn declared(&self, method: &str, template: &str, status: u16) -> &Value {
        let operation = &self.doc["paths"][template][method];
        assert!(operation.is_object(), "{method} {template} is not in the document");
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not declare (it declares {:?})",
            operation["responses"].as_object().map(|r| r.keys().collect::<Vec<_>>())
        );
        response
    }

    /// A validator for `schema`, its `$ref`s resolved against the document's components.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = schema.clone();
        root.as_object_mut().unwrap().insert("components".into(), self.doc["components"].clone());
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("schema {schema} does not build: {e}"))
    }

    /// The validator of the JSON body the document declares for this route and status.
    fn body_validator(&self, method: &str, template: &str, status: u16) -> jsonschema::Validator {
        let schema = &self.declared(method, template, status)["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {template} {status} declares no JSON body");
        self.validator(schema)
    }

    /// Validates a real answer against the document; returns its status and
    /// body (JSON, or a string for text). `path` is the request's path from
    /// the server's root, without its query.
    async fn check(&self, method: &str, path: &str, response: Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = response.text().await.unwrap();
        let template = self.template(path);
        let declared = self.declared(method, &template, status);
        self.seen.lock().unwrap().insert((method.to_owned(), template.clone(), status));
        let Some(content) = declared.get("content").and_then(Value::as_object) else {
            assert!(text.is_empty(), "{method} {path} {status}: the document declares no body, got {text}");
            return (status, Value::Null);
        };
        let (media, content) = content
            .iter()
            .find(|(media, _)| content_type.starts_with(media.as_str()))
            .unwrap_or_else(|| panic!("{method} {path} {status}: `{content_type}` is not among {content:?}"));
        let body = if media == "application/json" {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {text}"))
        } else {
            Value::String(text)
        };
        let validator = self.validator(&content["schema"]);
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {path} {status} does not fit the document: {errors:?}\nbody: {body}");
        (status, body)
    }

    /// Sends `request` and checks its answer; asserts the status too.
    async fn expect(&self, method: &str, path: &str, response: Response, status: u16) -> Value {
        let (got, body) = self.check(method, path, response).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        body
    }
}

/// A client holding an upload's scoped token.
fn scoped<'a>(server: &'a TestServer, upload: &Value) -> Client<'a> {
    Client { server, token: Some(upload["token"].as_str().unwrap().to_owned()) }
}

fn png(len: usize, seed: u64) -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
    data.extend(bytes(len - 8, seed));
    data
}

async fn every_answer_fits_the_document(backend: Backend) {
    let server = TestServer::start(backend, |c| {
        c.accept(vec!["image/*".into(), ".txt".into()])
            .max_file_size(16 * MIB as u64)
            .multipart_threshold(5 * MIB as u64)
            .part_size(5 * MIB as u64)
            .metrics_token(METRICS_TOKEN)
    })
    .await;
    let spec = Spec::fetch(&server).await;

    // Every route is in the document, and nothing else is.
    let documented: BTreeSet<(String, String)> = spec.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .filter(|(method, _)| ["get", "post", "put", "patch", "delete"].contains(&method.as_str()))
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, routes);

    let alice = server.as_owner("alice");
    let anonymous = server.anonymous();
    let api = |path: &str| format!("/api/v1{path}");

    // Outside the uploads: config, health, metrics (with and without its token).
    spec.expect("get", "/api/v1/config", anonymous.get("/config").await, 200).await;
    let health = server.http.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(spec.expect("get", "/healthz", health, 200).await, "ok");
    let scrape = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap();
    spec.expect("get", "/metrics", scrape, 401).await;
    let scrape = server.http.get(format!("{}/metrics", server.base)).bearer_auth(METRICS_TOKEN).send().await.unwrap();
    spec.expect("get", "/metrics", scrape, 200).await;

    // A single POST upload, through its whole life.
    let data = png(1000, 1);
    let created = alice.post("/uploads", json!({"name": "a.png", "size": data.len(), "type": "image/png"})).await;
    let upload = spec.expect("post", "/api/v1/uploads", created, 201).await;
    let id = upload["id"].as_str().unwrap().to_owned();
    let status =
        spec.expect("get", &api(&format!("/uploads/{id}")), alice.get(&format!("/uploads/{id}")).await, 200).await;
    assert_eq!(status["state"], "pending");
    let too_soon = alice.post(&format!("/uploads/{id}/complete"), json!({})).await;
    let error = spec.expect("post", &api(&format!("/uploads/{id}/complete")), too_soon, 409).await;
    assert_eq!(error["error"]["code"], "upload_incomplete");
    let not_multipart = alice.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await;
    let error = spec.expect("post", &api(&format!("/uploads/{id}/parts")), not_multipart, 409).await;
    assert_eq!(error["error"]["code"], "invalid_state");
    let (stored, _) = post_form(&server.http, &upload, &BTreeMap::new(), data).await;
    assert!((200..300).contains(&stored));
    let by_token = scoped(&server, &upload);
    let completed = by_token.post_raw(&format!("/uploads/{id}/complete"), "").await;
    let file = spec.expect("post", &api(&format!("/uploads/{id}/complete")), completed, 200).await;
    assert_eq!(file["file"]["detected_type"], "image/png");
    let again = alice.post(&format!("/uploads/{id}/complete"), json!({})).await;
    assert_eq!(spec.expect("post", &api(&format!("/uploads/{id}/complete")), again, 200).await, file);
    let status =
        spec.expect("get", &api(&format!("/uploads/{id}")), by_token.get(&format!("/uploads/{id}")).await, 200).await;
    assert_eq!(status["state"], "completed");
    let abort_completed = alice.delete(&format!("/uploads/{id}")).await;
    let error = spec.expect("delete", &api(&format!("/uploads/{id}")), abort_completed, 409).await;
    assert_eq!(error["error"]["code"], "invalid_state");
    let download =
        spec.expect("get", &api(&format!("/files/{id}")), alice.get(&format!("/files/{id}")).await, 200).await;

    // A multipart upload, its calls made with its upload-scoped token.
    let big = bytes(6 * MIB, 2);
    let created = alice.post("/uploads", json!({"name": "big.txt", "size": big.len(), "type": "text/plain"})).await;
    let multipart = spec.expect("post", "/api/v1/uploads", created, 201).await;
    assert_eq!(multipart["upload"]["uploader"], "S3Multipart");
    let mid = multipart["id"].as_str().unwrap().to_owned();
    let parts_path = api(&format!("/uploads/{mid}/parts"));
    let by_token = scoped(&server, &multipart);
    for wrong in [json!({"part_numbers": [0]}), json!({"part_numbers": [3]}), json!({"part_numbers": [1, 1]})] {
        let response = by_token.post(&format!("/uploads/{mid}/parts"), wrong).await;
        spec.expect("post", &parts_path, response, 400).await;
    }
    let malformed = by_token.post_raw(&format!("/uploads/{mid}/parts"), "{\"part_numbers\": ").await;
    spec.expect("post", &parts_path, malformed, 400).await;
    let signed = by_token.post(&format!("/uploads/{mid}/parts"), json!({"part_numbers": [1, 2]})).await;
    let signed = spec.expect("post", &parts_path, signed, 200).await;
    let mut etags = Vec::new();
    for (part, chunk) in signed["parts"].as_array().unwrap().iter().zip(big.chunks(5 * MIB)) {
        let mut put = server.http.put(part["url"].as_str().unwrap()).body(chunk.to_vec());
        for (name, value) in part["headers"].as_object().unwrap() {
            put = put.header(name, value.as_str().unwrap());
        }
        let response = put.send().await.unwrap();
        assert_eq!(response.status(), 200);
        etags.push(json!({"part_number": part["part_number"], "etag": response.headers()["etag"].to_str().unwrap()}));
        if etags.len() == 1 {
            // One part held: the status lists it.
            let status = by_token.get(&format!("/uploads/{mid}")).await;
            let status = spec.expect("get", &api(&format!("/uploads/{mid}")), status, 200).await;
            assert_eq!(status["parts"].as_array().unwrap().len(), 1, "{status}");
        }
    }
    let complete_path = api(&format!("/uploads/{mid}/complete"));
    let missing = by_token.post(&format!("/uploads/{mid}/complete"), json!({"parts": [etags[0]]})).await;
    spec.expect("post", &complete_path, missing, 400).await;
    let completed = by_token.post(&format!("/uploads/{mid}/complete"), json!({"parts": etags})).await;
    spec.expect("post", &complete_path, completed, 200).await;

    // Two files now: a page of one has a cursor, which reads the next.
    let page = spec.expect("get", "/api/v1/files", alice.get("/files?limit=1").await, 200).await;
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let next =
        spec.expect("get", "/api/v1/files", alice.get(&format!("/files?limit=1&cursor={cursor}")).await, 200).await;
    assert!(next["next_cursor"].is_null(), "{next}");
    for bad in ["/files?limit=0", "/files?limit=101", "/files?cursor=nonsense", "/files?limit=x"] {
        spec.expect("get", "/api/v1/files", alice.get(bad).await, 400).await;
    }

    // Chunked: a session on the local store; S3 cannot offer one (400).
    let chunked =
        alice.post("/uploads", json!({"name": "c.txt", "size": 10, "type": "text/plain", "uploader": "Chunked"})).await;
    match backend.store() {
        Store::Local => {
            let session = spec.expect("post", "/api/v1/uploads", chunked, 201).await;
            assert_eq!(session["upload"]["uploader"], "Chunked");
            let cid = session["id"].as_str().unwrap();
            spec.expect("get", &api(&format!("/uploads/{cid}")), alice.get(&format!("/uploads/{cid}")).await, 200)
                .await;
        }
        Store::Garage => {
            spec.expect("post", "/api/v1/uploads", chunked, 400).await;
        }
    }

    // Aborting a pending upload, twice.
    let pending = alice.create("d.txt", 10, "text/plain").await;
    let did = pending["id"].as_str().unwrap();
    for _ in 0..2 {
        let aborted = scoped(&server, &pending).delete(&format!("/uploads/{did}")).await;
        spec.expect("delete", &api(&format!("/uploads/{did}")), aborted, 204).await;
    }

    // Bytes that contradict the accept list: 422.
    let html = b"<html><body>not an image</body></html>".to_vec();
    let fake = alice.create("e.png", html.len(), "image/png").await;
    post_form(&server.http, &fake, &BTreeMap::new(), html).await;
    let fid = fake["id"].as_str().unwrap();
    let refused = alice.post(&format!("/uploads/{fid}/complete"), json!({})).await;
    let error = spec.expect("post", &api(&format!("/uploads/{fid}/complete")), refused, 422).await;
    assert_eq!(error["error"]["code"], "content_not_accepted");

    // Batches: one outcome per file, each as its single request answers it.
    let (one, two) = (png(600, 7), png(700, 8));
    let batch = alice
        .post(
            "/uploads/batch",
            json!({"files": [
                {"name": "one.png", "size": one.len(), "type": "image/png"},
                {"name": "no.zip", "size": 10, "type": "application/zip"},
                {"name": "two.png", "size": two.len(), "type": "image/png"},
            ]}),
        )
        .await;
    let batch = spec.expect("post", "/api/v1/uploads/batch", batch, 200).await;
    let outcomes = batch["uploads"].as_array().unwrap();
    assert_eq!(outcomes[1]["error"]["code"], "type_not_accepted", "{batch}");
    for (outcome, data) in [(&outcomes[0], &one), (&outcomes[2], &two)] {
        assert_eq!(post_form(&server.http, outcome, &BTreeMap::new(), data.clone()).await.0, 204);
    }
    let ids = [outcomes[0]["id"].as_str().unwrap(), outcomes[2]["id"].as_str().unwrap()];
    let completed = alice
        .post("/uploads/batch/complete", json!({"uploads": [{"id": ids[0]}, {"id": NO_SUCH_ID}, {"id": ids[1]}]}))
        .await;
    let completed = spec.expect("post", "/api/v1/uploads/batch/complete", completed, 200).await;
    let files = completed["files"].as_array().unwrap();
    assert_eq!((files[0]["file"]["id"].as_str(), files[2]["file"]["size"].as_u64()), (Some(ids[0]), Some(700)));
    assert_eq!(files[1]["error"]["code"], "not_found", "{completed}");
    for (path, body) in [
        ("/uploads/batch", json!({"files": []})),
        ("/uploads/batch/complete", json!({"uploads": [{"id": ids[0]}, {"id": ids[0]}]})),
    ] {
        let error = spec.expect("post", &api(path), alice.post(path, body).await, 400).await;
        assert_eq!(error["error"]["code"], "invalid_request");
    }
    let outcomes_schema = spec.body_validator("post", "/api/v1/uploads/batch", 200);
    assert!(!outcomes_schema.is_valid(&json!({"uploads": [{"id": "x"}]})), "half an upload passed as an outcome");

    // Every refusal of a declaration.
    let create = |body: Value| alice.post("/uploads", body);
    for (body, status) in [
        (json!({"name": "z.txt", "size": 0, "type": "text/plain"}), 400),
        (json!({"name": "z.txt"}), 400),
        (json!({"name": "z.txt", "size": 1, "type": "text/plain", "sha256": "nope"}), 400),
        (json!({"name": "z.txt", "size": 17 * MIB, "type": "text/plain"}), 413),
        (json!({"name": "z.zip", "size": 10, "type": "application/zip"}), 415),
    ] {
        spec.expect("post", "/api/v1/uploads", create(body).await, status).await;
    }
    let huge = format!("{{\"name\": \"{}\", \"size\": 1}}", "a".repeat(2 * MIB));
    let error = spec.expect("post", "/api/v1/uploads", alice.post_raw("/uploads", huge).await, 413).await;
    assert_eq!(error["error"]["code"], "request_too_large");
    let crowd = server.as_owner("crowd");
    let too_many = loop {
        let response = crowd.post("/uploads", json!({"name": "f.txt", "size": 10, "type": "text/plain"})).await;
        let (status, body) = spec.check("post", "/api/v1/uploads", response).await;
        if status != 201 {
            break body;
        }
    };
    assert_eq!(too_many["error"]["code"], "too_many_files");

    // Not found, for each route with an id; then the file deleted for real.
    for (method, path) in [
        ("get", format!("/uploads/{NO_SUCH_ID}")),
        ("delete", format!("/uploads/{NO_SUCH_ID}")),
        ("post", format!("/uploads/{NO_SUCH_ID}/parts")),
        ("post", format!("/uploads/{NO_SUCH_ID}/complete")),
        ("get", format!("/files/{NO_SUCH_ID}")),
        ("delete", format!("/files/{NO_SUCH_ID}")),
        ("get", "/files/not-an-id".to_owned()),
    ] {
        let response = match method {
            "get" => alice.get(&path).await,
            "delete" => alice.delete(&path).await,
            _ => alice.post(&path, json!({"part_numbers": [1]})).await,
        };
        spec.expect(method, &api(&path), response, 404).await;
    }
    let deleted = alice.delete(&format!("/files/{id}")).await;
    spec.expect("delete", &api(&format!("/files/{id}")), deleted, 204).await;
    spec.expect("get", &api(&format!("/files/{id}")), alice.get(&format!("/files/{id}")).await, 404).await;

    // No token, or a wrong one, on every authenticated route: 401.
    let forged = Client { server: &server, token: Some("not.a.token".into()) };
    for client in [&anonymous, &forged] {
        for (method, template) in
            ROUTES.iter().filter(|(_, p)| p.starts_with("/api/v1/") && !p.ends_with(".json") && !p.ends_with("/config"))
        {
            let path = template.trim_start_matches("/api/v1").replace("{id}", &mid);
            let response = match *method {
                "get" => client.get(&path).await,
                "delete" => client.delete(&path).await,
                _ => client.post(&path, json!({})).await,
            };
            let error = spec.expect(method, &api(&path), response, 401).await;
            assert_eq!(error["error"]["code"], "unauthorized");
        }
    }

    // A path answers no method the document does not list for it (405, in
    // the contract's shape), so the document names all the router serves.
    let error_body = spec.validator(&json!({"$ref": "#/components/schemas/ErrorBody"}));
    let paths: Vec<String> = spec.doc["paths"].as_object().unwrap().keys().cloned().collect();
    for template in &paths {
        let url = format!("{}{}", server.base, template.replace("{id}", NO_SUCH_ID));
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if spec.doc["paths"][template][method.as_str().to_lowercase()].is_object() {
                continue;
            }
            let response = server.http.request(method.clone(), &url).send().await.unwrap();
            assert_eq!(response.status(), 405, "{method} {template}");
            let body: Value = response.json().await.unwrap();
            assert!(error_body.is_valid(&body), "{method} {template}: {body}");
        }
    }
    let unknown = alice.get("/nowhere").await;
    assert_eq!(unknown.status(), 404);
    assert!(error_body.is_valid(&unknown.json().await.unwrap()));

    // The validators are not vacuous: a wrong body fails the very validator
    // the real one passed.
    let file_schema = spec.body_validator("get", "/api/v1/files/{id}", 200);
    assert!(file_schema.is_valid(&download));
    let mut wrong = download.clone();
    wrong["size"] = json!("1000");
    assert!(!file_schema.is_valid(&wrong), "size as a string passed");
    let mut wrong = download.clone();
    wrong.as_object_mut().unwrap().remove("download_url");
    assert!(!file_schema.is_valid(&wrong), "no download_url passed");
    let mut wrong = download.clone();
    wrong.as_object_mut().unwrap().remove("sha256");
    assert!(!file_schema.is_valid(&wrong), "no sha256 (always sent, maybe null) passed");
    let created_schema = spec.body_validator("post", "/api/v1/uploads", 201);
    assert!(created_schema.is_valid(&upload));
    let mut wrong = upload.clone();
    wrong["upload"]["uploader"] = json!("Nope");
    assert!(!created_schema.is_valid(&wrong), "an unknown plan passed");
    let mut wrong = upload.clone();
    wrong["upload"].as_object_mut().unwrap().remove("fields");
    assert!(!created_schema.is_valid(&wrong), "an S3 plan without fields passed");
    let mut wrong = multipart.clone();
    wrong["upload"]["uploader"] = json!("S3");
    assert!(!created_schema.is_valid(&wrong), "a multipart plan tagged S3 passed");
    let not_found = spec.body_validator("get", "/api/v1/files/{id}", 404);
    assert!(not_found.is_valid(&json!({"error": {"code": "not_found", "message": "no such file"}})));
    assert!(!not_found.is_valid(&json!({"error": {"code": "no_such_code", "message": "x"}})), "an unknown code passed");
    assert!(!not_found.is_valid(&json!({"code": "not_found", "message": "flat"})), "a flat error passed");

    // Every operation of the document was seen answering, with a success.
    let seen = spec.seen.lock().unwrap().clone();
    for (method, template) in ROUTES {
        let statuses: Vec<u16> =
            seen.iter().filter(|(m, t, _)| m == method && t == template).map(|(_, _, s)| *s).collect();
        assert!(statuses.iter().any(|s| (200..300).contains(s)), "{method} {template}: no success seen ({statuses:?})");
    }
    let statuses: BTreeSet<u16> = seen.iter().map(|(_, _, s)| *s).collect();
    assert!(statuses.is_superset(&[200, 201, 204, 400, 401, 404, 409, 413, 415, 422].into()), "{statuses:?}");
}

/// The answers only a server with short windows or a low rate limit gives:
/// 410 `upload_expired` and 429 `rate_limited`.
async fn expiry_and_rate_limit_answers_fit_the_document(backend: Backend) {
    let server =
        TestServer::start(backend, |c| c.multipart_threshold(5 * MIB as u64).url_ttl_secs(1).multipart_window_secs(1))
            .await;
    let spec = Spec::fetch(&server).await;
    let client = server.as_owner("ivy");
    let upload = client.create("b.bin", 6 * MIB, "").await;
    let id = upload["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = client.post(&format!("/uploads/{id}/parts"), json!({"part_numbers": [1]})).await;
    let error = spec.expect("post", &format!("/api/v1/uploads/{id}/parts"), late, 410).await;
    assert_eq!(error["error"]["code"], "upload_expired");

    // 1 request/s, bursts of 2: ten at once cannot all pass.
    let server = TestServer::start(backend, |c| c.rate_limit(1)).await;
    let spec = Spec::fetch(&server).await;
    let client = server.as_owner("kim");
    let responses = futures_util::future::join_all((0..10).map(|_| client.get("/files"))).await;
    let mut limited = 0;
    for response in responses {
        assert!(matches!(response.status().as_u16(), 200 | 429));
        let has_retry = response.headers().contains_key("retry-after");
        let (status, body) = spec.check("get", "/api/v1/files", response).await;
        if status == 429 {
            assert!(has_retry);
            assert_eq!(body["error"]["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(limited > 0, "no request was rate limited");
}

on_every_backend!(every_answer_fits_the_document, expiry_and_rate_limit_answers_fit_the_document);
