//! `PUT /multipart/{upload_id}/{part}`: one part, of exactly the signed
//! length, with the signed checksum when there is one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{StoreError, bad_argument, bad_request, bad_signature, check_expiry, denied, sink_refusal};
use crate::storage::StorageError;
use crate::storage::local::disk::PartMeta;
use crate::storage::local::{CHECKSUM_HEADER, LocalStorage, is_upload_id};

#[derive(Deserialize)]
pub(super) struct PartQuery {
    expires: String,
    signature: String,
    length: Option<u64>,
}

pub(super) async fn put_part(
    State(store): State<Arc<LocalStorage>>,
    path: Result<Path<(String, u32)>, PathRejection>,
    query: Result<Query<PartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, StoreError> {
    let (Path((upload_id, part)), Query(query)) = (path.map_err(bad_argument)?, query.map_err(bad_argument)?);
    let checksum = headers.get(CHECKSUM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let length = query.length.ok_or_else(|| denied("no length"))?;
    let signed = ["PUT part", &upload_id, &part.to_string(), &length.to_string(), checksum, &query.expires];
    if !store.verify(&signed, &query.signature) {
        return Err(bad_signature());
    }
    check_expiry(&query.expires)?;
    if !is_upload_id(&upload_id) {
        return Err(StorageError::NotFound.into());
    }
    store.read_multipart(&upload_id).await?;

    let too_long = || bad_request("EntityTooLarge", format!("the part must be {length} bytes"));
    let (temp, size, digest) =
        store.write_temp(body.into_data_stream(), length).await.map_err(|e| sink_refusal(e, too_long))?;
    if size != length {
        return Err(bad_request("IncompleteBody", format!("got {size} bytes, the part must be {length}")));
    }
    let sha256 = digest.base64();
    if !checksum.is_empty() && checksum != sha256 {
        return Err(bad_request("BadDigest", "the part's SHA-256 differs from the signed one"));
    }
    let etag = digest.etag();
    store.commit_part(&upload_id, part, temp.path(), &PartMeta { etag: etag.clone(), size, sha256 }).await?;
    temp.kept();
    Ok((StatusCode::OK, [(header::ETAG, etag)]).into_response())
}
