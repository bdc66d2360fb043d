//! What the corpus tests share: fetching their third-party code once
//! (`scripts/fetch-corpus`, cached under `<target>/corpus`), zipping a directory
//! tree into a bundle, and running a reference program.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::{repo_root, target_dir};

/// `<target>/corpus`, after `scripts/fetch-corpus PART` made sure PART is in it.
/// One fetch at a time: the test threads of one file share it.
pub fn fetched(part: &str) -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let status = Command::new(repo_root().join("scripts").join("fetch-corpus"))
        .arg(part)
        .env("CARGO_TARGET_DIR", target_dir())
        .status()
        .expect("running scripts/fetch-corpus");
    assert!(status.success(), "scripts/fetch-corpus {part} failed: {status}");
    target_dir().join("corpus")
}

/// Every file under `dir`, as (path relative to `dir` with `/`, bytes), prefixed
/// with `prefix`, skipping caches and `skip`ped top-level names.
pub fn files_under(dir: &Path, prefix: &str, skip: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), prefix.to_string())];
    while let Some((path, name)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&path).expect("read_dir").map(|e| e.expect("entry")).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name == "__pycache__" || (path == dir && skip.contains(&file_name.as_str())) {
                continue;
            }
            let child = format!("{name}{file_name}");
            if entry.file_type().expect("file type").is_dir() {
                stack.push((entry.path(), format!("{child}/")));
            } else {
                out.push((child, std::fs::read(entry.path()).expect("read file")));
            }
        }
    }
    out
}

/// A zip of `files`.
pub fn zip_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    super::zip(&entries)
}

/// Runs `cmd` with `stdin`, and returns its stdout; panics with its stderr if it fails.
pub fn run_reference(mut cmd: Command, stdin: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the reference {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&bytes));
    let out = child.wait_with_output().expect("reference output");
    let _ = writer.join();
    assert!(out.status.success(), "the reference {cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
