//! What this process's control groups allow: the lowest limit on its cgroup
//! path, in the unified (v2) hierarchy or the controller's own (v1) one. Used
//! to size the worker pool to a systemd unit's `MemoryMax=`/`TasksMax=` or a
//! container's limits. Read-only; a missing or unreadable file is no limit.

use std::path::{Path, PathBuf};

/// The lowest `memory.max` (v2) or `memory.limit_in_bytes` (v1) above this process.
pub fn memory_limit() -> Option<u64> {
    lowest(Limit { controller: "memory", v2_file: "memory.max", v1_file: "memory.limit_in_bytes" })
}

/// The lowest `pids.max` above this process: how many tasks (processes and
/// threads) its cgroup may hold, this server's and its workers' together.
pub fn tasks_limit() -> Option<u64> {
    lowest(Limit { controller: "pids", v2_file: "pids.max", v1_file: "pids.max" })
}

struct Limit {
    controller: &'static str,
    v2_file: &'static str,
    v1_file: &'static str,
}

fn lowest(limit: Limit) -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut lowest: Option<u64> = None;
    for line in cgroups.lines() {
        // `hierarchy-id:controllers:path`; v2's line has no controllers.
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let (root, file) = if controllers.is_empty() {
            (PathBuf::from("/sys/fs/cgroup"), limit.v2_file)
        } else if controllers.split(',').any(|c| c == limit.controller) {
            (Path::new("/sys/fs/cgroup").join(limit.controller), limit.v1_file)
        } else {
            continue;
        };
        if let Some(found) = lowest_on_path(&root, path, file) {
            lowest = Some(lowest.map_or(found, |l| l.min(found)));
        }
    }
    lowest
}

/// The lowest `file` from `root/path` up to `root`. "max" (no limit) does not
/// parse, nor does a missing file (the root cgroup has none).
fn lowest_on_path(root: &Path, path: &str, file: &str) -> Option<u64> {
    let mut dir = root.join(path.trim_start_matches('/'));
    let mut lowest: Option<u64> = None;
    loop {
        if let Some(limit) = std::fs::read_to_string(dir.join(file)).ok().and_then(|m| m.trim().parse::<u64>().ok()) {
            lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return lowest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_limit_on_the_path_wins_and_max_is_none() {
        let root = tempfile::tempdir().expect("temp dir");
        let leaf = root.path().join("a/b/c");
        std::fs::create_dir_all(&leaf).expect("dirs");
        std::fs::write(root.path().join("a/pids.max"), "300\n").expect("write");
        std::fs::write(root.path().join("a/b/pids.max"), "max\n").expect("write");
        std::fs::write(leaf.join("pids.max"), "500\n").expect("write");
        assert_eq!(lowest_on_path(root.path(), "/a/b/c", "pids.max"), Some(300));
        assert_eq!(lowest_on_path(root.path(), "/a/b", "memory.max"), None);
        assert_eq!(lowest_on_path(root.path(), "/", "pids.max"), None);
    }
}
