//! Starting one `polyfaas-worker` process and talking to it.
//!
//! Two halves, so that the per-request path stays on the request's own thread:
//! - the *exchange* (send one message, wait for the answer, at most a deadline) is
//!   run by whoever holds the [`WorkerProcess`], on its own task. The socket stays
//!   registered with the runtime of the last exchange (its *home*); an exchange
//!   from another runtime moves it (two `epoll_ctl` calls, cheaper than waking a
//!   thread), and the pool hands out workers already at the caller's home first.
//! - the *watcher*, a task on the pool's runtime that owns the child process: it
//!   notices the exit at once (busy or idle), kills on request, reaps, and calls
//!   the pool's exit hook.
//!
//! Dropping a `WorkerProcess` closes its socket, which a worker takes as the
//! order to exit; the watcher kills it if it has not within `SHUTDOWN_GRACE`. An
//! exchange abandoned mid-way (its request was cancelled) therefore retires the
//! worker: its state is unknown.
//!
//! A worker is given no path into the store: the bundle it prepares or serves is
//! sent with `Prepare` or `Init` as a descriptor of its directory ([`open_bundle`]),
//! and the worker reads the bundle through it and through nothing else.
//!
//! A worker runs user code, and user code can write to the worker's socket and
//! stderr directly. So every frame is read against the bound of what a legitimate
//! answer to that exchange can hold (`frame_limit`), and stderr reaches the
//! server's log only as escaped, length- and rate-capped lines labelled with the
//! worker's pid ([`forward_stderr`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use polyfaas_protocol::connection::Connection;
use polyfaas_protocol::launch::WorkerLaunch;
use polyfaas_protocol::{
    Artifact, FailureKind, FromWorker, HttpResponse, Init, Invoke, Language, Logs, MAX_FRAME_LEN, MAX_SMALL_FRAME_LEN,
    Prepare, Stats, ToWorker,
};
use tokio::process::{Child, Command};
use tokio::runtime;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{debug, warn};

use self::stderr::forward_stderr;

mod stderr;

/// How long a retired worker may take to exit before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a worker's clean exit waits for the pool to let go of it before it
/// counts as a death.
const RETIRE_WAIT: Duration = Duration::from_millis(200);
/// How long a broken exchange waits to learn how the process ended.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);

/// A worker's answer to one invocation.
pub enum InvokeOutcome {
    Response { response: HttpResponse, logs: Logs, stats: Stats },
    Failure { kind: FailureKind, message: String, logs: Logs },
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Nothing was sent, so the job can safely go to another worker; an
    /// invocation comes back with it.
    #[error("the worker died before it took the job")]
    GoneBeforeJob(Option<Box<Invoke>>),
    #[error("the worker process died during the job ({0})")]
    Crashed(String),
    #[error("the worker missed its hard deadline and was killed")]
    HardTimeout,
    #[error("the worker broke the protocol: {0}")]
    Protocol(String),
    #[error("cannot start a worker: {0}")]
    Spawn(String),
    /// Nothing was sent: the bundle's directory could not be opened (why, not where).
    #[error("cannot open the stored bundle ({0})")]
    BundleDir(String),
}

/// Why a worker's process ended; passed to the pool's exit hook.
#[derive(Debug, Clone)]
pub enum ExitReason {
    /// The pool let go of it and it exited (or was killed after the grace).
    Retired,
    Died(String),
    Killed(KillReason),
}

/// Why the pool killed a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// It did not answer within its invocation's hard deadline.
    HardDeadline,
    /// An operator's forced restart.
    OnRequest,
    /// It answered out of turn or sent a frame that does not decode.
    ProtocolError,
}

impl std::fmt::Display for KillReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KillReason::HardDeadline => "hard deadline",
            KillReason::OnRequest => "on request",
            KillReason::ProtocolError => "protocol error",
        })
    }
}

/// Makes a worker's watcher SIGKILL the process at once, busy or not.
#[derive(Default)]
pub struct KillSwitch {
    notify: Notify,
    /// The first reason given wins.
    reason: Mutex<Option<KillReason>>,
}

impl KillSwitch {
    pub fn kill(&self, reason: KillReason) {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(reason);
        self.notify.notify_one();
    }

    fn reason(&self) -> KillReason {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or(KillReason::OnRequest)
    }
}

/// A worker's socket and the runtime it is registered with.
struct Socket {
    conn: Connection,
    home: runtime::Id,
}

/// The runtime this task runs on: a worker's home once it runs an exchange here.
pub fn current_runtime() -> Option<runtime::Id> {
    runtime::Handle::try_current().ok().map(|h| h.id())
}

/// A started worker, as the pool holds it.
pub struct WorkerProcess {
    pub id: u64,
    pub pid: u32,
    pub kill: Arc<KillSwitch>,
    /// Dropped with this handle: tells the watcher the pool let go. Declared
    /// before `socket` so that it drops first: the worker exits cleanly when its
    /// socket closes, and the watcher must already know that was a retirement.
    _retire: oneshot::Sender<()>,
    /// The socket, registered with its home runtime; `None` once an exchange
    /// broke (the worker is then unusable and only waits to be dropped).
    socket: Option<Socket>,
    /// The largest answer to an `Invoke` this worker may send: set from the
    /// function's limits at `Init` (small before, when no answer has a body).
    answer_limit: usize,
    /// How the process ended, once it has (set by the watcher).
    exited: watch::Receiver<Option<String>>,
    /// Its memory was measured since it was specialized (at its first check-in).
    pub measured: bool,
}

impl WorkerProcess {
    /// Starts a worker for `language` and waits for its `Hello`. Call it on the
    /// pool's runtime: the watcher is spawned on the current one. `on_exit` is
    /// called once, from the watcher, when the process is gone.
    pub async fn start(
        id: u64,
        worker_bin: &Path,
        launch: &WorkerLaunch,
        hello_timeout: Duration,
        on_exit: impl FnOnce(u64, ExitReason) + Send + 'static,
    ) -> Result<Self, WorkerError> {
        let (mut child, mut conn) = spawn(worker_bin, launch).map_err(|e| WorkerError::Spawn(e.to_string()))?;
        conn.set_max_frame_len(MAX_SMALL_FRAME_LEN);
        let pid = child.id().unwrap_or(0);
        let home = current_runtime();
        let hello = match tokio::time::timeout(hello_timeout, conn.read_hello()).await {
            Ok(Ok(reported)) if reported == pid => match (conn.settle(), home) {
                (Ok(()), Some(home)) => Ok(Socket { conn, home }),
                (Err(e), _) => Err(WorkerError::Protocol(e.to_string())),
                (_, None) => Err(WorkerError::Spawn("no runtime to register the worker's socket with".into())),
            },
            Ok(Ok(reported)) => Err(WorkerError::Protocol(format!("worker {pid} says it is {reported}"))),
            Ok(Err(e)) => Err(WorkerError::Spawn(format!("no Hello from worker {pid}: {e}"))),
            Err(_) => Err(WorkerError::Spawn(format!("worker {pid} did not say Hello in {hello_timeout:?}"))),
        };
        let socket = match hello {
            Ok(socket) => socket,
            Err(e) => {
                let _ = child.start_kill();
                return Err(e);
            }
        };
        let kill = Arc::new(KillSwitch::default());
        let (exited_tx, exited) = watch::channel(None);
        let (retire, retired) = oneshot::channel();
        let switch = kill.clone();
        tokio::spawn(async move {
            let reason = watch_process(child, retired, &switch, &exited_tx).await;
            debug!(worker = id, pid, ?reason, "worker gone");
            on_exit(id, reason);
        });
        Ok(Self {
            id,
            pid,
            kill,
            _retire: retire,
            socket: Some(socket),
            answer_limit: MAX_SMALL_FRAME_LEN,
            exited,
            measured: false,
        })
    }

    /// The runtime its socket is registered with (`None` once it broke).
    pub fn home(&self) -> Option<runtime::Id> {
        self.socket.as_ref().map(|s| s.home)
    }

    /// Runs one invocation; past `hard_deadline` the worker is killed.
    pub async fn invoke(&mut self, invoke: Invoke, hard_deadline: Duration) -> Result<InvokeOutcome, WorkerError> {
        let id = invoke.id;
        match self.exchange(ToWorker::Invoke(invoke), None, hard_deadline, self.answer_limit).await? {
            FromWorker::Response { id: rid, response, logs, stats } if rid == id => {
                Ok(InvokeOutcome::Response { response, logs, stats })
            }
            FromWorker::Failure { id: rid, kind, message, logs } if rid == id => {
                Ok(InvokeOutcome::Failure { kind, message, logs })
            }
            _ => self.broken(format!("expected the answer to invocation {id}")),
        }
    }

    /// Specializes a blank worker to the bundle in `bundle_dir`, which it is sent
    /// as a descriptor. `Ok(Err(message))`: the function failed to load.
    pub async fn init(
        &mut self,
        init: Init,
        bundle_dir: &Path,
        limit: Duration,
    ) -> Result<Result<(), String>, WorkerError> {
        let answer_limit = init.limits.max_answer_frame_len();
        let bundle = open_bundle(bundle_dir)?;
        match self.exchange(ToWorker::Init(init), Some(bundle.as_fd()), limit, MAX_SMALL_FRAME_LEN).await? {
            FromWorker::InitOk => {
                self.answer_limit = answer_limit;
                Ok(Ok(()))
            }
            FromWorker::InitError { message } => Ok(Err(message)),
            _ => self.broken("expected InitOk".into()),
        }
    }

    /// Compiles and checks the bundle in `bundle_dir`, which the worker is sent as
    /// a descriptor. `Ok(Err(message))`: the bundle is rejected.
    pub async fn prepare(
        &mut self,
        prepare: Prepare,
        bundle_dir: &Path,
        limit: Duration,
    ) -> Result<Result<Vec<Artifact>, String>, WorkerError> {
        // Compiled modules are large, and compiling runs no guest code (nor could a
        // guest reach the socket). A script's prepare runs its top level and has
        // nothing to send back but a message.
        let frame_limit = if prepare.language == Language::Wasm { MAX_FRAME_LEN } else { MAX_SMALL_FRAME_LEN };
        let bundle = open_bundle(bundle_dir)?;
        match self.exchange(ToWorker::Prepare(prepare), Some(bundle.as_fd()), limit, frame_limit).await? {
            FromWorker::Prepared { artifacts } => Ok(Ok(artifacts)),
            FromWorker::PrepareError { message } => Ok(Err(message)),
            _ => self.broken("expected Prepared".into()),
        }
    }

    /// A worker that answered out of turn is not trusted with another job.
    fn broken<T>(&mut self, what: String) -> Result<T, WorkerError> {
        self.socket = None;
        self.kill.kill(KillReason::ProtocolError);
        Err(WorkerError::Protocol(what))
    }

    /// Sends one message (with a descriptor, if `fd`) and waits for the answer, at
    /// most `limit`, on the caller's task. An answer whose frame announces more
    /// than `frame_limit` bytes is a protocol error, found from its length prefix
    /// alone.
    async fn exchange(
        &mut self,
        msg: ToWorker,
        fd: Option<BorrowedFd<'_>>,
        limit: Duration,
        frame_limit: usize,
    ) -> Result<FromWorker, WorkerError> {
        let unsent = |msg: ToWorker| match msg {
            ToWorker::Invoke(invoke) => WorkerError::GoneBeforeJob(Some(Box::new(invoke))),
            _ => WorkerError::GoneBeforeJob(None),
        };
        if self.exited.borrow().is_some() {
            return Err(unsent(msg));
        }
        let Some(Socket { conn, home }) = self.socket.take() else { return Err(unsent(msg)) };
        let Some(here) = current_runtime() else { return Err(unsent(msg)) };
        let mut conn = if home == here {
            conn
        } else {
            match conn.into_parts().and_then(|(socket, buf)| Ok(Connection::from_parts(socket, buf, frame_limit)?)) {
                Ok(conn) => conn,
                Err(_) => return Err(unsent(msg)),
            }
        };
        conn.set_max_frame_len(frame_limit);
        // A failed write means the worker cannot have read a whole frame, so it has
        // not started the job.
        let sent = match fd {
            Some(fd) => conn.write_frame_with_fd(&msg, fd).await,
            None => conn.write_frame(&msg).await,
        };
        if sent.is_err() {
            return Err(unsent(msg));
        }
        drop(msg);
        let answer = match tokio::time::timeout(limit, conn.read_frame::<FromWorker>()).await {
            Ok(answer) => answer,
            Err(_) => {
                warn!(pid = self.pid, ?limit, "worker missed its hard deadline; killing it");
                self.kill.kill(KillReason::HardDeadline);
                return Err(WorkerError::HardTimeout);
            }
        };
        match answer {
            Ok(Some(answer)) => {
                conn.settle().map_err(|e| WorkerError::Protocol(e.to_string()))?;
                self.socket = Some(Socket { conn, home: here });
                Ok(answer)
            }
            Ok(None)
            | Err(polyfaas_protocol::FrameError::TruncatedFrame)
            | Err(polyfaas_protocol::FrameError::Io(_)) => {
                // The socket closed: the process is dying or dead. Wait briefly for
                // the watcher to reap it, so the log says which signal or exit code.
                let status = tokio::time::timeout(EXIT_STATUS_WAIT, self.exited.wait_for(Option::is_some)).await;
                Err(WorkerError::Crashed(match status {
                    Ok(Ok(how)) => how.clone().unwrap_or_default(),
                    _ => "closed its socket".into(),
                }))
            }
            Err(e) => {
                warn!(pid = self.pid, "worker broke the protocol ({e}); killing it");
                self.kill.kill(KillReason::ProtocolError);
                Err(WorkerError::Protocol(e.to_string()))
            }
        }
    }
}

/// One worker start at a time: while a start runs, the child end of its socket
/// is inheritable, and any other process started meanwhile would inherit it too.
static STARTING: Mutex<()> = Mutex::new(());

/// Starts the worker with the child end of a socketpair inherited on its own
/// number, passed as `--fd` (the worker moves it to `SOCKET_FD` first thing), an
/// empty environment, and nothing on stdin.
///
/// No `pre_exec` hook: without one, the standard library starts the child with
/// `posix_spawn` (`vfork` semantics) instead of `fork`. A fork copies the page
/// tables of the whole supervisor (about 100 MB with a thousand functions) and
/// write-protects its memory, so every thread then takes a fault on each page it
/// writes; a cold start paid for that on the request's path.
fn spawn(worker_bin: &Path, launch: &WorkerLaunch) -> std::io::Result<(Child, Connection)> {
    // Both ends are close-on-exec. A descriptor below 3 (a supervisor started with
    // stdio closed) would be taken for stdio in the child: duplicate it above.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let theirs = if theirs.as_raw_fd() < 3 { theirs.try_clone()? } else { theirs };
    let launch = WorkerLaunch { fd: theirs.as_raw_fd(), ..launch.clone() };
    let mut cmd = Command::new(worker_bin);
    cmd.args(launch.to_args());
    // stderr through a pipe the supervisor forwards: a worker may write no file
    // (RLIMIT_FSIZE=0), and the supervisor's own stderr may be one.
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    // Not the supervisor's working directory, which a worker has no business
    // holding (a blank Ruby VM keeps a handle on its starting one).
    cmd.current_dir("/");
    let mut child = {
        let _one_at_a_time = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty()))?;
        let started = cmd.spawn();
        // Closed here, still under the lock: no later start can inherit it.
        drop(theirs);
        started?
    };
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_stderr(stderr, child.id().unwrap_or(0)));
    }
    ours.set_nonblocking(true)?;
    Ok((child, Connection::new(ours)?))
}

/// The watcher: waits for the process to end, or for a kill, or for the pool to
/// let go (then the worker exits on the closed socket, or is killed after the
/// grace). Publishes how it ended and returns why.
async fn watch_process(
    mut child: Child,
    mut retired: oneshot::Receiver<()>,
    kill: &KillSwitch,
    exited: &watch::Sender<Option<String>>,
) -> ExitReason {
    let reason = tokio::select! {
        // A kill and a retirement often arrive together (a hard deadline, then the
        // pool drops the worker): the kill is the reason.
        biased;
        () = kill.notify.notified() => {
            let _ = child.start_kill();
            ExitReason::Killed(kill.reason())
        }
        status = child.wait() => match status {
            // A worker exits cleanly when its socket closes, and the socket closes
            // as the pool lets go: a clean exit then is a retirement, not a death.
            // An exchange that was cancelled (its client went away) closes the
            // socket a moment before the handle drops, so a clean exit waits a
            // little for the retirement before it counts as a death (a handler
            // that calls `exit(0)` itself is one).
            Ok(s) if s.success() && retired_soon(&mut retired).await => ExitReason::Retired,
            status => ExitReason::Died(describe_exit(status)),
        },
        _ = &mut retired => {
            if tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await.is_err() {
                let _ = child.start_kill();
            }
            ExitReason::Retired
        }
    };
    let status = child.wait().await;
    let _ = exited.send(Some(match &reason {
        ExitReason::Died(how) => how.clone(),
        _ => describe_exit(status),
    }));
    reason
}

/// Whether the pool lets go of the worker within `RETIRE_WAIT`.
async fn retired_soon(retired: &mut oneshot::Receiver<()>) -> bool {
    matches!(tokio::time::timeout(RETIRE_WAIT, retired).await, Ok(Err(_)))
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("status unknown: {e}"),
    }
}

/// Opens a bundle's directory to hand to a worker: `O_PATH`, so the descriptor
/// reads and writes nothing by itself. The worker opens files beneath it under
/// its own uid and its Landlock rule, which is on this descriptor; it needs no
/// search right on any directory above the bundle.
/// The error names no path: its message can reach the caller of the function.
fn open_bundle(dir: &Path) -> Result<OwnedFd, WorkerError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|e| {
            warn!(dir = %dir.display(), "cannot open a bundle directory for a worker: {e}");
            WorkerError::BundleDir(e.kind().to_string())
        })
}
