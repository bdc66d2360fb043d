//! The store, reached by descriptor rather than by path.
//!
//! Owns: the directories of `read_paths` (the store's `functions/` and `staging/`),
//! opened `O_PATH` while the worker is still privileged, and [`reach`], which turns
//! a path beneath one of them into `/proc/self/fd/<fd>/<rest>`.
//!
//! Why: a root-run server drops its workers to `nobody`, and the store often lies
//! under a directory `nobody` cannot search (a clone in `/root`, a 0700 home). A
//! path walk from `/` would stop there. Following `/proc/self/fd/<fd>` jumps
//! straight to the directory the descriptor holds, checking no directory above it;
//! the kernel allows a process its own descriptors whatever its uid or dumpable
//! flag (`proc_fd_permission`, `ptrace_may_access` on the same thread group). Below
//! that point the usual permission checks apply, and Landlock checks every file
//! opened this way against its rules, which are on the same directories.
//!
//! Must never: open anything but the configured directories, or hold a descriptor
//! that can write (`O_PATH` grants no read or write by itself).

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Done, SandboxError};

/// Each configured directory and the descriptor that reaches it.
static ROOTS: OnceLock<Vec<(PathBuf, OwnedFd)>> = OnceLock::new();

/// Opens every directory of `paths`, once, before privileges are dropped.
///
/// # Errors
/// A directory that cannot be opened (missing, not a directory); the supervisor
/// creates them before it starts any worker, so this is a broken store.
pub fn open_roots(paths: &[PathBuf]) -> Result<Done, SandboxError> {
    let mut roots = Vec::with_capacity(paths.len());
    for path in paths {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| SandboxError::StoreDir { path: path.clone(), source })?;
        roots.push((path.clone(), OwnedFd::from(dir)));
    }
    let detail = roots
        .iter()
        .map(|(path, fd)| format!("{} as fd {}", path.display(), fd.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(", ");
    ROOTS.set(roots).map_err(|_| SandboxError::StoreOpenedTwice)?;
    Ok(Done::Applied(if detail.is_empty() { "no store directories".into() } else { detail }))
}

/// `path`, or, when it lies beneath a directory opened by [`open_roots`], the same
/// file reached through that directory's descriptor. `path` is the absolute,
/// canonical path the supervisor sent; nothing here reads the filesystem.
pub fn reach(path: &Path) -> PathBuf {
    let Some(roots) = ROOTS.get() else {
        return path.to_path_buf();
    };
    roots
        .iter()
        .find_map(|(root, fd)| {
            let rest = path.strip_prefix(root).ok()?;
            Some(through(fd.as_raw_fd(), rest))
        })
        .unwrap_or_else(|| path.to_path_buf())
}

fn through(fd: i32, rest: &Path) -> PathBuf {
    let base = PathBuf::from(format!("/proc/self/fd/{fd}"));
    if rest.as_os_str().is_empty() { base } else { base.join(rest) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one test that sets the process-wide roots.
    #[test]
    fn files_beneath_a_root_are_read_through_its_descriptor_and_nothing_else_changes() {
        let root = std::env::temp_dir().join(format!("polyfaas-reach-{}", std::process::id()));
        std::fs::create_dir_all(root.join("fn/1")).expect("mkdir");
        std::fs::write(root.join("fn/1/main.py"), "x = 1").expect("write");
        open_roots(std::slice::from_ref(&root)).expect("opens");

        let file = reach(&root.join("fn/1/main.py"));
        assert!(file.starts_with("/proc/self/fd"), "{}", file.display());
        assert_eq!(std::fs::read_to_string(&file).expect("read through the fd"), "x = 1");
        let dir = reach(&root);
        assert!(dir.starts_with("/proc/self/fd") && dir.is_dir(), "{}", dir.display());
        // Outside every root, or sharing only a prefix of its name: unchanged.
        assert_eq!(reach(Path::new("/etc/hostname")), PathBuf::from("/etc/hostname"));
        let sibling = PathBuf::from(format!("{}x/fn", root.display()));
        assert_eq!(reach(&sibling), sibling);
        assert!(matches!(open_roots(&[]), Err(SandboxError::StoreOpenedTwice)));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
