//! `POST /uploads`, parts, status, complete and abort.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use time::OffsetDateTime;
use ulid::Ulid;
use upload_core::key::{KeyDate, object_key, sanitize_filename};
use upload_core::wire::{
    CompleteUpload, Completed, CompletedPart, CreateUpload, CreatedUpload, MAX_PARTS_PER_SIGN_REQUEST, SignParts,
    SignedPart, SignedParts, StoredPart, UploadPlan, UploadState, UploadStatus, check_meta, is_base64_sha256,
};
use upload_core::{ErrorCode, PartPlan, plan_parts};

use super::{ApiJson, PathId, body_rejection, check_id};
use crate::AppState;
use crate::auth::Owner;
use crate::db::{FileRow, UploadRow};
use crate::error::{ApiError, ApiResult};
use crate::storage::{ObjectInfo, PartTarget, PostTarget, StorageError};
use crate::time_util::{datetime, now_ms, rfc3339};
use crate::upload_token::UploadAccess;

const S3: &str = "S3";
const S3_MULTIPART: &str = "S3Multipart";
const CHUNKED: &str = "Chunked";

pub(crate) async fn create(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(request): ApiJson<CreateUpload>,
) -> ApiResult<(StatusCode, Json<CreatedUpload>)> {
    let config = state.config();
    let content_type = config.constraints.check(&request.name, request.size, &request.content_type)?;
    check_meta(&request.meta).map_err(ApiError::invalid)?;
    if let Some(sha256) = &request.sha256
        && !is_base64_sha256(sha256)
    {
        return Err(ApiError::invalid("sha256 must be the base64 of a 32-byte SHA-256 digest"));
    }
    let now = now_ms();

    let id = Ulid::new().to_string();
    let today = OffsetDateTime::now_utc().date();
    let date = KeyDate { year: today.year(), month: today.month() as u8, day: today.day() };
    let key = object_key(&owner.0, date, &id, &request.name)
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "owner id is not usable"))?;
    let uploader = match request.uploader.as_deref() {
        None => {
            if request.size >= config.multipart_threshold {
                S3_MULTIPART
            } else {
                S3
            }
        }
        Some(S3) if request.size > upload_core::MAX_PART_SIZE => {
            return Err(ApiError::invalid("a single POST carries at most 5 GiB; use S3Multipart"));
        }
        Some(S3) => S3,
        Some(S3_MULTIPART) => S3_MULTIPART,
        Some(CHUNKED) => CHUNKED,
        Some(other) => {
            return Err(ApiError::invalid(format!("uploader `{other}` is not one of S3, S3Multipart, Chunked")));
        }
    };
    let multipart = uploader == S3_MULTIPART;
    // Part and chunk URLs are signed for as long as the upload may take.
    let window = if uploader == S3 { config.url_ttl } else { config.multipart_window };
    let expires_at = now + window.as_millis() as i64;

    let mut row = UploadRow {
        id: id.clone(),
        owner: owner.0.clone(),
        object_key: key.clone(),
        name: sanitize_filename(&request.name),
        size: request.size as i64,
        content_type,
        sha256: request.sha256.clone(),
        meta: serde_json::to_string(&request.meta).map_err(ApiError::internal)?,
        uploader: S3.to_owned(),
        multipart_upload_id: None,
        part_checksums: false,
        part_size: None,
        part_count: None,
        state: UploadState::Pending.as_str().to_owned(),
        created_at: now,
        expires_at,
    };
    let plan = if multipart {
        let parts = plan_parts(request.size, config.part_size)
            .map_err(|e| ApiError::new(ErrorCode::FileTooLarge, e.to_string()))?;
        // Refuse before the store does work; the insert below re-checks atomically.
        config.constraints.check_count(state.db().count_pending(&owner.0, now, config.constraints.max_files).await?)?;
        let upload_id = state.storage().create_multipart(&key, &row.content_type, request.part_checksums).await?;
        row.part_checksums = request.part_checksums;
        row.uploader = S3_MULTIPART.to_owned();
        row.multipart_upload_id = Some(upload_id.clone());
        row.part_size = Some(parts.part_size as i64);
        row.part_count = Some(i64::from(parts.part_count));
        UploadPlan::S3Multipart { upload_id, part_size: parts.part_size, part_count: parts.part_count }
    } else if uploader == CHUNKED {
        let session = match state.storage().create_chunked(&key, &row.content_type, request.size).await {
            Err(StorageError::NotSupported(what)) => {
                return Err(ApiError::invalid(format!("{what} are not offered by this storage backend")));
            }
            other => other?,
        };
        row.uploader = CHUNKED.to_owned();
        row.multipart_upload_id = Some(session);
        chunked_plan(&state, &row).await?
    } else {
        post_plan(&state, &row).await?
    };

    let multipart_upload_id = row.multipart_upload_id.clone();
    if !state.db().insert_upload(row, config.constraints.max_files, now).await? {
        if let Some(upload_id) = &multipart_upload_id {
            state.storage().abort_multipart(&key, upload_id).await?;
        }
        config.constraints.check_count(u64::from(config.constraints.max_files))?;
    }
    tracing::debug!(id, owner = owner.0, size = request.size, uploader, "upload signed");
    // The browser may finish (complete, or read the status) a little after
    // the window closes, as the API allows; the token outlives it by one TTL.
    let token_expires_at = expires_at + config.url_ttl.as_millis() as i64;
    let token = state.upload_tokens().issue(&id, &owner.0, token_expires_at);
    Ok((
        StatusCode::CREATED,
        Json(CreatedUpload {
            uploader: Some(plan.kind()),
            complete_url: format!("/api/v1/uploads/{id}/complete"),
            endpoint: Some(format!("{}/api/v1", config.public_url)),
            token: Some(token),
            token_expires_at: Some(rfc3339(token_expires_at)),
            id,
            key,
            expires_at: rfc3339(expires_at),
            upload: plan,
        }),
    ))
}

async fn post_plan(state: &AppState, row: &UploadRow) -> ApiResult<UploadPlan> {
    let form = state
        .storage()
        .presign_post(&PostTarget {
            key: &row.object_key,
            content_type: &row.content_type,
            size: row.size as u64,
            sha256: row.sha256.as_deref(),
            expires_at: datetime(row.expires_at),
        })
        .await?;
    Ok(UploadPlan::S3 { method: "POST".to_owned(), url: form.url, fields: form.fields })
}

async fn chunked_plan(state: &AppState, row: &UploadRow) -> ApiResult<UploadPlan> {
    let session = row.multipart_upload_id.as_deref().unwrap_or_default();
    let signed = state.storage().presign_chunked(session, row.size as u64, datetime(row.expires_at)).await?;
    Ok(UploadPlan::Chunked { url: signed.url, chunk_size: state.config().part_size, headers: signed.headers })
}

async fn load(state: &AppState, owner: &Owner, id: &str) -> ApiResult<UploadRow> {
    check_id(id, "upload")?;
    state.db().upload(&owner.0, id).await?.ok_or_else(|| ApiError::not_found("upload"))
}

/// Refuses anything but a pending upload, with the code its state calls for.
fn require_pending(row: &UploadRow) -> ApiResult<()> {
    match row.state() {
        UploadState::Pending => Ok(()),
        UploadState::Expired => Err(ApiError::new(ErrorCode::UploadExpired, "the upload expired and was cleaned up")),
        other => Err(ApiError::invalid_state(format!("the upload is {}", other.as_str()))),
    }
}

fn expired_error(row: &UploadRow) -> ApiError {
    ApiError::new(
        ErrorCode::UploadExpired,
        format!("the upload's signing window closed at {}", rfc3339(row.expires_at)),
    )
}

pub(crate) async fn sign_parts(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
    ApiJson(request): ApiJson<SignParts>,
) -> ApiResult<Json<SignedParts>> {
    let row = load(&state, &owner, &id).await?;
    require_pending(&row)?;
    let (Some(upload_id), Some(part_count)) = (&row.multipart_upload_id, row.part_count) else {
        return Err(ApiError::invalid_state(format!("the upload's plan is {}, not S3Multipart", row.uploader)));
    };
    let now = now_ms();
    if now >= row.expires_at {
        return Err(expired_error(&row));
    }
    if request.part_numbers.is_empty() || request.part_numbers.len() > MAX_PARTS_PER_SIGN_REQUEST {
        return Err(ApiError::invalid(format!("part_numbers must hold 1 to {MAX_PARTS_PER_SIGN_REQUEST} numbers")));
    }
    let mut seen = BTreeSet::new();
    for &n in &request.part_numbers {
        if n == 0 || i64::from(n) > part_count {
            return Err(ApiError::invalid(format!("part number {n} is outside 1..={part_count}")));
        }
        if !seen.insert(n) {
            return Err(ApiError::invalid(format!("part number {n} is asked for twice")));
        }
    }
    if row.part_checksums
        && let Some(n) = request.part_numbers.iter().find(|n| !request.sha256.contains_key(n))
    {
        return Err(ApiError::invalid(format!(
            "this upload was created with part_checksums: give the sha256 of part {n}"
        )));
    }
    for (n, sha256) in &request.sha256 {
        if !seen.contains(n) {
            return Err(ApiError::invalid(format!("sha256 given for part {n}, which is not in part_numbers")));
        }
        if !is_base64_sha256(sha256) {
            return Err(ApiError::invalid(format!("sha256 of part {n} is not the base64 of a SHA-256 digest")));
        }
    }
    // A URL never outlives the upload's window, and one that would live
    // under a second is of no use (SigV4 counts whole seconds).
    let ttl = state.config().url_ttl.min(std::time::Duration::from_secs(((row.expires_at - now) / 1000) as u64));
    if ttl.is_zero() {
        return Err(expired_error(&row));
    }
    let expires_at = rfc3339(now + ttl.as_millis() as i64);
    let mut parts = Vec::with_capacity(request.part_numbers.len());
    let plan = PartPlan {
        total: row.size as u64,
        part_size: row.part_size.unwrap_or(0) as u64,
        part_count: part_count as u32,
    };
    for &n in &request.part_numbers {
        let target = PartTarget {
            key: &row.object_key,
            upload_id,
            part_number: n,
            length: plan.part_range(n).map_or(0, |(_, len)| len),
            sha256: request.sha256.get(&n).map(String::as_str),
        };
        let signed = state.storage().presign_part(&target, ttl).await?;
        parts.push(SignedPart {
            part_number: n,
            method: "PUT".to_owned(),
            url: signed.url,
            headers: signed.headers,
            expires_at: expires_at.clone(),
        });
    }
    Ok(Json(SignedParts { parts }))
}

pub(crate) async fn status(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
) -> ApiResult<Json<UploadStatus>> {
    let row = load(&state, &owner, &id).await?;
    let pending = row.state() == UploadState::Pending;
    let (upload, parts) = match (&row.multipart_upload_id, row.part_size, row.part_count) {
        (Some(upload_id), Some(part_size), Some(part_count)) => {
            let parts = if pending { stored_parts(&state, &row, upload_id).await? } else { Vec::new() };
            let plan = UploadPlan::S3Multipart {
                upload_id: upload_id.clone(),
                part_size: part_size as u64,
                part_count: part_count as u32,
            };
            (plan, parts)
        }
        _ if row.uploader == CHUNKED => {
            let plan = if pending && now_ms() < row.expires_at {
                chunked_plan(&state, &row).await?
            } else {
                UploadPlan::Chunked {
                    url: String::new(),
                    chunk_size: state.config().part_size,
                    headers: BTreeMap::new(),
                }
            };
            (plan, Vec::new())
        }
        _ if pending && now_ms() < row.expires_at => (post_plan(&state, &row).await?, Vec::new()),
        _ => (UploadPlan::S3 { method: "POST".to_owned(), url: String::new(), fields: BTreeMap::new() }, Vec::new()),
    };
    Ok(Json(UploadStatus {
        state: row.state(),
        name: row.name.clone(),
        size: row.size as u64,
        content_type: row.content_type.clone(),
        key: row.object_key.clone(),
        expires_at: rfc3339(row.expires_at),
        part_checksums: row.part_checksums,
        id: row.id,
        upload,
        parts,
    }))
}

async fn stored_parts(state: &AppState, row: &UploadRow, upload_id: &str) -> ApiResult<Vec<StoredPart>> {
    match state.storage().list_parts(&row.object_key, upload_id).await {
        Ok(parts) => Ok(parts),
        Err(StorageError::NotFound) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn complete(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Completed>> {
    let body = body.map_err(body_rejection)?;
    // `{}` and an empty body mean the same: no parts.
    let request: CompleteUpload = if body.iter().all(u8::is_ascii_whitespace) {
        CompleteUpload::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?
    };
    let row = load(&state, &owner, &id).await?;
    if row.state() == UploadState::Completed {
        return existing_file(&state, &owner, &id).await;
    }
    require_pending(&row)?;

    let info = match (&row.multipart_upload_id, row.part_size, row.part_count) {
        (Some(upload_id), Some(part_size), Some(part_count)) => {
            let parts = request.parts.ok_or_else(|| ApiError::invalid("S3Multipart uploads complete with `parts`"))?;
            complete_multipart(&state, &row, upload_id, part_size as u64, part_count as u32, parts).await?
        }
        _ => {
            if request.parts.is_some() {
                return Err(ApiError::invalid_state("this upload is a single POST; complete it without `parts`"));
            }
            // Sealed: a form replayed from now on cannot change what is verified.
            match state.storage().head_sealed(&row.object_key).await? {
                Some(info) => info,
                None if now_ms() >= row.expires_at => {
                    state.db().finish_pending(&row.id, UploadState::Expired, now_ms()).await?;
                    return Err(expired_error(&row));
                }
                None => {
                    return Err(ApiError::new(ErrorCode::UploadIncomplete, "the object is not in storage yet"));
                }
            }
        }
    };
    verify(&state, &row, &info).await?;

    let file = FileRow {
        id: row.id.clone(),
        owner: row.owner.clone(),
        object_key: row.object_key.clone(),
        name: row.name.clone(),
        size: info.size as i64,
        content_type: row.content_type.clone(),
        // Only digests something verified: what the store reports (the
        // whole-object SHA-256, or S3's composite `<digest>-<parts>` for a
        // multipart upload with part checksums), else the declared digest of
        // a single POST, which the store checked against the signed form.
        // A whole-file digest declared for a multipart upload is not recorded:
        // nothing checked it.
        sha256: info.checksum_sha256.clone().or_else(|| (row.uploader == S3).then(|| row.sha256.clone()).flatten()),
        meta: row.meta.clone(),
        created_at: now_ms(),
    };
    if !state.db().complete(&file, now_ms()).await? {
        // Someone else finished it meanwhile (a concurrent complete).
        return existing_file(&state, &owner, &id).await;
    }
    tracing::info!(id, owner = owner.0, size = info.size, "upload completed");
    Ok(Json(Completed { file: file.into_record() }))
}

async fn existing_file(state: &AppState, owner: &Owner, id: &str) -> ApiResult<Json<Completed>> {
    let row = load(state, owner, id).await?;
    if row.state() != UploadState::Completed {
        require_pending(&row)?;
        return Err(ApiError::invalid_state("the upload changed state meanwhile; ask GET /uploads/{id}"));
    }
    match state.db().file(&owner.0, id).await? {
        Some(file) => Ok(Json(Completed { file: file.into_record() })),
        None => Err(ApiError::invalid_state("the upload completed, but its file has since been deleted")),
    }
}

async fn complete_multipart(
    state: &AppState,
    row: &UploadRow,
    upload_id: &str,
    part_size: u64,
    part_count: u32,
    mut parts: Vec<CompletedPart>,
) -> ApiResult<ObjectInfo> {
    parts.sort_by_key(|p| p.part_number);
    let expected: Vec<u32> = (1..=part_count).collect();
    if parts.iter().map(|p| p.part_number).collect::<Vec<_>>() != expected {
        return Err(ApiError::invalid(format!("parts must list every part number 1..={part_count} once")));
    }
    let stored = match state.storage().list_parts(&row.object_key, upload_id).await {
        Ok(stored) => stored,
        // The multipart upload is gone: an earlier complete may have
        // assembled the object and then lost its answer; look for it.
        Err(StorageError::NotFound) => {
            return match state.storage().head(&row.object_key).await? {
                Some(info) => Ok(info),
                None => Err(ApiError::new(ErrorCode::UploadIncomplete, "the multipart upload is gone from storage")),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let by_number: BTreeMap<u32, &StoredPart> = stored.iter().map(|p| (p.part_number, p)).collect();
    let total = row.size as u64;
    for part in &parts {
        let Some(stored) = by_number.get(&part.part_number) else {
            return Err(ApiError::new(
                ErrorCode::UploadIncomplete,
                format!("part {} is not in storage", part.part_number),
            ));
        };
        if trim_etag(&stored.etag) != trim_etag(&part.etag) {
            return Err(ApiError::new(
                ErrorCode::UploadIncomplete,
                format!(
                    "part {}'s ETag differs from the stored part; upload it again or ask GET /uploads/{{id}}",
                    part.part_number
                ),
            ));
        }
        let offset = u64::from(part.part_number - 1) * part_size;
        let want = part_size.min(total - offset);
        if stored.size != want {
            fail(state, row).await?;
            return Err(ApiError::new(
                ErrorCode::UploadMismatch,
                format!(
                    "part {} holds {} bytes, the plan says {want}; the upload was discarded",
                    part.part_number, stored.size
                ),
            ));
        }
    }
    // What the store listed (ETags and part checksums), in the client's order.
    let stored_parts: Vec<StoredPart> = parts.iter().map(|p| by_number[&p.part_number].clone()).collect();
    match state.storage().complete_multipart(&row.object_key, upload_id, &stored_parts).await {
        Ok(()) | Err(StorageError::NotFound) => {}
        Err(StorageError::Rejected(why)) => {
            return Err(ApiError::new(
                ErrorCode::UploadIncomplete,
                format!("the store refused to assemble the parts: {why}"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    state
        .storage()
        .head(&row.object_key)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UploadIncomplete, "the assembled object is not in storage"))
}

fn trim_etag(etag: &str) -> &str {
    etag.trim().trim_start_matches("W/").trim_matches('"')
}

/// Compares what storage holds with the declaration; on a mismatch the
/// object is deleted and the upload marked failed.
async fn verify(state: &AppState, row: &UploadRow, info: &ObjectInfo) -> ApiResult<()> {
    let mut problems = Vec::new();
    if info.size != row.size as u64 {
        problems.push(format!("size is {} bytes, declared {}", info.size, row.size));
    }
    let stored_type = info.content_type.as_deref().unwrap_or("");
    if !stored_type.eq_ignore_ascii_case(&row.content_type) {
        problems.push(format!("type is `{stored_type}`, declared `{}`", row.content_type));
    }
    // A whole-file digest is compared wherever the store reports one for the
    // whole object (single POST, `Chunked`); for S3Multipart it reports a
    // composite of the parts' digests, which a whole-file digest cannot match.
    if let (Some(declared), Some(stored)) = (&row.sha256, &info.checksum_sha256)
        && row.uploader != S3_MULTIPART
        && declared != stored
    {
        problems.push("SHA-256 differs from the declared one".to_owned());
    }
    if problems.is_empty() {
        return Ok(());
    }
    fail(state, row).await?;
    Err(ApiError::new(
        ErrorCode::UploadMismatch,
        format!("stored object differs from the declaration: {}; it was deleted", problems.join("; ")),
    ))
}

async fn fail(state: &AppState, row: &UploadRow) -> ApiResult<()> {
    if let Some(upload_id) = &row.multipart_upload_id {
        state.storage().abort_multipart(&row.object_key, upload_id).await?;
    }
    state.storage().delete(&row.object_key).await?;
    state.db().finish_pending(&row.id, UploadState::Failed, now_ms()).await?;
    tracing::warn!(id = row.id, "upload failed verification; object deleted");
    Ok(())
}

pub(crate) async fn abort(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let row = load(&state, &owner, &id).await?;
    match row.state() {
        UploadState::Completed => {
            Err(ApiError::invalid_state("the upload is completed; delete the file with DELETE /files/{id}"))
        }
        UploadState::Aborted | UploadState::Failed | UploadState::Expired => Ok(StatusCode::NO_CONTENT),
        UploadState::Pending => {
            // Storage first: if it fails, the upload stays pending and the
            // client (or the sweeper) can try again.
            if let Some(upload_id) = &row.multipart_upload_id {
                state.storage().abort_multipart(&row.object_key, upload_id).await?;
            }
            state.storage().delete(&row.object_key).await?;
            if !state.db().finish_pending(&row.id, UploadState::Aborted, now_ms()).await? {
                let now = load(&state, &owner, &id).await?;
                if now.state() == UploadState::Completed {
                    return Err(ApiError::invalid_state("the upload completed meanwhile"));
                }
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
