//! The worker pool: which worker runs which invocation.
//!
//! Workers are processes ([`process`]). Each is, at any moment, in exactly one
//! place: *blank* (runtime loaded, no function; kept warm per language so a cold
//! start costs only `Init`), *idle* for one function version (warm, reused), or
//! *leased* to one invocation. An invocation takes, in order of preference: an idle
//! worker of its function version, a blank worker (specialized with `Init`), a new
//! worker if the pool is below its size, or the place of a blank worker of
//! another language, else of the least recently used idle worker. When none of these is possible it waits in a
//! bounded queue; a full queue or a long wait is `Overloaded` (HTTP 429).
//!
//! [`registry`] keeps every worker's state; [`spawn`] starts, specializes and
//! replaces workers and notices their exit; [`restart`] replaces workers on request. The state lock is a `std` mutex held only for bookkeeping, never across
//! an await. No user code runs in this process: the pool only moves frames.

pub mod process;
pub mod registry;
mod restart;
mod spawn;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polyfaas_protocol::{Artifact, FailureKind, HttpRequest, HttpResponse, Invoke, Language, Logs, Prepare, Stats};
use tokio::sync::Notify;

use self::process::{InvokeOutcome, WorkerError, WorkerProcess};
use self::registry::{FnKey, IdleWorker, State, WorkerState, WorkerView};
pub use self::restart::RestartFilter;
use crate::store::{Deployed, FunctionName};
use crate::telemetry::Telemetry;

/// How long `Init` may take (it evaluates the function's top level).
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Prepare` may take (it compiles the whole module).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(300);
/// Blank-worker spawn retries back off from this, doubling, up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A function whose `Init` failed this many times in a row is unhealthy: refused
/// at once for a backoff that starts at `UNHEALTHY_BACKOFF` and doubles per
/// failure, up to `MAX_UNHEALTHY_BACKOFF`. It holds no worker meanwhile.
const UNHEALTHY_AFTER: u32 = 3;
const UNHEALTHY_BACKOFF: Duration = Duration::from_secs(1);
const MAX_UNHEALTHY_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub worker_bin: PathBuf,
    /// Most worker processes alive at once (all states, all functions).
    pub max_workers: usize,
    /// Blank workers kept ready per language.
    pub warm_blank: usize,
    /// Most invocations waiting for a worker at once.
    pub max_queue: usize,
    /// Longest an invocation waits for a worker.
    pub queue_timeout: Duration,
    /// Added to a function's timeout before its worker is killed: the worker
    /// interrupts the handler itself first, keeping its process.
    pub kill_grace: Duration,
    pub max_output_bytes: u64,
    /// Languages this server has a runtime for, with the extra arguments their
    /// workers need (e.g. Ruby's `--ruby-module`).
    pub languages: Vec<(Language, Vec<std::ffi::OsString>)>,
}

/// What an invocation produced, from the worker it ran on.
pub struct Invoked {
    pub worker_pid: u32,
    pub result: Result<Completed, HandlerFailure>,
}

pub struct Completed {
    pub response: HttpResponse,
    pub logs: Logs,
    pub stats: Stats,
}

/// The handler ran and failed; the worker survived.
pub struct HandlerFailure {
    pub kind: FailureKind,
    pub message: String,
    pub logs: Logs,
}

/// The invocation could not be completed by a worker.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many invocations are waiting for a worker")]
    Overloaded,
    #[error("the function did not start: {0}")]
    InitFailed(String),
    #[error("the worker running the function died ({0})")]
    WorkerCrashed(String),
    #[error("the function ran past its deadline and its worker was killed")]
    Timeout,
    #[error("no worker could be started: {0}")]
    NotReady(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// `Init` failed repeatedly; refused without trying until `retry_after`.
    #[error("the function failed to start {failures} times in a row ({last_error}); next try in {}s", retry_after.as_secs().max(1))]
    Unhealthy { failures: u32, last_error: String, retry_after: Duration },
}

/// Why a bundle could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The bundle is at fault; the message is for the uploader.
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

struct Inner {
    config: PoolConfig,
    state: Mutex<State>,
    /// Woken once per worker that becomes available (idle, blank or exited).
    available: Notify,
    next_worker_id: AtomicU64,
    next_invocation_id: AtomicU64,
    telemetry: Arc<Telemetry>,
    /// Worker watchers and process starts run here, not on the HTTP server's threads.
    runtime: tokio::runtime::Handle,
}

/// A cheap, clonable handle to the pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// What `acquire` decided under the lock.
enum Step {
    Warm(WorkerProcess),
    Blank(WorkerProcess),
    Spawn(Option<WorkerProcess>),
    Wait,
}

/// A worker ready to run one invocation of one function version.
struct Lease {
    worker: WorkerProcess,
    key: FnKey,
}

impl Pool {
    /// Creates the pool; workers are started on `runtime`. Call [`Pool::warm_up`]
    /// to start the blank workers.
    pub fn new(config: PoolConfig, telemetry: Arc<Telemetry>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                available: Notify::new(),
                next_worker_id: AtomicU64::new(1),
                next_invocation_id: AtomicU64::new(1),
                telemetry,
                runtime,
            }),
        }
    }

    pub fn supports(&self, language: Language) -> bool {
        self.inner.config.languages.iter().any(|(l, _)| *l == language)
    }

    /// Starts the blank workers of every language.
    pub fn warm_up(&self) {
        for (language, _) in &self.inner.config.languages {
            self.inner.replenish(*language, false);
        }
    }

    /// Whether every language has a live worker (or none is meant to be kept warm).
    pub fn is_ready(&self) -> bool {
        let st = self.inner.lock();
        self.inner.config.warm_blank == 0 || self.inner.config.languages.iter().all(|(l, _)| st.has_worker_of(*l))
    }

    /// Waits until [`Pool::is_ready`], at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.is_ready() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Every live worker, with its memory use.
    pub fn workers(&self) -> Vec<WorkerView> {
        let mut views: Vec<WorkerView> = {
            let st = self.inner.lock();
            st.workers.iter().map(|(id, info)| WorkerView::of(*id, info)).collect()
        };
        for v in &mut views {
            v.rss_bytes = registry::rss_bytes(v.pid);
        }
        views.sort_by_key(|v| v.id);
        views
    }

    /// Queue depth and workers by state, for `/metrics`.
    pub fn gauges(&self) -> (usize, Vec<(&'static str, usize)>) {
        let st = self.inner.lock();
        (st.queued, st.count_by_state())
    }

    /// Records that `name` now serves `version` (or nothing: `None`), and retires
    /// idle workers of every other version.
    pub fn serve_version(&self, name: &FunctionName, version: Option<u64>) {
        let retired: Vec<IdleWorker> = {
            let mut st = self.inner.lock();
            st.serving.insert(name.clone(), version.unwrap_or(0));
            // A new version (or none) starts with a clean slate.
            st.init_failures.retain(|(n, v), _| n != name || Some(*v) == version);
            st.concurrency.retain(|(n, v), _| n != name || Some(*v) == version);
            let stale: Vec<FnKey> = st.idle.keys().filter(|(n, v)| n == name && Some(*v) != version).cloned().collect();
            let retired: Vec<IdleWorker> = stale.into_iter().filter_map(|k| st.idle.remove(&k)).flatten().collect();
            for w in &retired {
                st.set_state(w.worker.id, WorkerState::Draining);
            }
            retired
        };
        // Dropped outside the lock: each closes its socket, and its worker exits.
        drop(retired);
    }

    /// Runs one invocation of `function`.
    ///
    /// # Errors
    /// A [`PoolError`] when no worker could run it to the end; a handler that
    /// failed is not an error here but an `Invoked` with a `HandlerFailure`.
    pub async fn invoke(&self, function: &Arc<Deployed>, mut request: HttpRequest) -> Result<Invoked, PoolError> {
        let queue_deadline = tokio::time::Instant::now() + self.inner.config.queue_timeout;
        self.check_health(function)?;
        // Held for the whole invocation: at most `concurrency` of this function run.
        let _permit = self.concurrency_permit(function, queue_deadline).await?;
        loop {
            let mut lease = self.acquire(function, queue_deadline).await?;
            let id = self.inner.next_invocation_id.fetch_add(1, Ordering::Relaxed);
            let deadline_ms = function.limits.timeout_ms;
            let hard = Duration::from_millis(deadline_ms) + self.inner.config.kill_grace;
            let worker_pid = lease.worker.pid;
            // On this task: the request's thread waits for the worker itself.
            let outcome = lease.worker.invoke(Invoke { id, request, deadline_ms }, hard).await;
            return match outcome {
                Ok(InvokeOutcome::Response { response, logs, stats }) => {
                    if stats.cold {
                        self.inner.telemetry.cold_start(function.language.as_str());
                    }
                    self.release(lease);
                    Ok(Invoked { worker_pid, result: Ok(Completed { response, logs, stats }) })
                }
                Ok(InvokeOutcome::Failure { kind, message, logs }) => {
                    self.release(lease);
                    Ok(Invoked { worker_pid, result: Err(HandlerFailure { kind, message, logs }) })
                }
                Err(WorkerError::GoneBeforeJob(Some(invoke))) => {
                    request = invoke.request;
                    continue;
                }
                Err(WorkerError::HardTimeout) => Err(PoolError::Timeout),
                Err(e) => Err(PoolError::WorkerCrashed(e.to_string())),
            };
        }
    }

    /// Compiles and checks a staged bundle in a fresh worker that runs nothing
    /// else, so a hostile bundle cannot leave anything behind in a pooled one.
    pub async fn prepare(
        &self,
        language: Language,
        bundle_dir: String,
        entrypoint: String,
    ) -> Result<Vec<Artifact>, PrepareError> {
        let mut worker = self.inner.clone().start_worker(language, false).await?;
        match worker.prepare(Prepare { language, bundle_dir, entrypoint }, PREPARE_TIMEOUT).await {
            Ok(Ok(artifacts)) => Ok(artifacts),
            Ok(Err(message)) => Err(PrepareError::Rejected(message)),
            Err(WorkerError::HardTimeout) => {
                Err(PrepareError::Rejected(format!("preparing the bundle took longer than {PREPARE_TIMEOUT:?}")))
            }
            Err(WorkerError::GoneBeforeJob(_)) => Err(PoolError::NotReady("the preparing worker died".into()).into()),
            Err(e) => Err(PrepareError::Rejected(format!("the bundle crashed the worker preparing it: {e}"))),
        }
    }

    /// Stops taking work and shuts down every worker that is not leased; leased
    /// ones are shut down when their invocation ends. Waits up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let (idle, blank) = {
            let mut st = self.inner.lock();
            st.shutting_down = true;
            (std::mem::take(&mut st.idle), std::mem::take(&mut st.blank))
        };
        drop(idle);
        drop(blank);
        self.inner.available.notify_waiters();
        let deadline = Instant::now() + grace;
        while self.inner.lock().live > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Refuses a function whose `Init` keeps failing, until its backoff ends.
    fn check_health(&self, function: &Deployed) -> Result<(), PoolError> {
        let st = self.inner.lock();
        match st.init_failures.get(&(function.name.clone(), function.version)) {
            Some(f) if f.count >= UNHEALTHY_AFTER && Instant::now() < f.until => Err(PoolError::Unhealthy {
                failures: f.count,
                last_error: f.last_error.clone(),
                retry_after: f.until.saturating_duration_since(Instant::now()),
            }),
            _ => Ok(()),
        }
    }

    /// A permit of the function's concurrency. Waiting for one takes a place in
    /// the same bounded queue as waiting for a worker.
    async fn concurrency_permit(
        &self,
        function: &Deployed,
        queue_deadline: tokio::time::Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, PoolError> {
        let semaphore = {
            let mut st = self.inner.lock();
            let key = (function.name.clone(), function.version);
            let limit = function.limits.concurrency.max(1) as usize;
            st.concurrency.entry(key).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limit))).clone()
        };
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _ticket = {
            let mut st = self.inner.lock();
            if st.queued >= self.inner.config.max_queue {
                return Err(PoolError::Overloaded);
            }
            st.queued += 1;
            QueueTicket(self.inner.clone())
        };
        match tokio::time::timeout_at(queue_deadline, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PoolError::Overloaded),
        }
    }

    async fn acquire(
        &self,
        function: &Arc<Deployed>,
        queue_deadline: tokio::time::Instant,
    ) -> Result<Lease, PoolError> {
        let key: FnKey = (function.name.clone(), function.version);
        let language = function.language;
        let mut ticket: Option<QueueTicket> = None;
        loop {
            let available = self.inner.available.notified();
            tokio::pin!(available);
            let step = {
                let mut st = self.inner.lock();
                if st.shutting_down {
                    return Err(PoolError::ShuttingDown);
                }
                if let Some(idle) = st.idle.get_mut(&key).and_then(Vec::pop) {
                    if st.idle.get(&key).is_some_and(Vec::is_empty) {
                        st.idle.remove(&key);
                    }
                    st.set_state(idle.worker.id, WorkerState::Busy);
                    Step::Warm(idle.worker)
                } else if let Some(blank) = st.blank.get_mut(&language).and_then(Vec::pop) {
                    st.set_state(blank.id, WorkerState::Initializing);
                    Step::Blank(blank)
                } else if st.live < self.inner.config.max_workers {
                    st.live += 1;
                    Step::Spawn(None)
                } else if let Some(victim) = st.take_blank_except(language).or_else(|| st.take_least_recently_used()) {
                    // The victim's slot passes to the new worker; its exit hook
                    // gives back the count it held.
                    st.set_state(victim.id, WorkerState::Draining);
                    st.live += 1;
                    Step::Spawn(Some(victim))
                } else {
                    if ticket.is_none() {
                        if st.queued >= self.inner.config.max_queue {
                            return Err(PoolError::Overloaded);
                        }
                        st.queued += 1;
                        ticket = Some(QueueTicket(self.inner.clone()));
                    }
                    // Registered before the lock is released, so a worker freed
                    // in between still wakes us.
                    available.as_mut().enable();
                    Step::Wait
                }
            };
            let blank = match step {
                Step::Warm(worker) => return Ok(Lease { worker, key }),
                Step::Blank(worker) => {
                    self.inner.replenish(language, true);
                    worker
                }
                Step::Spawn(victim) => {
                    drop(victim);
                    let started = self.inner.clone().start_worker(language, true).await;
                    // No blank worker was ready: make sure the next cold start
                    // of this language finds one.
                    self.inner.replenish(language, true);
                    match started {
                        Ok(worker) => worker,
                        Err(e) => {
                            self.inner.forget_one();
                            return Err(e);
                        }
                    }
                }
                Step::Wait => {
                    if tokio::time::timeout_at(queue_deadline, available).await.is_err() {
                        return Err(PoolError::Overloaded);
                    }
                    continue;
                }
            };
            match self.inner.specialize(blank, function).await {
                Ok(Some(worker)) => {
                    let mut st = self.inner.lock();
                    st.init_failures.remove(&key);
                    st.set_state(worker.id, WorkerState::Busy);
                    return Ok(Lease { worker, key });
                }
                Ok(None) => continue,
                Err(e) => {
                    self.inner.record_init_failure(&key, &e);
                    return Err(e);
                }
            }
        }
    }

    /// Returns a worker after its invocation: idle for its function, replaced if
    /// a restart asked for it, or retired if its version is no longer served.
    fn release(&self, lease: Lease) {
        let Lease { worker, key } = lease;
        let mut st = self.inner.lock();
        let stale = st.serving.get(&key.0).is_some_and(|v| *v != key.1);
        let drain = st.workers.get_mut(&worker.id).map(|info| {
            info.invocations += 1;
            info.drain
        });
        if st.shutting_down || stale {
            st.set_state(worker.id, WorkerState::Draining);
            drop(st);
            drop(worker);
        } else if drain == Some(true) {
            drop(st);
            self.inner.clone().replace(worker);
        } else {
            st.set_state(worker.id, WorkerState::Idle);
            st.idle.entry(key).or_default().push(IdleWorker { worker, last_used: Instant::now() });
            drop(st);
            self.inner.available.notify_one();
        }
    }
}

/// A place in the wait queue, given back however the wait ends.
struct QueueTicket(Arc<Inner>);

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.0.lock().queued -= 1;
    }
}
