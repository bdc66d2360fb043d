//! Starting one `polyfaas-worker` process and driving it: each worker is owned by
//! one task (its *driver*) that holds the child and its socket, takes jobs from a
//! channel one at a time, enforces the hard deadline, and notices at once when the
//! process dies, busy or idle.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use polyfaas_protocol::connection::Connection;
use polyfaas_protocol::{Artifact, FailureKind, FromWorker, HttpResponse, Init, Invoke, Language, Logs, Prepare, Stats, ToWorker};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

/// How long a new worker may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker asked to shut down may take before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Everything the pool can ask one worker to do.
pub enum Job {
    Prepare(Prepare, Duration, oneshot::Sender<Result<Result<Vec<Artifact>, String>, WorkerError>>),
    Init(Box<Init>, Duration, oneshot::Sender<Result<Result<(), String>, WorkerError>>),
    /// The `Duration` is the hard deadline: past it the worker is killed.
    Invoke(Invoke, Duration, oneshot::Sender<Result<InvokeOutcome, WorkerError>>),
}

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

/// Why a driver ended; passed to the pool's exit hook.
#[derive(Debug, Clone)]
pub enum ExitReason {
    Retired,
    Died(String),
    Killed(&'static str),
}

/// A started worker, as the pool holds it: an id, its pid and its job queue.
pub struct WorkerProcess {
    pub id: u64,
    pub pid: u32,
    jobs: mpsc::Sender<Job>,
    /// Makes the driver SIGKILL the worker at once, busy or not.
    pub kill: Arc<Notify>,
}

impl WorkerProcess {
    /// Starts a worker for `language` and waits for its `Hello`. `on_exit` is
    /// called once, from the driver task, when the process is gone.
    pub async fn start(
        id: u64,
        worker_bin: &Path,
        language: Language,
        extra_args: &[std::ffi::OsString],
        on_exit: impl FnOnce(u64, ExitReason) + Send + 'static,
    ) -> Result<Self, WorkerError> {
        let (mut child, mut conn) =
            spawn(worker_bin, language, extra_args).map_err(|e| WorkerError::Spawn(e.to_string()))?;
        let pid = child.id().unwrap_or(0);
        match tokio::time::timeout(HELLO_TIMEOUT, conn.read_hello()).await {
            Ok(Ok(reported)) if reported == pid => {}
            Ok(Ok(reported)) => {
                let _ = child.start_kill();
                return Err(WorkerError::Protocol(format!("worker {pid} says it is {reported}")));
            }
            Ok(Err(e)) => {
                let _ = child.start_kill();
                return Err(WorkerError::Spawn(format!("no Hello from worker {pid}: {e}")));
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(WorkerError::Spawn(format!("worker {pid} did not say Hello in {HELLO_TIMEOUT:?}")));
            }
        }
        let (jobs, rx) = mpsc::channel(1);
        let kill = Arc::new(Notify::new());
        let killed = kill.clone();
        tokio::spawn(async move {
            let reason = drive(child, conn, rx, killed).await;
            debug!(worker = id, pid, ?reason, "worker gone");
            on_exit(id, reason);
        });
        Ok(Self { id, pid, jobs, kill })
    }

    /// Sends a job to the worker's driver.
    ///
    /// # Errors
    /// Gives the job back if the driver is gone (the process died while idle).
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
        })
    }
}

/// Forks and execs the worker with the child end of a socketpair as fd 3, an empty
/// environment, and nothing on stdin.
fn spawn(worker_bin: &Path, language: Language, extra_args: &[std::ffi::OsString]) -> std::io::Result<(Child, Connection)> {
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
            let rc = if child_fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(child_fd, 3)
            };
            if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
        });
    }
    let mut child = cmd.spawn()?;
    drop(theirs);
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_stderr(stderr));
    }
    ours.set_nonblocking(true)?;
    Ok((child, Connection::new(tokio::net::UnixStream::from_std(ours)?)))
}

/// Copies a worker's diagnostics to the supervisor's stderr, line by line, each
/// line cut at 16 KiB so a flood cannot grow a buffer.
async fn forward_stderr(stderr: tokio::process::ChildStderr) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(16 * 1024).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                use std::io::Write;
                let _ = std::io::stderr().lock().write_all(&line);
            }
        }
    }
}

/// The driver loop: one job at a time; returns when the worker is gone.
async fn drive(mut child: Child, mut conn: Connection, mut jobs: mpsc::Receiver<Job>, kill: Arc<Notify>) -> ExitReason {
    let reason = loop {
        let job = tokio::select! {
            job = jobs.recv() => job,
            status = child.wait() => {
                break ExitReason::Died(describe_exit(status));
            }
            () = kill.notified() => break ExitReason::Killed("on request"),
        };
        let Some(job) = job else {
            // The pool dropped the worker: ask it to exit, then make sure it does.
            let _ = conn.write_frame(&ToWorker::Shutdown).await;
            if tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await.is_err() {
                let _ = child.start_kill();
            }
            break ExitReason::Retired;
        };
        if let Err(reason) = run_job(&mut child, &mut conn, job, &kill).await {
            break reason;
        }
    };
    if !matches!(reason, ExitReason::Retired) {
        let _ = child.start_kill();
    }
    let _ = child.wait().await;
    reason
}

/// Runs one job. An `Err` means the worker is unusable and the driver must end.
async fn run_job(child: &mut Child, conn: &mut Connection, job: Job, kill: &Notify) -> Result<(), ExitReason> {
    match job {
        Job::Prepare(prepare, limit, reply) => {
            let result = exchange(child, conn, ToWorker::Prepare(prepare), limit, kill).await.and_then(|msg| match msg {
                FromWorker::Prepared { artifacts } => Ok(Ok(artifacts)),
                FromWorker::PrepareError { message } => Ok(Err(message)),
                _ => Err(WorkerError::Protocol("expected Prepared".into())),
            });
            finish(result, reply)
        }
        Job::Init(init, limit, reply) => {
            let result = exchange(child, conn, ToWorker::Init(*init), limit, kill).await.and_then(|msg| match msg {
                FromWorker::InitOk => Ok(Ok(())),
                FromWorker::InitError { message } => Ok(Err(message)),
                _ => Err(WorkerError::Protocol("expected InitOk".into())),
            });
            finish(result, reply)
        }
        Job::Invoke(invoke, hard_deadline, reply) => {
            let id = invoke.id;
            let result =
                exchange(child, conn, ToWorker::Invoke(invoke), hard_deadline, kill).await.and_then(|msg| match msg {
                    FromWorker::Response { id: rid, response, logs, stats } if rid == id => {
                        Ok(InvokeOutcome::Response { response, logs, stats })
                    }
                    FromWorker::Failure { id: rid, kind, message, logs } if rid == id => {
                        Ok(InvokeOutcome::Failure { kind, message, logs })
                    }
                    _ => Err(WorkerError::Protocol(format!("expected the answer to invocation {id}"))),
                });
            finish(result, reply)
        }
    }
}

/// Passes a job's result to whoever asked, and turns a broken worker into the
/// reason its driver ends.
fn finish<T>(result: Result<T, WorkerError>, reply: oneshot::Sender<Result<T, WorkerError>>) -> Result<(), ExitReason> {
    let reason = match &result {
        Ok(_) => None,
        Err(WorkerError::HardTimeout) => Some(ExitReason::Killed("hard deadline")),
        Err(e) => Some(ExitReason::Died(e.to_string())),
    };
    // The asker may have given up (client went away); the worker is still fine.
    let _ = reply.send(result);
    reason.map_or(Ok(()), Err)
}

/// Sends one message and waits for the answer, at most `limit`.
async fn exchange(
    child: &mut Child,
    conn: &mut Connection,
    msg: ToWorker,
    limit: Duration,
    kill: &Notify,
) -> Result<FromWorker, WorkerError> {
    let unsent = |msg: ToWorker| match msg {
        ToWorker::Invoke(invoke) => WorkerError::GoneBeforeJob(Some(Box::new(invoke))),
        _ => WorkerError::GoneBeforeJob(None),
    };
    if let Ok(Some(_)) = child.try_wait() {
        return Err(unsent(msg));
    }
    // A failed write means the worker cannot have read a whole frame, so it has
    // not started the job.
    if conn.write_frame(&msg).await.is_err() {
        return Err(unsent(msg));
    }
    let answer = tokio::select! {
        answer = tokio::time::timeout(limit, conn.read_frame::<FromWorker>()) => answer,
        () = kill.notified() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(WorkerError::Crashed("killed on request".into()));
        }
    };
    match answer {
        Ok(Ok(Some(answer))) => Ok(answer),
        Ok(Ok(None)) | Ok(Err(polyfaas_protocol::FrameError::TruncatedFrame)) | Ok(Err(polyfaas_protocol::FrameError::Io(_))) => {
            // The socket closed: the process is dying or dead. Wait briefly for its
            // status so the log says which signal or exit code.
            let status = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
            Err(WorkerError::Crashed(match status {
                Ok(s) => describe_exit(s),
                Err(_) => "closed its socket".into(),
            }))
        }
        Ok(Err(e)) => Err(WorkerError::Protocol(e.to_string())),
        Err(_) => {
            warn!(pid = child.id(), ?limit, "worker missed its hard deadline; killing it");
            let _ = child.start_kill();
            Err(WorkerError::HardTimeout)
        }
    }
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
