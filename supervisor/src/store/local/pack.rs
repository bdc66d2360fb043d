//! A stored version's files packed into a zip again, for `polyfaas export`: the
//! local store keeps no upload, only what it unpacked. The precompiled modules
//! the store added are left out (the importing node compiles its own), entries
//! go in name order with a fixed timestamp, so packing a version twice gives the
//! same bytes and the same sha256.

use std::fs;
use std::io::Write;
use std::path::Path;

use zip::write::SimpleFileOptions;

use crate::store::integrity;

pub(super) fn pack(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for relative in files {
        writer.start_file(relative.as_str(), options).map_err(std::io::Error::other)?;
        writer.write_all(&fs::read(dir.join(&relative))?)?;
    }
    Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
}

/// Every regular file under `dir`, by its `/`-separated path below `root`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        let relative = path.strip_prefix(root).map_err(std::io::Error::other)?.to_string_lossy().into_owned();
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() && !(dir == root && integrity::is_artifact_name(&relative)) {
            files.push(relative);
        }
    }
    Ok(())
}
