//! The worker's sandbox, applied by the worker to itself before any user code runs.
//!
//! Two phases, each a fixed list of steps, listed here in the order the code runs
//! them. [`SandboxConfig`] can switch any step off. If a step fails, the worker
//! refuses to serve. The exception is `allow_degraded`: then the failure is logged
//! at error level, the step is listed as degraded in the [`Report`], and setup goes
//! on. Running as root and an orphaned worker are never degraded (see
//! [`SandboxError::degradable`]).
//!
//! The worker is given no path into the store. `Prepare` and `Init` hand it the one
//! bundle directory it serves as a descriptor, and that descriptor is all the
//! function layer of Landlock lets it read.
//!
//! [`apply_early`], at process start, before the runtime loads:
//!  1. `parent_death`: SIGKILL when the supervisor dies, and check it has not already.
//!  2. `process_group`: leave the supervisor's process group (not its session).
//!  3. `close_inherited_fds`: keep only stdin/stdout/stderr, the socket and the
//!     runtime file opened just before (the Ruby module).
//!  4. `no_new_privs`: no exec can ever gain privileges (Landlock and seccomp need it).
//!  5. `rlimits`: core 0, open files, file size 0, CPU and memory backstops; a
//!     nice value below the supervisor's.
//!  6. `netns`: a new network namespace with no interfaces (root only).
//!  7. `privileges`: drop to the configured uid/gid (root only).
//!  8. `parent_death` again, when 7 ran: a uid/gid change clears the signal.
//!  9. `not_dumpable`: no core, no ptrace and no /proc/<pid>/mem for the same uid.
//! 10. `landlock_early`: no write, create, remove or execute anywhere on the
//!     filesystem, no TCP, scoped signals. Reads are left to the function layer,
//!     the only one that knows the bundle.
//!
//! [`apply_for_function`], on `Prepare` or `Init`, before the bundle's code runs:
//! 11. `landlock_function`: a second layer, read-only beneath the bundle's
//!     descriptor and nothing else on the filesystem. Applied while the worker has
//!     one thread: a layer binds the calling thread and the threads it starts
//!     later, and kernels before 7.0 cannot bind threads already running.
//! 12. `runtime_threads`: the runtime's own threads (wasmtime-wasi's tokio
//!     runtime) start now, so they carry step 11. Not a layer.
//! 13. `function_memory`: the memory rlimit lowered to the function's `memoryMb`.
//! 14. `seccomp`: the syscall allowlist ([`policy`]), installed on every thread.
//!
//! This module runs no user code and reads no user input.

mod config;
mod landlock;
mod netns;
mod policy;
mod privileges;
mod process;
mod report;
mod rlimits;
mod seccomp;

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

pub use config::SandboxConfig;
pub use report::Report;
use report::{Layer, Outcome};

/// What the worker inherited from the supervisor and must keep.
pub struct Inherited {
    /// The supervisor socket (`--fd`), the only descriptor above stderr kept open.
    pub socket_fd: RawFd,
    /// The supervisor's pid (`--parent-pid`). It guards against the supervisor
    /// dying before step 1. Without it, the check falls back to "not reparented to 1".
    pub parent_pid: Option<u32>,
    /// A runtime file opened before the sandbox, kept open (the Ruby module).
    pub runtime_fd: Option<RawFd>,
}

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("prctl(PR_SET_PDEATHSIG) failed: {0}")]
    ParentDeathSignal(#[source] io::Error),
    /// `expected` is 0 when no `--parent-pid` was given (then `actual` is 1).
    #[error("the supervisor is gone: the parent is pid {actual}, expected {expected}")]
    Orphaned { expected: u32, actual: u32 },
    #[error("setpgid failed: {0}")]
    ProcessGroup(#[source] io::Error),
    #[error("socket fd {0} is stdin, stdout or stderr; the supervisor passes 3")]
    SocketFd(RawFd),
    #[error("close_range failed: {0}")]
    CloseFds(#[source] io::Error),
    #[error("prctl(PR_SET_NO_NEW_PRIVS) failed: {0}")]
    NoNewPrivs(#[source] io::Error),
    #[error("setting {resource} failed: {source}")]
    Rlimit { resource: &'static str, source: io::Error },
    #[error("setpriority failed: {0}")]
    Nice(#[source] io::Error),
    #[error("ignoring SIGXFSZ failed: {0}")]
    IgnoreSigxfsz(#[source] io::Error),
    #[error("unshare(CLONE_NEWNET) failed: {0}")]
    NetNs(#[source] io::Error),
    #[error("refusing to run user code as uid {uid}, gid {gid}: the target must not be root")]
    RootTarget { uid: u32, gid: u32 },
    #[error("setgroups([]) failed: {0}")]
    SetGroups(#[source] io::Error),
    #[error("setresgid({0}) failed: {1}")]
    SetGid(u32, #[source] io::Error),
    #[error("setresuid({0}) failed: {1}")]
    SetUid(u32, #[source] io::Error),
    #[error("privileges are not fully dropped: {0}")]
    PrivilegesStillHeld(&'static str),
    #[error("prctl(PR_SET_DUMPABLE, 0) failed: {0}")]
    NotDumpable(#[source] io::Error),
    #[error("Landlock (function): cannot count this process's threads: {0}")]
    ThreadCount(#[source] io::Error),
    #[error("Landlock (function): the worker has {0} threads; a layer would bind only the calling one")]
    Threaded(usize),
    #[error("the runtime's threads did not start: {0}")]
    RuntimeThreads(String),
    #[error("Landlock ({layer}): {source}")]
    Landlock { layer: &'static str, source: ::landlock::RulesetError },
    #[error("Landlock ({layer}) is not fully enforced by this kernel: {status}")]
    LandlockNotEnforced { layer: &'static str, status: String },
    #[error("the function sandbox is already applied: a worker serves one bundle")]
    AlreadySpecialized,
    #[error("seccomp: no filter for this architecture: {0}")]
    SeccompArch(#[source] seccompiler::BackendError),
    #[error("seccomp: building the filter failed: {0}")]
    SeccompBuild(#[source] seccompiler::BackendError),
    #[error("seccomp: installing the filter failed: {0}")]
    SeccompInstall(#[source] seccompiler::Error),
}

impl SandboxError {
    /// Whether `allow_degraded` may turn this failure into a warning. Never for
    /// anything that could leave user code running as root, a worker whose supervisor
    /// is gone, a bad socket fd, or a second bundle in one worker.
    pub fn degradable(&self) -> bool {
        use SandboxError::*;
        !matches!(
            self,
            Orphaned { .. }
                | SocketFd(_)
                | RootTarget { .. }
                | SetGroups(_)
                | SetGid(..)
                | SetUid(..)
                | PrivilegesStillHeld(_)
                | AlreadySpecialized
                | RuntimeThreads(_)
                // Degraded, the function layer would not be applied at all, and
                // the early layer leaves reading to it: the whole filesystem
                // would be readable.
                | ThreadCount(_)
                | Threaded(_)
        )
    }
}

/// What a step did, when it did not fail.
pub enum Done {
    Applied(String),
    /// Nothing to do here, e.g. dropping privileges when not root.
    NotApplicable(&'static str),
}

/// Applies the steps that need no knowledge of the function (run once, at start).
///
/// # Errors
/// The first step that failed and may not be degraded; the worker must exit.
pub fn apply_early(config: &SandboxConfig, inherited: &Inherited) -> Result<Report, SandboxError> {
    let on = &config.layers;
    let mut run = Run::new(config);
    // 1. First: if the supervisor is already gone, do nothing else at all.
    run.step(Layer::ParentDeath, on.parent_death, || process::die_with_parent(inherited.parent_pid))?;
    // 2. Before anything can take a while. A Ctrl-C or a signal sent to the supervisor's
    //    process group then reaches only the supervisor, which drains its workers itself.
    run.step(Layer::ProcessGroup, on.process_group, process::own_process_group)?;
    // 3. Before anything in this process opens a file, so only inherited descriptors
    //    are closed. A leaked one (a writable file, a socket) would get user code past
    //    every layer below: Landlock and seccomp check opening, not using.
    run.step(Layer::InheritedFds, on.close_fds, || {
        process::close_inherited_fds(inherited.socket_fd, inherited.runtime_fd)
    })?;
    // 4. Before the privileged steps and Landlock/seccomp, which both require it.
    run.step(Layer::NoNewPrivs, on.no_new_privs, process::no_new_privs)?;
    // 5. Before the runtime loads, so its memory counts from the start. A runtime that
    //    does not fit the bound fails here, visibly, not at the first invocation.
    run.step(Layer::Rlimits, on.rlimits, || rlimits::apply_early(&config.limits))?;
    // 6. Needs CAP_SYS_ADMIN, so before the drop.
    run.step(Layer::NetNs, on.netns, netns::unshare_network)?;
    // 7. Last of the privileged steps: it takes away the capabilities they need.
    run.step(Layer::Privileges, on.drop_privileges, || privileges::drop_to(config.run_as))?;
    // 8. A uid/gid change clears the parent-death signal (prctl(2)), so set it again.
    if run.report.applied(Layer::Privileges) && on.parent_death {
        run.step(Layer::ParentDeathRearmed, true, || process::die_with_parent(inherited.parent_pid))?;
    }
    // 9. After the drop, because a uid/gid change resets the dumpable flag.
    run.step(Layer::NotDumpable, on.not_dumpable, process::not_dumpable)?;
    // 10. Last, while this process has one thread, so every thread carries it.
    run.step(Layer::LandlockEarly, on.landlock, || landlock::restrict("early", None))?;
    Ok(run.finish())
}

/// Set once [`apply_for_function`] has run: a second bundle layer would leave no
/// bundle readable, and a second seccomp install would be refused anyway.
static SPECIALIZED: AtomicBool = AtomicBool::new(false);

/// Applies the steps that depend on the bundle. Call it on `Prepare` or `Init`, before
/// the runtime reads the bundle. `Prepare` runs user code too: Python, JavaScript and
/// Ruby evaluate the entrypoint's top level. `bundle` is the bundle's directory as
/// the supervisor handed it; `memory_mb` is the function's `memoryMb` (`None` for
/// `Prepare`, which keeps the early bound); `start_threads` starts the runtime's
/// own threads, if it has any (step 12).
///
/// # Errors
/// The first step that failed and may not be degraded. The worker must answer with
/// an error and exit without running the bundle.
pub fn apply_for_function(
    config: &SandboxConfig,
    bundle: BorrowedFd<'_>,
    memory_mb: Option<u64>,
    start_threads: impl FnOnce() -> Result<Done, String>,
) -> Result<Report, SandboxError> {
    if SPECIALIZED.swap(true, Ordering::SeqCst) {
        return Err(SandboxError::AlreadySpecialized);
    }
    let on = &config.layers;
    let mut run = Run::new(config);
    // 11. Stacked on the early layer: access is the intersection of the two, so
    //     reads are now confined to the bundle, and writes stay refused. Before
    //     seccomp, which refuses landlock_*; refused if a second thread is running.
    run.step(Layer::LandlockFunction, on.landlock, || {
        process::single_threaded()?;
        landlock::restrict("function", Some(bundle))
    })?;
    // 12. After 11, so they inherit it; before seccomp, which refuses some of what
    //     starting a tokio runtime takes (its signal driver opens a socketpair).
    run.step(Layer::RuntimeThreads, true, || start_threads().map_err(SandboxError::RuntimeThreads))?;
    // 13. Before seccomp, which refuses prlimit64 writes. Lowering needs no privilege.
    run.step(Layer::FunctionMemory, on.rlimits, || rlimits::lower_memory(&config.limits, memory_mb))?;
    // 14. Last of all: from here on only allowlisted syscalls work, and the ones the
    //     steps above needed (landlock_*, prlimit64 writes, seccomp) are not among them.
    run.step(Layer::Seccomp, on.seccomp, seccomp::install)?;
    Ok(run.finish())
}

/// Runs steps in order and records what each one did.
struct Run<'a> {
    config: &'a SandboxConfig,
    report: Report,
}

impl<'a> Run<'a> {
    fn new(config: &'a SandboxConfig) -> Self {
        Self { config, report: Report::default() }
    }

    fn step(
        &mut self,
        layer: Layer,
        enabled: bool,
        step: impl FnOnce() -> Result<Done, SandboxError>,
    ) -> Result<(), SandboxError> {
        let outcome = if !enabled {
            Outcome::SkippedByConfig
        } else {
            match step() {
                Ok(Done::Applied(detail)) => Outcome::Applied(detail),
                Ok(Done::NotApplicable(why)) => Outcome::NotApplicable(why),
                Err(e) if self.config.allow_degraded && e.degradable() => Outcome::Degraded(e.to_string()),
                Err(e) => return Err(e),
            }
        };
        self.report.record(layer, outcome);
        Ok(())
    }

    fn finish(self) -> Report {
        self.report
    }
}
