//! Resource limits. Each is a backstop: the runtimes, the supervisor's deadlines,
//! Landlock and seccomp bound the same things more precisely. Limits are only ever
//! lowered, never raised above what the worker inherited. They are set with
//! soft = hard, so user code cannot raise them back (`prlimit64` writes are also
//! refused by seccomp). The worker's CPU priority goes below the supervisor's
//! here too: only ever lowered, and not raised back by user code.

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use super::config::{Limits, MemoryRlimit};
use super::{Done, SandboxError};

const MIB: u64 = 1 << 20;

/// The limits that hold for the worker's whole life, set before the runtime loads.
pub fn apply_early(limits: &Limits) -> Result<Done, SandboxError> {
    let mut set = Vec::new();
    // No core files: a crashing worker holds a function's code, and maybe request data.
    set.push(limit("RLIMIT_CORE", Resource::RLIMIT_CORE, 0, 0)?);
    // Descriptors are numbered below this. Steps 1–3 left four open.
    set.push(limit("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE, limits.open_files, limits.open_files)?);
    if let Some(n) = limits.processes {
        set.push(limit("RLIMIT_NPROC", Resource::RLIMIT_NPROC, n, n)?);
    }
    // SIGXFSZ first. Once the limit is in force, a write past it (stderr redirected
    // to a file, say) must fail with EFBIG, not kill the worker with a core-dump signal.
    ignore_sigxfsz()?;
    set.push(limit("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes)?);
    if let Some(seconds) = limits.cpu_seconds {
        // SIGXCPU at the soft limit. Python can catch it (`signal` module), so the hard
        // limit, one second later, sends SIGKILL.
        set.push(limit("RLIMIT_CPU", Resource::RLIMIT_CPU, seconds, seconds.saturating_add(1))?);
    }
    if let Some(mb) = limits.memory_mb {
        set.push(memory(limits.memory, mb.saturating_mul(MIB))?);
    }
    if limits.nice > 0 {
        set.push(nicer(limits.nice)?);
    }
    Ok(Done::Applied(set.join(", ")))
}

/// Makes this process `by` nicer than it was started, at most 19 (why:
/// `Limits::nice`). Raising one's own nice value needs no privilege. It changes
/// the calling thread, which is the only one yet; threads started later inherit
/// its value.
fn nicer(by: u8) -> Result<String, SandboxError> {
    use nix::errno::Errno;
    let fail = |e: Errno| SandboxError::Nice(e.into());
    // -1 is a nice value as well as the error return: errno tells them apart.
    Errno::clear();
    // SAFETY: getpriority only reads this thread's scheduling priority.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if current == -1 && Errno::last_raw() != 0 {
        return Err(fail(Errno::last()));
    }
    let target = current.saturating_add(i32::from(by)).min(19);
    // SAFETY: setpriority changes only this thread's scheduling priority (who = 0);
    // it reads and writes none of this process's memory.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) } != 0 {
        return Err(fail(Errno::last()));
    }
    Ok(format!("nice {target}"))
}

/// Lowers the memory bound to the function's `memoryMb` plus the runtime's overhead.
/// Lowering needs no privilege. Never raises.
pub fn lower_memory(limits: &Limits, function_mb: Option<u64>) -> Result<Done, SandboxError> {
    let Some(mb) = function_mb else {
        return Ok(Done::NotApplicable("no function yet (Prepare): the early bound stays"));
    };
    let bytes = mb.saturating_add(limits.memory_overhead_mb).saturating_mul(MIB);
    Ok(Done::Applied(memory(limits.memory, bytes)?))
}

fn memory(kind: MemoryRlimit, bytes: u64) -> Result<String, SandboxError> {
    // Why DATA by default, and what it counts: see `MemoryRlimit`.
    match kind {
        MemoryRlimit::Data => limit("RLIMIT_DATA", Resource::RLIMIT_DATA, bytes, bytes),
        MemoryRlimit::AddressSpace => limit("RLIMIT_AS", Resource::RLIMIT_AS, bytes, bytes),
    }
}

/// Sets `resource` to at most (`soft`, `hard`). A lower limit already in force
/// (from the supervisor, systemd, or an earlier step) stays.
fn limit(name: &'static str, resource: Resource, soft: u64, hard: u64) -> Result<String, SandboxError> {
    let fail = |e: nix::Error| SandboxError::Rlimit { resource: name, source: e.into() };
    let (_, current_hard) = getrlimit(resource).map_err(fail)?;
    let hard = (hard as libc::rlim_t).min(current_hard);
    let soft = (soft as libc::rlim_t).min(hard);
    setrlimit(resource, soft, hard).map_err(fail)?;
    Ok(format!("{name}={soft}"))
}

fn ignore_sigxfsz() -> Result<(), SandboxError> {
    // SAFETY: SIG_IGN is a valid disposition for SIGXFSZ and installs no handler code.
    // Nothing else in the worker handles SIGXFSZ.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        return Err(SandboxError::IgnoreSigxfsz(io::Error::last_os_error()));
    }
    Ok(())
}
