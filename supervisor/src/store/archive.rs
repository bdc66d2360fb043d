//! The export archive: every function of a store with its versions, in one zip,
//! for `polyfaas export` and `polyfaas import` — how a single node's functions
//! move into a cluster's shared store (or back), and a backup.
//!
//! ```text
//! polyfaas-export.json             {"format": 1, "exportedUnix": …, "functions": [{
//!                                     "name", "current", "versions": [{"version",
//!                                     "sha256", "size", "language", "createdUnix"}]}]}
//! functions/<name>/<version>.zip   each version's bundle; sha256 and size are its own
//! ```
//! `format` is the store format (the shared store's `store_format` table holds
//! the same number); an archive of another format is refused whole.
//!
//! Owns the manifest's shape, writing an archive from a store, and reading one
//! back. It must never trust an archive: it is a client's upload. Names must
//! parse as function names, the manifest and each bundle are read with a cap,
//! and a bundle whose bytes do not match its sha256 and size is refused.

use std::fs::File;
use std::io::{Read, Seek, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use super::{BundleStore, FunctionName, StoreError};

/// The store format this server writes and reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "polyfaas-export.json";
/// The largest manifest read.
const MAX_MANIFEST: u64 = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub exported_unix: u64,
    pub functions: Vec<ExportedFunction>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedFunction {
    pub name: String,
    pub current: u64,
    /// Oldest first.
    pub versions: Vec<ExportedVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedVersion {
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub language: String,
    pub created_unix: u64,
}

/// Why an archive cannot be read. Nothing of it was imported.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a polyfaas export archive: {0}")]
    Invalid(String),
    #[error("the archive's store format is {0}; this server reads format {FORMAT}")]
    Format(u32),
}

/// One version's bundle could not be taken from the archive.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadBundle(String);

fn entry_name(function: &str, version: u64) -> String {
    format!("functions/{function}/{version}.zip")
}

/// Writes every function of `store` into `out`; returns the manifest written.
/// A version removed while the archive is written is left out.
pub fn write(store: &dyn BundleStore, out: impl Write + Seek, now_unix: u64) -> Result<Manifest, StoreError> {
    let mut zip = zip::ZipWriter::new(out);
    // Bundles are zips already: stored as they are.
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(false);
    let mut manifest = Manifest { format: FORMAT, exported_unix: now_unix, functions: Vec::new() };
    for deployed in store.list() {
        let Some((current, records)) = store.versions(&deployed.name) else { continue };
        let mut versions = Vec::new();
        for record in records {
            let bytes = match store.bundle_zip(&deployed.name, record.version) {
                Ok(bytes) => bytes,
                Err(StoreError::NoSuchVersion(_)) => continue,
                Err(e) => return Err(e),
            };
            zip.start_file(entry_name(deployed.name.as_str(), record.version), options).map_err(zip_error)?;
            zip.write_all(&bytes)?;
            versions.push(ExportedVersion {
                version: record.version,
                sha256: hex::encode(Sha256::digest(&bytes)),
                size: bytes.len() as u64,
                language: record.language,
                created_unix: record.created_unix,
            });
        }
        if !versions.is_empty() {
            manifest.functions.push(ExportedFunction {
                name: deployed.name.to_string(),
                current: current.version,
                versions,
            });
        }
    }
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Index(e.to_string()))?;
    zip.start_file(MANIFEST, options.compression_method(zip::CompressionMethod::Deflated)).map_err(zip_error)?;
    zip.write_all(&text)?;
    zip.finish().map_err(zip_error)?;
    Ok(manifest)
}

fn zip_error(e: zip::result::ZipError) -> StoreError {
    StoreError::Io(std::io::Error::other(e))
}

/// An archive being read: its manifest, checked, and its bundles on demand.
pub struct Reader {
    zip: zip::ZipArchive<File>,
    pub manifest: Manifest,
}

impl Reader {
    pub fn open(file: File) -> Result<Self, ArchiveError> {
        let invalid = |e: &dyn std::fmt::Display| ArchiveError::Invalid(e.to_string());
        let mut zip = zip::ZipArchive::new(file).map_err(|e| invalid(&e))?;
        let mut text = Vec::new();
        zip.by_name(MANIFEST)
            .map_err(|_| ArchiveError::Invalid(format!("it has no {MANIFEST}")))?
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut text)
            .map_err(|e| invalid(&e))?;
        if text.len() as u64 > MAX_MANIFEST {
            return Err(ArchiveError::Invalid(format!("{MANIFEST} is larger than {MAX_MANIFEST} bytes")));
        }
        // The format first: a later format may have another shape.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format =
            serde_json::from_slice(&text).map_err(|e| ArchiveError::Invalid(format!("{MANIFEST}: {e}")))?;
        if format.format != FORMAT {
            return Err(ArchiveError::Format(format.format));
        }
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| ArchiveError::Invalid(format!("{MANIFEST}: {e}")))?;
        let mut seen = std::collections::HashSet::new();
        for function in &manifest.functions {
            FunctionName::parse(&function.name).map_err(|e| invalid(&e))?;
            if !seen.insert(function.name.as_str()) {
                return Err(ArchiveError::Invalid(format!("{} is listed twice", function.name)));
            }
            let mut numbers: Vec<u64> = function.versions.iter().map(|v| v.version).collect();
            numbers.sort_unstable();
            numbers.dedup();
            if numbers.len() != function.versions.len() || numbers.first().is_none_or(|v| *v == 0) {
                return Err(ArchiveError::Invalid(format!(
                    "{}: versions must be distinct numbers from 1, at least one",
                    function.name
                )));
            }
            if !numbers.contains(&function.current) {
                return Err(ArchiveError::Invalid(format!(
                    "{}: its current version {} is not among its versions",
                    function.name, function.current
                )));
            }
        }
        Ok(Self { zip, manifest })
    }

    /// One version's bundle, at most `max_bytes`, checked against the manifest.
    pub fn bundle(&mut self, function: &str, version: &ExportedVersion, max_bytes: u64) -> Result<Vec<u8>, BadBundle> {
        let name = entry_name(function, version.version);
        let entry = self.zip.by_name(&name).map_err(|_| BadBundle(format!("the archive has no {name}")))?;
        let mut bytes = Vec::new();
        entry
            .take(max_bytes.min(version.size) + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| BadBundle(format!("{name}: {e}")))?;
        if bytes.len() as u64 > max_bytes {
            return Err(BadBundle(format!("{name} is larger than {max_bytes} bytes")));
        }
        if bytes.len() as u64 != version.size || hex::encode(Sha256::digest(&bytes)) != version.sha256 {
            return Err(BadBundle(format!("{name} does not match the size and sha256 the manifest gives it")));
        }
        Ok(bytes)
    }
}
