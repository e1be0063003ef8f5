//! The type a file's first bytes show, and whether they contradict the
//! `accept` list that let its declaration through.
//!
//! The browser's declared type is only a claim: a page of HTML renamed
//! `cat.png` is declared `image/png`, passes every check on the
//! declaration, and the store keeps the type it was told. At completion
//! the server reads the first [`SNIFF_WINDOW`] bytes and asks `infer`.
//!
//! `infer` knows formats by their signature; many formats (plain text,
//! CSV, JSON, XML without a declaration, SVG) have none, so "nothing
//! recognised" is evidence only against a declared type that cannot be
//! written without its signature (a PNG always starts with its eight
//! bytes). A recognised type is compared with the declaration through a
//! few aliases (`audio/wav` is `infer`'s `audio/x-wav`) and containers (a
//! `+xml` type may well be recognised as `text/xml`, a `+zip` one as
//! `application/zip`), so a genuine file is never refused for being named
//! differently.

use std::str::FromStr;

use upload_core::AcceptPattern;

/// How many bytes are read: what `infer` itself reads from a file
/// (`infer::get_from_path`); the deepest signature it knows (tar's, at
/// byte 257) is well inside.
pub(crate) const SNIFF_WINDOW: u64 = 8192;

/// What the server does with the bytes at completion (`UPLOAD_SNIFF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SniffMode {
    /// Read nothing; `detected_type` stays `null`.
    Off,
    /// Detect and record the type; refuse nothing.
    Record,
    /// Detect and record, and refuse a file whose bytes contradict the
    /// `accept` list (with an empty list this is `Record`).
    #[default]
    Enforce,
}

/// `UPLOAD_SNIFF` is none of `off`, `record`, `enforce`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not one of off, record, enforce")]
pub struct UnknownSniffMode(String);

impl FromStr for SniffMode {
    type Err = UnknownSniffMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(SniffMode::Off),
            "record" => Ok(SniffMode::Record),
            "enforce" => Ok(SniffMode::Enforce),
            _ => Err(UnknownSniffMode(s.to_owned())),
        }
    }
}

/// What the first bytes showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sniffed {
    /// `infer`'s MIME type, `None` when no signature matched.
    pub(crate) mime: Option<&'static str>,
    /// `infer`'s extension for it (`jpg`, `png`...).
    extension: Option<&'static str>,
}

/// Detects the type of a file from its first bytes (at most
/// [`SNIFF_WINDOW`]; fewer for a shorter file).
pub(crate) fn sniff(prefix: &[u8]) -> Sniffed {
    match infer::get(prefix) {
        Some(t) => Sniffed { mime: Some(t.mime_type()), extension: Some(t.extension()) },
        None => Sniffed { mime: None, extension: None },
    }
}

/// Refuses a file whose bytes no entry of `accept` allows, saying why.
/// An empty list allows everything, as it does for declarations.
pub(crate) fn check_accept(accept: &[String], name: &str, declared: &str, sniffed: Sniffed) -> Result<(), String> {
    let patterns: Vec<AcceptPattern> = accept.iter().filter_map(|e| AcceptPattern::parse(e)).collect();
    if accept.is_empty() || patterns.iter().any(|p| fits(p, name, declared, sniffed)) {
        return Ok(());
    }
    Err(match sniffed.mime {
        Some(mime) => format!("the file's bytes are {mime}, which the accept list does not allow"),
        None => format!("the file's bytes are not {} (its signature is missing)", essence(declared)),
    })
}

/// Whether one accept entry allows these bytes.
fn fits(pattern: &AcceptPattern, name: &str, declared: &str, sniffed: Sniffed) -> bool {
    match pattern {
        AcceptPattern::Any => true,
        AcceptPattern::Extension(ext) => {
            if !pattern.matches(name, declared) {
                return false;
            }
            // `.png` names a format with a signature: the bytes must show it.
            // `.txt`, `.csv`, `.bin` or `.svg` name none `infer` can check
            // (a text file may start with anything, a `.bin` is any bytes,
            // even ones that happen to look like an MP3), so the name decides.
            if !extension_needs_signature(ext) {
                return true;
            }
            match (sniffed.mime, sniffed.extension) {
                (Some(mime), Some(found)) => same_extension(found, ext) || is_container(mime),
                _ => false,
            }
        }
        AcceptPattern::TypeWildcard(_) | AcceptPattern::Exact(_) => {
            let effective = match sniffed.mime {
                Some(mime) if agrees(mime, declared) => essence(declared),
                Some(mime) => mime,
                None if needs_signature(declared) => return false,
                None => essence(declared),
            };
            pattern.matches(name, effective)
        }
    }
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Names `infer` uses that browsers and people spell otherwise; each group
/// is one format.
const ALIASES: &[&[&str]] = &[
    &["image/jpeg", "image/jpg", "image/pjpeg"],
    &["image/vnd.microsoft.icon", "image/x-icon"],
    &["audio/x-wav", "audio/wav", "audio/wave", "audio/vnd.wave"],
    &["audio/x-flac", "audio/flac"],
    &["audio/x-aiff", "audio/aiff"],
    &["audio/mpeg", "audio/mp3"],
    &["audio/m4a", "audio/x-m4a", "audio/mp4"],
    &["video/x-msvideo", "video/avi", "video/msvideo"],
    &["video/mp4", "video/x-m4v", "audio/mp4"],
    &["audio/ogg", "video/ogg", "application/ogg"],
    &["application/zip", "application/x-zip-compressed", "application/x-zip"],
    &["application/gzip", "application/x-gzip"],
    &["application/vnd.rar", "application/x-rar-compressed", "application/x-rar"],
    &["application/x-7z-compressed", "application/x-7z"],
    &["text/xml", "application/xml"],
    &["application/x-tar", "application/tar"],
];

/// Extensions of one format (`infer` says `jpg` for every JPEG).
const EXTENSION_ALIASES: &[&[&str]] =
    &[&["jpg", "jpeg", "jpe", "jfif"], &["tif", "tiff"], &["htm", "html"], &["mpg", "mpeg"], &["gz", "gzip"]];

fn same_group(groups: &[&[&str]], a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || groups
            .iter()
            .any(|g| g.iter().any(|x| x.eq_ignore_ascii_case(a)) && g.iter().any(|x| x.eq_ignore_ascii_case(b)))
}

fn same_extension(found: &str, ext: &str) -> bool {
    same_group(EXTENSION_ALIASES, found, ext)
}

/// Formats that hold many others: recognising one says little about what
/// the file is meant to be (an `.xlsx`, `.jar` or `.epub` is a zip; an
/// `.svg`, `.xhtml` or `.kml` may be recognised as `text/xml`), and
/// `application/octet-stream` says nothing at all.
fn is_container(mime: &str) -> bool {
    matches!(mime, "application/zip" | "text/xml" | "application/x-ole-storage" | "application/octet-stream")
}

/// Whether what `infer` found is the declared format (or may be it).
/// `application/octet-stream` claims nothing (it is what an unknown file is
/// declared as), so no bytes contradict it.
fn agrees(found: &str, declared: &str) -> bool {
    let declared = essence(declared);
    if declared.eq_ignore_ascii_case("application/octet-stream") {
        return true;
    }
    if same_group(ALIASES, found, declared) {
        return true;
    }
    let declared = declared.to_ascii_lowercase();
    match found {
        "text/xml" => declared.ends_with("+xml"),
        "application/zip" => {
            declared.ends_with("+zip") || declared.starts_with("application/vnd.") || declared.contains("java-archive")
        }
        "application/x-ole-storage" => declared.starts_with("application/vnd.ms-") || declared == "application/x-msi",
        "application/octet-stream" => true,
        _ => false,
    }
}

/// Whether a file of this declared type always starts with a signature
/// `infer` knows, so that finding none contradicts the declaration. Text
/// formats (HTML, XML, shell scripts) are recognised only when they start a
/// certain way and may start otherwise; a certificate is often PEM text.
fn needs_signature(declared: &str) -> bool {
    let declared = essence(declared).to_ascii_lowercase();
    !declared.starts_with("text/")
        && !matches!(declared.as_str(), "application/octet-stream" | "application/x-x509-ca-cert")
        && ALIASES
            .iter()
            .find(|g| g.contains(&declared.as_str()))
            .map_or(infer::is_mime_supported(&declared), |g| g.iter().any(|m| infer::is_mime_supported(m)))
}

/// [`needs_signature`] for an extension.
fn extension_needs_signature(ext: &str) -> bool {
    let canonical = EXTENSION_ALIASES.iter().find(|g| g.contains(&ext)).map_or(ext, |g| g[0]);
    infer::is_supported(canonical) && !matches!(canonical, "htm" | "html" | "xml" | "sh" | "pem" | "der" | "crt")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole 1x1 PNG: 67 bytes, far shorter than the window.
    const TINY_PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
        0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d,
        0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    fn accept(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(list: &[&str], name: &str, declared: &str, bytes: &[u8]) -> Result<(), String> {
        check_accept(&accept(list), name, declared, sniff(bytes))
    }

    #[test]
    fn modes_parse_and_others_are_refused() {
        assert_eq!("off".parse::<SniffMode>().unwrap(), SniffMode::Off);
        assert_eq!(" Record ".parse::<SniffMode>().unwrap(), SniffMode::Record);
        assert_eq!("enforce".parse::<SniffMode>().unwrap(), SniffMode::Enforce);
        assert!("strict".parse::<SniffMode>().unwrap_err().to_string().contains("`strict`"));
    }

    #[test]
    fn what_infer_knows_is_named() {
        assert_eq!(sniff(TINY_PNG).mime, Some("image/png"));
        assert_eq!(sniff(b"<html><body>hi</body></html>").mime, Some("text/html"));
        assert_eq!(sniff(b"PK\x03\x04\x14\x00\x00\x00\x08\x00").mime, Some("application/zip"));
        assert_eq!(sniff(b"hello, plain text").mime, None);
        assert_eq!(sniff(b"").mime, None);
    }

    #[test]
    fn bytes_that_contradict_a_type_rule_are_refused() {
        let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>";
        let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip";
        let err = check(&["image/*"], "cat.png", "image/png", html).unwrap_err();
        assert!(err.contains("text/html"), "{err}");
        assert!(check(&["image/png"], "cat.png", "image/png", zip).is_err());
        // Truncated or empty: a PNG cannot be without its signature.
        assert!(check(&["image/*"], "cat.png", "image/png", &TINY_PNG[..3]).unwrap_err().contains("signature"));
        assert!(check(&["image/*"], "cat.png", "image/png", b"").is_err());
        // A type without a signature is not contradicted by finding none.
        assert!(check(&["text/*"], "notes.txt", "text/plain", b"hello").is_ok());
        assert!(check(&["text/plain"], "notes.txt", "text/plain", html).is_err());
    }

    #[test]
    fn genuine_files_pass_under_their_other_names() {
        assert!(check(&["image/*"], "cat.png", "image/png", TINY_PNG).is_ok());
        // Declared as jpeg, it is a png: still an image, and the rule is about images.
        assert!(check(&["image/*"], "cat.jpg", "image/jpeg", TINY_PNG).is_ok());
        assert!(check(&["image/jpeg"], "cat.jpg", "image/jpeg", TINY_PNG).is_err());
        let wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00";
        assert_eq!(sniff(wav).mime, Some("audio/x-wav"));
        assert!(check(&["audio/wav"], "a.wav", "audio/wav", wav).is_ok());
        let svg = b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        assert!(check(&["image/svg+xml"], "a.svg", "image/svg+xml", svg).is_ok());
        assert!(check(&["image/*"], "a.svg", "image/svg+xml", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>").is_ok());
        let docx_as_zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00";
        assert!(
            check(
                &[".docx"],
                "a.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                docx_as_zip
            )
            .is_ok()
        );
        assert!(check(&["*/*"], "cat.png", "image/png", b"<html> ").is_ok());
        assert!(check(&[], "cat.png", "image/png", b"<html> ").is_ok());
    }

    #[test]
    fn extension_rules_look_at_the_bytes_too() {
        assert!(check(&[".png"], "cat.png", "text/html", b"<html><body>").is_err());
        assert!(check(&[".png"], "cat.png", "application/octet-stream", TINY_PNG).is_ok());
        assert!(check(&[".png"], "cat.png", "image/png", b"no signature").is_err());
        assert!(check(&[".jpeg"], "a.jpeg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00").is_ok());
        assert!(check(&[".txt"], "a.txt", "text/plain", b"just words").is_ok());
        // A name without a checkable format: the name decides, whatever
        // the bytes happen to look like.
        assert!(check(&[".txt"], "a.txt", "text/plain", b"<html><body>").is_ok());
        let looks_like_mp3 = b"\xff\xfb\x90\x00 random bytes";
        assert_eq!(sniff(looks_like_mp3).mime, Some("audio/mpeg"));
        assert!(check(&[".bin"], "a.bin", "application/octet-stream", looks_like_mp3).is_ok());
        assert!(check(&["application/octet-stream"], "a.dat", "application/octet-stream", looks_like_mp3).is_ok());
        // Another rule may allow what the bytes are; one that allows
        // neither the bytes nor (for an extension) the name does not.
        assert!(check(&[".png", "text/*"], "cat.png", "image/png", b"<html><body>").is_ok());
        assert!(check(&[".png", "audio/*"], "cat.png", "image/png", b"<html><body>").is_err());
        assert!(check(&[".gif", "image/*"], "cat.png", "image/png", b"<html><body>").is_err());
    }
}
