//! Dropping root. When the worker starts as root, user code runs as the uid/gid the
//! supervisor resolved (default nobody/nogroup), with no supplementary groups and no
//! capabilities. When it does not start as root, there is nothing to drop.

use std::io;

use super::config::RunAs;
use super::{Done, SandboxError};

/// Drops to `run_as`: supplementary groups, then the gid, then the uid. Each call
/// needs a capability that the next one takes away. The step then checks that
/// root cannot be regained.
///
/// A failure here is never degraded (see `SandboxError::degradable`). Running user
/// code as root is not a weaker sandbox, it is none.
pub fn drop_to(run_as: RunAs) -> Result<Done, SandboxError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Done::NotApplicable("not root: nothing to drop"));
    }
    let RunAs { uid, gid } = run_as;
    if uid == 0 || gid == 0 {
        return Err(SandboxError::RootTarget { uid, gid });
    }
    // Root's supplementary groups first, while CAP_SETGID is still held. They would
    // otherwise survive the uid change (root's group 0 included).
    // SAFETY: a zero-length list; the kernel does not read the null pointer.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(SandboxError::SetGroups(io::Error::last_os_error()));
    }
    // Real, effective and saved gid, all three, so no saved id allows a switch back.
    // glibc applies set*id to every thread. This process has one thread at this point.
    // SAFETY: plain integer arguments; no memory is passed.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(SandboxError::SetGid(gid, io::Error::last_os_error()));
    }
    // The uid last. Leaving uid 0 for real, effective and saved clears every capability
    // (no SECBIT_KEEP_CAPS is set), including the ones the two calls above needed.
    // SAFETY: plain integer arguments; no memory is passed.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(SandboxError::SetUid(uid, io::Error::last_os_error()));
    }
    verify(uid, gid)?;
    Ok(Done::Applied(format!("uid {uid}, gid {gid}, no supplementary groups, no capabilities")))
}

/// Checks that the ids are the ones asked for and that uid 0 cannot be regained.
fn verify(uid: u32, gid: u32) -> Result<(), SandboxError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid, writable uid_t locations that outlive the call.
    if unsafe { libc::getresuid(&mut r, &mut e, &mut s) } != 0 || (r, e, s) != (uid, uid, uid) {
        return Err(SandboxError::PrivilegesStillHeld("the real, effective or saved uid is not the target"));
    }
    // SAFETY: as above, for gid_t.
    if unsafe { libc::getresgid(&mut r, &mut e, &mut s) } != 0 || (r, e, s) != (gid, gid, gid) {
        return Err(SandboxError::PrivilegesStillHeld("the real, effective or saved gid is not the target"));
    }
    // SAFETY: a plain integer argument. It must fail now. If it succeeds, we are root
    // again, and the caller refuses to go on.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(SandboxError::PrivilegesStillHeld("setuid(0) succeeded"));
    }
    Ok(())
}
