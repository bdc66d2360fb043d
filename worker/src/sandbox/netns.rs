//! A network namespace of the worker's own, when started as root: it holds a loopback
//! interface that is down, and nothing else. No route leads anywhere, whatever else
//! fails.

use nix::sched::{CloneFlags, unshare};
use nix::unistd::geteuid;

use super::{Done, SandboxError};

/// Moves the worker into a new, empty network namespace. Root only: it needs
/// CAP_SYS_ADMIN.
///
/// Not root (e.g. the shipped systemd unit with DynamicUser), this is not
/// applicable. seccomp then refuses `socket()` itself. A user namespace
/// (`CLONE_NEWUSER | CLONE_NEWNET`) would give an unprivileged worker the same thing,
/// but it exposes much more kernel code to user code, so it is not done here.
pub fn unshare_network() -> Result<Done, SandboxError> {
    if !geteuid().is_root() {
        return Ok(Done::NotApplicable("not root; seccomp refuses socket() instead"));
    }
    // CLONE_NEWNET works in a multithreaded process, and this one has a single thread.
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| SandboxError::NetNs(e.into()))?;
    Ok(Done::Applied("new network namespace (loopback down, no other interface)".into()))
}
