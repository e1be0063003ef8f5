//! `POST /uploads/batch` and `POST /uploads/batch/complete`: many files in
//! one request each way, so that over a link with tens of milliseconds of
//! round trip a folder of small files costs about one round trip per file
//! (its bytes) instead of three. Each file is handled exactly as its single
//! request would be (the same checks, signing, records and errors); the
//! batch only shares the request, and answers one outcome per file.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use futures_util::StreamExt as _;
use futures_util::stream;
use upload_core::wire::{
    CompleteOutcome, CompleteUploads, CompletedUploads, CreateOutcome, CreateUploads, CreatedUploads, ErrorBody,
    MAX_FILES_PER_BATCH,
};

use super::ApiJson;
use super::uploads::{complete_one, create_one};
use crate::AppState;
use crate::auth::Owner;
use crate::error::{ApiError, ApiResult};

/// Files of one batch handled at once. Creates mostly sign and queue their
/// insert for the group-commit writer, so they share its transactions;
/// completions each ask the store (HEAD, a ranged GET, for multipart
/// ListParts and CompleteMultipartUpload): this many at a time keeps one
/// batch from taking every connection to the store.
const AT_ONCE: usize = 16;

/// Declares several files; answers how to send each one's bytes.
#[utoipa::path(
    post,
    path = "/api/v1/uploads/batch",
    operation_id = "create_batch",
    tag = "uploads",
    security(("user_token" = [])),
    request_body = CreateUploads,
    responses(
        (status = 200, description = "One outcome per declaration, in order: the created upload (as `POST /uploads` answers it) or its error body (`file_too_large`, `type_not_accepted`, `too_many_files`, `invalid_request`...).", body = CreatedUploads),
        (status = 400, description = "Malformed JSON, or no declarations or more than 100 (`invalid_request`).", body = ErrorBody),
        (status = 413, description = "The request body is over 1 MiB (`request_too_large`).", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(request): ApiJson<CreateUploads>,
) -> ApiResult<Json<CreatedUploads>> {
    charge(&state, &owner, request.files.len()).await?;
    let uploads = stream::iter(request.files)
        .map(|file| {
            let (state, owner) = (&state, &owner);
            async move { create_one(state, owner, &file).await }
        })
        .buffered(AT_ONCE)
        .map(|created| match created {
            Ok(upload) => CreateOutcome::Created(Box::new(upload)),
            Err(e) => CreateOutcome::Refused(e.into_body()),
        })
        .collect()
        .await;
    Ok(Json(CreatedUploads { uploads }))
}

/// Completes several uploads of this owner; answers each one's file.
#[utoipa::path(
    post,
    path = "/api/v1/uploads/batch/complete",
    operation_id = "complete_batch",
    tag = "uploads",
    security(("user_token" = [])),
    request_body = CompleteUploads,
    responses(
        (status = 200, description = "One outcome per upload, in order: `{\"file\": File}` (as `POST /uploads/{id}/complete` answers it) or its error body (`not_found`, `upload_incomplete`, `upload_mismatch`, `content_not_accepted`...).", body = CompletedUploads),
        (status = 400, description = "Malformed JSON, no uploads or more than 100, or an id listed twice (`invalid_request`).", body = ErrorBody),
        (status = 413, description = "The request body is over 1 MiB (`request_too_large`).", body = ErrorBody),
    ),
)]
pub(crate) async fn complete(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(request): ApiJson<CompleteUploads>,
) -> ApiResult<Json<CompletedUploads>> {
    // Two completions of one upload in one batch would race each other for
    // nothing: the caller has made a mistake worth telling. Checked before
    // the charge, so a refused batch costs one request, as any 400 does.
    let mut seen = BTreeSet::new();
    if let Some(twice) = request.uploads.iter().find(|upload| !seen.insert(upload.id.as_str())) {
        return Err(ApiError::invalid(format!("upload {} is listed twice", twice.id)));
    }
    charge(&state, &owner, request.uploads.len()).await?;
    let files = stream::iter(request.uploads)
        .map(|upload| {
            let (state, owner) = (&state, &owner);
            async move { complete_one(state, owner, &upload.id, upload.parts).await }
        })
        .buffered(AT_ONCE)
        .map(|completed| match completed {
            Ok(file) => CompleteOutcome::Completed(file),
            Err(e) => CompleteOutcome::Refused(e.into_body()),
        })
        .collect()
        .await;
    Ok(Json(CompletedUploads { files }))
}

/// Refuses an empty or oversized batch; charges the owner's rate limit one
/// request per file (the request itself was charged for one).
async fn charge(state: &AppState, owner: &Owner, files: usize) -> ApiResult<()> {
    if files == 0 || files > MAX_FILES_PER_BATCH {
        return Err(ApiError::invalid(format!("a batch holds 1 to {MAX_FILES_PER_BATCH} files, not {files}")));
    }
    state.charge_rate(owner, (files - 1) as u32).await
}
