//! `UploadConstraints::check` and accept parsing on arbitrary input: never a
//! panic, and what passes respects the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upload_core::{AcceptPattern, UploadConstraints};

fuzz_target!(|input: (&str, u64, &str, Vec<&str>)| {
    let (name, size, content_type, accept) = input;
    let constraints = UploadConstraints {
        max_file_size: 1 << 20,
        max_files: 3,
        accept: accept.iter().map(|s| s.to_string()).collect(),
    };
    for entry in &accept {
        let _ = AcceptPattern::parse(entry);
    }
    let _ = constraints.validate();
    if let Ok(normalized) = constraints.check(name, size, content_type) {
        assert!(size >= 1 && size <= 1 << 20);
        assert!(normalized.contains('/'));
        assert!(!normalized.contains(['\r', '\n', '\0']));
        assert!(constraints.accepts(name, &normalized));
    }
    let _ = constraints.check_count(size);
});
