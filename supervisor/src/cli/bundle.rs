//! What `polyfaas deploy` uploads: a zip as it is, or a folder zipped here minus
//! what `.polyfaasignore` lists, with the dependencies it declares vendored into
//! a staging copy first ([`super::vendor`]); and the upload's progress bar. It
//! never talks to the server itself and never writes into the user's folder.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::vendor;

/// An upload body that shows its progress on a terminal, for bundles over 1 MiB.
pub fn upload_body(zip: Vec<u8>) -> Box<dyn Read + Send> {
    let len = zip.len() as u64;
    let reader = std::io::Cursor::new(zip);
    if len <= 1 << 20 || !std::io::stderr().is_terminal() {
        return Box::new(reader);
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("uploading {bar:30} {percent:>3}% ({bytes} of {total_bytes}, {eta})")
    {
        bar.set_style(style);
    }
    Box::new(Finishing { inner: bar.wrap_read(reader) })
}

/// Clears the bar once the last byte is read.
struct Finishing<R> {
    inner: indicatif::ProgressBarIter<R>,
}

impl<R: Read> Read for Finishing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.inner.progress.finish_and_clear();
        }
        Ok(n)
    }
}

/// The zip to upload: `path` itself, or the folder `path` zipped; with `vendor`,
/// a folder's `requirements.txt` and `package.json` are installed into a staging
/// copy that is zipped instead.
pub fn bundle_bytes(path: &Path, vendor: bool) -> Result<Vec<u8>> {
    if !path.is_dir() {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let files = folder_files(path)?;
    let declares = |name: &str| files.iter().any(|(relative, _)| relative == name);
    let (python, node) = (declares("requirements.txt"), declares("package.json"));
    if !vendor || !(python || node) {
        return zip_files(files);
    }
    let staging = vendor::Staging::new()?;
    let bundle = staging.bundle();
    for (relative, source) in &files {
        // The folder's own node_modules may hold dev dependencies or another
        // platform's builds: npm installs afresh.
        if node && (relative == "node_modules" || relative.starts_with("node_modules/")) {
            continue;
        }
        let target = bundle.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(source, &target).with_context(|| format!("copying {}", source.display()))?;
    }
    if python {
        vendor::python(&staging).context("vendoring requirements.txt")?;
    }
    if node {
        vendor::node(&staging).context("vendoring package.json")?;
    }
    // What the package managers installed is all kept: `.polyfaasignore` was
    // applied to the folder's own files already.
    zip_files(walk(&bundle, &[])?)
}

/// The folder's files to bundle: all but `.polyfaasignore`'s patterns (one per
/// line: a name, a relative path, or a `*`/`?` glob; `#` comments; a trailing `/`
/// for folders), the ignore file itself and `.git`.
fn folder_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let ignore: Vec<String> = std::fs::read_to_string(root.join(".polyfaasignore"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    walk(root, &ignore)
}

/// The files under `root` not matched by `ignore`, by their `/`-separated
/// relative path, in a stable order.
fn walk(root: &Path, ignore: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let ignored = file_name == ".polyfaasignore"
                || file_name == ".git"
                || ignore.iter().any(|p| glob(p, &relative) || glob(p, &file_name));
            if ignored {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                files.push((relative, path));
            }
        }
    }
    Ok(files)
}

fn zip_files(files: Vec<(String, PathBuf)>) -> Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (relative, path) in files {
        writer.start_file(relative, options)?;
        writer.write_all(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
    }
    Ok(writer.finish()?.into_inner())
}

/// `*` matches any run of characters but `/`, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (t.first().is_some_and(|c| *c != b'/') && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*.log", "a.log"));
        assert!(!glob("*.log", "dir/a.log"));
        assert!(glob("dir/*.log", "dir/a.log"));
        assert!(glob("node_modules", "node_modules"));
        assert!(glob("?.txt", "a.txt"));
        assert!(!glob("?.txt", "ab.txt"));
    }
}
