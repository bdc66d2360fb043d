//! Landlock: read-only access beneath a few paths, nothing else on the filesystem, no
//! TCP, and no signals or abstract-socket connections outside the worker.
//!
//! The worker restricts itself twice. It does so at start, to what a blank worker may
//! read (the store and the runtime cache), and again on `Prepare`/`Init`, to the one
//! bundle. Landlock layers stack, and an access must pass every layer, so the second
//! layer narrows the first and nothing can widen it again.
//!
//! Landlock checks accesses when a file is opened. Descriptors already open (the
//! socket, stdio, a module file that wasmtime has mapped) keep working. It does not
//! check `stat`, `readlink` or path walks, so `canonicalize` still works.

use std::path::Path;

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope,
};

use super::{Done, SandboxError};

/// The Landlock ABI this code is written against: v6, Linux 6.12. v4 added TCP
/// bind/connect, v5 device ioctls, and v6 the scopes (abstract unix sockets, signals).
/// v7 only adds audit-log flags. v8 (Linux 7.0) can restrict all threads at once
/// (`all_threads`). Not requested: with best-effort compatibility, a kernel without it
/// would report the whole ruleset as only partly enforced. Instead, the early layer
/// is applied while the process has a single thread, so every thread inherits it.
const ABI_TARGET: ABI = ABI::V6;

/// Restricts this thread, and every thread it starts from now on, to reading files
/// and listing directories beneath `paths`.
///
/// The crate's default compatibility is best effort. On an older kernel it enforces
/// what it can and says so in the status, and the status is judged here. Anything
/// short of "fully enforced" is an error, which `allow_degraded` may let through.
pub fn restrict(layer: &'static str, paths: &[&Path]) -> Result<Done, SandboxError> {
    let wrap = |source| SandboxError::Landlock { layer, source };
    let mut ruleset = Ruleset::default()
        // Every filesystem right is handled, so whatever no rule below grants is denied:
        // write, create, remove, rename, link, truncate, execute, device ioctl.
        .handle_access(AccessFs::from_all(ABI_TARGET))
        .map_err(wrap)?
        // TCP bind and connect are handled with no port rule, so both are denied.
        // seccomp already refuses socket() and the network namespace is empty. This is
        // the third lock on the same door, for when the other two are switched off.
        .handle_access(AccessNet::from_all(ABI_TARGET))
        .map_err(wrap)?
        // No signal to a process outside this Landlock domain (the supervisor, other
        // workers of the same uid), and no connect to an abstract unix socket made
        // outside it. Signals to ourselves (abort, wasmtime) stay allowed.
        .scope(Scope::from_all(ABI_TARGET))
        .map_err(wrap)?
        .create()
        .map_err(wrap)?;
    for path in paths {
        // A rule on a file may grant file rights only (ReadDir on a file is refused).
        let access: BitFlags<AccessFs> =
            if path.is_dir() { AccessFs::ReadFile | AccessFs::ReadDir } else { AccessFs::ReadFile.into() };
        // PathFd opens the path O_PATH now. A path that does not exist is an error
        // here, not a silently missing rule (`path_beneath_rules` would skip it).
        let fd = PathFd::new(path).map_err(|source| SandboxError::LandlockPath {
            layer,
            path: path.to_path_buf(),
            source,
        })?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(wrap)?;
    }
    let status = ruleset.restrict_self().map_err(wrap)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(Done::Applied(format!(
            "read-only beneath [{}]; no TCP; scoped signals and abstract sockets ({:?})",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            status.landlock,
        ))),
        // Partly or not enforced: what the kernel took is in force now and cannot be
        // undone. The rest is missing, and the caller decides whether that is fatal.
        other => Err(SandboxError::LandlockNotEnforced { layer, status: format!("{other:?}, {:?}", status.landlock) }),
    }
}
