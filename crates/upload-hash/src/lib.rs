//! SHA-256 and resume records for the browser client (`upload-wasm`'s
//! `checksums` and `resume` options), kept out of the main package: its one
//! JS snippet loads this module (`pkg/hash/`) with a dynamic `import()` only
//! when one of those options is on, so the main package stays small.
//!
//! - [`sum`]: the base64 SHA-256 of a Blob (the form the API and S3's
//!   `x-amz-checksum-sha256` use): the browser's WebCrypto for blobs up to
//!   64 MiB in a secure context, else [`sum_streaming`], this crate's
//!   [`Sha256`] fed 1 MiB slices so memory stays bounded whatever the size;
//! - [`recall`], [`remember`], [`forget`]: the records of multipart uploads
//!   in localStorage (item `upload-wasm:uploads`), by the fingerprint
//!   upload-wasm computes, each kept until its signing window closes.
//!
//! Which file gets which record, and when, is upload-wasm's decision.

use js_sys::{Date, JSON, Object, Reflect, Uint8Array};
use sha2::Digest;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, Storage, SubtleCrypto};

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

/// Bytes read from a Blob at a time by [`sum_streaming`].
const CHUNK: f64 = (1 << 20) as f64;
/// Blobs up to this size are hashed whole by the browser's WebCrypto.
const WHOLE: f64 = (64 << 20) as f64;
/// The localStorage item holding the records, by fingerprint.
const ITEM: &str = "upload-wasm:uploads";

/// The failure upload-wasm reports for a file it cannot read.
fn unreadable() -> JsValue {
    let e: JsValue = js_sys::Error::new("the file cannot be read").into();
    let _ = Reflect::set(&e, &"code".into(), &"invalid_request".into());
    e
}

fn global(name: &str) -> JsValue {
    Reflect::get(&js_sys::global(), &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Base64 SHA-256 of `blob`. WebCrypto where the page has it (a secure
/// context: https or localhost) and the blob is at most 64 MiB: the
/// browser's native SHA-256 (SHA-NI where the CPU has it), outside the main
/// thread, about ten times less CPU than the wasm one; it needs the blob
/// whole in memory, hence the bound. Otherwise [`sum_streaming`].
#[wasm_bindgen]
pub async fn sum(blob: Blob) -> Result<String, JsValue> {
    let subtle = Reflect::get(&global("crypto"), &"subtle".into()).unwrap_or(JsValue::UNDEFINED);
    if subtle.is_undefined() || blob.size() > WHOLE {
        return sum_streaming(blob).await;
    }
    let bytes = JsFuture::from(blob.array_buffer()).await.map_err(|_| unreadable())?;
    let subtle: SubtleCrypto = subtle.unchecked_into();
    let digest = subtle.digest_with_str_and_buffer_source("SHA-256", bytes.unchecked_ref())?;
    let digest = JsFuture::from(digest).await?;
    Ok(base64(&Uint8Array::new(&digest).to_vec()))
}

/// Base64 SHA-256 of `blob` by this crate's Rust, read 1 MiB at a time.
#[wasm_bindgen(js_name = sumStreaming)]
pub async fn sum_streaming(blob: Blob) -> Result<String, JsValue> {
    let mut hash = sha2::Sha256::new();
    let mut buf = Vec::new();
    let mut at = 0.0;
    while at < blob.size() {
        let slice = blob.slice_with_f64_and_f64(at, at + CHUNK).map_err(|_| unreadable())?;
        let bytes = JsFuture::from(slice.array_buffer()).await.map_err(|_| unreadable())?;
        let bytes = Uint8Array::new(&bytes);
        buf.resize(bytes.length() as usize, 0);
        bytes.copy_to(&mut buf);
        hash.update(&buf);
        at += CHUNK;
    }
    Ok(base64(&hash.finalize()))
}

// --- resume records ---------------------------------------------------------

fn storage() -> Option<Storage> {
    let storage = global("localStorage");
    (!storage.is_undefined() && !storage.is_null()).then(|| storage.unchecked_into())
}

/// The records whose signing window is still open (the others are dropped).
fn live() -> Object {
    let all = storage()
        .and_then(|s| s.get_item(ITEM).ok().flatten())
        .and_then(|text| JSON::parse(&text).ok())
        .filter(|v| v.is_object())
        .map_or_else(Object::new, JsValue::unchecked_into);
    let now = Date::now();
    for key in Object::keys(&all).iter() {
        let record = Reflect::get(&all, &key).unwrap_or_default();
        let expires = Reflect::get(&record, &"expires_at".into()).ok().and_then(|e| e.as_string());
        // NaN (no date, not a date) is not in the future either.
        if !expires.is_some_and(|e| Date::parse(&e) > now) {
            let _ = Reflect::delete_property(&all, &key);
        }
    }
    all
}

fn save(all: &Object) {
    let Some(storage) = storage() else { return };
    // A full or disabled storage: resume is lost, the upload is not.
    let _ = if Object::keys(all).length() == 0 {
        storage.remove_item(ITEM)
    } else {
        JSON::stringify(all).map_or(Ok(()), |text| storage.set_item(ITEM, &String::from(text)))
    };
}

/// The upload id of the live record under `key`.
#[wasm_bindgen]
pub fn recall(key: &str) -> Option<String> {
    let record = Reflect::get(&live(), &key.into()).ok()?;
    Reflect::get(&record, &"id".into()).ok()?.as_string()
}

/// Keeps `record` (`{id, name, size, lastModified, endpoint, expires_at}`)
/// under `key` until its `expires_at`.
#[wasm_bindgen]
pub fn remember(key: &str, record: JsValue) {
    let all = live();
    let _ = Reflect::set(&all, &key.into(), &record);
    save(&all);
}

/// Drops the record under `key`.
#[wasm_bindgen]
pub fn forget(key: &str) {
    let all = live();
    let _ = Reflect::delete_property(&all, &key.into());
    save(&all);
}

/// A running SHA-256.
#[wasm_bindgen]
pub struct Sha256(sha2::Sha256);

#[wasm_bindgen]
impl Sha256 {
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Sha256 {
        Sha256(sha2::Sha256::new())
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed, in base64 (44 characters).
    pub fn digest(self) -> String {
        base64(&self.0.finalize())
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn known_digests() {
        // sha256("") and sha256("abc"), base64.
        assert_eq!(Sha256::new().digest(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.digest(), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    async fn blobs_hash_alike_by_webcrypto_and_streaming() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 + (i >> 8)) as u8).collect();
        let blob = Blob::new_with_u8_array_sequence(&js_sys::Array::of1(&Uint8Array::from(&bytes[..]))).unwrap();
        let mut h = Sha256::new();
        h.update(&bytes);
        let want = h.digest();
        assert_eq!(sum_streaming(blob.clone()).await.unwrap(), want);
        assert_eq!(sum(blob).await.unwrap(), want);
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn records_live_until_they_expire() {
        let record = |id: &str, expires: &str| {
            let r = Object::new();
            Reflect::set(&r, &"id".into(), &id.into()).unwrap();
            Reflect::set(&r, &"expires_at".into(), &expires.into()).unwrap();
            JsValue::from(r)
        };
        remember("a", record("u1", "2999-01-01T00:00:00Z"));
        remember("b", record("u2", "2000-01-01T00:00:00Z"));
        assert_eq!(recall("a").as_deref(), Some("u1"));
        assert_eq!(recall("b"), None, "expired");
        forget("a");
        assert_eq!(recall("a"), None);
        let left = storage().unwrap().get_item(ITEM).unwrap();
        assert_eq!(left, None, "nothing left, the item is gone");
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn base64_pads() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}
