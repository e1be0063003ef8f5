//! The request bodies of the contract parsed from arbitrary bytes, then
//! checked as the server checks them: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upload_core::wire::{CompleteUpload, CreateUpload, SignParts, check_meta, is_base64_sha256};
use upload_core::UploadConstraints;

fuzz_target!(|data: &[u8]| {
    if let Ok(create) = serde_json::from_slice::<CreateUpload>(data) {
        let _ = UploadConstraints::default().check(&create.name, create.size, &create.content_type);
        let _ = check_meta(&create.meta);
        if let Some(sha) = &create.sha256 {
            let _ = is_base64_sha256(sha);
        }
    }
    if let Ok(sign) = serde_json::from_slice::<SignParts>(data) {
        for sha in sign.sha256.values() {
            let _ = is_base64_sha256(sha);
        }
    }
    let _ = serde_json::from_slice::<CompleteUpload>(data);
});
