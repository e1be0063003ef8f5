//! `GET /files`, `GET /files/{id}`, `DELETE /files/{id}`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use upload_core::key::content_disposition;
use upload_core::wire::{ErrorBody, FileDownload, FileList};

use super::{PathId, parse_id};
use crate::AppState;
use crate::auth::Owner;
use crate::error::{ApiError, ApiResult};
use crate::time_util::{now_ms, rfc3339};

/// Most files one page holds.
pub(crate) const MAX_PAGE: u32 = 100;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Files per page, 1 to 100; 50 when absent.
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The owner's files, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/files",
    tag = "files",
    security(("user_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of files.", body = FileList),
        (status = 400, description = "`limit` outside 1..=100, or a cursor this server did not give out (`invalid_request`).", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    owner: Owner,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<FileList>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit {limit} is outside 1..={MAX_PAGE}")));
    }
    let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut rows = state.db().list_files(&owner.0, limit + 1, cursor).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| format!("{}.{}", last.created_at, last.id))
    } else {
        None
    };
    Ok(Json(FileList { files: rows.into_iter().map(|r| r.into_record()).collect(), next_cursor }))
}

/// Cursors are `<created_at ms>.<id>` of the last file of the previous page.
fn parse_cursor(cursor: &str) -> ApiResult<(i64, &str)> {
    cursor
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id)))
        .filter(|(_, id)| parse_id(id, "file").is_ok())
        .ok_or_else(|| ApiError::invalid("cursor is not one this server gave out"))
}

/// A file, with a presigned download URL.
#[utoipa::path(
    get,
    path = "/api/v1/files/{id}",
    tag = "files",
    security(("user_token" = [])),
    params(("id" = String, Path, description = "The file id (the id of the upload that made it)")),
    responses(
        (status = 200, description = "The file and its download URL.", body = FileDownload),
        (status = 404, description = "No such file for this owner (`not_found`).", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    owner: Owner,
    PathId(id): PathId,
) -> ApiResult<Json<FileDownload>> {
    let id = parse_id(&id, "file")?;
    let row = state.db().file(&owner.0, &id).await?.ok_or_else(|| ApiError::not_found("file"))?;
    let ttl = state.config().url_ttl;
    let signed = state.storage().presign_get(&row.object_key, &content_disposition(&row.name), ttl).await?;
    Ok(Json(FileDownload {
        file: row.into_record(),
        download_url: signed.url,
        download_expires_at: rfc3339(now_ms() + ttl.as_millis() as i64),
    }))
}

/// Deletes a file: its object first, then its record.
#[utoipa::path(
    delete,
    path = "/api/v1/files/{id}",
    tag = "files",
    security(("user_token" = [])),
    params(("id" = String, Path, description = "The file id (the id of the upload that made it)")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such file for this owner (`not_found`).", body = ErrorBody),
    ),
)]
pub(crate) async fn delete(State(state): State<AppState>, owner: Owner, PathId(id): PathId) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "file")?;
    let row = state.db().file(&owner.0, &id).await?.ok_or_else(|| ApiError::not_found("file"))?;
    // The object goes first: if storage fails, the record stays and the
    // client can try again; a record never points at nothing for long.
    state.storage().delete(&row.object_key).await?;
    state.db().delete_file(&owner.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
