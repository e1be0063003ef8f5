//! `POST /uploads`, parts, status, complete and abort.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use time::OffsetDateTime;
use upload_core::key::{KeyDate, object_key, sanitize_filename};
use upload_core::wire::{
    CompleteUpload, Completed, CompletedPart, CreateUpload, CreatedUpload, ErrorBody, MAX_PARTS_PER_SIGN_REQUEST,
    SignParts, SignedPart, SignedParts, StoredPart, UploadPlan, UploadState, UploadStatus, UploaderKind, check_meta,
    is_base64_sha256,
};
use upload_core::{PartPlan, plan_parts};

use super::{ApiJson, PathId, parse_id};
use crate::AppState;
use crate::auth::Owner;
use crate::config::Config;
use crate::db::{FileRow, UploadRow};
use crate::error::{ApiError, ApiResult};
use crate::hooks::{FileCandidate, RefusalKind, UploadHooks};
use crate::id::UploadId;
use crate::metrics::FailReason;
use crate::plan::StoredPlan;
use crate::sniff::{SNIFF_WINDOW, SniffMode, check_accept, sniff};
use crate::storage::{ObjectInfo, PartTarget, PostTarget, StorageError};
use crate::time_util::{datetime, now_ms, rfc3339};
use crate::upload_token::UploadAccess;

/// Declares a file; answers how to send its bytes straight to the store.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "uploads",
    security(("user_token" = [])),
    request_body = CreateUpload,
    responses(
        (status = 201, description = "Signed: the plan, and a token for this upload alone.", body = CreatedUpload),
        (status = 400, description = "Malformed JSON or a bad value: size 0, a bad type, name, checksum or `meta`, a plan the store cannot offer (`invalid_request`).", body = ErrorBody),
        (status = 409, description = "The owner already has `max_files` pending uploads (`too_many_files`).", body = ErrorBody),
        (status = 413, description = "Declared size over `max_file_size` (`file_too_large`), or the request body over 1 MiB (`request_too_large`).", body = ErrorBody),
        (status = 415, description = "Type or extension not in `accept` (`type_not_accepted`).", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    owner: Owner,
    ApiJson(request): ApiJson<CreateUpload>,
) -> ApiResult<(StatusCode, Json<CreatedUpload>)> {
    let answer = create_one(&state, &owner, &request).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// One declaration checked, signed and recorded: a single create, and each
/// of a batch's.
pub(super) async fn create_one(state: &AppState, owner: &Owner, request: &CreateUpload) -> ApiResult<CreatedUpload> {
    let config = state.config();
    let content_type = check_declaration(config, request)?;
    let kind = choose_plan(config, request)?;
    let id = UploadId::new();
    let key = new_key(owner, &id, request)?;
    let now = now_ms();
    let stored = open_plan(state, owner, request, kind, &key, &content_type, now).await?;
    // Part and chunk URLs are signed for as long as the upload may take.
    let window = if kind == UploaderKind::S3 { config.url_ttl } else { config.multipart_window };
    let row = UploadRow {
        id,
        owner: owner.0.clone(),
        object_key: key,
        name: sanitize_filename(&request.name),
        size: request.size,
        content_type,
        sha256: request.sha256.clone(),
        meta: serde_json::to_string(&request.meta).map_err(ApiError::internal)?,
        plan: stored,
        state: UploadState::Pending,
        created_at: now,
        expires_at: now + window.as_millis() as i64,
    };
    let plan = signed_plan(state, &row).await?;
    let answer = created_answer(state, &row, plan);
    record(state, row, now).await?;
    state.metrics().upload_created(kind);
    tracing::debug!(id = answer.id, owner = owner.0, size = request.size, uploader = %kind, "upload signed");
    Ok(answer)
}

/// The create answer: the signed plan, and a token for this upload alone
/// that an app can hand to the browser with it. The browser may finish
/// (complete, or read the status) a little after the window closes, as the
/// API allows, so the token outlives it by one URL lifetime.
fn created_answer(state: &AppState, row: &UploadRow, plan: UploadPlan) -> CreatedUpload {
    let config = state.config();
    let token_expires_at = row.expires_at + config.url_ttl.as_millis() as i64;
    let token = state.upload_tokens().issue(row.id.as_str(), &row.owner, token_expires_at);
    CreatedUpload {
        uploader: Some(plan.kind()),
        complete_url: format!("/api/v1/uploads/{}/complete", row.id),
        endpoint: Some(format!("{}/api/v1", config.public_url)),
        token: Some(token),
        token_expires_at: Some(rfc3339(token_expires_at)),
        id: row.id.to_string(),
        key: row.object_key.clone(),
        expires_at: rfc3339(row.expires_at),
        upload: plan,
    }
}

/// Refuses a declaration the constraints or the contract do not allow;
/// returns the normalised content type.
fn check_declaration(config: &Config, request: &CreateUpload) -> ApiResult<String> {
    let content_type = config.constraints.check(&request.name, request.size, &request.content_type)?;
    check_meta(&request.meta).map_err(ApiError::invalid)?;
    if let Some(sha256) = &request.sha256
        && !is_base64_sha256(sha256)
    {
        return Err(ApiError::invalid("sha256 must be the base64 of a 32-byte SHA-256 digest"));
    }
    Ok(content_type)
}

/// The plan the client asked for, or the one its size calls for.
fn choose_plan(config: &Config, request: &CreateUpload) -> ApiResult<UploaderKind> {
    match request.uploader {
        None if request.size >= config.multipart_threshold => Ok(UploaderKind::S3Multipart),
        None => Ok(UploaderKind::S3),
        Some(UploaderKind::S3) if request.size > upload_core::MAX_PART_SIZE => {
            Err(ApiError::invalid("a single POST carries at most 5 GiB; use S3Multipart"))
        }
        Some(kind) => Ok(kind),
    }
}

/// `uploads/<owner>/<yyyy>/<mm>/<dd>/<id>/<safe-name>` for today.
fn new_key(owner: &Owner, id: &UploadId, request: &CreateUpload) -> ApiResult<String> {
    let today = OffsetDateTime::now_utc().date();
    let date = KeyDate { year: today.year(), month: today.month() as u8, day: today.day() };
    object_key(&owner.0, date, id.as_str(), &request.name).map_err(|_| ApiError::unauthorized("owner id is not usable"))
}

/// What the store must make before the browser can send a byte: a
/// multipart upload, a chunked session, or nothing for a single POST.
async fn open_plan(
    state: &AppState,
    owner: &Owner,
    request: &CreateUpload,
    kind: UploaderKind,
    key: &str,
    content_type: &str,
    now: i64,
) -> ApiResult<StoredPlan> {
    match kind {
        UploaderKind::S3 => Ok(StoredPlan::S3),
        UploaderKind::S3Multipart => {
            let config = state.config();
            let parts =
                plan_parts(request.size, config.part_size).map_err(|e| ApiError::file_too_large(e.to_string()))?;
            // Refuse before the store does work; the insert re-checks atomically.
            let pending = state.db().count_pending(&owner.0, now, config.constraints.max_files).await?;
            config.constraints.check_count(pending)?;
            let upload_id = state.storage().create_multipart(key, content_type, request.part_checksums).await?;
            Ok(StoredPlan::S3Multipart {
                upload_id,
                part_size: parts.part_size,
                part_count: parts.part_count,
                part_checksums: request.part_checksums,
            })
        }
        UploaderKind::Chunked => match state.storage().create_chunked(key, content_type, request.size).await {
            Ok(session) => Ok(StoredPlan::Chunked { session }),
            Err(StorageError::NotSupported(what)) => {
                Err(ApiError::invalid(format!("{what} are not offered by this storage backend")))
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// Records the pending upload unless its owner has too many; then what the
/// store made for it is dropped and the answer is `too_many_files`.
async fn record(state: &AppState, row: UploadRow, now: i64) -> ApiResult<()> {
    let max_files = state.config().constraints.max_files;
    let (key, plan) = (row.object_key.clone(), row.plan.clone());
    if !state.db().insert_upload(row, max_files, now).await? {
        plan.release(state.storage(), &key).await?;
        state.config().constraints.check_count(u64::from(max_files))?;
    }
    Ok(())
}

/// The plan as the browser needs it, with fresh signatures.
async fn signed_plan(state: &AppState, row: &UploadRow) -> ApiResult<UploadPlan> {
    Ok(match &row.plan {
        StoredPlan::S3 => {
            let form = state
                .storage()
                .presign_post(&PostTarget {
                    key: &row.object_key,
                    content_type: &row.content_type,
                    size: row.size,
                    sha256: row.sha256.as_deref(),
                    expires_at: datetime(row.expires_at),
                })
                .await?;
            UploadPlan::S3 { method: "POST".to_owned(), url: form.url, fields: form.fields }
        }
        StoredPlan::S3Multipart { .. } => unsigned_plan(state.config(), &row.plan),
        StoredPlan::Chunked { session } => {
            let signed = state.storage().presign_chunked(session, row.size, datetime(row.expires_at)).await?;
            UploadPlan::Chunked { url: signed.url, chunk_size: state.config().part_size, headers: signed.headers }
        }
    })
}

/// The plan without signatures, once nothing may be sent any more.
fn unsigned_plan(config: &Config, plan: &StoredPlan) -> UploadPlan {
    match plan {
        StoredPlan::S3 => UploadPlan::S3 { method: "POST".to_owned(), url: String::new(), fields: BTreeMap::new() },
        StoredPlan::S3Multipart { upload_id, part_size, part_count, part_checksums } => UploadPlan::S3Multipart {
            upload_id: upload_id.clone(),
            part_size: *part_size,
            part_count: *part_count,
            part_checksums: *part_checksums,
        },
        StoredPlan::Chunked { .. } => {
            UploadPlan::Chunked { url: String::new(), chunk_size: config.part_size, headers: BTreeMap::new() }
        }
    }
}

async fn load(state: &AppState, owner: &Owner, id: &str) -> ApiResult<UploadRow> {
    let id = parse_id(id, "upload")?;
    state.db().upload(&owner.0, &id).await?.ok_or_else(|| ApiError::not_found("upload"))
}

/// Refuses anything but a pending upload, with the code its state calls for.
fn require_pending(row: &UploadRow) -> ApiResult<()> {
    match row.state {
        UploadState::Pending => Ok(()),
        UploadState::Expired => Err(ApiError::upload_expired("the upload expired and was cleaned up")),
        other => Err(ApiError::invalid_state(format!("the upload is {other}"))),
    }
}

fn expired_error(row: &UploadRow) -> ApiError {
    ApiError::upload_expired(format!("the upload's signing window closed at {}", rfc3339(row.expires_at)))
}

/// Part URLs of a pending multipart upload, signed now.
#[utoipa::path(
    post,
    path = "/api/v1/uploads/{id}/parts",
    tag = "uploads",
    security(("user_token" = []), ("upload_token" = [])),
    params(("id" = String, Path, description = "The upload id (a ULID)")),
    request_body = SignParts,
    responses(
        (status = 200, description = "One signed PUT per part number asked for, in order.", body = SignedParts),
        (status = 400, description = "Malformed JSON, a part number out of range or asked twice, a missing or bad checksum (`invalid_request`).", body = ErrorBody),
        (status = 404, description = "No such upload for this owner or token (`not_found`).", body = ErrorBody),
        (status = 409, description = "The upload is not pending, or not S3Multipart (`invalid_state`).", body = ErrorBody),
        (status = 410, description = "The upload's window has closed (`upload_expired`).", body = ErrorBody),
        (status = 413, description = "The request body is over 1 MiB (`request_too_large`).", body = ErrorBody),
    ),
)]
pub(crate) async fn sign_parts(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
    ApiJson(request): ApiJson<SignParts>,
) -> ApiResult<Json<SignedParts>> {
    let row = load(&state, &owner, &id).await?;
    require_pending(&row)?;
    let StoredPlan::S3Multipart { upload_id, part_size, part_count, part_checksums } = &row.plan else {
        return Err(ApiError::invalid_state(format!("the upload's plan is {}, not S3Multipart", row.plan.kind())));
    };
    let now = now_ms();
    if now >= row.expires_at {
        return Err(expired_error(&row));
    }
    check_part_request(&request, *part_count, *part_checksums)?;
    let ttl = part_url_ttl(state.config(), &row, now)?;
    let expires_at = rfc3339(now + ttl.as_millis() as i64);
    let plan = PartPlan { total: row.size, part_size: *part_size, part_count: *part_count };
    let mut parts = Vec::with_capacity(request.part_numbers.len());
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

/// Part numbers within the plan, each once, with a well-formed SHA-256 for
/// each (required when the upload was created with `part_checksums`).
fn check_part_request(request: &SignParts, part_count: u32, part_checksums: bool) -> ApiResult<()> {
    if request.part_numbers.is_empty() || request.part_numbers.len() > MAX_PARTS_PER_SIGN_REQUEST {
        return Err(ApiError::invalid(format!("part_numbers must hold 1 to {MAX_PARTS_PER_SIGN_REQUEST} numbers")));
    }
    let mut seen = BTreeSet::new();
    for &n in &request.part_numbers {
        if n == 0 || n > part_count {
            return Err(ApiError::invalid(format!("part number {n} is outside 1..={part_count}")));
        }
        if !seen.insert(n) {
            return Err(ApiError::invalid(format!("part number {n} is asked for twice")));
        }
    }
    if part_checksums && let Some(n) = request.part_numbers.iter().find(|n| !request.sha256.contains_key(n)) {
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
    Ok(())
}

/// A URL never outlives the upload's window, and one that would live under
/// a second is of no use (SigV4 counts whole seconds).
fn part_url_ttl(config: &Config, row: &UploadRow, now: i64) -> ApiResult<Duration> {
    let ttl = config.url_ttl.min(Duration::from_secs(((row.expires_at - now) / 1000) as u64));
    if ttl.is_zero() {
        return Err(expired_error(row));
    }
    Ok(ttl)
}

/// An upload's state, its plan (freshly signed while pending) and the parts the store holds.
#[utoipa::path(
    get,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    security(("user_token" = []), ("upload_token" = [])),
    params(("id" = String, Path, description = "The upload id (a ULID)")),
    responses(
        (status = 200, description = "The upload.", body = UploadStatus),
        (status = 404, description = "No such upload for this owner or token (`not_found`).", body = ErrorBody),
    ),
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
) -> ApiResult<Json<UploadStatus>> {
    let row = load(&state, &owner, &id).await?;
    let pending = row.state == UploadState::Pending;
    let upload = if pending && now_ms() < row.expires_at {
        signed_plan(&state, &row).await?
    } else {
        unsigned_plan(state.config(), &row.plan)
    };
    let (parts, part_checksums) = match &row.plan {
        StoredPlan::S3Multipart { upload_id, part_checksums, .. } => {
            let parts = if pending { stored_parts(&state, &row, upload_id).await? } else { Vec::new() };
            (parts, *part_checksums)
        }
        StoredPlan::S3 | StoredPlan::Chunked { .. } => (Vec::new(), false),
    };
    Ok(Json(UploadStatus {
        id: row.id.to_string(),
        state: row.state,
        name: row.name,
        size: row.size,
        content_type: row.content_type,
        key: row.object_key,
        expires_at: rfc3339(row.expires_at),
        upload,
        part_checksums,
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

/// Checks what the store holds against the declaration and records the file.
#[utoipa::path(
    post,
    path = "/api/v1/uploads/{id}/complete",
    tag = "uploads",
    security(("user_token" = []), ("upload_token" = [])),
    params(("id" = String, Path, description = "The upload id (a ULID)")),
    request_body(content = CompleteUpload, description = "`{}` or no body at all for S3 and Chunked; every part for S3Multipart."),
    responses(
        (status = 200, description = "The recorded file (the same one again on a completed upload).", body = Completed),
        (status = 400, description = "Malformed JSON, or parts missing or listed twice (`invalid_request`).", body = ErrorBody),
        (status = 404, description = "No such upload for this owner or token (`not_found`).", body = ErrorBody),
        (status = 409, description = "The object or a part is not in the store, or an ETag differs (`upload_incomplete`); the upload is not pending or `parts` does not fit its plan (`invalid_state`).", body = ErrorBody),
        (status = 410, description = "The window closed with nothing stored (`upload_expired`).", body = ErrorBody),
        (status = 413, description = "The request body is over 1 MiB (`request_too_large`).", body = ErrorBody),
        (status = 422, description = "The store holds something else than declared (`upload_mismatch`), bytes the accept list refuses (`content_not_accepted`), or the application refused it (`refused_by_app`); the object is deleted, the upload `failed`.", body = ErrorBody),
    ),
)]
pub(crate) async fn complete(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Completed>> {
    let request = parse_complete(&body?)?;
    Ok(Json(complete_one(&state, &owner, &id, request.parts).await?))
}

/// One upload checked against the store and recorded: a single complete,
/// and each of a batch's.
pub(super) async fn complete_one(
    state: &AppState,
    owner: &Owner,
    id: &str,
    parts: Option<Vec<CompletedPart>>,
) -> ApiResult<Completed> {
    let row = load(state, owner, id).await?;
    if row.state == UploadState::Completed {
        return existing_file(state, owner, &row.id).await;
    }
    require_pending(&row)?;
    let info = stored_object(state, &row, parts).await?;
    verify(state, &row, &info).await?;
    let detected_type = detect_type(state, &row).await?;
    let file = file_row(&row, &info, detected_type);
    let hooks = state.hooks();
    ask_before_record(state, &row, &file, hooks.as_ref()).await?;
    if !state.db().complete(&file, now_ms()).await? {
        // Someone else finished it meanwhile (a concurrent complete).
        return existing_file(state, owner, &row.id).await;
    }
    state.metrics().upload_completed(row.plan.kind(), info.size);
    tracing::info!(id = %row.id, owner = owner.0, size = info.size, "upload completed");
    let record = file.into_record();
    // On a task of its own: the answer never waits for the app's code, and
    // its panic cannot take the request down.
    let recorded = record.clone();
    tokio::spawn(async move { hooks.after_record(&recorded).await });
    Ok(Completed { file: record })
}

/// The application's `before_record`: a rejection fails the upload as a
/// mismatch does; "cannot decide now" leaves it pending for another try.
async fn ask_before_record(
    state: &AppState,
    row: &UploadRow,
    file: &FileRow,
    hooks: &dyn UploadHooks,
) -> ApiResult<()> {
    let candidate = FileCandidate {
        id: file.id.to_string(),
        owner: file.owner.clone(),
        key: file.object_key.clone(),
        name: file.name.clone(),
        size: file.size as u64,
        content_type: file.content_type.clone(),
        detected_type: file.detected_type.clone(),
        sha256: file.sha256.clone(),
        meta: serde_json::from_str(&file.meta).unwrap_or_default(),
        plan: row.plan.kind(),
    };
    let Err(refusal) = hooks.before_record(&candidate).await else {
        return Ok(());
    };
    match refusal.kind() {
        RefusalKind::Reject => {
            fail(state, row, FailReason::RefusedByApp).await?;
            Err(ApiError::refused_by_app(format!(
                "{}; the upload failed and the object was deleted",
                refusal.message()
            )))
        }
        RefusalKind::Unavailable => Err(ApiError::unavailable(format!(
            "{}; the upload is still pending: complete it again later",
            refusal.message()
        ))),
    }
}

/// `{}` and an empty body mean the same: no parts.
fn parse_complete(body: &[u8]) -> ApiResult<CompleteUpload> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CompleteUpload::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))
}

/// What the store holds for the upload, assembling a multipart upload first.
async fn stored_object(state: &AppState, row: &UploadRow, parts: Option<Vec<CompletedPart>>) -> ApiResult<ObjectInfo> {
    if let StoredPlan::S3Multipart { upload_id, part_size, part_count, .. } = &row.plan {
        let parts = parts.ok_or_else(|| ApiError::invalid("S3Multipart uploads complete with `parts`"))?;
        return complete_multipart(state, row, upload_id, *part_size, *part_count, parts).await;
    }
    if parts.is_some() {
        return Err(ApiError::invalid_state("this upload is a single POST; complete it without `parts`"));
    }
    // Sealed: a form replayed from now on cannot change what is verified.
    match state.storage().head_sealed(&row.object_key).await? {
        Some(info) => Ok(info),
        None if now_ms() >= row.expires_at => {
            if state.db().finish_pending(&row.owner, &row.id, UploadState::Expired, now_ms()).await? {
                state.metrics().upload_expired(row.plan.kind());
            }
            Err(expired_error(row))
        }
        None => Err(ApiError::upload_incomplete("the object is not in storage yet")),
    }
}

/// The type the object's first bytes show (`UPLOAD_SNIFF`). Under
/// `enforce`, bytes that contradict the accept list fail the upload and
/// delete the object, as a mismatch with the declaration does.
async fn detect_type(state: &AppState, row: &UploadRow) -> ApiResult<Option<String>> {
    let config = state.config();
    if config.sniff == SniffMode::Off {
        return Ok(None);
    }
    let prefix = match state.storage().read_prefix(&row.object_key, SNIFF_WINDOW).await {
        Ok(prefix) => prefix,
        // Verified a moment ago, so gone since: a concurrent abort or failure.
        Err(StorageError::NotFound) => return Err(ApiError::upload_incomplete("the object left storage meanwhile")),
        Err(e) => return Err(e.into()),
    };
    let sniffed = sniff(&prefix);
    if config.sniff == SniffMode::Enforce
        && let Err(why) = check_accept(&config.constraints.accept, &row.name, &row.content_type, sniffed)
    {
        fail(state, row, FailReason::ContentNotAccepted).await?;
        return Err(ApiError::content_not_accepted(format!("{why}; the upload failed and the object was deleted")));
    }
    Ok(sniffed.mime.map(str::to_owned))
}

/// The file to record: the verified size, the digest something checked,
/// and the type the bytes show.
fn file_row(row: &UploadRow, info: &ObjectInfo, detected_type: Option<String>) -> FileRow {
    FileRow {
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
        sha256: info
            .checksum_sha256
            .clone()
            .or_else(|| (row.plan == StoredPlan::S3).then(|| row.sha256.clone()).flatten()),
        detected_type,
        meta: row.meta.clone(),
        created_at: now_ms(),
    }
}

async fn existing_file(state: &AppState, owner: &Owner, id: &UploadId) -> ApiResult<Completed> {
    let row = state.db().upload(&owner.0, id).await?.ok_or_else(|| ApiError::not_found("upload"))?;
    if row.state != UploadState::Completed {
        require_pending(&row)?;
        return Err(ApiError::invalid_state("the upload changed state meanwhile; ask GET /uploads/{id}"));
    }
    match state.db().file(&owner.0, id).await? {
        Some(file) => Ok(Completed { file: file.into_record() }),
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
    if !parts.iter().map(|p| p.part_number).eq(1..=part_count) {
        return Err(ApiError::invalid(format!("parts must list every part number 1..={part_count} once")));
    }
    let stored = match state.storage().list_parts(&row.object_key, upload_id).await {
        Ok(stored) => stored,
        // The multipart upload is gone: an earlier complete may have
        // assembled the object and then lost its answer; look for it.
        Err(StorageError::NotFound) => {
            return match state.storage().head(&row.object_key).await? {
                Some(info) => Ok(info),
                None => Err(ApiError::upload_incomplete("the multipart upload is gone from storage")),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let stored_parts = match match_parts(row, &parts, &stored, part_size)? {
        Ok(matched) => matched,
        Err(mismatch) => {
            fail(state, row, FailReason::Mismatch).await?;
            return Err(mismatch);
        }
    };
    match state.storage().complete_multipart(&row.object_key, upload_id, &stored_parts).await {
        Ok(()) | Err(StorageError::NotFound) => {}
        Err(StorageError::Rejected(why)) => {
            return Err(ApiError::upload_incomplete(format!("the store refused to assemble the parts: {why}")));
        }
        Err(e) => return Err(e.into()),
    }
    state
        .storage()
        .head(&row.object_key)
        .await?
        .ok_or_else(|| ApiError::upload_incomplete("the assembled object is not in storage"))
}

/// The stored part for each part the client names, in its order. A part
/// missing or with another ETag is `upload_incomplete` (the outer error: the
/// client can send it again); a part of the wrong size makes the whole
/// upload fail (the inner error: the caller discards it).
fn match_parts(
    row: &UploadRow,
    parts: &[CompletedPart],
    stored: &[StoredPart],
    part_size: u64,
) -> ApiResult<Result<Vec<StoredPart>, ApiError>> {
    let by_number: BTreeMap<u32, &StoredPart> = stored.iter().map(|p| (p.part_number, p)).collect();
    let mut matched = Vec::with_capacity(parts.len());
    for part in parts {
        let Some(stored) = by_number.get(&part.part_number) else {
            return Err(ApiError::upload_incomplete(format!("part {} is not in storage", part.part_number)));
        };
        if trim_etag(&stored.etag) != trim_etag(&part.etag) {
            return Err(ApiError::upload_incomplete(format!(
                "part {}'s ETag differs from the stored part; upload it again or ask GET /uploads/{{id}}",
                part.part_number
            )));
        }
        let offset = u64::from(part.part_number - 1) * part_size;
        let want = part_size.min(row.size - offset);
        if stored.size != want {
            return Ok(Err(ApiError::upload_mismatch(format!(
                "part {} holds {} bytes, the plan says {want}; the upload was discarded",
                part.part_number, stored.size
            ))));
        }
        matched.push((*stored).clone());
    }
    Ok(Ok(matched))
}

fn trim_etag(etag: &str) -> &str {
    etag.trim().trim_start_matches("W/").trim_matches('"')
}

/// Compares what storage holds with the declaration; on a mismatch the
/// object is deleted and the upload marked failed.
async fn verify(state: &AppState, row: &UploadRow, info: &ObjectInfo) -> ApiResult<()> {
    let mut problems = Vec::new();
    if info.size != row.size {
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
        && row.plan.whole_file_digest()
        && declared != stored
    {
        problems.push("SHA-256 differs from the declared one".to_owned());
    }
    if problems.is_empty() {
        return Ok(());
    }
    fail(state, row, FailReason::Mismatch).await?;
    Err(ApiError::upload_mismatch(format!(
        "stored object differs from the declaration: {}; it was deleted",
        problems.join("; ")
    )))
}

async fn fail(state: &AppState, row: &UploadRow, reason: FailReason) -> ApiResult<()> {
    row.plan.discard(state.storage(), &row.object_key).await?;
    if state.db().finish_pending(&row.owner, &row.id, UploadState::Failed, now_ms()).await? {
        state.metrics().upload_failed(row.plan.kind(), reason);
    }
    tracing::warn!(id = %row.id, "upload failed verification; object deleted");
    Ok(())
}

/// Cancels an upload and removes what the store holds of it.
#[utoipa::path(
    delete,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    security(("user_token" = []), ("upload_token" = [])),
    params(("id" = String, Path, description = "The upload id (a ULID)")),
    responses(
        (status = 204, description = "Aborted (or already aborted, failed or expired)."),
        (status = 404, description = "No such upload for this owner or token (`not_found`).", body = ErrorBody),
        (status = 409, description = "The upload is completed: delete the file instead (`invalid_state`).", body = ErrorBody),
    ),
)]
pub(crate) async fn abort(
    State(state): State<AppState>,
    UploadAccess(owner): UploadAccess,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let row = load(&state, &owner, &id).await?;
    match row.state {
        UploadState::Completed => {
            Err(ApiError::invalid_state("the upload is completed; delete the file with DELETE /files/{id}"))
        }
        UploadState::Aborted | UploadState::Failed | UploadState::Expired => Ok(StatusCode::NO_CONTENT),
        UploadState::Pending => {
            // Storage first: if it fails, the upload stays pending and the
            // client (or the sweeper) can try again.
            row.plan.discard(state.storage(), &row.object_key).await?;
            if !state.db().finish_pending(&row.owner, &row.id, UploadState::Aborted, now_ms()).await? {
                let now = load(&state, &owner, &id).await?;
                if now.state == UploadState::Completed {
                    return Err(ApiError::invalid_state("the upload completed meanwhile"));
                }
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
