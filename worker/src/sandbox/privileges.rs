//! Dropping root. When the worker starts as root, user code runs as the uid/gid the
//! supervisor resolved (default nobody/nogroup), with no supplementary groups and no
//! capabilities. When it does not start as root, there is nothing to drop.

use nix::unistd::{Gid, Uid, geteuid, getresgid, getresuid, setgroups, setresgid, setresuid, setuid};

use super::config::RunAs;
use super::{Done, SandboxError};

/// Drops to `run_as`: supplementary groups, then the gid, then the uid. Each call
/// needs a capability that the next one takes away. The step then checks that
/// root cannot be regained.
///
/// A failure here is never degraded (see `SandboxError::degradable`). Running user
/// code as root is not a weaker sandbox, it is none.
pub fn drop_to(run_as: RunAs) -> Result<Done, SandboxError> {
    if !geteuid().is_root() {
        return Ok(Done::NotApplicable("not root: nothing to drop"));
    }
    let RunAs { uid, gid } = run_as;
    if uid == 0 || gid == 0 {
        return Err(SandboxError::RootTarget { uid, gid });
    }
    let (target_uid, target_gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    // Root's supplementary groups first, while CAP_SETGID is still held. They would
    // otherwise survive the uid change (root's group 0 included).
    setgroups(&[]).map_err(|e| SandboxError::SetGroups(e.into()))?;
    // Real, effective and saved gid, all three, so no saved id allows a switch back.
    // glibc applies set*id to every thread. This process has one thread at this point.
    setresgid(target_gid, target_gid, target_gid).map_err(|e| SandboxError::SetGid(gid, e.into()))?;
    // The uid last. Leaving uid 0 for real, effective and saved clears every capability
    // (no SECBIT_KEEP_CAPS is set), including the ones the two calls above needed.
    setresuid(target_uid, target_uid, target_uid).map_err(|e| SandboxError::SetUid(uid, e.into()))?;
    verify(target_uid, target_gid)?;
    Ok(Done::Applied(format!("uid {uid}, gid {gid}, no supplementary groups, no capabilities")))
}

/// Checks that the ids are the ones asked for and that uid 0 cannot be regained.
fn verify(uid: Uid, gid: Gid) -> Result<(), SandboxError> {
    match getresuid() {
        Ok(ids) if (ids.real, ids.effective, ids.saved) == (uid, uid, uid) => {}
        _ => return Err(SandboxError::PrivilegesStillHeld("the real, effective or saved uid is not the target")),
    }
    match getresgid() {
        Ok(ids) if (ids.real, ids.effective, ids.saved) == (gid, gid, gid) => {}
        _ => return Err(SandboxError::PrivilegesStillHeld("the real, effective or saved gid is not the target")),
    }
    // It must fail now. If it succeeds, we are root again, and the caller refuses to go on.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(SandboxError::PrivilegesStillHeld("setuid(0) succeeded"));
    }
    Ok(())
}
