//! The embedded default: objects on local disk, uploaded by the browser to
//! URLs this server signs and then verifies itself, on routes the store
//! brings along ([`Storage::router`], served under [`ROUTES`]: `http`).
//! Every byte reaches the disk through one path, `disk::Sink`: hashed and
//! counted against what was signed as it streams into a temporary file,
//! synced, and renamed into place only when verified.
//!
//! Layout under the root directory:
//! - `objects/<hh>/<sha256(key)>` and `<...>.json` (key, size, type, SHA-256, ETag);
//! - `multipart/<upload id>/upload.json`, `part-<n>` and `part-<n>.json`;
//! - `chunked/<session id>/chunked.json` and `data`, the bytes so far;
//! - `tmp/`: every write lands here first and is renamed into place only
//!   when complete and verified (and the directory synced), so no reader
//!   ever sees half a file, and a crash leaves only temporary files behind;
//! - `open/<sha256(key)>`: a key a POST form may still write. Made when the
//!   form is signed, removed when the server verifies the object for
//!   completion ([`Storage::head_sealed`]) or deletes it (abort, failure,
//!   expiry): a form replayed after that is refused, unlike on S3, where a
//!   signed POST cannot be revoked before it expires.
//!
//! The signing secret is generated once and kept in `signing.key` (mode
//! 0600, synced), so signed URLs survive a restart; a key file that cannot
//! be read is an error, never silently replaced.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use futures_util::Stream;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use upload_core::wire::StoredPart;

use super::post_policy::{SigningCredentials, sign_post_form};
use super::{ObjectInfo, PartTarget, PostTarget, PresignedForm, PresignedRequest, Storage, StorageError};
use disk::{
    ChunkedMeta, Digest256, MultipartMeta, ObjectMeta, PartMeta, Sink, SinkError, TempFile, blocking, file_stream,
    io_err, read_json, read_json_now, remove_dir_if_present, remove_if_present, sync_dir, write_atomic_now,
    write_json_atomic,
};

mod disk;
mod http;

/// The bucket name local POST policies carry.
pub const LOCAL_BUCKET: &str = "local";
/// The access key id and region of local POST policies.
pub const LOCAL_ACCESS_KEY: &str = "local";
/// Header carrying a part's SHA-256, as in S3.
pub const CHECKSUM_HEADER: &str = "x-amz-checksum-sha256";
/// Where this server serves the store's signed URLs.
pub const ROUTES: &str = "/storage/v1";

/// Local-disk storage. Cheap to clone: clones share the secret and the
/// locks, so work that must outlive its request (assembling a multipart
/// upload) can take a handle of its own.
#[derive(Clone)]
pub struct LocalStorage {
    root: PathBuf,
    base_url: String,
    secret: Arc<[u8]>,
    /// Held while a form's object is moved into place and while a key is
    /// sealed or deleted, so a form can never write after either.
    sealing: Arc<Mutex<()>>,
    /// `Chunked` sessions with a chunk being written: one writer per session at a time.
    busy_sessions: Arc<Mutex<HashSet<String>>>,
}

/// A session's claim on writing its next chunk; released when dropped.
pub(crate) struct SessionWriter<'a> {
    store: &'a LocalStorage,
    session: String,
}

impl Drop for SessionWriter<'_> {
    fn drop(&mut self) {
        self.store.busy_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.session);
    }
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
        for dir in ["objects", "multipart", "chunked", "tmp", "sealed"] {
            std::fs::create_dir_all(root.join(dir)).map_err(|e| io_err("creating the storage directory", e))?;
        }
        move_chunked_sessions(&root)?;
        seal_what_open_markers_left(&root)?;
        let secret = load_or_create_secret(&root)?;
        Ok(LocalStorage {
            root,
            base_url: format!("{}{ROUTES}", public_url.trim_end_matches('/')),
            secret: secret.into(),
            sealing: Arc::new(Mutex::new(())),
            busy_sessions: Arc::new(Mutex::new(HashSet::new())),
        })
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

    fn seal_path(&self, hex: &str) -> PathBuf {
        self.root.join("sealed").join(hex)
    }

    fn object_meta_path(&self, hex: &str) -> PathBuf {
        self.root.join("objects").join(&hex[..2]).join(format!("{hex}.json"))
    }

    pub(crate) fn multipart_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join("multipart").join(upload_id)
    }

    pub(crate) fn chunked_dir(&self, session: &str) -> PathBuf {
        self.root.join("chunked").join(session)
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

    /// Whether a POST form may still write `key` (see `commit_form_object`);
    /// checked before the file is streamed, and again under the lock.
    pub(crate) fn is_open(&self, key: &str) -> bool {
        // One stat of a local directory, on the runtime's thread: cheaper than
        // the trip to the blocking pool that tokio::fs would take for it.
        !self.seal_path(&Self::object_hex(key)).try_exists().unwrap_or(true)
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
        read_json(&self.chunked_dir(session).join("chunked.json")).await?.ok_or(StorageError::NotFound)
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

    /// Claims the right to write the next chunk of `session`; `None` while
    /// another request holds it.
    pub(crate) fn claim_session(&self, session: &str) -> Option<SessionWriter<'_>> {
        let mut busy = self.busy_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        busy.insert(session.to_owned()).then(|| SessionWriter { store: self, session: session.to_owned() })
    }

    /// Streams `input` into a fresh temporary file, at most `limit` bytes,
    /// synced before it is handed back with its size and SHA-256.
    pub(crate) async fn write_temp<S, E>(
        &self,
        input: S,
        limit: u64,
    ) -> Result<(TempFile, u64, Digest256), SinkError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let (temp, file) = TempFile::create(self.temp_path()).await.map_err(SinkError::Disk)?;
        let mut sink = Sink::new(file);
        sink.pour(input, limit).await?;
        let (size, digest) = sink.finish_file().await.map_err(SinkError::Disk)?;
        Ok((temp, size, digest))
    }

    /// Moves a finished, verified temporary file into place as `key`.
    /// One trip to the blocking pool for all of it: each `tokio::fs` call is
    /// a trip of its own (two thread wake-ups), which made up most of a
    /// small upload's cost.
    pub(crate) async fn commit_object(&self, temp: &Path, meta: &ObjectMeta) -> Result<(), StorageError> {
        self.commit(temp, meta, None).await
    }

    /// [`Self::commit_object`] for a POST form: only while the key is open
    /// (its upload pending, not yet verified for completion), checked under
    /// the lock that sealing and deleting take, so a replayed form can never
    /// overwrite a recorded file or leave an object behind an aborted upload.
    ///
    /// A key is open until it is sealed: only a signed, unexpired form can
    /// name it, and every key is new (it holds its upload's id), so signing a
    /// form needs no write of its own, and a create costs the disk nothing.
    /// Completion and deletion write the seal (see [`SEALS_KEPT`]).
    pub(crate) async fn commit_form_object(&self, temp: &Path, meta: &ObjectMeta) -> Result<(), StorageError> {
        let seal = self.seal_path(&Self::object_hex(&meta.key));
        self.commit(temp, meta, Some(seal)).await
    }

    async fn commit(&self, temp: &Path, meta: &ObjectMeta, seal: Option<PathBuf>) -> Result<(), StorageError> {
        let hex = Self::object_hex(&meta.key);
        let (path, meta_path, meta_temp) = (self.object_path(&hex), self.object_meta_path(&hex), self.temp_path());
        let (temp, meta) =
            (temp.to_owned(), serde_json::to_vec(meta).map_err(StorageError::other("writing metadata"))?);
        let sealing = self.sealing.clone();
        blocking(move || {
            let dir = path.parent().expect("objects live in a fan-out directory");
            std::fs::create_dir_all(dir).map_err(|e| io_err("creating the object directory", e))?;
            let _sealing = sealing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(seal) = seal
                && seal.exists()
            {
                return Err(StorageError::Rejected("the upload of this key is no longer pending".into()));
            }
            // The description goes first: an object without one is invisible,
            // a description without its object is ignored.
            write_atomic_now(&meta_temp, &meta_path, &meta)?;
            std::fs::rename(&temp, &path).map_err(|e| io_err("moving the object into place", e))?;
            sync_dir(dir)
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
        let (temp, part) = (temp.to_owned(), dir.join(format!("part-{part_number:05}")));
        blocking(move || {
            std::fs::rename(&temp, &part).map_err(|e| io_err("moving the part into place", e))?;
            sync_dir(part.parent().expect("parts live in their upload's directory"))
        })
        .await?;
        write_json_atomic(self.temp_path(), &dir.join(format!("part-{part_number:05}.json")), meta).await
    }

    /// The files of `parts`, checked as S3 checks them: each stored, with
    /// the ETag the client names. An upload gone meanwhile (another complete
    /// finished and removed it) is `NotFound`.
    async fn part_files(&self, dir: &Path, parts: &[StoredPart]) -> Result<Vec<PathBuf>, StorageError> {
        let mut files = Vec::with_capacity(parts.len());
        for part in parts {
            let Some(meta) = read_json::<PartMeta>(&dir.join(format!("part-{:05}.json", part.part_number))).await?
            else {
                if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
                    return Err(StorageError::NotFound);
                }
                return Err(StorageError::Rejected(format!("InvalidPart: part {} is not stored", part.part_number)));
            };
            if meta.etag.trim_matches('"') != part.etag.trim_matches('"') {
                return Err(StorageError::Rejected(format!("InvalidPart: part {}'s ETag differs", part.part_number)));
            }
            files.push(dir.join(format!("part-{:05}", part.part_number)));
        }
        Ok(files)
    }

    /// Concatenates the parts into a temporary file through the one write
    /// path (which hashes the whole on the way; that needs every byte read
    /// once anyway, so it copies rather than `copy_file_range`s), moves it
    /// into place as `key`, and removes the multipart upload.
    async fn assemble(&self, key: String, upload_id: String, parts: Vec<StoredPart>) -> Result<(), StorageError> {
        let upload = self.read_multipart(&upload_id).await?;
        if upload.key != key {
            return Err(StorageError::NotFound);
        }
        for (i, part) in parts.iter().enumerate() {
            if part.part_number as usize != i + 1 {
                return Err(StorageError::Rejected("parts must be numbered 1, 2, 3... in order".into()));
            }
        }
        let dir = self.multipart_dir(&upload_id);
        let files = self.part_files(&dir, &parts).await?;
        let (temp, file) = TempFile::create(self.temp_path()).await.map_err(|e| io_err("assembling the object", e))?;
        let mut sink = Sink::new(file);
        for path in files {
            let part = match file_stream(&path).await {
                Ok(part) => part,
                // Another complete finished (and removed) the upload meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
                Err(e) => return Err(io_err("reading a part", e)),
            };
            sink.pour(part, u64::MAX).await.map_err(|e| match e {
                SinkError::Input(e) => io_err("reading a part", e),
                SinkError::Disk(e) => io_err("assembling the object", e),
                SinkError::TooLong => unreachable!("no limit"),
            })?;
        }
        let (size, digest) = sink.finish_file().await.map_err(|e| io_err("assembling the object", e))?;
        let meta = ObjectMeta { key, size, content_type: upload.content_type, sha256: digest.base64() };
        self.commit_object(temp.path(), &meta).await?;
        temp.kept();
        remove_dir_if_present(&dir, "removing the finished multipart upload").await
    }

    fn unix(at: OffsetDateTime) -> i64 {
        at.unix_timestamp()
    }
}

/// How long a seal is kept: longer than any form lives (`UPLOAD_URL_TTL`
/// is at most 7 days; a day more for clocks), after which the form's own
/// expiry refuses it.
const SEALS_KEPT: Duration = Duration::from_secs(8 * 24 * 3600);

/// Seals a key for good: no form may write it again. Durable before the
/// completion or deletion that seals it answers.
fn write_seal(seal: &Path) -> Result<(), StorageError> {
    place_seal(seal)?;
    sync_dir(seal.parent().expect("seals live in sealed/"))
}

/// The seal's file, not yet durable: the caller syncs `sealed/`.
fn place_seal(seal: &Path) -> Result<(), StorageError> {
    std::fs::write(seal, b"").map_err(|e| io_err("sealing the key", e))
}

/// Removes the files in `dir` last changed longer than `age` ago (for
/// `tmp/`: what crashed or abandoned writes left behind; never objects or
/// parts in place).
async fn remove_older_than(dir: &Path, age: Duration) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return };
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

/// Earlier versions marked the keys a form might write (`open/`, written at
/// every create) instead of sealing the ones it may not: each object of
/// the last [`SEALS_KEPT`] without such a marker was sealed then, so it is
/// sealed now, and the markers go. Uploads still pending keep their keys open.
fn seal_what_open_markers_left(root: &Path) -> Result<(), StorageError> {
    let open = root.join("open");
    if !open.exists() {
        return Ok(());
    }
    let sealed = root.join("sealed");
    let fan_out = std::fs::read_dir(root.join("objects")).map_err(|e| io_err("listing objects", e))?;
    for object in fan_out.flatten().flat_map(|dir| std::fs::read_dir(dir.path()).into_iter().flatten().flatten()) {
        let name = object.file_name();
        let Some(hex) = name.to_str().filter(|name| !name.ends_with(".json")) else { continue };
        let recent = object
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < SEALS_KEPT);
        if recent && !open.join(hex).exists() {
            place_seal(&sealed.join(hex))?;
        }
    }
    sync_dir(&sealed)?;
    std::fs::remove_dir_all(&open).map_err(|e| io_err("removing the open markers", e))
}

/// Earlier versions kept `Chunked` sessions under `multipart/`; moves any
/// left there to `chunked/`, so an upgrade loses no session in progress.
fn move_chunked_sessions(root: &Path) -> Result<(), StorageError> {
    let entries = std::fs::read_dir(root.join("multipart")).map_err(|e| io_err("listing multipart uploads", e))?;
    for entry in entries.flatten() {
        if entry.path().join("chunked.json").exists() {
            std::fs::rename(entry.path(), root.join("chunked").join(entry.file_name()))
                .map_err(|e| io_err("moving a chunked session", e))?;
        }
    }
    Ok(())
}

/// Reads `signing.key`, or makes one if there is none: 32 random bytes,
/// readable by this user only, synced before it is used. A key file that is
/// there but unreadable or too short is an error: replacing it would break
/// every URL signed so far and hide whatever damaged it.
fn load_or_create_secret(root: &Path) -> Result<Vec<u8>, StorageError> {
    let key_path = root.join("signing.key");
    match std::fs::read(&key_path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(secret) => {
            return Err(StorageError::Other {
                context: "opening the embedded store",
                source: format!(
                    "{} holds {} bytes, not a signing key of 32 or more; remove it to make a new one \
                     (URLs signed with the old one stop working)",
                    key_path.display(),
                    secret.len()
                )
                .into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let source = std::io::Error::new(e.kind(), format!("{}: {e}", key_path.display()));
            return Err(io_err("reading the signing key", source));
        }
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(StorageError::other("making the signing key"))?;
    let tmp = root.join("tmp").join("signing.key");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| io_err("writing the signing key", e))?;
    std::io::Write::write_all(&mut file, &secret).map_err(|e| io_err("writing the signing key", e))?;
    file.sync_all().map_err(|e| io_err("writing the signing key", e))?;
    std::fs::rename(&tmp, &key_path).map_err(|e| io_err("writing the signing key", e))?;
    sync_dir(root)?;
    Ok(secret)
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
        write_json_atomic(self.temp_path(), &dir.join("upload.json"), &meta).await?;
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

    /// Assembles on a task of its own, which runs to its end even when the
    /// request that asked is dropped (a client gone during `/complete`): the
    /// object is moved into place whole or not at all, and a second complete
    /// meanwhile finds the upload gone (`NotFound`) and looks for the object
    /// instead.
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[StoredPart]) -> Result<(), StorageError> {
        let (store, key, upload_id, parts) = (self.clone(), key.to_owned(), upload_id.to_owned(), parts.to_vec());
        tokio::spawn(async move { store.assemble(key, upload_id, parts).await })
            .await
            .map_err(StorageError::other("assembling the object"))?
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<(), StorageError> {
        if !is_upload_id(upload_id) {
            return Ok(());
        }
        remove_dir_if_present(&self.multipart_dir(upload_id), "aborting the multipart upload").await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        Ok(self.read_object_meta(key).await?.map(ObjectMeta::into_info))
    }

    async fn head_sealed(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let hex = Self::object_hex(key);
        let (object, meta, seal) = (self.object_path(&hex), self.object_meta_path(&hex), self.seal_path(&hex));
        let sealing = self.sealing.clone();
        let meta: Option<ObjectMeta> = blocking(move || {
            let _sealing = sealing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !object.exists() {
                return Ok(None);
            }
            write_seal(&seal)?;
            read_json_now(&meta)
        })
        .await?;
        Ok(meta.map(ObjectMeta::into_info))
    }

    async fn read_prefix(&self, key: &str, len: u64) -> Result<Vec<u8>, StorageError> {
        // Objects appear under their final name only whole (renamed into
        // place), so whatever is opened here is a complete object. Opened and
        // read in one trip to the blocking pool (tokio::fs takes one per call).
        let path = self.object_path(&Self::object_hex(key));
        blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
                Err(e) => return Err(io_err("opening the object", e)),
            };
            let mut prefix = Vec::with_capacity(len.min(64 * 1024) as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(file, len), &mut prefix)
                .map_err(|e| io_err("reading the object", e))?;
            Ok(prefix)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let hex = Self::object_hex(key);
        let seal = self.seal_path(&hex);
        let paths = [self.object_path(&hex), self.object_meta_path(&hex)];
        let sealing = self.sealing.clone();
        blocking(move || {
            let _sealing = sealing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            write_seal(&seal)?;
            paths.iter().try_for_each(|path| remove_if_present(path, "deleting the object"))
        })
        .await
    }

    async fn create_chunked(&self, key: &str, content_type: &str, size: u64) -> Result<String, StorageError> {
        let session = ulid::Ulid::new().to_string();
        let dir = self.chunked_dir(&session);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io_err("creating the chunked session", e))?;
        tokio::fs::File::create(dir.join("data")).await.map_err(|e| io_err("creating the chunked session", e))?;
        let meta = ChunkedMeta { key: key.to_owned(), content_type: content_type.to_owned(), size };
        write_json_atomic(self.temp_path(), &dir.join("chunked.json"), &meta).await?;
        Ok(session)
    }

    async fn abort_chunked(&self, session: &str) -> Result<(), StorageError> {
        if !is_upload_id(session) {
            return Ok(());
        }
        remove_dir_if_present(&self.chunked_dir(session), "aborting the chunked session").await
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

    fn router(self: Arc<Self>, origins: &[String]) -> Option<Router> {
        Some(Router::new().nest_service(ROUTES, http::router(self, origins)))
    }

    /// Removes temporary files a day old (what crashed writes left behind;
    /// a dropped request removes its own) and seals no form can outlive.
    async fn housekeeping(&self) {
        remove_older_than(&self.root.join("tmp"), Duration::from_secs(24 * 3600)).await;
        remove_older_than(&self.root.join("sealed"), SEALS_KEPT).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing key is private to this user, and one that is there but
    /// damaged stops the store instead of being replaced (which would break
    /// every URL signed so far without a word).
    #[test]
    fn the_signing_key_is_private_and_never_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::open(dir.path(), "http://127.0.0.1:1").unwrap();
        let key_path = dir.path().join("signing.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "signing.key is mode {mode:o}");
        }
        // Opened again, the same key: URLs survive a restart.
        let again = LocalStorage::open(dir.path(), "http://127.0.0.1:1").unwrap();
        assert_eq!(again.secret_hex(), store.secret_hex());

        std::fs::write(&key_path, b"short").unwrap();
        let refused = LocalStorage::open(dir.path(), "http://127.0.0.1:1");
        let message = refused.err().expect("a damaged key must not be replaced").to_string();
        assert!(message.contains("signing.key"), "{message}");
        assert_eq!(std::fs::read(&key_path).unwrap(), b"short", "the damaged key was overwritten");
    }

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta { key: key.into(), size: 2, content_type: "text/plain".into(), sha256: String::new() }
    }

    async fn post(store: &LocalStorage, key: &str) -> Result<(), StorageError> {
        let temp = store.temp_path();
        std::fs::write(&temp, b"hi").unwrap();
        store.commit_form_object(&temp, &meta(key)).await
    }

    /// Signing a form writes nothing (a create costs the disk nothing); the
    /// form writes its key until completion seals it, and never after a
    /// deletion, however often it is replayed.
    #[tokio::test]
    async fn a_form_writes_until_its_key_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::open(dir.path(), "http://localhost").unwrap();
        let files_before = walkdir(dir.path());
        let expires_at = OffsetDateTime::now_utc() + Duration::from_secs(60);
        let target = PostTarget { key: "o/1/a.txt", content_type: "text/plain", size: 2, sha256: None, expires_at };
        store.presign_post(&target).await.unwrap();
        assert_eq!(walkdir(dir.path()), files_before, "signing a form wrote to the disk");

        assert!(store.is_open("o/1/a.txt"));
        post(&store, "o/1/a.txt").await.unwrap();
        post(&store, "o/1/a.txt").await.unwrap();
        assert_eq!(store.head_sealed("o/1/a.txt").await.unwrap().map(|info| info.size), Some(2));
        assert!(!store.is_open("o/1/a.txt"));
        assert!(matches!(post(&store, "o/1/a.txt").await, Err(StorageError::Rejected(_))));

        // Sealing a key with no object yet leaves it open: the form may still come.
        assert_eq!(store.head_sealed("o/2/b.txt").await.unwrap().map(|info| info.size), None);
        assert!(store.is_open("o/2/b.txt"));
        store.delete("o/2/b.txt").await.unwrap();
        assert!(matches!(post(&store, "o/2/b.txt").await, Err(StorageError::Rejected(_))));
        assert_eq!(store.head("o/2/b.txt").await.unwrap().map(|info| info.size), None);
    }

    /// A store an earlier version left, with `open/` markers: what was
    /// sealed then (an object without a marker) is sealed now, a pending key
    /// with its object already there stays open, and `open/` goes.
    #[tokio::test]
    async fn open_markers_of_an_earlier_version_become_seals() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::open(dir.path(), "http://localhost").unwrap();
        post(&store, "o/1/done.txt").await.unwrap();
        post(&store, "o/1/pending.txt").await.unwrap();
        std::fs::remove_dir_all(dir.path().join("sealed")).unwrap();
        std::fs::create_dir(dir.path().join("open")).unwrap();
        std::fs::write(dir.path().join("open").join(LocalStorage::object_hex("o/1/pending.txt")), b"").unwrap();

        let store = LocalStorage::open(dir.path(), "http://localhost").unwrap();
        assert!(!dir.path().join("open").exists());
        assert!(!store.is_open("o/1/done.txt"));
        assert!(matches!(post(&store, "o/1/done.txt").await, Err(StorageError::Rejected(_))));
        assert!(store.is_open("o/1/pending.txt"));
        post(&store, "o/1/pending.txt").await.unwrap();
    }

    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            found.push(entry.path());
            if entry.path().is_dir() {
                found.extend(walkdir(&entry.path()));
            }
        }
        found.sort();
        found
    }

    /// Chunked sessions live apart from multipart uploads; aborting one
    /// removes its bytes, and sessions an earlier version left under
    /// `multipart/` are moved over on open.
    #[tokio::test]
    async fn chunked_sessions_have_their_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::open(dir.path(), "http://localhost").unwrap();
        let session = store.create_chunked("k", "text/plain", 3).await.unwrap();
        assert!(dir.path().join("chunked").join(&session).join("data").exists());
        assert!(!dir.path().join("multipart").join(&session).exists());
        store.abort_chunked(&session).await.unwrap();
        assert!(!dir.path().join("chunked").join(&session).exists());
        store.abort_chunked(&session).await.unwrap();

        let old = ulid::Ulid::new().to_string();
        std::fs::create_dir_all(dir.path().join("multipart").join(&old)).unwrap();
        let meta = ChunkedMeta { key: "k2".into(), content_type: "text/plain".into(), size: 3 };
        std::fs::write(
            dir.path().join("multipart").join(&old).join("chunked.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        let store = LocalStorage::open(dir.path(), "http://localhost").unwrap();
        assert_eq!(store.read_chunked(&old).await.unwrap().key, "k2");
        assert!(!dir.path().join("multipart").join(&old).exists());
    }
}
