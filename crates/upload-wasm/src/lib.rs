//! Browser client (built out in the next issue).
use wasm_bindgen::prelude::*;

/// Checks a file against constraints given as JSON; returns the error code or `undefined`.
#[wasm_bindgen(js_name = checkFile)]
pub fn check_file(max_file_size: f64, name: &str, size: f64, content_type: &str) -> Option<String> {
    let constraints = upload_core::UploadConstraints { max_file_size: max_file_size as u64, ..Default::default() };
    constraints.check(name, size as u64, content_type).err().map(|e| e.code().as_str().to_owned())
}
