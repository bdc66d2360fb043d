//! Starting one `polyfaas-worker` process and talking to it.
//!
//! Two halves, so that the per-request path stays on the request's own thread:
//! - the *exchange* (send one message, wait for the answer, at most a deadline) is
//!   run by whoever holds the [`WorkerProcess`], on its own task. Between
//!   exchanges the socket is registered with no runtime; each exchange registers
//!   it with the caller's (two `epoll_ctl` calls, cheaper than waking a thread).
//! - the *watcher*, a task on the pool's runtime that owns the child process: it
//!   notices the exit at once (busy or idle), kills on request, reaps, and calls
//!   the pool's exit hook.
//!
//! Dropping a `WorkerProcess` closes its socket, which a worker takes as the
//! order to exit; the watcher kills it if it has not within `SHUTDOWN_GRACE`. An
//! exchange abandoned mid-way (its request was cancelled) therefore retires the
//! worker: its state is unknown.
//!
//! A worker runs user code, and user code can write to the worker's socket and
//! stderr directly. So every frame is read against the bound of what a legitimate
//! answer to that exchange can hold (`frame_limit`), and stderr reaches the
//! server's log only as escaped, length- and rate-capped lines labelled with the
//! worker's pid ([`forward_stderr`]).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use polyfaas_protocol::connection::Connection;
use polyfaas_protocol::{
    Artifact, FailureKind, FromWorker, HttpResponse, Init, Invoke, Language, Logs, MAX_FRAME_LEN, MAX_SMALL_FRAME_LEN,
    Prepare, Stats, ToWorker,
};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, oneshot, watch};
use tracing::{debug, info, warn};

use crate::logging;

/// How long a new worker may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a retired worker may take to exit before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
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
}

/// Why a worker's process ended; passed to the pool's exit hook.
#[derive(Debug, Clone)]
pub enum ExitReason {
    Retired,
    Died(String),
    Killed(&'static str),
}

/// Makes a worker's watcher SIGKILL the process at once, busy or not.
#[derive(Default)]
pub struct KillSwitch {
    notify: Notify,
    /// The first reason given wins.
    reason: Mutex<Option<&'static str>>,
}

impl KillSwitch {
    pub fn kill(&self, reason: &'static str) {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(reason);
        self.notify.notify_one();
    }

    fn reason(&self) -> &'static str {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or("on request")
    }
}

/// A started worker, as the pool holds it.
pub struct WorkerProcess {
    pub id: u64,
    pub pid: u32,
    pub kill: Arc<KillSwitch>,
    /// The socket and its read buffer between exchanges; `None` once an exchange
    /// broke (the worker is then unusable and only waits to be dropped).
    socket: Option<(std::os::unix::net::UnixStream, Vec<u8>)>,
    /// The largest answer to an `Invoke` this worker may send: set from the
    /// function's limits at `Init` (small before, when no answer has a body).
    answer_limit: usize,
    /// How the process ended, once it has (set by the watcher).
    exited: watch::Receiver<Option<String>>,
    /// Dropped with this handle: tells the watcher the pool let go.
    _retire: oneshot::Sender<()>,
}

impl WorkerProcess {
    /// Starts a worker for `language` and waits for its `Hello`. Call it on the
    /// pool's runtime: the watcher is spawned on the current one. `on_exit` is
    /// called once, from the watcher, when the process is gone.
    pub async fn start(
        id: u64,
        worker_bin: &Path,
        language: Language,
        extra_args: &[std::ffi::OsString],
        on_exit: impl FnOnce(u64, ExitReason) + Send + 'static,
    ) -> Result<Self, WorkerError> {
        let (mut child, mut conn) =
            spawn(worker_bin, language, extra_args).map_err(|e| WorkerError::Spawn(e.to_string()))?;
        conn.set_max_frame_len(MAX_SMALL_FRAME_LEN);
        let pid = child.id().unwrap_or(0);
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, conn.read_hello()).await {
            Ok(Ok(reported)) if reported == pid => conn.into_parts().map_err(|e| WorkerError::Protocol(e.to_string())),
            Ok(Ok(reported)) => Err(WorkerError::Protocol(format!("worker {pid} says it is {reported}"))),
            Ok(Err(e)) => Err(WorkerError::Spawn(format!("no Hello from worker {pid}: {e}"))),
            Err(_) => Err(WorkerError::Spawn(format!("worker {pid} did not say Hello in {HELLO_TIMEOUT:?}"))),
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
        Ok(Self { id, pid, kill, socket: Some(socket), answer_limit: MAX_SMALL_FRAME_LEN, exited, _retire: retire })
    }

    /// Runs one invocation; past `hard_deadline` the worker is killed.
    pub async fn invoke(&mut self, invoke: Invoke, hard_deadline: Duration) -> Result<InvokeOutcome, WorkerError> {
        let id = invoke.id;
        match self.exchange(ToWorker::Invoke(invoke), hard_deadline, self.answer_limit).await? {
            FromWorker::Response { id: rid, response, logs, stats } if rid == id => {
                Ok(InvokeOutcome::Response { response, logs, stats })
            }
            FromWorker::Failure { id: rid, kind, message, logs } if rid == id => {
                Ok(InvokeOutcome::Failure { kind, message, logs })
            }
            _ => self.broken(format!("expected the answer to invocation {id}")),
        }
    }

    /// Specializes a blank worker. `Ok(Err(message))`: the function failed to load.
    pub async fn init(&mut self, init: Init, limit: Duration) -> Result<Result<(), String>, WorkerError> {
        let answer_limit = init.limits.max_answer_frame_len();
        match self.exchange(ToWorker::Init(init), limit, MAX_SMALL_FRAME_LEN).await? {
            FromWorker::InitOk => {
                self.answer_limit = answer_limit;
                Ok(Ok(()))
            }
            FromWorker::InitError { message } => Ok(Err(message)),
            _ => self.broken("expected InitOk".into()),
        }
    }

    /// Compiles and checks a bundle. `Ok(Err(message))`: the bundle is rejected.
    pub async fn prepare(
        &mut self,
        prepare: Prepare,
        limit: Duration,
    ) -> Result<Result<Vec<Artifact>, String>, WorkerError> {
        // Compiled modules are large, and compiling runs no guest code (nor could a
        // guest reach the socket). A script's prepare runs its top level and has
        // nothing to send back but a message.
        let frame_limit = if prepare.language == Language::Wasm { MAX_FRAME_LEN } else { MAX_SMALL_FRAME_LEN };
        match self.exchange(ToWorker::Prepare(prepare), limit, frame_limit).await? {
            FromWorker::Prepared { artifacts } => Ok(Ok(artifacts)),
            FromWorker::PrepareError { message } => Ok(Err(message)),
            _ => self.broken("expected Prepared".into()),
        }
    }

    /// A worker that answered out of turn is not trusted with another job.
    fn broken<T>(&mut self, what: String) -> Result<T, WorkerError> {
        self.socket = None;
        self.kill.kill("protocol error");
        Err(WorkerError::Protocol(what))
    }

    /// Sends one message and waits for the answer, at most `limit`, on the
    /// caller's task. An answer whose frame announces more than `frame_limit`
    /// bytes is a protocol error, found from its length prefix alone.
    async fn exchange(
        &mut self,
        msg: ToWorker,
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
        let Some((socket, buf)) = self.socket.take() else { return Err(unsent(msg)) };
        let Ok(mut conn) = Connection::from_parts(socket, buf, frame_limit) else { return Err(unsent(msg)) };
        // A failed write means the worker cannot have read a whole frame, so it has
        // not started the job.
        if conn.write_frame(&msg).await.is_err() {
            return Err(unsent(msg));
        }
        drop(msg);
        let answer = match tokio::time::timeout(limit, conn.read_frame::<FromWorker>()).await {
            Ok(answer) => answer,
            Err(_) => {
                warn!(pid = self.pid, ?limit, "worker missed its hard deadline; killing it");
                self.kill.kill("hard deadline");
                return Err(WorkerError::HardTimeout);
            }
        };
        match answer {
            Ok(Some(answer)) => {
                self.socket = Some(conn.into_parts().map_err(|e| WorkerError::Protocol(e.to_string()))?);
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
                self.kill.kill("protocol error");
                Err(WorkerError::Protocol(e.to_string()))
            }
        }
    }
}

/// Forks and execs the worker with the child end of a socketpair as fd 3, an empty
/// environment, and nothing on stdin.
fn spawn(
    worker_bin: &Path,
    language: Language,
    extra_args: &[std::ffi::OsString],
) -> std::io::Result<(Child, Connection)> {
    // Both ends are close-on-exec; only the dup to fd 3 below survives into the child.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let child_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(worker_bin);
    cmd.arg("--fd").arg("3").arg("--language").arg(language.as_str()).args(extra_args);
    // stderr through a pipe the supervisor forwards: a worker may write no file
    // (RLIMIT_FSIZE=0), and the supervisor's own stderr may be one.
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // `dup2` and `fcntl`, which are async-signal-safe; it allocates nothing and
    // touches no lock. `child_fd` is open in the child (inherited from the fork).
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep FD_CLOEXEC set; clear it instead.
            let rc = if child_fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(child_fd, 3) };
            if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
        });
    }
    let mut child = cmd.spawn()?;
    drop(theirs);
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_stderr(stderr, child.id().unwrap_or(0)));
    }
    ours.set_nonblocking(true)?;
    Ok((child, Connection::new(tokio::net::UnixStream::from_std(ours)?)))
}

/// The longest worker stderr line logged; the rest of the line is counted, not kept.
const STDERR_LINE_MAX: usize = 4 * 1024;
/// What a logged line costs beyond its text (timestamp, level, label), so that a
/// flood of short lines is capped too.
const STDERR_LINE_COST: usize = 128;
/// The server has one stderr for every worker: worker output reaches it at most
/// `STDERR_RATE` bytes a second, after a burst of `STDERR_BURST`. Past that,
/// lines are dropped and counted. Legitimate output is a few lines per worker
/// start (the worker's own log) and the odd panic message.
const STDERR_BURST: f64 = 256.0 * 1024.0;
const STDERR_RATE: f64 = 32.0 * 1024.0;

/// The token bucket behind `STDERR_RATE`, shared by every worker's forwarder.
struct StderrBudget {
    tokens: f64,
    at: Instant,
}

impl StderrBudget {
    /// Takes `cost` bytes of budget if there are that many.
    fn take(&mut self, cost: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * STDERR_RATE).min(STDERR_BURST);
        self.at = now;
        let cost = cost as f64;
        if self.tokens < cost {
            return false;
        }
        self.tokens -= cost;
        true
    }
}

static STDERR_BUDGET: LazyLock<Mutex<StderrBudget>> =
    LazyLock::new(|| Mutex::new(StderrBudget { tokens: STDERR_BURST, at: Instant::now() }));

/// Splits a byte stream into lines of at most `STDERR_LINE_MAX` bytes without
/// ever holding more than that: the rest of a longer line is only counted.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
    /// Bytes of the current line past `STDERR_LINE_MAX`.
    cut: usize,
}

impl LineSplitter {
    /// Feeds bytes; `emit(line, cut)` is called for each line they complete.
    fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8], usize)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| *b == b'\n');
            let part = &bytes[..end.unwrap_or(bytes.len())];
            let keep = part.len().min(STDERR_LINE_MAX - self.line.len());
            self.line.extend_from_slice(&part[..keep]);
            self.cut += part.len() - keep;
            match end {
                Some(at) => {
                    bytes = &bytes[at + 1..];
                    self.flush(emit);
                }
                None => bytes = &[],
            }
        }
    }

    /// Emits the line so far (an unterminated one at the end), unless it is blank.
    fn flush(&mut self, emit: &mut impl FnMut(&[u8], usize)) {
        if !self.line.is_empty() || self.cut > 0 {
            emit(&self.line, self.cut);
        }
        self.line.clear();
        self.cut = 0;
    }
}

/// Logs a worker's stderr (its own diagnostics, and whatever user code writes to
/// fd 2) as the server's events: each line escaped, so it cannot start a line of
/// its own or carry terminal escapes; labelled with the worker's pid; cut at
/// `STDERR_LINE_MAX`; and let through at most at `STDERR_RATE`. A flood is read
/// and counted as it comes, never buffered, and the count is logged.
async fn forward_stderr(mut stderr: tokio::process::ChildStderr, pid: u32) {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0u8; 16 * 1024];
    let mut lines = LineSplitter::default();
    let (mut dropped_lines, mut dropped_bytes) = (0u64, 0u64);
    let mut emit = |line: &[u8], cut: usize| {
        let allowed = STDERR_BUDGET
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(line.len() + STDERR_LINE_COST, Instant::now());
        if !allowed {
            dropped_lines += 1;
            dropped_bytes += (line.len() + cut + 1) as u64;
            return;
        }
        if dropped_lines > 0 {
            warn!(
                worker_pid = pid,
                dropped_lines, dropped_bytes, "worker {pid} stderr: output over the log rate cap was dropped"
            );
            (dropped_lines, dropped_bytes) = (0, 0);
        }
        let text = logging::escape(line);
        if cut > 0 {
            info!(worker_pid = pid, "worker {pid} stderr: {text} [{cut} more bytes of this line cut]");
        } else {
            info!(worker_pid = pid, "worker {pid} stderr: {text}");
        }
    };
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => lines.feed(&chunk[..n], &mut emit),
        }
    }
    lines.flush(&mut emit);
    if dropped_lines > 0 {
        warn!(
            worker_pid = pid,
            dropped_lines, dropped_bytes, "worker {pid} stderr: output over the log rate cap was dropped"
        );
    }
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
        status = child.wait() => ExitReason::Died(describe_exit(status)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut lines = LineSplitter::default();
        let mut emit = |line: &[u8], cut: usize| out.push((line.to_vec(), cut));
        for chunk in chunks {
            lines.feed(chunk, &mut emit);
        }
        lines.flush(&mut emit);
        out
    }

    #[test]
    fn lines_are_split_across_chunks_and_cut_without_buffering() {
        // Blank lines are skipped: they would cost the budget and say nothing.
        assert_eq!(split(&[b"ab", b"c\nd", b"\n\ne"]), [(b"abc".to_vec(), 0), (b"d".to_vec(), 0), (b"e".to_vec(), 0)]);
        let long = vec![b'x'; 3 * STDERR_LINE_MAX];
        let out = split(&[&long, &long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0.len(), out[0].1), (STDERR_LINE_MAX, 5 * STDERR_LINE_MAX));
        assert_eq!(out[1], (b"next".to_vec(), 0));
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut budget = StderrBudget { tokens: STDERR_BURST, at: start };
        assert!(budget.take(STDERR_BURST as usize, start));
        assert!(!budget.take(1, start));
        assert!(budget.take(STDERR_RATE as usize / 2, start + Duration::from_millis(500)));
        assert!(!budget.take(STDERR_RATE as usize, start + Duration::from_millis(600)));
        // Never more than the burst, however long the quiet.
        assert!(!budget.take(STDERR_BURST as usize + 1, start + Duration::from_secs(3600)));
    }
}
