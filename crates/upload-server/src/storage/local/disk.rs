//! The local store's files: the descriptions kept beside objects and parts,
//! atomic writes, temporary files, and [`Sink`], the one path by which
//! streamed bytes reach the disk.

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::storage::{ObjectInfo, StorageError};

/// What is kept beside each object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ObjectMeta {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) content_type: String,
    pub(crate) sha256: String,
}

impl ObjectMeta {
    pub(crate) fn into_info(self) -> ObjectInfo {
        ObjectInfo { size: self.size, content_type: Some(self.content_type), checksum_sha256: Some(self.sha256) }
    }
}

/// A multipart upload: its parts are `part-<n>` beside it.
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

/// What is kept beside each stored part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartMeta {
    pub(crate) etag: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

pub(crate) fn io_err(context: &'static str, e: std::io::Error) -> StorageError {
    StorageError::Other { context, source: e.into() }
}

pub(crate) fn remove_if_present(path: &Path, context: &'static str) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(context, e)),
    }
}

/// Removes a directory and what it holds; succeeds if it is already gone.
pub(crate) async fn remove_dir_if_present(dir: &Path, context: &'static str) -> Result<(), StorageError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(context, e)),
    }
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned + Send + 'static>(
    path: &Path,
) -> Result<Option<T>, StorageError> {
    let path = path.to_owned();
    blocking(move || read_json_now(&path)).await
}

pub(crate) fn read_json_now<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StorageError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(StorageError::other("reading metadata")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading metadata", e)),
    }
}

/// Writes `value` as JSON to `path` through the temporary file `temp`.
pub(crate) async fn write_json_atomic<T: Serialize>(temp: PathBuf, path: &Path, value: &T) -> Result<(), StorageError> {
    let path = path.to_owned();
    let bytes = serde_json::to_vec(value).map_err(StorageError::other("writing metadata"))?;
    blocking(move || write_atomic_now(&temp, &path, &bytes)).await
}

/// Writes `bytes` to `temp`, syncs it, renames it to `path` and syncs the
/// directory (a rename is durable only once its directory is).
pub(crate) fn write_atomic_now(temp: &Path, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut file = std::fs::File::create(temp).map_err(|e| io_err("writing metadata", e))?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| io_err("writing metadata", e))?;
    file.sync_all().map_err(|e| io_err("writing metadata", e))?;
    std::fs::rename(temp, path).map_err(|e| io_err("writing metadata", e))?;
    sync_dir(path.parent().expect("a file path has a directory"))
}

/// Makes the renames into `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("syncing a directory", e))
}

/// Runs file system work on the blocking pool, in one trip.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.map_err(StorageError::other("file system task"))?
}

/// A temporary file, deleted when dropped unless [`kept`](TempFile::kept)
/// (once it has been renamed into place). Dropped with its request too, so
/// a client that goes away mid-upload leaves nothing behind.
pub(crate) struct TempFile(Option<PathBuf>);

impl TempFile {
    /// Creates `path` for writing.
    pub(crate) async fn create(path: PathBuf) -> std::io::Result<(TempFile, tokio::fs::File)> {
        let file = tokio::fs::File::create(&path).await?;
        Ok((TempFile(Some(path)), file))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.as_deref().expect("present until kept")
    }

    /// The file was moved into place: nothing to delete.
    pub(crate) fn kept(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Why bytes did not all reach the disk.
#[derive(Debug)]
pub(crate) enum SinkError<E> {
    /// More than the limit arrived; the sink wrote none of the bytes past it.
    TooLong,
    /// The incoming stream failed (a body cut short, a malformed form).
    Input(E),
    /// Writing failed.
    Disk(std::io::Error),
}

/// The one path by which bytes reach the local disk (form files, parts,
/// chunks, assembled objects): what a stream yields is counted against a
/// limit, hashed and written out as it passes, so memory does not grow with
/// the size and nothing is read twice.
pub(crate) struct Sink<W> {
    out: W,
    hasher: Sha256,
    size: u64,
}

impl<W: AsyncWrite + Unpin> Sink<W> {
    pub(crate) fn new(out: W) -> Self {
        Sink { out, hasher: Sha256::new(), size: 0 }
    }

    /// Writes what `input` yields until it ends; fails with
    /// [`SinkError::TooLong`] before writing past `limit` bytes in all.
    pub(crate) async fn pour<S, E>(&mut self, input: S, limit: u64) -> Result<(), SinkError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let mut input = std::pin::pin!(input);
        while let Some(chunk) = input.next().await {
            let chunk = chunk.map_err(SinkError::Input)?;
            if self.size + chunk.len() as u64 > limit {
                return Err(SinkError::TooLong);
            }
            self.hasher.update(&chunk);
            self.out.write_all(&chunk).await.map_err(SinkError::Disk)?;
            self.size += chunk.len() as u64;
        }
        Ok(())
    }

    /// Flushes, and gives back the writer, the size and the SHA-256.
    pub(crate) async fn finish(mut self) -> std::io::Result<(W, u64, Digest256)> {
        self.out.flush().await?;
        Ok((self.out, self.size, Digest256(self.hasher.finalize().into())))
    }
}

impl Sink<tokio::fs::File> {
    /// [`finish`](Sink::finish), then syncs the file to disk and closes it:
    /// nothing is renamed into place before its bytes are durable.
    pub(crate) async fn finish_file(self) -> std::io::Result<(u64, Digest256)> {
        let (file, size, digest) = self.finish().await?;
        file.sync_all().await?;
        Ok((size, digest))
    }
}

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest256([u8; 32]);

impl Digest256 {
    /// Standard base64, as in `x-amz-checksum-sha256`.
    pub(crate) fn base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// An ETag in S3's style: quoted hex (of the first 16 bytes, an MD5's length).
    pub(crate) fn etag(&self) -> String {
        format!("\"{}\"", &hex::encode(self.0)[..32])
    }
}

/// A stored file's bytes as a stream, for [`Sink::pour`].
pub(crate) async fn file_stream(path: &Path) -> std::io::Result<tokio_util::io::ReaderStream<tokio::fs::File>> {
    let file = tokio::fs::File::open(path).await?;
    Ok(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn the_sink_hashes_counts_and_refuses_past_its_limit() {
        let mut sink = Sink::new(Vec::new());
        sink.pour(chunks(&[b"ab", b"c"]), 3).await.unwrap();
        let (out, size, digest) = sink.finish().await.unwrap();
        assert_eq!((out.as_slice(), size), (&b"abc"[..], 3));
        assert_eq!(digest.base64(), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");

        let mut sink = Sink::new(Vec::new());
        assert!(matches!(sink.pour(chunks(&[b"ab", b"cd"]), 3).await, Err(SinkError::TooLong)));
        let (out, size, _) = sink.finish().await.unwrap();
        assert_eq!((out.as_slice(), size), (&b"ab"[..], 2), "nothing past the limit is written");

        let failing = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"a")), Err(std::io::Error::other("cut"))]);
        let mut sink = Sink::new(Vec::new());
        assert!(matches!(sink.pour(failing, 10).await, Err(SinkError::Input(_))));
    }

    /// A temporary file is gone once dropped, unless it was kept.
    #[tokio::test]
    async fn a_temp_file_is_removed_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (dropped, _) = TempFile::create(dir.path().join("a")).await.unwrap();
        let path = dropped.path().to_owned();
        drop(dropped);
        assert!(!path.exists());
        let (kept, _) = TempFile::create(dir.path().join("b")).await.unwrap();
        let path = kept.path().to_owned();
        kept.kept();
        assert!(path.exists());
    }
}
