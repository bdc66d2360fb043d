//! The local store's careful writes: files sealed read-only for the worker
//! user and flushed, and replacements that a crash leaves whole.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Makes every file and directory under `dir` readable by the worker uid (0644 /
/// 0755, whatever the umask: a worker may run as another user) and flushes them
/// to disk. Nothing in a bundle is writable by anyone but the supervisor.
pub(super) fn seal_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            seal_tree(&entry.path())?;
        } else if kind.is_file() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644))?;
            fs::File::open(entry.path())?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

pub(super) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` so that a reader sees the old or the new
/// content, never a mix: write a temp file, fsync, rename, fsync the directory.
pub(super) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}
