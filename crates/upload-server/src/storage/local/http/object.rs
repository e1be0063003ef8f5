//! `GET /objects/{hex}`: a signed download, always as an attachment.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{StoreError, bad_argument, bad_signature, check_expiry, refuse};
use crate::storage::local::LocalStorage;

#[derive(Deserialize)]
pub(super) struct GetQuery {
    expires: String,
    signature: String,
    disposition: Option<String>,
}

pub(super) async fn get_object(
    State(store): State<Arc<LocalStorage>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Response, StoreError> {
    let (Path(hex), Query(query)) = (path.map_err(bad_argument)?, query.map_err(bad_argument)?);
    let disposition = query.disposition.unwrap_or_default();
    if !store.verify(&["GET object", &hex, &disposition, &query.expires], &query.signature) {
        return Err(bad_signature());
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
