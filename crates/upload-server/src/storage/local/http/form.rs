//! `POST /form`: a browser upload through a SigV4 POST policy, verified
//! field by field as S3 does, and only while its upload is pending.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{StoreError, bad_request, bad_signature, constant_time_eq, denied, sink_refusal};
use crate::storage::local::disk::{ObjectMeta, SinkError, TempFile};
use crate::storage::local::{LOCAL_ACCESS_KEY, LOCAL_BUCKET, LocalStorage};
use crate::storage::post_policy::sign_policy;

/// Most bytes of all text fields of a POST form together, read before the
/// signature can be checked; the fields we sign (key, type, policy,
/// credential, date, signature, checksum) are about 2 KB.
const MAX_FORM_FIELDS_BYTES: usize = 16 * 1024;
/// Most text fields of a POST form, repeated names counted each time.
const MAX_FORM_FIELDS: usize = 16;

/// Percent-encodes all but the unreserved characters and `/`.
const KEY_IN_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// What a verified policy allows.
struct Allowed {
    key: String,
    content_type: String,
    min: u64,
    max: u64,
    sha256: Option<String>,
}

fn malformed(e: MultipartError) -> StoreError {
    bad_request("MalformedPOSTRequest", e.body_text())
}

/// The form's text fields, then its `file`, which must come last: the
/// policy is checked before a byte of the file is written, and the object
/// is moved into place only once the form has ended.
pub(super) async fn post_form(
    State(store): State<Arc<LocalStorage>>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, StoreError> {
    let mut form = form.map_err(|e| bad_request("MalformedPOSTRequest", e.to_string()))?;
    let mut fields = FormFields::default();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        if field.name() != Some("file") {
            fields.read(field).await?;
            continue;
        }
        let allowed = verify_policy(&store, &fields.values)?;
        if !store.is_open(&allowed.key) {
            return Err(denied("the upload of this key is no longer pending: a form cannot be used again"));
        }
        let (temp, meta) = receive_file(&store, field, allowed).await?;
        if form.next_field().await.map_err(malformed)?.is_some() {
            return Err(bad_request("MalformedPOSTRequest", "the file must be the last field"));
        }
        return place_file(&store, temp, meta).await;
    }
    Err(bad_request("MalformedPOSTRequest", "no `file` field"))
}

/// The text fields before the file, lower-cased names to values. Every
/// field counts, a repeated name too (which is refused), and all of them
/// share one small budget: nothing here is checked against the signature
/// yet, so nothing unsigned may make the store read without end.
#[derive(Default)]
struct FormFields {
    values: BTreeMap<String, String>,
    count: usize,
    bytes: usize,
}

impl FormFields {
    async fn read(&mut self, mut field: Field<'_>) -> Result<(), StoreError> {
        let name = field.name().unwrap_or_default().to_owned();
        self.count += 1;
        self.bytes += name.len();
        if self.count > MAX_FORM_FIELDS || self.bytes > MAX_FORM_FIELDS_BYTES {
            return Err(too_many_fields());
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            self.bytes += chunk.len();
            if self.bytes > MAX_FORM_FIELDS_BYTES {
                return Err(too_many_fields());
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| bad_request("MalformedPOSTRequest", format!("field {name} is not UTF-8")))?;
        if self.values.insert(name.to_ascii_lowercase(), value).is_some() {
            return Err(bad_request("MalformedPOSTRequest", format!("field {name} is given twice")));
        }
        Ok(())
    }
}

fn too_many_fields() -> StoreError {
    bad_request(
        "MalformedPOSTRequest",
        format!("the form's fields before the file exceed {MAX_FORM_FIELDS} fields or {MAX_FORM_FIELDS_BYTES} bytes"),
    )
}

/// Streams the file into a temporary file within the policy's size range
/// and checks its digest against the signed one.
async fn receive_file(
    store: &LocalStorage,
    field: Field<'_>,
    allowed: Allowed,
) -> Result<(TempFile, ObjectMeta), StoreError> {
    let too_long = || bad_request("EntityTooLarge", format!("over the policy's {} bytes", allowed.max));
    let (temp, size, digest) = store.write_temp(field, allowed.max).await.map_err(|e| match e {
        SinkError::Input(e) => malformed(e),
        other => sink_refusal(other, too_long),
    })?;
    if size < allowed.min {
        return Err(bad_request("EntityTooSmall", format!("under the policy's {} bytes", allowed.min)));
    }
    let sha256 = digest.base64();
    if allowed.sha256.is_some_and(|declared| declared != sha256) {
        return Err(bad_request("BadDigest", "the SHA-256 of the file differs from the signed one"));
    }
    Ok((temp, ObjectMeta { key: allowed.key, size, content_type: allowed.content_type, sha256 }))
}

/// Moves the verified file into place (if its upload is still pending) and
/// answers as S3 answers a form: 204 with the object's location, the key in
/// its path.
async fn place_file(store: &LocalStorage, temp: TempFile, meta: ObjectMeta) -> Result<Response, StoreError> {
    let location =
        format!("{}/{LOCAL_BUCKET}/{}", store.base_url, percent_encoding::utf8_percent_encode(&meta.key, KEY_IN_PATH));
    store.commit_form_object(temp.path(), &meta).await?;
    temp.kept();
    Ok((StatusCode::NO_CONTENT, [(header::LOCATION, location)]).into_response())
}

/// Checks the SigV4 signature of the policy, its expiry, and that every
/// field is one the policy allows and every condition holds.
fn verify_policy(store: &LocalStorage, fields: &BTreeMap<String, String>) -> Result<Allowed, StoreError> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let policy_b64 = field("policy").ok_or_else(|| denied("no policy"))?;
    check_signature(store, fields, policy_b64)?;
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
    let conditions = policy["conditions"].as_array().ok_or_else(|| denied("policy without conditions"))?;
    let range = check_conditions(conditions, fields)?;
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

/// The algorithm, credential and signature fields: the policy was signed
/// with this store's secret.
fn check_signature(
    store: &LocalStorage,
    fields: &BTreeMap<String, String>,
    policy_b64: &str,
) -> Result<(), StoreError> {
    let field = |name: &str| fields.get(name).map(String::as_str);
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
        return Err(bad_signature());
    }
    Ok(())
}

/// Every condition holds and every field is covered by one; returns the
/// `content-length-range`, if any.
fn check_conditions(conditions: &[Value], fields: &BTreeMap<String, String>) -> Result<Option<(u64, u64)>, StoreError> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let mut covered: Vec<String> = vec!["policy".into(), "x-amz-signature".into()];
    let mut range = None;
    let violation = |what: String| denied(format!("Invalid according to Policy: Policy Condition failed: {what}"));
    for condition in conditions {
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
    Ok(range)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

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
        let response = tokio::time::timeout(Duration::from_secs(30), super::super::router(store, &[]).oneshot(request))
            .await
            .expect("still reading the form's fields after 30 s")
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        assert!(body.starts_with(b"MalformedPOSTRequest"), "{body:?}");
    }
}
