//! Reading an uploaded bundle: the zip and its `metadata.json`. Pure functions
//! over bytes and a target directory; nothing here knows about versions or HTTP.
//!
//! Every entry is checked before a byte of it is written: the unpacker never
//! follows a name outside the target directory, never writes a link, and stops at
//! the size and count caps however the archive describes itself.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use polyfaas_protocol::{Language, WasmOptions};
use serde::Deserialize;

/// `metadata.json` as uploaded. Unknown fields are an error, not ignored, so a
/// typo in a limit is caught at upload instead of silently taking the default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub language: LanguageField,
    pub entrypoint_file: String,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub concurrency: Option<u32>,
    pub env: Option<BTreeMap<String, String>>,
    /// `false` lets the function's responses go out without the
    /// `Content-Security-Policy: sandbox` the server adds by default.
    pub sandbox_responses: Option<bool>,
    /// WASM only: the command's arguments after its name.
    pub args: Option<Vec<String>>,
    /// WASM only: the response's `content-type` when the output sets none.
    pub content_type: Option<String>,
    /// WASM only: `false` makes stdout the body as is, with no CGI header parsing.
    pub cgi: Option<bool>,
}

impl Metadata {
    /// The WASM options, with the defaults for what `metadata.json` leaves out.
    pub fn wasm_options(&self) -> WasmOptions {
        let default = WasmOptions::default();
        WasmOptions {
            args: self.args.clone().unwrap_or_default(),
            content_type: self.content_type.clone().unwrap_or(default.content_type),
            cgi: self.cgi.unwrap_or(default.cgi),
        }
    }
}

/// The most `args` a WASM bundle may pass, and the longest each may be.
pub const MAX_ARGS: usize = 256;
pub const MAX_ARG_LEN: usize = 4096;
/// The longest `contentType`.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LanguageField {
    Wasm,
    Js,
    Python,
    Ruby,
}

impl BundleError {
    /// The stable error code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::NotAZip(_) => "not_a_zip",
            BundleError::UnsafePath(_) => "unsafe_path",
            BundleError::Link(_) => "link_entry",
            BundleError::Encrypted(_) => "encrypted_entry",
            BundleError::Duplicate(_) => "duplicate_entry",
            BundleError::TooManyEntries(_) => "too_many_entries",
            BundleError::TooLarge(_) => "too_large",
            BundleError::ZipBomb(_) => "zip_bomb",
            BundleError::MissingMetadata | BundleError::BadMetadata(_) | BundleError::MissingEntrypoint(_) => {
                "invalid_bundle"
            }
            BundleError::Io(_) => "internal",
        }
    }
}

impl From<LanguageField> for Language {
    fn from(l: LanguageField) -> Self {
        match l {
            LanguageField::Wasm => Language::Wasm,
            LanguageField::Js => Language::Js,
            LanguageField::Python => Language::Python,
            LanguageField::Ruby => Language::Ruby,
        }
    }
}

/// An entry that inflates more than this many times its compressed size (and
/// to more than a mebibyte) is refused as a zip bomb. Real code and data compress
/// well under 20x; repeated bytes compress about 1000x.
pub const MAX_RATIO: u64 = 200;

/// Caps on what one bundle may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    pub max_entries: usize,
    pub max_unpacked_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the upload is not a readable zip archive: {0}")]
    NotAZip(String),
    #[error("zip entry {0:?} has an unsafe path")]
    UnsafePath(String),
    #[error("zip entry {0:?} is a link; bundles may only hold files and folders")]
    Link(String),
    #[error("zip entry {0:?} is encrypted")]
    Encrypted(String),
    #[error("zip entry {0:?} appears twice")]
    Duplicate(String),
    #[error("the bundle has more than {0} entries")]
    TooManyEntries(usize),
    #[error("the bundle unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("zip entry {0:?} expands more than {MAX_RATIO} times: a zip bomb")]
    ZipBomb(String),
    #[error("metadata.json is missing from the root of the bundle")]
    MissingMetadata,
    #[error("metadata.json is invalid: {0}")]
    BadMetadata(String),
    #[error("entrypointFile {0:?} is not a file in the bundle")]
    MissingEntrypoint(String),
    #[error("cannot write the unpacked bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// Unpacks `zip` into `dir`, which must exist and be empty.
///
/// # Errors
/// A [`BundleError`] naming the first offending entry. `dir` may then hold part
/// of the bundle; the caller removes it.
pub fn unpack(zip: &[u8], dir: &Path, limits: UnpackLimits) -> Result<(), BundleError> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| BundleError::NotAZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries(limits.max_entries));
    }
    // The reader indexes entries by name and keeps one of two that share a name,
    // so compare with the count the archive itself declares: which of two files
    // counts would otherwise depend on the tool that reads the zip.
    if declared_entries(zip).is_some_and(|n| n != archive.len()) {
        return Err(BundleError::Duplicate("an entry name appears twice".into()));
    }
    let mut written: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(m)
                if m == zip::result::ZipError::PASSWORD_REQUIRED || m.contains("ncrypt") =>
            {
                BundleError::Encrypted(format!("#{i}"))
            }
            other => BundleError::NotAZip(other.to_string()),
        })?;
        let raw_name = entry.name().to_string();
        if entry.size() > (1 << 20) && entry.size() / entry.compressed_size().max(1) > MAX_RATIO {
            return Err(BundleError::ZipBomb(raw_name));
        }
        if entry.encrypted() {
            return Err(BundleError::Encrypted(raw_name));
        }
        if entry.is_symlink() {
            return Err(BundleError::Link(raw_name));
        }
        let relative = safe_relative_path(&raw_name).ok_or_else(|| BundleError::UnsafePath(raw_name.clone()))?;
        let target = dir.join(&relative);
        if entry.is_dir() {
            fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&target) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(BundleError::Duplicate(raw_name)),
            Err(e) => return Err(e.into()),
        };
        // Count what is actually inflated, not what the header claims.
        let budget = limits.max_unpacked_bytes - written;
        let mut limited = (&mut entry).take(budget + 1);
        let copied = std::io::copy(&mut limited, &mut file).map_err(|e| BundleError::NotAZip(e.to_string()))?;
        if copied > budget {
            return Err(BundleError::TooLarge(limits.max_unpacked_bytes));
        }
        written += copied;
        file.flush()?;
    }
    Ok(())
}

/// The entry count in the End Of Central Directory record (None for zip64, whose
/// count lives elsewhere, or if the record is not found).
fn declared_entries(zip: &[u8]) -> Option<usize> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    // The record is 22 bytes plus a comment of at most 65,535.
    let tail = &zip[zip.len().saturating_sub(22 + 65_535)..];
    let at = tail.windows(4).rposition(|w| w == EOCD)?;
    let count = tail.get(at + 10..at + 12)?;
    let count = u16::from_le_bytes([count[0], count[1]]);
    (count != u16::MAX).then_some(usize::from(count))
}

/// Accepts a zip entry name only if it is a plain relative path: no `..`, no root,
/// no drive letter, no backslash, no NUL, no empty or `.` components.
fn safe_relative_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\\') || name.contains('\0') || name.starts_with('/') {
        return None;
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    let mut out = PathBuf::new();
    for part in trimmed.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains(':') {
            return None;
        }
        out.push(part);
    }
    if out.components().all(|c| matches!(c, Component::Normal(_))) { Some(out) } else { None }
}

/// The bundle's description, at its root.
pub const METADATA_FILE: &str = "metadata.json";

/// Reads and checks `metadata.json` of an unpacked bundle.
pub fn read_metadata(dir: &Path) -> Result<Metadata, BundleError> {
    let mut text = String::new();
    match fs::File::open(dir.join("metadata.json")) {
        Ok(f) => {
            f.take(64 * 1024 + 1).read_to_string(&mut text).map_err(|e| BundleError::BadMetadata(e.to_string()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BundleError::MissingMetadata),
        Err(e) => return Err(e.into()),
    };
    if text.len() > 64 * 1024 {
        return Err(BundleError::BadMetadata("larger than 64 KiB".into()));
    }
    let metadata = parse_metadata(&text)?;
    let entry = safe_relative_path(&metadata.entrypoint_file)
        .ok_or_else(|| BundleError::MissingEntrypoint(metadata.entrypoint_file.clone()))?;
    // `symlink_metadata`: the unpacker writes no links, but never follow one anyway.
    match fs::symlink_metadata(dir.join(entry)) {
        Ok(m) if m.is_file() => Ok(metadata),
        _ => Err(BundleError::MissingEntrypoint(metadata.entrypoint_file)),
    }
}

/// Parses `metadata.json` text. Checks shape only; limits are checked against the
/// server's configuration by the caller.
pub fn parse_metadata(text: &str) -> Result<Metadata, BundleError> {
    let metadata: Metadata = serde_json::from_str(text).map_err(|e| BundleError::BadMetadata(e.to_string()))?;
    for key in metadata.env.iter().flat_map(|env| env.keys()) {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(BundleError::BadMetadata(format!("env name {key:?} is not a valid variable name")));
        }
    }
    if metadata.env.iter().flat_map(|env| env.values()).any(|v| v.contains('\0')) {
        return Err(BundleError::BadMetadata("env values may not contain NUL".into()));
    }
    check_wasm_options(&metadata)?;
    Ok(metadata)
}

/// `args`, `contentType` and `cgi`: WASM bundles only, bounded, and each usable as
/// what it becomes (a C string in `argv`, an HTTP header value).
fn check_wasm_options(m: &Metadata) -> Result<(), BundleError> {
    let bad = |what: String| Err(BundleError::BadMetadata(what));
    let wasm_only = [("args", m.args.is_some()), ("contentType", m.content_type.is_some()), ("cgi", m.cgi.is_some())];
    if !matches!(m.language, LanguageField::Wasm)
        && let Some((field, _)) = wasm_only.iter().find(|(_, set)| *set)
    {
        return bad(format!("{field} applies to wasm bundles only"));
    }
    let args = m.args.as_deref().unwrap_or_default();
    if args.len() > MAX_ARGS {
        return bad(format!("args has {} entries; at most {MAX_ARGS} are allowed", args.len()));
    }
    for (i, arg) in args.iter().enumerate() {
        if arg.len() > MAX_ARG_LEN {
            return bad(format!("args[{i}] is {} bytes long; at most {MAX_ARG_LEN} are allowed", arg.len()));
        }
        if arg.contains('\0') {
            return bad(format!("args[{i}] contains NUL"));
        }
    }
    if let Some(ct) = &m.content_type {
        if ct.len() > MAX_CONTENT_TYPE_LEN {
            return bad(format!("contentType is {} bytes long; at most {MAX_CONTENT_TYPE_LEN} are allowed", ct.len()));
        }
        let printable = ct.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        if !printable || !ct.contains('/') || ct.starts_with(' ') || ct.ends_with(' ') {
            return bad(format!("contentType {ct:?} is not a media type such as \"text/plain; charset=utf-8\""));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: UnpackLimits = UnpackLimits { max_entries: 100, max_unpacked_bytes: 1 << 20 };

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).expect("start");
            w.write_all(bytes).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("polyfaas-bundle-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn unpacks_a_bundle_and_reads_its_metadata() {
        let dir = tempdir("ok");
        let meta = br#"{"language":"wasm","entrypointFile":"sub/m.wasm","env":{"A":"1"}}"#;
        unpack(&zip_of(&[("metadata.json", meta), ("sub/m.wasm", b"\0asm")]), &dir, LIMITS).expect("unpacks");
        let m = read_metadata(&dir).expect("metadata");
        assert_eq!(m.entrypoint_file, "sub/m.wasm");
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn rejects_unsafe_names() {
        for name in ["../x", "/etc/x", "a/../../x", "a\\b", "C:/x", "a/./b", "a//b", ""] {
            assert!(safe_relative_path(name).is_none(), "{name:?}");
        }
        assert!(safe_relative_path("a/b.js").is_some());
        assert!(safe_relative_path("dir/").is_some());
    }

    #[test]
    fn rejects_traversal_duplicates_and_oversize() {
        let dir = tempdir("bad");
        let err = unpack(&zip_of(&[("../evil", b"x")]), &dir, LIMITS).expect_err("traversal");
        assert!(matches!(err, BundleError::UnsafePath(_)), "{err}");
        // Incompressible, so it is the size cap that stops it.
        let big: Vec<u8> = (0..(2u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let err = unpack(&zip_of(&[("big", &big)]), &tempdir("big"), LIMITS).expect_err("too large");
        assert!(matches!(err, BundleError::TooLarge(_)), "{err}");
        let zeros = vec![0u8; 2 << 20];
        let err = unpack(&zip_of(&[("zeros", &zeros)]), &tempdir("bomb"), LIMITS).expect_err("bomb");
        assert!(matches!(err, BundleError::ZipBomb(_)), "{err}");
        let err = unpack(b"not a zip", &tempdir("nz"), LIMITS).expect_err("not a zip");
        assert!(matches!(err, BundleError::NotAZip(_)), "{err}");
        let many: Vec<(String, &[u8])> = (0..101).map(|i| (format!("f{i}"), &b""[..])).collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let err = unpack(&zip_of(&many), &tempdir("many"), LIMITS).expect_err("too many");
        assert!(matches!(err, BundleError::TooManyEntries(_)), "{err}");
    }

    #[test]
    fn metadata_rejects_unknown_fields_and_languages() {
        assert!(parse_metadata(r#"{"language":"js","entrypointFile":"h.js"}"#).is_ok());
        assert!(parse_metadata(r#"{"language":"js","entrypointFile":"h.js","timeoutMs":5}"#).is_ok());
        for bad in [
            r#"{"language":"cobol","entrypointFile":"h"}"#,
            r#"{"language":"js","entrypointFile":"h.js","extra":1}"#,
            r#"{"language":"js"}"#,
            r#"{"language":"js","entrypointFile":"h.js","env":{"A=B":"x"}}"#,
            "not json",
        ] {
            assert!(parse_metadata(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wasm_options_are_checked() {
        let ok = parse_metadata(
            r#"{"language":"wasm","entrypointFile":"m.wasm","args":["--gfm","-x"],"contentType":"text/html; charset=utf-8","cgi":false}"#,
        )
        .expect("valid");
        let options = ok.wasm_options();
        assert_eq!(options.args, ["--gfm", "-x"]);
        assert_eq!((options.content_type.as_str(), options.cgi), ("text/html; charset=utf-8", false));
        let defaults =
            parse_metadata(r#"{"language":"wasm","entrypointFile":"m.wasm"}"#).expect("valid").wasm_options();
        assert_eq!(defaults, WasmOptions::default());
        let long_arg =
            format!(r#"{{"language":"wasm","entrypointFile":"m","args":["{}"]}}"#, "a".repeat(MAX_ARG_LEN + 1));
        let many_args =
            format!(r#"{{"language":"wasm","entrypointFile":"m","args":[{}]}}"#, vec!["\"a\""; MAX_ARGS + 1].join(","));
        for (bad, says) in [
            (r#"{"language":"wasm","entrypointFile":"m","args":"--gfm"}"#, "invalid type"),
            (r#"{"language":"wasm","entrypointFile":"m","args":[1]}"#, "invalid type"),
            (r#"{"language":"wasm","entrypointFile":"m","cgi":"no"}"#, "invalid type"),
            (r#"{"language":"wasm","entrypointFile":"m","contentType":5}"#, "invalid type"),
            (r#"{"language":"wasm","entrypointFile":"m","contentType":"html"}"#, "not a media type"),
            (r#"{"language":"wasm","entrypointFile":"m","contentType":"text/html\r\nx: y"}"#, "not a media type"),
            (r#"{"language":"wasm","entrypointFile":"m","args":["a\u0000b"]}"#, "NUL"),
            (r#"{"language":"python","entrypointFile":"h.py","args":[]}"#, "wasm bundles only"),
            (long_arg.as_str(), "bytes long"),
            (many_args.as_str(), "entries"),
        ] {
            let err = parse_metadata(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
