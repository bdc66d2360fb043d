//! Landlock: no write anywhere on the filesystem, reads only beneath the bundle's
//! descriptor, no TCP, and no signals or abstract-socket connections outside the
//! worker.
//!
//! The worker restricts itself twice. At start (`early`) it handles every
//! filesystem right but reading, with no rule: nothing can be written, created,
//! removed or executed. On `Prepare`/`Init` (`function`) it handles every right,
//! with one rule: read beneath the bundle directory the supervisor handed over as
//! a descriptor. Landlock layers stack, and an access must pass every layer, so
//! after the second a worker reads its bundle and nothing else, and nothing can
//! widen that again. No rule names a path: the worker has none.
//!
//! Landlock checks accesses when a file is opened. Descriptors already open (the
//! socket, stdio, the bundle's, a module file that wasmtime has mapped) keep
//! working. It does not check `stat`, `readlink` or path walks, so `canonicalize`
//! still works.

use std::os::fd::BorrowedFd;

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope,
};

use super::{Done, SandboxError};

/// The Landlock ABI this code is written against: v6, Linux 6.12. v4 added TCP
/// bind/connect, v5 device ioctls, and v6 the scopes (abstract unix sockets, signals).
/// v7 only adds audit-log flags. v8 (Linux 7.0) can restrict all threads at once
/// (`all_threads`). Not requested: with best-effort compatibility, a kernel without it
/// would report the whole ruleset as only partly enforced. Instead, each layer is
/// applied while the process has a single thread, so every thread inherits it.
const ABI_TARGET: ABI = ABI::V6;

/// The rights of reading: what the early layer leaves to the function layer.
fn reading() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

/// Restricts this thread, and every thread it starts from now on. With no
/// `bundle` (the early layer): no filesystem access but reading. With a bundle:
/// reading files and listing directories beneath it, nothing else.
///
/// The crate's default compatibility is best effort. On an older kernel it enforces
/// what it can and says so in the status, and the status is judged here. Anything
/// short of "fully enforced" is an error, which `allow_degraded` may let through.
pub fn restrict(layer: &'static str, bundle: Option<BorrowedFd<'_>>) -> Result<Done, SandboxError> {
    let wrap = |source| SandboxError::Landlock { layer, source };
    // Whatever a handled right has no rule for is denied: for the early layer
    // write, create, remove, rename, link, truncate, execute, device ioctl; for
    // the function layer all of those and reading outside the bundle.
    let handled = match bundle {
        Some(_) => AccessFs::from_all(ABI_TARGET),
        None => AccessFs::from_all(ABI_TARGET) & !reading(),
    };
    let mut ruleset = Ruleset::default()
        .handle_access(handled)
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
    if let Some(dir) = bundle {
        // The supervisor opens bundle directories `O_PATH | O_DIRECTORY`; a rule on a
        // directory may grant ReadDir (on a file it may not).
        ruleset = ruleset.add_rule(PathBeneath::new(dir, reading())).map_err(wrap)?;
    }
    let status = ruleset.restrict_self().map_err(wrap)?;
    let what = match bundle {
        Some(_) => "read-only beneath the bundle's descriptor and nowhere else",
        None => "no write, create, remove or execute anywhere",
    };
    match status.ruleset {
        RulesetStatus::FullyEnforced => {
            Ok(Done::Applied(format!("{what}; no TCP; scoped signals and abstract sockets ({:?})", status.landlock)))
        }
        // Partly or not enforced: what the kernel took is in force now and cannot be
        // undone. The rest is missing, and the caller decides whether that is fatal.
        other => Err(SandboxError::LandlockNotEnforced { layer, status: format!("{other:?}, {:?}", status.landlock) }),
    }
}
