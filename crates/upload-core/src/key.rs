//! Object keys, file names and download headers.
//!
//! Keys have the shape `uploads/<owner>/<yyyy>/<mm>/<dd>/<id>/<safe-name>`.
//! The owner segment and the name are made safe here, so whatever a user or a
//! token says, the key stays under that owner's prefix.

use core::fmt::Write as _;

/// Longest sanitised file name, in bytes.
pub const MAX_SAFE_NAME_LEN: usize = 200;
/// The name used when nothing usable is left of the declared one.
pub const FALLBACK_NAME: &str = "file";
/// Longest owner id accepted, in bytes.
pub const MAX_OWNER_LEN: usize = 128;

/// Characters AWS advises against in keys, and path separators; each becomes `_`.
const REPLACED: &[char] = &['/', '\\', '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|', ':', '*', '?'];

/// Makes a user-supplied file name safe to use as the last key segment and
/// as a download name: only the last path component is kept (both `/` and
/// `\` count), control and bidi-override characters are dropped, characters
/// S3 and file systems treat specially become `_`, leading dots and spaces
/// and trailing dots and spaces go, and the result is cut to 200 bytes
/// keeping the extension. Unicode letters are kept. Never returns an empty
/// string.
pub fn sanitize_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).find(|part| !part.trim().is_empty()).unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .map(|c| if REPLACED.contains(&c) { '_' } else { c })
        .collect();
    // Unicode whitespace counts as blank, as in the component search above,
    // so that sanitising is idempotent (found by fuzzing: "\u{a0}").
    let trimmed = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        return FALLBACK_NAME.to_owned();
    }
    truncate_keeping_extension(trimmed, MAX_SAFE_NAME_LEN)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = extension(name).filter(|e| e.len() < 16).map(|e| format!(".{e}")).unwrap_or_default();
    let mut stem_end = max - ext.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{ext}", name[..stem_end].trim_end_matches(|c: char| c == '.' || c.is_whitespace()))
}

/// The extension of a file name (without the dot), if it has one. A leading
/// dot (`.bashrc`) is not an extension.
pub fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && !ext.contains(['/', '\\'])).then_some(ext)
}

/// Why an owner id cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerError {
    /// Empty or longer than [`MAX_OWNER_LEN`].
    BadLength,
}

/// Encodes an owner id (a JWT `sub`) into one key segment: ASCII letters,
/// digits, `-` and `_` stay, every other byte becomes `=XX`. The encoding is
/// injective, so two owners never share a prefix, and it can never produce
/// `.`, `..` or a `/`.
pub fn owner_segment(owner: &str) -> Result<String, OwnerError> {
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
        return Err(OwnerError::BadLength);
    }
    let mut out = String::with_capacity(owner.len());
    for b in owner.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    Ok(out)
}

/// The prefix under which every key of this owner lives, ending in `/`.
pub fn owner_prefix(owner: &str) -> Result<String, OwnerError> {
    Ok(format!("uploads/{}/", owner_segment(owner)?))
}

/// A calendar date for the key's `<yyyy>/<mm>/<dd>` segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDate {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day, 1 to 31.
    pub day: u8,
}

/// Builds `uploads/<owner>/<yyyy>/<mm>/<dd>/<id>/<safe-name>`. `id` must be a
/// server-made id (letters and digits); the name is sanitised here.
pub fn object_key(owner: &str, date: KeyDate, id: &str, name: &str) -> Result<String, OwnerError> {
    debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "ids are server-made");
    Ok(format!(
        "{}{:04}/{:02}/{:02}/{id}/{}",
        owner_prefix(owner)?,
        date.year,
        date.month,
        date.day,
        sanitize_filename(name)
    ))
}

/// The `Content-Disposition` value for downloading `name` (RFC 6266 with the
/// RFC 5987 `filename*` parameter for non-ASCII names, and a plain ASCII
/// `filename` fallback for old clients).
pub fn content_disposition(name: &str) -> String {
    let safe = sanitize_filename(name);
    let fallback: String =
        safe.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::with_capacity(safe.len() * 3);
    for b in safe.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_cases() {
        let cases = [
            ("cat.png", "cat.png"),
            ("../../etc/passwd\u{0}.png", "passwd.png"),
            ("..\\x.png", "x.png"),
            ("C:\\Users\\me\\Desktop\\report.pdf", "report.pdf"),
            ("...hidden", "hidden"),
            (".", FALLBACK_NAME),
            ("..", FALLBACK_NAME),
            ("", FALLBACK_NAME),
            ("dir/", "dir"),
            ("résumé 2026.pdf", "résumé 2026.pdf"),
            ("日本語.txt", "日本語.txt"),
            ("a\u{202E}gnp.exe", "agnp.exe"),
            ("what?<>|.txt", "what____.txt"),
            ("trailing. . ", "trailing"),
            ("tab\tand\nnewline.txt", "tabandnewline.txt"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_filename(input), want, "{input:?}");
        }
    }

    #[test]
    fn regression_fuzz_nbsp_only_name_is_idempotent() {
        for name in ["\u{a0}", "a/\u{a0}", ".\u{a0}.", "\u{2003}x\u{2003}"] {
            let once = sanitize_filename(name);
            assert_eq!(sanitize_filename(&once), once, "{name:?}");
        }
        assert_eq!(sanitize_filename("\u{a0}"), FALLBACK_NAME);
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.jpeg", "é".repeat(300));
        let safe = sanitize_filename(&long);
        assert!(safe.len() <= MAX_SAFE_NAME_LEN);
        assert!(safe.ends_with(".jpeg"));
    }

    #[test]
    fn keys_stay_under_the_owner_prefix() {
        let date = KeyDate { year: 2026, month: 11, day: 2 };
        assert_eq!(
            object_key("alice", date, "01ABC", "../../etc/passwd\u{0}.png").unwrap(),
            "uploads/alice/2026/11/02/01ABC/passwd.png"
        );
        assert_eq!(owner_segment("../bob").unwrap(), "=2E=2E=2Fbob");
        assert_eq!(owner_segment("a=2F").unwrap(), "a=3D2F");
        assert_eq!(owner_segment(""), Err(OwnerError::BadLength));
        assert_eq!(owner_segment(&"x".repeat(129)), Err(OwnerError::BadLength));
    }

    #[test]
    fn content_disposition_encodes_unicode() {
        assert_eq!(
            content_disposition("résumé \"1\".pdf"),
            "attachment; filename=\"r_sum_ _1_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20_1_.pdf"
        );
        assert_eq!(content_disposition("a b.txt"), "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt");
    }

    proptest::proptest! {
        #[test]
        fn sanitized_names_are_one_safe_segment(name in "\\PC{0,300}|[./\\\\\\x00-\\x1f]{0,20}") {
            let safe = sanitize_filename(&name);
            proptest::prop_assert!(!safe.is_empty());
            proptest::prop_assert!(safe.len() <= MAX_SAFE_NAME_LEN);
            proptest::prop_assert!(!safe.contains(['/', '\\']));
            proptest::prop_assert!(!safe.starts_with('.'));
            proptest::prop_assert!(!safe.chars().any(char::is_control));
            proptest::prop_assert_eq!(sanitize_filename(&safe), safe.clone(), "idempotent");
        }

        #[test]
        fn owner_segments_are_injective_and_safe(a in "\\PC{1,40}", b in "\\PC{1,40}") {
            let (sa, sb) = (owner_segment(&a).unwrap(), owner_segment(&b).unwrap());
            proptest::prop_assert_eq!(sa == sb, a == b);
            proptest::prop_assert!(sa.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_=".contains(&c)));
        }

        #[test]
        fn content_disposition_is_a_header_safe_value(name in "\\PC{0,80}") {
            let value = content_disposition(&name);
            proptest::prop_assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
    }
}
