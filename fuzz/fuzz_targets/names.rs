//! Filename sanitising, keys and Content-Disposition on arbitrary names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upload_core::key::{KeyDate, MAX_SAFE_NAME_LEN, content_disposition, object_key, owner_segment, sanitize_filename};

fuzz_target!(|input: (&str, &str)| {
    let (name, owner) = input;
    let safe = sanitize_filename(name);
    assert!(!safe.is_empty() && safe.len() <= MAX_SAFE_NAME_LEN);
    assert!(!safe.contains(['/', '\\']) && !safe.starts_with('.'));
    assert!(!safe.chars().any(char::is_control));
    assert_eq!(sanitize_filename(&safe), safe);
    let disposition = content_disposition(name);
    assert!(disposition.bytes().all(|b| (0x20..0x7f).contains(&b)));
    if let Ok(segment) = owner_segment(owner) {
        assert!(!segment.contains('/') && segment != "." && segment != "..");
        let key = object_key(owner, KeyDate { year: 2026, month: 1, day: 2 }, "01ABC", name).unwrap();
        assert!(key.starts_with(&format!("uploads/{segment}/")));
        assert!(!key.split('/').any(|part| part == ".." || part == "." || part.is_empty()));
    }
});
