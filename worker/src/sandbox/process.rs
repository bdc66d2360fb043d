//! The small process-level steps: parent-death signal, own process group, closing
//! inherited descriptors, no_new_privs, not dumpable. Each one is a syscall or two
//! that touches only this process.

use std::io;
use std::os::fd::RawFd;

use nix::sys::prctl;
use nix::sys::signal::Signal;

use super::{Done, SandboxError};

/// Asks the kernel to SIGKILL this process when its parent dies, then checks that the
/// parent is still the supervisor. If the supervisor died before the `prctl`, no signal
/// will ever come.
///
/// "Parent" here means the supervisor *thread* that forked us (prctl(2)). The supervisor
/// spawns workers from its long-lived pool-runtime threads, never from a blocking-pool
/// thread that may exit after a few idle seconds.
pub fn die_with_parent(expected: Option<u32>) -> Result<Done, SandboxError> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| SandboxError::ParentDeathSignal(e.into()))?;
    let actual = std::os::unix::process::parent_id();
    match expected {
        // The pid the supervisor passed: it also catches reparenting to a subreaper
        // (systemd --user, a container's init), which a "parent is 1" test would miss.
        Some(expected) if actual != expected => Err(SandboxError::Orphaned { expected, actual }),
        Some(expected) => Ok(Done::Applied(format!("SIGKILL when pid {expected} exits"))),
        None if actual == 1 => Err(SandboxError::Orphaned { expected: 0, actual }),
        None => Ok(Done::Applied(format!("SIGKILL when pid {actual} exits (no --parent-pid to check against)"))),
    }
}

/// Makes this process the leader of a process group of its own, in the
/// supervisor's session.
///
/// A group of its own is what keeps the signals meant for the supervisor's group
/// (a terminal's Ctrl-C, a `kill` of the group) from reaching the worker. A
/// session of its own (`setsid`) would add nothing a worker can use, and costs
/// the whole server under load: the kernel's scheduler autogroups (on by
/// default: `kernel.sched_autogroup_enabled`) make each session a CPU group of
/// its own, and measured here (2 cores, 32 connections, Ruby) a worker in a
/// group of one waited up to 116 ms in a run queue while its CPU ran others and
/// the other CPU idled; requests waited up to 870 ms. The terminal the
/// supervisor may have stays out of reach without it: stdin and stdout are
/// `/dev/null`, every inherited descriptor but the socket is closed, Landlock
/// opens nothing but the bundle, and seccomp refuses `ioctl`.
pub fn own_process_group() -> Result<Done, SandboxError> {
    use nix::unistd::{Pid, setpgid};
    // It fails only if we already lead a session, which a freshly forked child
    // of the supervisor does not.
    setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(|e| SandboxError::ProcessGroup(e.into()))?;
    Ok(Done::Applied(format!("process group {} of its own, in the supervisor's session", std::process::id())))
}

/// Closes every descriptor except stdin, stdout, stderr, the supervisor socket and
/// the runtime file the worker opened before this step (the Ruby module, opened while
/// the worker could still read the runtime cache). The supervisor opens all of its
/// files close-on-exec; this step catches the descriptor someone forgets, e.g. one
/// inherited from whatever started the supervisor.
pub fn close_inherited_fds(socket_fd: RawFd, also_keep: Option<RawFd>) -> Result<Done, SandboxError> {
    if socket_fd < 3 {
        return Err(SandboxError::SocketFd(socket_fd));
    }
    let mut keep: Vec<libc::c_uint> = [Some(socket_fd), also_keep]
        .into_iter()
        .flatten()
        .filter_map(|fd| libc::c_uint::try_from(fd).ok())
        .filter(|fd| *fd >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next: libc::c_uint = 3;
    for fd in &keep {
        if *fd > next {
            close_range(next, fd - 1)?;
        }
        next = fd + 1;
    }
    if next < libc::c_uint::MAX {
        close_range(next, libc::c_uint::MAX)?;
    }
    Ok(Done::Applied(format!("only 0, 1, 2 and {keep:?} open")))
}

fn close_range(first: libc::c_uint, last: libc::c_uint) -> Result<(), SandboxError> {
    // SAFETY: this runs before the runtime loads, and `main` has opened nothing but the
    // standard streams (tracing writes to fd 2, which is kept) and the descriptors the
    // caller keeps out of every range. No `OwnedFd`, `File` or other handle in this
    // process refers to a descriptor in [first, last], so closing them cannot
    // invalidate one. `close_range` takes plain integers (Linux 5.9+).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    if rc != 0 {
        return Err(SandboxError::CloseFds(io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets no_new_privs. An execve can then never gain privileges (setuid bits, file
/// capabilities). It is inherited by every thread started later, and Landlock and
/// seccomp need it to work without CAP_SYS_ADMIN.
pub fn no_new_privs() -> Result<Done, SandboxError> {
    prctl::set_no_new_privs().map_err(|e| SandboxError::NoNewPrivs(e.into()))?;
    Ok(Done::Applied("set".into()))
}

/// Marks the process not dumpable. This means no core dump. It also means that
/// another process of the same uid cannot ptrace us or open our /proc/<pid>/mem,
/// environ or fds. That uid is another worker, or under the shipped systemd unit
/// (DynamicUser) the supervisor itself.
pub fn not_dumpable() -> Result<Done, SandboxError> {
    prctl::set_dumpable(false).map_err(|e| SandboxError::NotDumpable(e.into()))?;
    Ok(Done::Applied("not dumpable".into()))
}

/// Fails unless this process runs one thread: the calling one. A Landlock layer
/// binds the thread that applies it and the threads it starts later; one already
/// running would go on without it.
pub fn single_threaded() -> Result<(), SandboxError> {
    match std::fs::read_dir("/proc/self/task").map_err(SandboxError::ThreadCount)?.count() {
        1 => Ok(()),
        n => Err(SandboxError::Threaded(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_thread_is_seen() {
        // The test harness runs this test on a thread of its own, beside main.
        let parked = std::thread::spawn(std::thread::park);
        assert!(matches!(single_threaded(), Err(SandboxError::Threaded(n)) if n >= 3), "main, this test, and one more");
        parked.thread().unpark();
        parked.join().expect("joins");
    }
}
