//! The embedded default: objects on local disk, uploaded by the browser to
//! URLs this server signs and then verifies itself (see `local_http`).
//!
//! Layout under the root directory:
//! - `objects/<hh>/<sha256(key)>` and `<...>.json` (key, size, type, SHA-256, ETag);
//! - `multipart/<upload id>/upload.json`, `part-<n>` and `part-<n>.json`;
//! - `tmp/`: every write lands here first and is renamed into place only
//!   when complete and verified, so no reader ever sees half a file, and a
//!   crash leaves only temporary files behind.
//!
//! The signing secret is generated once and kept in `signing.key`, so signed
//! URLs survive a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upload_core::wire::StoredPart;

use super::post_policy::{SigningCredentials, sign_post_form};
use super::{ObjectInfo, PartTarget, PostTarget, PresignedForm, PresignedRequest, Storage, StorageError};

/// The bucket name local POST policies carry.
pub const LOCAL_BUCKET: &str = "local";
/// The access key id and region of local POST policies.
pub const LOCAL_ACCESS_KEY: &str = "local";
/// Header carrying a part's SHA-256, as in S3.
pub const CHECKSUM_HEADER: &str = "x-amz-checksum-sha256";

/// Local-disk storage.
pub struct LocalStorage {
    root: PathBuf,
    pub(super) base_url: String,
    secret: Vec<u8>,
}

/// What is kept beside each object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectMeta {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) content_type: String,
    pub(crate) sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MultipartMeta {
    pub(crate) key: String,
    pub(crate) content_type: String,
}

/// A `Chunked` session: the bytes so far are in `data` beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChunkedMeta {
    pub(crate) key: String,
    pub(crate) content_type: String,
    pub(crate) size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartMeta {
    pub(crate) etag: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

fn io_err(context: &str, e: std::io::Error) -> StorageError {
    StorageError::Other(format!("{context}: {e}"))
}

/// Ids made by this backend are ULIDs; anything else is not one of ours.
pub(crate) fn is_upload_id(id: &str) -> bool {
    id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl LocalStorage {
    /// Opens (creating) the store under `root`; `public_url` is where
    /// browsers reach this server, and signed URLs point under it.
    pub fn open(root: impl Into<PathBuf>, public_url: &str) -> Result<Self, StorageError> {
        let root = root.into();
        for dir in ["objects", "multipart", "tmp"] {
            std::fs::create_dir_all(root.join(dir)).map_err(|e| io_err("creating the storage directory", e))?;
        }
        let key_path = root.join("signing.key");
        let secret = match std::fs::read(&key_path) {
            Ok(secret) if secret.len() >= 32 => secret,
            _ => {
                let mut secret = vec![0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| StorageError::Other(format!("no randomness: {e}")))?;
                let tmp = root.join("tmp").join("signing.key");
                std::fs::write(&tmp, &secret).map_err(|e| io_err("writing the signing key", e))?;
                std::fs::rename(&tmp, &key_path).map_err(|e| io_err("writing the signing key", e))?;
                secret
            }
        };
        Ok(LocalStorage { root, base_url: format!("{}/storage/v1", public_url.trim_end_matches('/')), secret })
    }

    pub(crate) fn secret_hex(&self) -> String {
        hex::encode(&self.secret)
    }

    fn object_hex(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    pub(crate) fn object_path(&self, hex: &str) -> PathBuf {
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    fn object_meta_path(&self, hex: &str) -> PathBuf {
        self.root.join("objects").join(&hex[..2]).join(format!("{hex}.json"))
    }

    pub(crate) fn multipart_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join("multipart").join(upload_id)
    }

    /// A fresh temporary path on the same file system as the objects.
    pub(crate) fn temp_path(&self) -> PathBuf {
        self.root.join("tmp").join(ulid::Ulid::new().to_string())
    }

    /// HMAC-SHA256 (hex) of the newline-joined parts under the store's secret.
    pub(crate) fn sign(&self, parts: &[&str]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(parts.join("\n").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a signature in constant time.
    pub(crate) fn verify(&self, parts: &[&str], signature_hex: &str) -> bool {
        let Ok(signature) = hex::decode(signature_hex) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(parts.join("\n").as_bytes());
        mac.verify_slice(&signature).is_ok()
    }

    pub(crate) fn credentials(&self) -> (String, &'static str) {
        (self.secret_hex(), LOCAL_ACCESS_KEY)
    }

    pub(crate) async fn read_multipart(&self, upload_id: &str) -> Result<MultipartMeta, StorageError> {
        if !is_upload_id(upload_id) {
            return Err(StorageError::NotFound);
        }
        read_json(&self.multipart_dir(upload_id).join("upload.json")).await?.ok_or(StorageError::NotFound)
    }

    pub(crate) async fn read_chunked(&self, session: &str) -> Result<ChunkedMeta, StorageError> {
        if !is_upload_id(session) {
            return Err(StorageError::NotFound);
        }
        read_json(&self.multipart_dir(session).join("chunked.json")).await?.ok_or(StorageError::NotFound)
    }

    pub(crate) async fn read_object_meta(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        let hex = Self::object_hex(key);
        let (object, meta) = (self.object_path(&hex), self.object_meta_path(&hex));
        blocking(move || if object.exists() { read_json_now(&meta) } else { Ok(None) }).await
    }

    pub(crate) async fn read_object_meta_by_hex(&self, hex: &str) -> Result<Option<ObjectMeta>, StorageError> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        read_json(&self.object_meta_path(hex)).await
    }

    /// Moves a finished, verified temporary file into place as `key`.
    /// One trip to the blocking pool for all of it: each `tokio::fs` call is
    /// a trip of its own (two thread wake-ups), which made up most of a
    /// small upload's cost.
    pub(crate) async fn commit_object(&self, temp: &Path, meta: &ObjectMeta) -> Result<(), StorageError> {
        let hex = Self::object_hex(&meta.key);
        let (path, meta_path, meta_temp) = (self.object_path(&hex), self.object_meta_path(&hex), self.temp_path());
        let (temp, meta) = (temp.to_owned(), serde_json::to_vec(meta).map_err(|e| StorageError::Other(e.to_string()))?);
        blocking(move || {
            std::fs::create_dir_all(path.parent().expect("objects live in a fan-out directory"))
                .map_err(|e| io_err("creating the object directory", e))?;
            // The description goes first: an object without one is invisible,
            // a description without its object is ignored.
            write_atomic_now(&meta_temp, &meta_path, &meta)?;
            std::fs::rename(&temp, &path).map_err(|e| io_err("moving the object into place", e))
        })
        .await
    }

    /// Records a stored part (its bytes already renamed into place by the caller).
    pub(crate) async fn commit_part(
        &self,
        upload_id: &str,
        part_number: u32,
        temp: &Path,
        meta: &PartMeta,
    ) -> Result<(), StorageError> {
        let dir = self.multipart_dir(upload_id);
        if !tokio::fs::try_exists(dir.join("upload.json")).await.unwrap_or(false) {
            return Err(StorageError::NotFound);
        }
        tokio::fs::rename(temp, dir.join(format!("part-{part_number:05}")))
            .await
            .map_err(|e| io_err("moving the part into place", e))?;
        write_json_atomic(self, &dir.join(format!("part-{part_number:05}.json")), meta).await
    }

    /// Removes temporary files older than `age`: what crashed or abandoned
    /// writes left behind. Never touches objects or parts in place.
    pub async fn remove_stale_temp(&self, age: Duration) {
        let Ok(mut entries) = tokio::fs::read_dir(self.root.join("tmp")).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let stale = entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if stale {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    fn unix(at: OffsetDateTime) -> i64 {
        at.unix_timestamp()
    }
}

async fn read_json<T: serde::de::DeserializeOwned + Send + 'static>(path: &Path) -> Result<Option<T>, StorageError> {
    let path = path.to_owned();
    blocking(move || read_json_now(&path)).await
}

fn read_json_now<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StorageError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading metadata", e)),
    }
}

async fn write_json_atomic<T: Serialize>(store: &LocalStorage, path: &Path, value: &T) -> Result<(), StorageError> {
    let (temp, path) = (store.temp_path(), path.to_owned());
    let bytes = serde_json::to_vec(value).map_err(|e| StorageError::Other(e.to_string()))?;
    blocking(move || write_atomic_now(&temp, &path, &bytes)).await
}

/// Writes `bytes` to `temp`, syncs it and renames it to `path`.
fn write_atomic_now(temp: &Path, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut file = std::fs::File::create(temp).map_err(|e| io_err("writing metadata", e))?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| io_err("writing metadata", e))?;
    file.sync_all().map_err(|e| io_err("writing metadata", e))?;
    std::fs::rename(temp, path).map_err(|e| io_err("writing metadata", e))
}

/// Runs file system work on the blocking pool, in one trip.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StorageError::Other(format!("file system task: {e}")))?
}

fn query_escape(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[async_trait]
impl Storage for LocalStorage {
    async fn presign_post(&self, target: &PostTarget<'_>) -> Result<PresignedForm, StorageError> {
        let (secret, access_key) = self.credentials();
        let signing = SigningCredentials {
            access_key_id: access_key,
            secret_access_key: &secret,
            session_token: None,
            region: LOCAL_BUCKET,
        };
        let fields = sign_post_form(LOCAL_BUCKET, target, &signing, OffsetDateTime::now_utc());
        Ok(PresignedForm { url: format!("{}/form", self.base_url), fields })
    }

    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        _part_checksums: bool,
    ) -> Result<String, StorageError> {
        let upload_id = ulid::Ulid::new().to_string();
        let dir = self.multipart_dir(&upload_id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io_err("creating the multipart upload", e))?;
        let meta = MultipartMeta { key: key.to_owned(), content_type: content_type.to_owned() };
        write_json_atomic(self, &dir.join("upload.json"), &meta).await?;
        Ok(upload_id)
    }

    async fn presign_part(
        &self,
        target: &PartTarget<'_>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let expires = Self::unix(OffsetDateTime::now_utc() + expires_in).to_string();
        let (upload_id, sha256, length) = (target.upload_id, target.sha256, target.length);
        let part = target.part_number.to_string();
        let checksum = sha256.unwrap_or("");
        let signature = self.sign(&["PUT part", upload_id, &part, &length.to_string(), checksum, &expires]);
        let mut headers = BTreeMap::new();
        if let Some(sha256) = sha256 {
            headers.insert(CHECKSUM_HEADER.to_owned(), sha256.to_owned());
        }
        Ok(PresignedRequest {
            url: format!(
                "{}/multipart/{upload_id}/{part}?length={length}&expires={expires}&signature={signature}",
                self.base_url
            ),
            headers,
        })
    }

    async fn list_parts(&self, _key: &str, upload_id: &str) -> Result<Vec<StoredPart>, StorageError> {
        self.read_multipart(upload_id).await?;
        let mut parts = Vec::new();
        let mut entries =
            tokio::fs::read_dir(self.multipart_dir(upload_id)).await.map_err(|e| io_err("listing parts", e))?;
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_err("listing parts", e))? {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix("part-")?.strip_suffix(".json")?.parse().ok())
            else {
                continue;
            };
            if let Some(meta) = read_json::<PartMeta>(&entry.path()).await? {
                parts.push(StoredPart {
                    part_number: number,
                    etag: meta.etag,
                    size: meta.size,
                    sha256: Some(meta.sha256),
                });
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[StoredPart]) -> Result<(), StorageError> {
        let upload = self.read_multipart(upload_id).await?;
        if upload.key != key {
            return Err(StorageError::NotFound);
        }
        let dir = self.multipart_dir(upload_id);
        let temp = self.temp_path();
        let mut out = tokio::fs::File::create(&temp).await.map_err(|e| io_err("assembling the object", e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        for (i, part) in parts.iter().enumerate() {
            if part.part_number as usize != i + 1 {
                return Err(StorageError::Rejected("parts must be numbered 1, 2, 3... in order".into()));
            }
            let meta: PartMeta =
                read_json(&dir.join(format!("part-{:05}.json", part.part_number))).await?.ok_or_else(|| {
                    StorageError::Rejected(format!("InvalidPart: part {} is not stored", part.part_number))
                })?;
            if meta.etag.trim_matches('"') != part.etag.trim_matches('"') {
                return Err(StorageError::Rejected(format!("InvalidPart: part {}'s ETag differs", part.part_number)));
            }
            let mut input = tokio::fs::File::open(dir.join(format!("part-{:05}", part.part_number)))
                .await
                .map_err(|e| io_err("reading a part", e))?;
            loop {
                let n = input.read(&mut buf).await.map_err(|e| io_err("reading a part", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).await.map_err(|e| io_err("assembling the object", e))?;
                size += n as u64;
            }
        }
        out.sync_all().await.map_err(|e| io_err("assembling the object", e))?;
        drop(out);
        use base64::Engine as _;
        let sha256 = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
        let meta = ObjectMeta { key: key.to_owned(), size, content_type: upload.content_type, sha256 };
        self.commit_object(&temp, &meta).await?;
        tokio::fs::remove_dir_all(&dir).await.map_err(|e| io_err("removing the finished multipart upload", e))?;
        Ok(())
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<(), StorageError> {
        if !is_upload_id(upload_id) {
            return Ok(());
        }
        match tokio::fs::remove_dir_all(self.multipart_dir(upload_id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("aborting the multipart upload", e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        Ok(self.read_object_meta(key).await?.map(|meta| ObjectInfo {
            size: meta.size,
            content_type: Some(meta.content_type),
            checksum_sha256: Some(meta.sha256),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let hex = Self::object_hex(key);
        for path in [self.object_path(&hex), self.object_meta_path(&hex)] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("deleting the object", e)),
            }
        }
        Ok(())
    }

    async fn create_chunked(&self, key: &str, content_type: &str, size: u64) -> Result<String, StorageError> {
        let session = ulid::Ulid::new().to_string();
        let dir = self.multipart_dir(&session);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io_err("creating the chunked session", e))?;
        tokio::fs::File::create(dir.join("data")).await.map_err(|e| io_err("creating the chunked session", e))?;
        let meta = ChunkedMeta { key: key.to_owned(), content_type: content_type.to_owned(), size };
        write_json_atomic(self, &dir.join("chunked.json"), &meta).await?;
        Ok(session)
    }

    async fn presign_chunked(
        &self,
        session: &str,
        size: u64,
        expires_at: OffsetDateTime,
    ) -> Result<PresignedRequest, StorageError> {
        let expires = Self::unix(expires_at).to_string();
        let signature = self.sign(&["PUT chunked", session, &size.to_string(), &expires]);
        Ok(PresignedRequest {
            url: format!("{}/chunked/{session}?size={size}&expires={expires}&signature={signature}", self.base_url),
            headers: BTreeMap::new(),
        })
    }

    async fn presign_get(
        &self,
        key: &str,
        content_disposition: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let hex = Self::object_hex(key);
        let expires = Self::unix(OffsetDateTime::now_utc() + expires_in).to_string();
        let signature = self.sign(&["GET object", &hex, content_disposition, &expires]);
        Ok(PresignedRequest {
            url: format!(
                "{}/objects/{hex}?disposition={}&expires={expires}&signature={signature}",
                self.base_url,
                query_escape(content_disposition)
            ),
            headers: BTreeMap::new(),
        })
    }
}
