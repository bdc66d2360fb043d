//! The worker's sandbox, applied by the worker to itself before any user code runs.
//!
//! Steps, in the order they run:
//! 1. `die_with_parent` — a worker must never outlive the supervisor that feeds it:
//!    an orphan would hold memory and a function's code with nobody to stop it.
//!
//! This module runs no user code and reads no user input.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("prctl(PR_SET_PDEATHSIG) failed: {0}")]
    ParentDeathSignal(#[source] std::io::Error),
    #[error("the supervisor exited before the worker was set up")]
    Orphaned,
}

/// Applies the steps that need no knowledge of the function (run once at start).
pub fn apply_early() -> Result<(), SandboxError> {
    die_with_parent()
}

/// Asks the kernel to SIGKILL this process when its parent dies, then checks the
/// parent is still there: if it died before the `prctl`, no signal will come.
fn die_with_parent() -> Result<(), SandboxError> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::ParentDeathSignal(std::io::Error::last_os_error()));
    }
    // Reparented to init (or a subreaper) means the supervisor is gone.
    if std::os::unix::process::parent_id() == 1 {
        return Err(SandboxError::Orphaned);
    }
    Ok(())
}
