//! What the supervisor tells workers about their sandbox (a typed
//! `SandboxConfig`, which crosses the exec as `--sandbox`), and what it prepares
//! for it: the worker's uid/gid resolved from names, and a data dir the
//! unprivileged worker can read. The sandbox itself is the worker's own
//! (`worker/src/sandbox`); nothing here confines anything.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use polyfaas_protocol::sandbox::{RUNTIME_OVERHEAD_MB, SandboxConfig};
use tracing::warn;

use crate::config::Config;

/// The sandbox every worker of this server gets.
pub fn worker_sandbox(config: &Config) -> Result<SandboxConfig> {
    let mut sandbox = SandboxConfig::default();
    for name in &config.sandbox_disable {
        sandbox.layers.switch_off(name).context("sandbox-disable")?;
        warn!(layer = %name, "sandbox layer switched off by configuration: workers are less isolated");
    }
    if config.sandbox_allow_degraded {
        warn!("sandbox-allow-degraded: workers serve even when a sandbox layer cannot be applied");
    }
    sandbox.allow_degraded = config.sandbox_allow_degraded;
    if is_root() {
        sandbox.run_as.uid = uid_of(&config.worker_user)?;
        sandbox.run_as.gid = gid_of(&config.worker_group)?;
    }
    // Until a function is known, the largest memory a function may have, plus the
    // runtime's own; Init lowers it to the function's memoryMb.
    sandbox.limits.memory_mb = Some(config.max_memory_mb + RUNTIME_OVERHEAD_MB);
    let data = config.data_dir.canonicalize().context("resolving the data dir")?;
    // What a blank worker may read: bundles being prepared or stored.
    sandbox.read_paths = vec![data.join("functions"), data.join("staging")];
    Ok(sandbox)
}

/// When the server runs as root and workers drop to another uid, that uid must be
/// able to reach the store: the data dir is made traversable by others, and every
/// directory above it must already be (they are not ours to change). Checked once
/// here, so a bad location is one clear error instead of every worker refusing.
pub fn prepare_data_dir(config: &Config) -> Result<()> {
    if !is_root() || config.sandbox_disable.iter().any(|l| l == "drop-privileges") {
        return Ok(());
    }
    let data_dir = config.data_dir.canonicalize()?;
    let mode = std::fs::metadata(&data_dir)?.permissions().mode();
    if mode & 0o011 != 0o011 {
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(mode | 0o711))
            .with_context(|| format!("making {} traversable for the worker user", data_dir.display()))?;
    }
    let (uid, gid) = (uid_of(&config.worker_user)?, gid_of(&config.worker_group)?);
    for dir in data_dir.ancestors().skip(1) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir)?;
        let search = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        if meta.mode() & search == 0 {
            bail!(
                "workers run as {} (uid {uid}) and cannot reach the data dir {}: {} is not searchable by them. \
                 Use a data dir they can reach (e.g. --data-dir /var/lib/polyfaas), or run polyfaas as a non-root user",
                config.worker_user,
                data_dir.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn uid_of(user: &str) -> Result<u32> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    let name = CString::new(user)?;
    // SAFETY: `name` is a valid NUL-terminated string; getpwnam returns a pointer to
    // static storage or null, read at once before any other call could reuse it
    // (startup, one thread does this).
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("worker user {user:?} does not exist");
    }
    // SAFETY: non-null, so it points at a valid passwd record (see above).
    Ok(unsafe { (*entry).pw_uid })
}

fn gid_of(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let name = CString::new(group)?;
    // SAFETY: as in `uid_of`, for getgrnam and its group record.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("worker group {group:?} does not exist");
    }
    // SAFETY: non-null, so it points at a valid group record.
    Ok(unsafe { (*entry).gr_gid })
}
