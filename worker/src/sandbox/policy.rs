//! The seccomp policy as data: every syscall the worker may make once user code can
//! run, one entry each, with who needs it. [`super::seccomp`] compiles it to BPF.
//!
//! Anything not listed fails with EPERM, not a kill. Runtimes probe: glibc tries
//! `clone3`, `rseq` and the `getrandom` vDSO, Rust std tries `statx`, and Python's
//! stdlib tries whatever the user calls. An errno lets every one of them fall back,
//! or raise an ordinary exception (`PermissionError` in Python) that the user sees.
//! A kill would show a probe as a worker crash.
//!
//! Three kinds of entry are not plain allows:
//! - `ENOSYS` entries exist so that callers fall back. glibc falls back from `clone3`
//!   to `clone` only on ENOSYS, and wasmtime gives up its memfd image only on ENOSYS.
//! - `KILL` entries are calls no runtime, libc or Python stdlib path makes in normal
//!   work. Only an exploit would call them, so the worker dies at once with SIGSYS,
//!   which the supervisor sees and logs.
//! - Entries with argument checks allow a syscall only in the form the worker uses.
//!   Several entries for one syscall are alternatives (any may match).
//!
//! Refused with EPERM, by their absence (among others): socket, socketpair, connect,
//! bind, listen, accept, accept4, recvmsg/sendmsg (no descriptor passing); fork,
//! vfork, clone without CLONE_THREAD (no processes); execve, execveat; kill/tgkill
//! to any other pid; the setuid/setgid family and capset; mount, umount2, unshare,
//! setns, chroot, pivot_root; ioctl (no terminal or device work); io_uring_* (its
//! operations would bypass this filter); openat2; pidfd_*; landlock_*; seccomp;
//! dup*, pipe*; mlock*; pkey_*.
//!
//! x86_64 x32-ABI numbers (bit 30 set) match no entry, so the allowlist refuses them.

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(i32),
    Kill,
}

pub const ALLOW: Action = Action::Allow;
pub const ENOSYS: Action = Action::Errno(libc::ENOSYS);
pub const KILL: Action = Action::Kill;

/// The errno for every syscall not listed.
pub const DEFAULT_ERRNO: i32 = libc::EPERM;

/// How wide an argument is: `int` (the low 32 bits are compared) or a full word.
#[derive(Debug, Clone, Copy)]
pub enum Width {
    Int,
    Long,
}

#[derive(Debug, Clone, Copy)]
pub enum Check {
    Eq(u64),
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
        value: u64,
    },
    /// Equal to this process's pid, known when the filter is built.
    OwnPid,
}

#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub index: u8,
    pub width: Width,
    pub check: Check,
}

#[derive(Debug)]
pub struct Rule {
    pub nr: i64,
    pub name: &'static str,
    pub action: Action,
    /// All must hold; empty means any arguments.
    pub when: &'static [Arg],
    pub who: &'static str,
}

const fn int_eq(index: u8, value: i32) -> Arg {
    Arg { index, width: Width::Int, check: Check::Eq(value as u64) }
}
const fn int_masked(index: u8, mask: i32, value: i32) -> Arg {
    Arg { index, width: Width::Int, check: Check::MaskedEq { mask: mask as u64, value: value as u64 } }
}
const fn long_masked(index: u8, mask: u64, value: u64) -> Arg {
    Arg { index, width: Width::Long, check: Check::MaskedEq { mask, value } }
}
const fn long_eq(index: u8, value: u64) -> Arg {
    Arg { index, width: Width::Long, check: Check::Eq(value) }
}
const fn own_pid(index: u8) -> Arg {
    Arg { index, width: Width::Int, check: Check::OwnPid }
}

macro_rules! rule {
    ($action:expr, $sys:ident, $who:literal) => {
        Rule { nr: libc::$sys, name: stringify!($sys), action: $action, when: &[], who: $who }
    };
    ($action:expr, $sys:ident, [$($arg:expr),+ $(,)?], $who:literal) => {
        Rule { nr: libc::$sys, name: stringify!($sys), action: $action, when: &[$($arg),+], who: $who }
    };
}

/// Namespace flags that a thread-creating clone must not carry. Thread clones
/// cannot create namespaces anyway, but the filter says so itself. (CLONE_NEWTIME
/// shares its bit with the exit-signal byte of clone(); unshare, the other way in,
/// is refused.)
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// open flags that ask to write, create or truncate. None may be set.
const OPEN_WRITE_BITS: i32 = libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC;

/// The policy for both architectures; [`X86_64_ONLY`] adds the old x86_64 calls.
pub const POLICY: &[Rule] = &[
    // Descriptors the worker already holds. No entry below creates a socket, so these
    // reach only the supervisor socket (and its clone), stdio, the bundle's directory
    // and files, the Ruby module, and tokio's epoll/eventfd/socketpair.
    rule!(ALLOW, SYS_read, "all: bundle files, tokio's eventfd"),
    rule!(ALLOW, SYS_write, "all: tracing on stderr, tokio's eventfd"),
    rule!(ALLOW, SYS_recvfrom, "std UnixStream::read on the supervisor socket (recv)"),
    rule!(ALLOW, SYS_ppoll, "serve.rs: waiting for the supervisor's next frame (glibc poll without SYS_poll)"),
    rule!(ALLOW, SYS_sendto, "std UnixStream::write on the supervisor socket (send with MSG_NOSIGNAL)"),
    rule!(ALLOW, SYS_readv, "std read_vectored, RustPython io"),
    rule!(ALLOW, SYS_writev, "std write_vectored (stderr), RustPython io"),
    rule!(ALLOW, SYS_pread64, "wasmtime/std: reading module and bundle files"),
    rule!(ALLOW, SYS_lseek, "std File, RustPython io"),
    rule!(ALLOW, SYS_close, "all"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_GETFD)], "std, RustPython os"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_SETFD)], "std: close-on-exec"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_GETFL)], "std, RustPython io"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_SETFL)], "std set_nonblocking, mio"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_DUPFD_CLOEXEC)], "std try_clone"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_ADD_SEALS)], "wasmtime: sealing a memory image (memfd)"),
    rule!(ALLOW, SYS_fcntl, [int_eq(1, libc::F_GET_SEALS)], "wasmtime: memfd seals"),
    // The filesystem, read-only. Landlock decides which paths; this refuses writes.
    rule!(ALLOW, SYS_openat, [int_masked(2, OPEN_WRITE_BITS, libc::O_RDONLY)], "runtimes reading the bundle"),
    rule!(ALLOW, SYS_fstat, "std File metadata"),
    rule!(ALLOW, SYS_newfstatat, "glibc stat/lstat (Path::is_file, canonicalize)"),
    rule!(ALLOW, SYS_statx, "std fs::metadata (probes statx first)"),
    rule!(ALLOW, SYS_getdents64, "std read_dir, wasmtime-wasi fd_readdir (Ruby under /app), RustPython os.listdir"),
    rule!(ALLOW, SYS_readlinkat, "glibc realpath (JS loader canonicalize)"),
    rule!(ALLOW, SYS_getcwd, "glibc realpath, RustPython os.getcwd"),
    rule!(ALLOW, SYS_chdir, "RustPython os.chdir (Landlock still decides what can be opened)"),
    rule!(ALLOW, SYS_fchdir, "RustPython os.fchdir"),
    rule!(ALLOW, SYS_faccessat, "RustPython os.access"),
    rule!(ALLOW, SYS_faccessat2, "glibc faccessat (tries faccessat2 first)"),
    // Memory. Private mappings only: RLIMIT_DATA does not count shared ones, so
    // MAP_SHARED (Python's mmap(-1, n) default) would escape the memory bound.
    rule!(ALLOW, SYS_mmap, [int_masked(3, libc::MAP_TYPE, libc::MAP_PRIVATE)], "allocators, wasmtime, thread stacks"),
    rule!(ALLOW, SYS_mmap, [int_masked(3, libc::MAP_TYPE, libc::MAP_DROPPABLE)], "glibc >= 2.41 getrandom vDSO state"),
    rule!(ALLOW, SYS_munmap, "allocators, wasmtime"),
    rule!(ALLOW, SYS_mprotect, "wasmtime: linear-memory growth, JIT code, guard pages; thread stack guards"),
    rule!(ALLOW, SYS_madvise, "wasmtime: slot reset (MADV_DONTNEED); glibc free"),
    rule!(ALLOW, SYS_mremap, "glibc realloc of large blocks"),
    rule!(ALLOW, SYS_brk, "glibc malloc"),
    rule!(ALLOW, SYS_membarrier, "wasmtime: JIT icache coherence on aarch64/riscv64 (compiling on Init)"),
    // Signals, for wasmtime's trap handling and for aborting.
    rule!(ALLOW, SYS_rt_sigaction, "glibc abort; RustPython signal module"),
    rule!(ALLOW, SYS_rt_sigprocmask, "glibc pthread_create, wasmtime traps"),
    rule!(ALLOW, SYS_rt_sigreturn, "wasmtime: returning from its SIGSEGV/SIGILL trap handler"),
    rule!(ALLOW, SYS_sigaltstack, "wasmtime and std: per-thread signal stacks"),
    rule!(ALLOW, SYS_restart_syscall, "kernel: restarting a call interrupted by a signal"),
    rule!(ALLOW, SYS_kill, [own_pid(0)], "RustPython os.kill(os.getpid(), ...); only ourselves"),
    rule!(ALLOW, SYS_tgkill, [own_pid(0)], "glibc raise/abort (Rust panic=abort, alloc failure); only our threads"),
    // Threads, never processes.
    rule!(
        ALLOW,
        SYS_clone,
        [long_masked(0, libc::CLONE_THREAD as u64, libc::CLONE_THREAD as u64), long_masked(0, CLONE_NAMESPACES, 0)],
        "pthread_create: deadline clock, tokio (wasmtime-wasi), rayon (wasmtime compile)"
    ),
    rule!(ENOSYS, SYS_clone3, "glibc >= 2.34 pthread_create tries it first; its flags are in memory, unfilterable"),
    rule!(ALLOW, SYS_set_robust_list, "glibc: every new thread"),
    rule!(ALLOW, SYS_rseq, "glibc >= 2.35: every new thread"),
    rule!(ALLOW, SYS_futex, "std Mutex/Condvar/mpsc, parking_lot, tokio"),
    rule!(ALLOW, SYS_sched_yield, "crossbeam/rayon backoff"),
    rule!(ALLOW, SYS_sched_getaffinity, "std available_parallelism (tokio, rayon pool size)"),
    rule!(ALLOW, SYS_prctl, [int_eq(0, libc::PR_SET_NAME)], "std: naming a new thread"),
    rule!(ALLOW, SYS_prctl, [int_eq(0, libc::PR_GET_NAME)], "glibc pthread_getname_np"),
    rule!(ALLOW, SYS_exit, "a thread ending"),
    rule!(ALLOW, SYS_exit_group, "the worker ending"),
    rule!(ALLOW, SYS_getpid, "std process::id, glibc raise"),
    rule!(ALLOW, SYS_gettid, "glibc raise, tracing thread ids"),
    rule!(ALLOW, SYS_getuid, "RustPython os.getuid (read-only)"),
    rule!(ALLOW, SYS_geteuid, "RustPython os.geteuid (read-only)"),
    rule!(ALLOW, SYS_getgid, "RustPython os.getgid (read-only)"),
    rule!(ALLOW, SYS_getegid, "RustPython os.getegid (read-only)"),
    rule!(
        ALLOW,
        SYS_prlimit64,
        [int_eq(0, 0), long_eq(2, 0)],
        "glibc getrlimit, Python resource: reading our own only"
    ),
    // Waiting, for wasmtime-wasi. Its synchronous WASI calls run on a tokio runtime
    // (enable_io + enable_time) that the worker enters (runtimes/ambient.rs).
    rule!(ALLOW, SYS_epoll_create1, "tokio (wasmtime-wasi ambient runtime)"),
    rule!(ALLOW, SYS_epoll_ctl, "tokio"),
    rule!(ALLOW, SYS_epoll_pwait, "tokio (aarch64 glibc epoll_wait)"),
    rule!(ALLOW, SYS_eventfd2, "mio waker (tokio)"),
    // Time and randomness.
    rule!(ALLOW, SYS_clock_gettime, "Instant/SystemTime when the vDSO falls back; CPU-time clocks"),
    rule!(ALLOW, SYS_clock_getres, "RustPython time.get_clock_info"),
    rule!(ALLOW, SYS_clock_nanosleep, "std thread::sleep, RustPython time.sleep"),
    rule!(ALLOW, SYS_nanosleep, "older glibc sleep"),
    rule!(ALLOW, SYS_gettimeofday, "vDSO fallback"),
    rule!(ALLOW, SYS_getrandom, "HashMap seeds, wasmtime-wasi random_get, Python random/os.urandom, boa Math.random"),
    rule!(ALLOW, SYS_uname, "RustPython platform/os.uname, glibc"),
    // Images from memory (wasmtime compiling in the worker: the Init fallback when no
    // precompiled module fits) fall back to plain copying on ENOSYS. The call would be
    // useless anyway: RLIMIT_FSIZE = 0 keeps every memfd empty.
    rule!(ENOSYS, SYS_memfd_create, "wasmtime memory_init_cow: treats ENOSYS as 'no memfd' and copies"),
    // Calls that only an exploit makes.
    rule!(KILL, SYS_ptrace, "nobody"),
    rule!(KILL, SYS_process_vm_readv, "nobody"),
    rule!(KILL, SYS_process_vm_writev, "nobody"),
    rule!(KILL, SYS_bpf, "nobody"),
    rule!(KILL, SYS_perf_event_open, "nobody"),
    rule!(KILL, SYS_userfaultfd, "nobody (wasmtime dropped its uffd support)"),
    rule!(KILL, SYS_keyctl, "nobody"),
    rule!(KILL, SYS_add_key, "nobody"),
    rule!(KILL, SYS_request_key, "nobody"),
    rule!(KILL, SYS_kexec_load, "nobody"),
    rule!(KILL, SYS_kexec_file_load, "nobody"),
    rule!(KILL, SYS_init_module, "nobody"),
    rule!(KILL, SYS_finit_module, "nobody"),
    rule!(KILL, SYS_delete_module, "nobody"),
];

/// The pre-`*at` calls that x86_64 still has (aarch64 never had them). glibc on x86_64
/// still uses some of them.
#[cfg(target_arch = "x86_64")]
pub const X86_64_ONLY: &[Rule] = &[
    rule!(ALLOW, SYS_stat, "older glibc stat"),
    rule!(ALLOW, SYS_lstat, "older glibc lstat (realpath)"),
    rule!(ALLOW, SYS_access, "glibc access (RustPython os.path checks)"),
    rule!(ALLOW, SYS_readlink, "glibc realpath (JS loader canonicalize)"),
    rule!(ALLOW, SYS_epoll_wait, "tokio/mio via glibc epoll_wait"),
    rule!(ALLOW, SYS_poll, "serve.rs: waiting for the supervisor's next frame (glibc poll)"),
];
#[cfg(not(target_arch = "x86_64"))]
pub const X86_64_ONLY: &[Rule] = &[];

/// Every entry for this architecture.
pub fn rules() -> impl Iterator<Item = &'static Rule> {
    POLICY.iter().chain(X86_64_ONLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_calls_are_not_allowed() {
        let refused = [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_setuid,
            libc::SYS_setresuid,
            libc::SYS_setgroups,
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_chroot,
            libc::SYS_pivot_root,
            libc::SYS_io_uring_setup,
            libc::SYS_ioctl,
            libc::SYS_seccomp,
            libc::SYS_landlock_restrict_self,
            libc::SYS_openat2,
        ];
        for nr in refused {
            assert!(rules().all(|r| r.nr != nr), "syscall {nr} must not be in the policy");
        }
    }

    #[test]
    fn a_syscall_has_one_action_and_is_either_checked_or_not() {
        for rule in rules() {
            for other in rules().filter(|o| o.nr == rule.nr) {
                assert_eq!(rule.action, other.action, "{} has two actions", rule.name);
                assert_eq!(
                    rule.when.is_empty(),
                    other.when.is_empty(),
                    "{} mixes checked and unchecked entries",
                    rule.name
                );
            }
        }
    }

    #[test]
    fn every_entry_says_who_needs_it() {
        assert!(rules().all(|r| !r.who.is_empty()));
    }
}
