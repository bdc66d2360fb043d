//! A network namespace of the worker's own, when started as root: it holds a loopback
//! interface that is down, and nothing else. No route leads anywhere, whatever else
//! fails.

use std::io;

use super::{Done, SandboxError};

/// Moves the worker into a new, empty network namespace. Root only: it needs
/// CAP_SYS_ADMIN.
///
/// Not root (e.g. the shipped systemd unit with DynamicUser), this is not
/// applicable. seccomp then refuses `socket()` itself. A user namespace
/// (`CLONE_NEWUSER | CLONE_NEWNET`) would give an unprivileged worker the same thing,
/// but it exposes much more kernel code to user code, so it is not done here.
pub fn unshare_network() -> Result<Done, SandboxError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Done::NotApplicable("not root; seccomp refuses socket() instead"));
    }
    // SAFETY: unshare takes a flag word and changes only this process's namespaces.
    // CLONE_NEWNET works in a multithreaded process, and this one has a single thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(SandboxError::NetNs(io::Error::last_os_error()));
    }
    Ok(Done::Applied("new network namespace (loopback down, no other interface)".into()))
}
