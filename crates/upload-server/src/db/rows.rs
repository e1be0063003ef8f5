//! Uploads and files as stored: the rows, how a row's plan columns become a
//! [`StoredPlan`] (refusing a row whose columns do not fit its plan kind),
//! the column lists the queries select, and the INSERT of new uploads both
//! databases' writers send.

use sqlx::postgres::PgRow;
use sqlx::query::Query;
use sqlx::sqlite::SqliteRow;
use sqlx::{Encode, FromRow, QueryBuilder, Row, Type};
use upload_core::wire::{FileRecord, UploadState, UploaderKind};

use crate::id::UploadId;
use crate::plan::StoredPlan;
use crate::time_util::rfc3339;

/// An upload as stored.
#[derive(Debug, Clone)]
pub(crate) struct UploadRow {
    /// Upload id.
    pub(crate) id: UploadId,
    /// Owner id.
    pub(crate) owner: String,
    /// Object key.
    pub(crate) object_key: String,
    /// Sanitised name.
    pub(crate) name: String,
    /// Declared size.
    pub(crate) size: u64,
    /// Declared, normalised content type.
    pub(crate) content_type: String,
    /// Declared base64 SHA-256.
    pub(crate) sha256: Option<String>,
    /// JSON object of strings.
    pub(crate) meta: String,
    /// How the bytes are sent, with what the store made for it.
    pub(crate) plan: StoredPlan,
    /// Lifecycle state.
    pub(crate) state: UploadState,
    /// Unix milliseconds.
    pub(crate) created_at: i64,
    /// Unix milliseconds.
    pub(crate) expires_at: i64,
}

/// A column that holds something this version cannot represent.
fn bad_column(column: &str, source: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(source) }
}

/// Why a row's plan columns do not make a plan.
#[derive(Debug, thiserror::Error)]
#[error("the plan columns of a {0} upload are incomplete")]
struct IncompletePlan(UploaderKind);

impl<'r> FromRow<'r, SqliteRow> for UploadRow {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        upload_row(row)
    }
}

impl<'r> FromRow<'r, PgRow> for UploadRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        upload_row(row)
    }
}

/// Both databases' rows decode the same columns the same way (SQLite's
/// 0/1 integers decode as `bool` too).
fn upload_row<'r, R: Row>(row: &'r R) -> Result<UploadRow, sqlx::Error>
where
    &'r str: sqlx::ColumnIndex<R> + sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    UploadId: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: UploaderKind = row.try_get::<&str, _>("uploader")?.parse().map_err(|e| bad_column("uploader", e))?;
    let plan = match kind {
        UploaderKind::S3 => StoredPlan::S3,
        UploaderKind::S3Multipart => {
            let upload_id: Option<String> = row.try_get("multipart_upload_id")?;
            let part_size: Option<i64> = row.try_get("part_size")?;
            let part_count: Option<i64> = row.try_get("part_count")?;
            let (Some(upload_id), Some(part_size), Some(part_count)) = (upload_id, part_size, part_count) else {
                return Err(bad_column("multipart_upload_id", IncompletePlan(kind)));
            };
            StoredPlan::S3Multipart {
                upload_id,
                part_size: part_size as u64,
                part_count: part_count as u32,
                part_checksums: row.try_get("part_checksums")?,
            }
        }
        UploaderKind::Chunked => StoredPlan::Chunked {
            session: row
                .try_get::<Option<String>, _>("chunked_session")?
                .ok_or_else(|| bad_column("chunked_session", IncompletePlan(kind)))?,
        },
    };
    Ok(UploadRow {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        object_key: row.try_get("object_key")?,
        name: row.try_get("name")?,
        size: row.try_get::<i64, _>("size")? as u64,
        content_type: row.try_get("content_type")?,
        sha256: row.try_get("sha256")?,
        meta: row.try_get("meta")?,
        plan,
        state: row.try_get::<&str, _>("state")?.parse().map_err(|e| bad_column("state", e))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// The plan's columns: `multipart_upload_id`, `part_size`, `part_count`,
/// `part_checksums`, `chunked_session`.
pub(super) type PlanColumns<'a> = (Option<&'a str>, Option<i64>, Option<i64>, bool, Option<&'a str>);

fn plan_columns(plan: &StoredPlan) -> PlanColumns<'_> {
    match plan {
        StoredPlan::S3 => (None, None, None, false, None),
        StoredPlan::S3Multipart { upload_id, part_size, part_count, part_checksums } => {
            (Some(upload_id), Some(*part_size as i64), Some(i64::from(*part_count)), *part_checksums, None)
        }
        StoredPlan::Chunked { session } => (None, None, None, false, Some(session)),
    }
}

/// `INSERT INTO uploads (...) VALUES (...), (...)` for new, pending
/// uploads: one statement for the SQLite and the PostgreSQL writers, whose
/// only difference, the placeholders, `QueryBuilder` writes for each. The
/// bounds list every type it binds; SQLite's and PostgreSQL's sqlx types
/// meet them.
pub(super) fn insert_new_uploads<'q, DB>(rows: Vec<&'q UploadRow>) -> QueryBuilder<'q, DB>
where
    DB: sqlx::Database,
    UploadId: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    let mut insert = QueryBuilder::new(
        "INSERT INTO uploads (id, owner, object_key, name, size, content_type, sha256, meta, uploader, \
         multipart_upload_id, part_size, part_count, part_checksums, chunked_session, state, created_at, expires_at, \
         updated_at) ",
    );
    insert.push_values(rows, |mut values, row| {
        let (upload_id, part_size, part_count, part_checksums, session) = plan_columns(&row.plan);
        let (uploader, state): (&'q str, &'q str) = (row.plan.kind().as_str(), UploadState::Pending.as_str());
        values
            .push_bind(&row.id)
            .push_bind(&row.owner)
            .push_bind(&row.object_key)
            .push_bind(&row.name)
            .push_bind(row.size as i64)
            .push_bind(&row.content_type)
            .push_bind(&row.sha256)
            .push_bind(&row.meta)
            .push_bind(uploader)
            .push_bind(upload_id)
            .push_bind(part_size)
            .push_bind(part_count)
            .push_bind(part_checksums)
            .push_bind(session)
            .push_bind(state)
            .push_bind(row.created_at)
            .push_bind(row.expires_at)
            .push_bind(row.created_at);
    });
    insert
}

/// A file as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct FileRow {
    /// File id (the id of the upload that made it).
    pub(crate) id: UploadId,
    /// Owner id.
    pub(crate) owner: String,
    /// Object key.
    pub(crate) object_key: String,
    /// Sanitised name.
    pub(crate) name: String,
    /// Verified size.
    pub(crate) size: i64,
    /// Verified content type.
    pub(crate) content_type: String,
    /// Base64 SHA-256.
    pub(crate) sha256: Option<String>,
    /// The type the first bytes show, when they show one.
    pub(crate) detected_type: Option<String>,
    /// JSON object of strings.
    pub(crate) meta: String,
    /// Unix milliseconds.
    pub(crate) created_at: i64,
}

impl FileRow {
    /// The wire form.
    pub(crate) fn into_record(self) -> FileRecord {
        FileRecord {
            meta: serde_json::from_str(&self.meta).unwrap_or_default(),
            created_at: rfc3339(self.created_at),
            id: self.id.to_string(),
            name: self.name,
            size: self.size as u64,
            content_type: self.content_type,
            key: self.object_key,
            sha256: self.sha256,
            detected_type: self.detected_type,
            owner: self.owner,
        }
    }
}

pub(super) const UPLOAD_COLUMNS: &str = "id, owner, object_key, name, size, content_type, sha256, meta, uploader, \
    multipart_upload_id, part_checksums, part_size, part_count, chunked_session, state, created_at, expires_at";
pub(super) const FILE_COLUMNS: &str =
    "id, owner, object_key, name, size, content_type, sha256, detected_type, meta, created_at";

/// Binds `file`'s values in [`FILE_COLUMNS`]' order, for the INSERT that
/// records a file on either database.
pub(super) fn bind_file<'q, DB>(
    query: Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    file: &'q FileRow,
) -> Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    UploadId: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
{
    query
        .bind(&file.id)
        .bind(&file.owner)
        .bind(&file.object_key)
        .bind(&file.name)
        .bind(file.size)
        .bind(&file.content_type)
        .bind(&file.sha256)
        .bind(&file.detected_type)
        .bind(&file.meta)
        .bind(file.created_at)
}
