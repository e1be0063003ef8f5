//! The answers the browser client reads ([`FromJson`]), read from a JSON
//! value that is already parsed (in the browser, `JSON.parse`'s result)
//! rather than through serde's `Deserialize`.
//!
//! Why a second way in: serde's derived readers are generic over the
//! deserializer, and in the wasm client they were the largest block of code
//! after the flows (a visitor, a field-name matcher and an error path per
//! type). Here every type reads through the few primitives of one
//! [`Json`] value, so the client carries one small reader per type and its
//! `Json` impl. The JSON is the contract's either way: for every type the
//! tests read the same texts with serde and with this, and require the
//! same answer (the same value, or both refusing it). Rules, as serde's:
//! unknown members are ignored; a required member absent or of another type
//! refuses the whole; an `Option` member may be absent or `null`; a
//! member with a serde `default` may be absent, not `null`.
//!
//! The server never uses this: it reads requests with serde.

use std::collections::BTreeMap;

use crate::wire::{
    ClientConfig, Completed, CreatedUpload, ErrorBody, ErrorDetail, FileRecord, SignedPart, SignedParts, StoredPart,
    UploadPlan, UploadState, UploadStatus, UploaderKind,
};
use crate::{ErrorCode, UploadConstraints};

/// Largest integer a JSON number read as an `f64` holds exactly (2^53 - 1);
/// a larger one may not be what the server wrote.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A parsed JSON value, as the reader needs to see it.
pub trait Json: Sized {
    /// The member `key` of an object; `None` when absent (or this is not an object).
    fn member(&self, key: &str) -> Option<Self>;
    /// The members of an object, in order; `None` when this is not an object
    /// (an array is not one).
    fn entries(&self) -> Option<Vec<(String, Self)>>;
    /// The items of an array; `None` when this is not one.
    fn items(&self) -> Option<Vec<Self>>;
    /// The string; `None` when this is not one.
    fn string(&self) -> Option<String>;
    /// The number; `None` when this is not one.
    fn number(&self) -> Option<f64>;
    /// The boolean; `None` when this is not one.
    fn boolean(&self) -> Option<bool>;
    /// Whether this is `null`.
    fn is_null(&self) -> bool;
}

/// A wire type read from a [`Json`] value; `None` when it does not fit.
pub trait FromJson: Sized {
    /// Reads `json` as `Self`.
    fn from_json<J: Json>(json: &J) -> Option<Self>;
}

/// A required member.
fn req<J: Json, T: FromJson>(json: &J, key: &str) -> Option<T> {
    T::from_json(&json.member(key)?)
}

/// An `Option` member: absent or `null` is `None`; anything else must fit.
/// The outer `None` refuses the whole.
fn opt<J: Json, T: FromJson>(json: &J, key: &str) -> Option<Option<T>> {
    match json.member(key) {
        Some(value) if !value.is_null() => T::from_json(&value).map(Some),
        _ => Some(None),
    }
}

/// A member with serde's `default`: absent is the default, `null` does not fit.
fn or_default<J: Json, T: FromJson + Default>(json: &J, key: &str) -> Option<T> {
    match json.member(key) {
        Some(value) => T::from_json(&value),
        None => Some(T::default()),
    }
}

impl FromJson for String {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        json.string()
    }
}

impl FromJson for bool {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        json.boolean()
    }
}

impl FromJson for u64 {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        let n = json.number()?;
        (n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&n)).then_some(n as u64)
    }
}

impl FromJson for u32 {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        u32::try_from(u64::from_json(json)?).ok()
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        json.items()?.iter().map(T::from_json).collect()
    }
}

impl FromJson for BTreeMap<String, String> {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        let mut map = BTreeMap::new();
        // One by one: `collect()` into a map sorts first, code the client
        // does not otherwise need.
        for (k, v) in json.entries()? {
            map.insert(k, v.string()?);
        }
        Some(map)
    }
}

impl FromJson for UploaderKind {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        let name = json.string()?;
        UploaderKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl FromJson for UploadState {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        let name = json.string()?;
        UploadState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

impl FromJson for ErrorCode {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        ErrorCode::parse(&json.string()?)
    }
}

impl FromJson for UploadConstraints {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(UploadConstraints {
            max_file_size: req(json, "max_file_size")?,
            max_files: req(json, "max_files")?,
            accept: or_default(json, "accept")?,
        })
    }
}

impl FromJson for ClientConfig {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(ClientConfig {
            constraints: req(json, "constraints")?,
            multipart_threshold: req(json, "multipart_threshold")?,
            part_size: req(json, "part_size")?,
        })
    }
}

/// The members the tag's plan has; the others are not looked at (serde's
/// reader, [`UploadPlan`]'s `Deserialize`, ignores them too, though it
/// refuses one of another plan's names with the wrong type).
impl FromJson for UploadPlan {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(match req(json, "uploader")? {
            UploaderKind::S3 => {
                UploadPlan::S3 { method: req(json, "method")?, url: req(json, "url")?, fields: req(json, "fields")? }
            }
            UploaderKind::S3Multipart => UploadPlan::S3Multipart {
                upload_id: req(json, "upload_id")?,
                part_size: req(json, "part_size")?,
                part_count: req(json, "part_count")?,
                part_checksums: or_default(json, "part_checksums")?,
            },
            UploaderKind::Chunked => UploadPlan::Chunked {
                url: req(json, "url")?,
                chunk_size: req(json, "chunk_size")?,
                headers: req(json, "headers")?,
            },
        })
    }
}

impl FromJson for CreatedUpload {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(CreatedUpload {
            uploader: opt(json, "uploader")?,
            id: req(json, "id")?,
            key: req(json, "key")?,
            expires_at: req(json, "expires_at")?,
            upload: req(json, "upload")?,
            complete_url: req(json, "complete_url")?,
            endpoint: opt(json, "endpoint")?,
            token: opt(json, "token")?,
            token_expires_at: opt(json, "token_expires_at")?,
        })
    }
}

impl FromJson for SignedPart {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(SignedPart {
            part_number: req(json, "part_number")?,
            method: req(json, "method")?,
            url: req(json, "url")?,
            headers: req(json, "headers")?,
            expires_at: req(json, "expires_at")?,
        })
    }
}

impl FromJson for SignedParts {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(SignedParts { parts: req(json, "parts")? })
    }
}

impl FromJson for StoredPart {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(StoredPart {
            part_number: req(json, "part_number")?,
            etag: req(json, "etag")?,
            size: req(json, "size")?,
            sha256: opt(json, "sha256")?,
        })
    }
}

impl FromJson for UploadStatus {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(UploadStatus {
            id: req(json, "id")?,
            state: req(json, "state")?,
            name: req(json, "name")?,
            size: req(json, "size")?,
            content_type: req(json, "type")?,
            key: req(json, "key")?,
            expires_at: req(json, "expires_at")?,
            upload: req(json, "upload")?,
            part_checksums: or_default(json, "part_checksums")?,
            parts: req(json, "parts")?,
        })
    }
}

impl FromJson for FileRecord {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(FileRecord {
            id: req(json, "id")?,
            name: req(json, "name")?,
            size: req(json, "size")?,
            content_type: req(json, "type")?,
            key: req(json, "key")?,
            sha256: opt(json, "sha256")?,
            detected_type: opt(json, "detected_type")?,
            meta: req(json, "meta")?,
            created_at: req(json, "created_at")?,
            owner: req(json, "owner")?,
        })
    }
}

impl FromJson for Completed {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(Completed { file: req(json, "file")? })
    }
}

impl FromJson for ErrorDetail {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(ErrorDetail { code: req(json, "code")?, message: req(json, "message")? })
    }
}

impl FromJson for ErrorBody {
    fn from_json<J: Json>(json: &J) -> Option<Self> {
        Some(ErrorBody { error: req(json, "error")? })
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::*;

    impl Json for Value {
        fn member(&self, key: &str) -> Option<Self> {
            self.as_object()?.get(key).cloned()
        }
        fn entries(&self) -> Option<Vec<(String, Self)>> {
            Some(self.as_object()?.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        fn items(&self) -> Option<Vec<Self>> {
            self.as_array().cloned()
        }
        fn string(&self) -> Option<String> {
            self.as_str().map(str::to_owned)
        }
        fn number(&self) -> Option<f64> {
            self.as_f64()
        }
        fn boolean(&self) -> Option<bool> {
            self.as_bool()
        }
        fn is_null(&self) -> bool {
            Value::is_null(self)
        }
    }

    /// Reads every text with serde and with [`FromJson`]: the same value or
    /// both refusing; and that `good` texts are read at all.
    fn same<T: FromJson + DeserializeOwned + PartialEq + std::fmt::Debug>(good: &[&str], bad: &[&str]) {
        for text in good.iter().chain(bad) {
            let value: Value = serde_json::from_str(text).unwrap();
            let by_serde = serde_json::from_value::<T>(value.clone()).ok();
            assert_eq!(T::from_json(&value), by_serde, "{text}");
        }
        for text in good {
            assert!(T::from_json(&serde_json::from_str::<Value>(text).unwrap()).is_some(), "{text}");
        }
        for text in bad {
            assert!(T::from_json(&serde_json::from_str::<Value>(text).unwrap()).is_none(), "{text}");
        }
    }

    #[test]
    fn configuration() {
        same::<ClientConfig>(
            &[
                r#"{"constraints":{"max_file_size":100,"max_files":10,"accept":["image/*",".pdf"]},
                    "multipart_threshold":50,"part_size":8,"extra":[1]}"#,
                r#"{"constraints":{"max_file_size":100,"max_files":10},"multipart_threshold":50,"part_size":8}"#,
            ],
            &[
                r#"{"constraints":{"max_file_size":100,"max_files":10,"accept":null},"multipart_threshold":50,"part_size":8}"#,
                r#"{"constraints":{"max_file_size":100,"max_files":4294967296},"multipart_threshold":50,"part_size":8}"#,
                r#"{"constraints":{"max_file_size":-1,"max_files":1},"multipart_threshold":50,"part_size":8}"#,
                r#"{"constraints":{"max_file_size":1.5,"max_files":1},"multipart_threshold":50,"part_size":8}"#,
                r#"{"constraints":{"max_file_size":1,"max_files":1,"accept":[1]},"multipart_threshold":50,"part_size":8}"#,
                r#"{"constraints":{"max_file_size":1,"max_files":1},"part_size":8}"#,
                r#"{"constraints":[],"multipart_threshold":50,"part_size":8}"#,
                "null",
                "[]",
                "\"x\"",
            ],
        );
    }

    const PLANS: [&str; 4] = [
        r#"{"uploader":"S3","method":"POST","url":"http://s","fields":{"key":"k","policy":"p"}}"#,
        r#"{"uploader":"S3Multipart","upload_id":"m","part_size":100,"part_count":11}"#,
        r#"{"uploader":"S3Multipart","upload_id":"m","part_size":100,"part_count":11,"part_checksums":true,"url":"ignored"}"#,
        r#"{"uploader":"Chunked","url":"u","chunk_size":7,"headers":{"x-a":"b"}}"#,
    ];

    #[test]
    fn plans() {
        same::<UploadPlan>(
            &PLANS,
            &[
                r#"{"uploader":"S3","url":"http://s","fields":{}}"#,
                r#"{"uploader":"S3","method":"POST","url":"http://s","fields":{"key":1}}"#,
                r#"{"uploader":"S3Multipart","upload_id":"m","part_size":100,"part_count":11,"part_checksums":null}"#,
                r#"{"uploader":"S3Multipart","upload_id":"m","part_size":1.5,"part_count":1}"#,
                r#"{"uploader":"Chunked","url":"u","chunk_size":7}"#,
                r#"{"uploader":"s3","method":"POST","url":"http://s","fields":{}}"#,
                r#"{"method":"POST","url":"http://s","fields":{}}"#,
                r#"["S3"]"#,
            ],
        );
    }

    #[test]
    fn created_uploads() {
        let plan = PLANS[1];
        let good = [
            format!(r#"{{"id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{plan}}}"#),
            format!(
                r#"{{"uploader":"S3Multipart","id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{plan},
                    "endpoint":"https://x/api/v1","token":"t","token_expires_at":"e"}}"#
            ),
            format!(r#"{{"id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{plan},"token":null}}"#),
        ];
        let bad = [
            format!(r#"{{"id":"u1","key":"k","expires_at":"t","upload":{plan}}}"#),
            format!(
                r#"{{"id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{plan},"uploader":"Nope"}}"#
            ),
            format!(r#"{{"id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{plan},"endpoint":5}}"#),
            format!(r#"{{"id":null,"key":"k","expires_at":"t","complete_url":"/c","upload":{plan}}}"#),
            r#"{"id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{"uploader":"Nope"}}"#.into(),
        ];
        same::<CreatedUpload>(&good.each_ref().map(String::as_str), &bad.each_ref().map(String::as_str));
    }

    #[test]
    fn signed_parts() {
        same::<SignedParts>(
            &[
                r#"{"parts":[{"part_number":1,"method":"PUT","url":"u","headers":{},"expires_at":"t"},
                    {"part_number":2,"method":"PUT","url":"v","headers":{"x-amz-checksum-sha256":"s"},"expires_at":"t"}]}"#,
                r#"{"parts":[]}"#,
            ],
            &[
                r#"{"parts":[{"part_number":0.5,"method":"PUT","url":"u","headers":{},"expires_at":"t"}]}"#,
                r#"{"parts":[{"part_number":1,"method":"PUT","url":"u","expires_at":"t"}]}"#,
                r#"{"parts":{}}"#,
                r#"{"parts":null}"#,
            ],
        );
    }

    #[test]
    fn statuses() {
        let plan = PLANS[2];
        let good = [
            format!(
                r#"{{"id":"u1","state":"pending","name":"a","size":5,"type":"","key":"k","expires_at":"t","upload":{plan},
                    "part_checksums":true,"parts":[{{"part_number":1,"etag":"e1","size":5}},
                    {{"part_number":2,"etag":"e2","size":5,"sha256":"s"}}]}}"#
            ),
            format!(
                r#"{{"id":"u1","state":"completed","name":"a","size":5,"type":"t/x","key":"k","expires_at":"t",
                    "upload":{plan},"parts":[]}}"#
            ),
        ];
        let bad = [
            format!(
                r#"{{"id":"u1","state":"Pending","name":"a","size":5,"type":"","key":"k","expires_at":"t","upload":{plan},"parts":[]}}"#
            ),
            format!(
                r#"{{"id":"u1","state":"pending","name":"a","size":5,"key":"k","expires_at":"t","upload":{plan},"parts":[]}}"#
            ),
            format!(
                r#"{{"id":"u1","state":"pending","name":"a","size":5,"type":"","key":"k","expires_at":"t","upload":{plan},
                    "parts":[{{"part_number":1,"etag":"e1"}}]}}"#
            ),
        ];
        same::<UploadStatus>(&good.each_ref().map(String::as_str), &bad.each_ref().map(String::as_str));
    }

    #[test]
    fn completions() {
        same::<Completed>(
            &[
                r#"{"file":{"id":"1","name":"a","size":1,"type":"text/plain","key":"k","sha256":null,
                    "detected_type":"image/png","meta":{"album":"7"},"created_at":"t","owner":"o"}}"#,
                r#"{"file":{"id":"1","name":"a","size":1,"type":"text/plain","key":"k","sha256":"s",
                    "meta":{},"created_at":"t","owner":"o","download_url":"extra"}}"#,
            ],
            &[
                r#"{"file":{"id":"1","name":"a","size":1,"type":"text/plain","key":"k","meta":{},"created_at":"t"}}"#,
                r#"{"file":{"id":"1","name":"a","size":1,"type":"text/plain","key":"k","sha256":null,
                    "meta":{"n":1},"created_at":"t","owner":"o"}}"#,
                r#"{"file":null}"#,
            ],
        );
    }

    #[test]
    fn errors() {
        same::<ErrorBody>(
            &[
                r#"{"error":{"code":"file_too_large","message":"over 10 bytes"}}"#,
                r#"{"error":{"code":"internal","message":"","detail":1}}"#,
            ],
            &[
                r#"{"error":{"code":"no_such_code","message":"m"}}"#,
                r#"{"error":{"code":"internal"}}"#,
                r#"{"error":"internal"}"#,
                r#"{"code":"internal","message":"m"}"#,
            ],
        );
        same::<UploaderKind>(&[r#""S3""#, r#""S3Multipart""#, r#""Chunked""#], &[r#""s3""#, "3", "null"]);
    }
}
