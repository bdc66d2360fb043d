//! What the supervisor tells workers about their sandbox (a typed
//! `SandboxConfig`, which crosses the exec as `--sandbox`), with the worker's
//! uid/gid resolved from names. No path: a worker reaches its bundle only through
//! the descriptor `Prepare` or `Init` hands it. The sandbox itself is the worker's
//! own (`worker/src/sandbox`); nothing here confines anything.

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
    sandbox.limits.nice = config.worker_nice;
    Ok(sandbox)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A uid by number or user name (the passwd database, read once at startup).
fn uid_of(user: &str) -> Result<u32> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user).with_context(|| format!("looking up the worker user {user:?}"))? {
        Some(entry) => Ok(entry.uid.as_raw()),
        None => bail!("worker user {user:?} does not exist"),
    }
}

/// A gid by number or group name.
fn gid_of(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group).with_context(|| format!("looking up the worker group {group:?}"))? {
        Some(entry) => Ok(entry.gid.as_raw()),
        None => bail!("worker group {group:?} does not exist"),
    }
}
