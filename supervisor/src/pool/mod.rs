//! The worker pool: which worker runs which invocation.
//!
//! Workers are processes ([`process`]). What is where — blank workers per
//! language, idle workers per function version, who holds which invocation slot,
//! who waits — is [`state`]'s state machine, plain data behind one `std` mutex
//! held only for its decisions, never across an await. This file acts on those
//! decisions: it waits, starts and specializes processes ([`spawn`]), restarts
//! them on request ([`restart`]), and runs the exchange on the request's own task.
//!
//! An invocation is granted a slot and, in order of preference, an idle worker of
//! its function version (one whose socket is registered with the caller's own
//! event loop first: no move), a blank worker (specialized with `Init`), a new process
//! if the pool is below its process limit, or the place of a blank worker of
//! another language, else of the least recently used idle worker. Idle workers
//! are kept while their measured memory fits the budget ([`memory`] measures it
//! every second); past it the least recently used go. Fairness (a function's
//! `concurrency`, the slot reserved for functions holding none, waiters served by
//! fewest slots held) is decided in [`state`]. A full queue or a wait longer than
//! `queue_timeout` is `Overloaded` (HTTP 429). No user code runs in this process:
//! the pool only moves frames.

mod memory;
pub mod outcome;
pub mod process;
mod restart;
mod spawn;
pub mod state;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polyfaas_protocol::sandbox::SandboxConfig;
use polyfaas_protocol::{Artifact, HttpRequest, Invoke, Language, Prepare};
use tokio::sync::Notify;

pub use self::memory::default_budget as default_idle_memory;
pub use self::outcome::{Invocation, Outcome};
use self::process::{InvokeOutcome, WorkerError, WorkerProcess};
pub use self::restart::RestartFilter;
use self::state::{Checkin, Checkout, FnKey, PoolState, Sizes, WaiterId};
use self::view::WorkerView;
use crate::store::{Deployed, FunctionName, Refusals};
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
    /// How long a new worker may take to say `Hello`.
    pub start_timeout: Duration,
    /// Most invocations running at once (each in its own worker).
    pub max_running: usize,
    /// Most worker processes alive at once, in every state.
    pub max_processes: usize,
    /// Memory idle workers may use, all together, in bytes.
    pub idle_memory: u64,
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
    /// Languages this server has a runtime for.
    pub languages: Vec<Language>,
    /// Every worker's sandbox.
    pub sandbox: SandboxConfig,
    /// The compiled Ruby runtime, handed to Ruby workers.
    pub ruby_module: Option<PathBuf>,
    /// Versions the store refuses to run (a precompiled module failed its hash).
    pub refusals: Refusals,
}

/// Why the pool could not hand an invocation (or a preparation) to a worker:
/// no handler ran.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many invocations are waiting for a worker")]
    Overloaded,
    #[error("the function did not start: {0}")]
    InitFailed(String),
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
    state: Mutex<PoolState<WorkerProcess>>,
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

impl Pool {
    /// Creates the pool; workers are started on `runtime`. Call [`Pool::warm_up`]
    /// to start the blank workers.
    pub fn new(config: PoolConfig, telemetry: Arc<Telemetry>, runtime: tokio::runtime::Handle) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(PoolState::new(Sizes {
                max_running: config.max_running,
                max_processes: config.max_processes,
                idle_memory: config.idle_memory,
                warm_blank: config.warm_blank,
                max_queue: config.max_queue,
            })),
            config,
            next_worker_id: AtomicU64::new(1),
            next_invocation_id: AtomicU64::new(1),
            telemetry,
            runtime,
        });
        inner.runtime.spawn(memory::keep_measuring(Arc::downgrade(&inner)));
        Self { inner }
    }

    pub fn supports(&self, language: Language) -> bool {
        self.inner.config.languages.contains(&language)
    }

    /// Starts the blank workers of every language.
    pub fn warm_up(&self) {
        for language in &self.inner.config.languages {
            self.inner.replenish(*language, false);
        }
    }

    /// Whether every language has a live worker (or none is meant to be kept warm).
    pub fn is_ready(&self) -> bool {
        let st = self.inner.lock();
        self.inner.config.warm_blank == 0 || self.inner.config.languages.iter().all(|l| st.has_worker_of(*l))
    }

    /// Whether a worker of `language` is alive, in any state.
    pub fn has_worker_of(&self, language: Language) -> bool {
        self.inner.lock().has_worker_of(language)
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

    /// Every live worker, with its memory use. Reads /proc once per worker (a
    /// few thousand files with a big pool): call it off the async threads.
    pub fn workers(&self) -> Vec<WorkerView> {
        let mut views: Vec<WorkerView> = {
            let st = self.inner.lock();
            st.records().map(|(id, record)| WorkerView::of(id, record)).collect()
        };
        for v in &mut views {
            v.rss_bytes = view::rss_bytes(v.pid);
        }
        views.sort_by_key(|v| v.id);
        views
    }

    /// Queue depth, workers by state and idle workers' memory, for `/metrics`.
    pub fn gauges(&self) -> (usize, Vec<(&'static str, usize)>, u64) {
        let st = self.inner.lock();
        (st.queued(), st.count_by_state(), st.idle_bytes())
    }

    /// Records that `name` now serves `version` (or nothing: `None`), and retires
    /// idle workers of every other version.
    pub fn serve_version(&self, name: &FunctionName, version: Option<u64>) {
        let retired = self.inner.lock().serve_version(name, version);
        // Dropped outside the lock: each closes its socket, and its worker exits.
        drop(retired);
    }

    /// Runs one invocation of `function`; every ending, a refusal included, is
    /// an [`Invocation`].
    pub async fn invoke(&self, function: &Arc<Deployed>, mut request: HttpRequest) -> Invocation {
        let queue_deadline = tokio::time::Instant::now() + self.inner.config.queue_timeout;
        loop {
            let (mut slot, mut worker) = match self.acquire(function, queue_deadline).await {
                Ok(granted) => granted,
                Err(e) => return Invocation::refused(e),
            };
            let id = self.inner.next_invocation_id.fetch_add(1, Ordering::Relaxed);
            let deadline_ms = function.limits.timeout_ms;
            let hard = Duration::from_millis(deadline_ms) + self.inner.config.kill_grace;
            let worker_pid = worker.pid;
            // On this task: the request's thread waits for the worker itself.
            let invocation = match worker.invoke(Invoke { id, request, deadline_ms }, hard).await {
                Ok(InvokeOutcome::Response { response, logs, stats }) => {
                    if stats.cold {
                        self.inner.telemetry.cold_start(function.language.as_str());
                    }
                    Invocation {
                        worker_pid: Some(worker_pid),
                        outcome: Outcome::Answered(response),
                        logs: Some(logs),
                        stats: Some(stats),
                    }
                }
                Ok(InvokeOutcome::Failure { kind, message, logs }) => Invocation {
                    worker_pid: Some(worker_pid),
                    outcome: Outcome::failure(kind, message),
                    logs: Some(logs),
                    stats: None,
                },
                Err(error) => {
                    // The worker is not checked in: the slot's drop retires it.
                    slot.retire(worker);
                    let outcome = match error {
                        WorkerError::GoneBeforeJob(Some(invoke)) => {
                            request = invoke.request;
                            continue;
                        }
                        WorkerError::HardTimeout => {
                            Outcome::Timeout("the function ran past its deadline and its worker was killed".into())
                        }
                        e => Outcome::WorkerDied(format!("the worker running the function died ({e})")),
                    };
                    return Invocation::lost(worker_pid, outcome);
                }
            };
            // A worker is measured after its first invocation (whatever its
            // outcome), so it is parked charged what it uses, not a guess.
            let memory = if worker.measured { None } else { memory::private_bytes(worker_pid) };
            worker.measured = true;
            slot.check_in(worker, memory);
            return invocation;
        }
    }

    /// Compiles and checks a staged bundle in a fresh worker that runs nothing
    /// else, so a hostile bundle cannot leave anything behind in a pooled one.
    pub async fn prepare(
        &self,
        language: Language,
        bundle_dir: &Path,
        entrypoint: String,
        env: Vec<(String, String)>,
    ) -> Result<Vec<Artifact>, PrepareError> {
        let mut worker = self.inner.clone().start_worker(language, false, None).await?;
        match worker.prepare(Prepare { language, entrypoint, env }, bundle_dir, PREPARE_TIMEOUT).await {
            Ok(Ok(artifacts)) => Ok(artifacts),
            Ok(Err(message)) => Err(PrepareError::Rejected(message)),
            Err(WorkerError::HardTimeout) => {
                Err(PrepareError::Rejected(format!("preparing the bundle took longer than {PREPARE_TIMEOUT:?}")))
            }
            Err(WorkerError::GoneBeforeJob(_)) => Err(PoolError::NotReady("the preparing worker died".into()).into()),
            Err(e @ WorkerError::BundleDir(_)) => Err(PoolError::NotReady(e.to_string()).into()),
            Err(e) => Err(PrepareError::Rejected(format!("the bundle crashed the worker preparing it: {e}"))),
        }
    }

    /// Stops taking work and shuts down every worker that is not out with an
    /// invocation; those are shut down when it ends. Waits up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let (parked, waiters) = {
            let mut st = self.inner.lock();
            (st.shut_down(), st.all_waiters())
        };
        drop(parked);
        notify(waiters);
        let deadline = Instant::now() + grace;
        while self.inner.lock().live() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A slot and a worker for one invocation of `function`, waiting in the
    /// queue (at most until `queue_deadline`) while the state machine says so.
    async fn acquire(
        &self,
        function: &Arc<Deployed>,
        queue_deadline: tokio::time::Instant,
    ) -> Result<(Slot, WorkerProcess), PoolError> {
        let key: FnKey = (function.name.clone(), function.version);
        let language = function.language;
        let mut ticket: Option<QueueTicket> = None;
        let here = process::current_runtime();
        loop {
            let mut wake_next = Vec::new();
            let grant = {
                let mut st = self.inner.lock();
                match st.checkout(function, ticket.as_ref().map(|t| t.id), Instant::now(), here.as_ref())? {
                    Some(grant) => {
                        // The grant took the ticket's place in the queue; who
                        // else may go now is decided under the same lock.
                        if let Some(mut ticket) = ticket.take() {
                            ticket.left = true;
                            wake_next = st.to_wake();
                        }
                        Some(grant)
                    }
                    None if ticket.is_none() => {
                        let wake = Arc::new(Notify::new());
                        let id = st.enqueue(function, wake.clone())?;
                        ticket = Some(QueueTicket { inner: self.inner.clone(), id, wake, left: false });
                        None
                    }
                    None => None,
                }
            };
            notify(wake_next);
            let Some(grant) = grant else {
                // A wake between the lock and here is kept by the Notify's permit.
                let wake = ticket.as_ref().map(|t| t.wake.clone()).unwrap_or_default();
                if tokio::time::timeout_at(queue_deadline, wake.notified()).await.is_err() {
                    return Err(PoolError::Overloaded);
                }
                continue;
            };
            // The slot is ours until it is dropped.
            let slot = Slot { inner: self.inner.clone(), key: key.clone(), worker: None, released: false };
            let blank = match grant {
                Checkout::Warm(worker) => return Ok((slot, worker)),
                Checkout::Blank(worker) => {
                    self.inner.replenish(language, true);
                    worker
                }
                Checkout::Spawn { victim } => {
                    drop(victim);
                    let started = self.inner.clone().start_worker(language, true, Some(function.clone())).await;
                    // No blank worker was ready: make sure the next cold start
                    // of this language finds one.
                    self.inner.replenish(language, true);
                    match started {
                        Ok(worker) => worker,
                        Err(e) => {
                            self.inner.lock().start_failed();
                            return Err(e);
                        }
                    }
                }
            };
            let id = blank.id;
            match self.inner.specialize(blank, function).await {
                Ok(Some(worker)) => {
                    self.inner.lock().specialized(id, &key, Ok(()), Instant::now());
                    return Ok((slot, worker));
                }
                // It died before taking `Init`; its exit gives its place back.
                Ok(None) => continue,
                Err(e) => {
                    self.inner.lock().specialized(id, &key, Err(&e), Instant::now());
                    return Err(e);
                }
            }
        }
    }
}

/// One invocation slot, held from its grant until the worker is checked in.
/// Dropped any other way (an error, a cancelled request), it gives the slot back
/// and the worker, if one was handed over, is retired: its state is unknown.
struct Slot {
    inner: Arc<Inner>,
    key: FnKey,
    /// A worker whose exchange broke, retired with the slot.
    worker: Option<WorkerProcess>,
    /// Given back already, by a check-in.
    released: bool,
}

impl Slot {
    /// Returns the worker after its invocation: parked idle, replaced if a
    /// restart asked for it, or retired if its version is no longer served.
    /// `memory`: the worker's private memory, if it was just measured.
    fn check_in(mut self, worker: WorkerProcess, memory: Option<u64>) {
        let (checkin, wake, trimmed) = {
            let mut st = self.inner.lock();
            let checkin = st.checkin(worker, &self.key, Instant::now(), memory);
            let trimmed = if st.over_budget() { st.trim() } else { Vec::new() };
            (checkin, st.to_wake(), trimmed)
        };
        self.released = true;
        notify(wake);
        drop(trimmed);
        match checkin {
            Checkin::Parked => {}
            Checkin::Retire(worker) => drop(worker),
            Checkin::Replace(worker) => self.inner.clone().replace(worker),
        }
    }

    fn retire(&mut self, worker: WorkerProcess) {
        self.worker = Some(worker);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let worker = self.worker.take();
        let wake = {
            let mut st = self.inner.lock();
            st.abandon(worker.as_ref().map(|w| w.id), &self.key);
            st.to_wake()
        };
        notify(wake);
        drop(worker);
    }
}

/// A place in the wait queue, given back however the wait ends.
struct QueueTicket {
    inner: Arc<Inner>,
    id: WaiterId,
    wake: Arc<Notify>,
    /// Taken out of the queue by a grant already (whose lock also decided who
    /// goes next).
    left: bool,
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let wake = {
            let mut st = self.inner.lock();
            st.dequeue(self.id);
            st.to_wake()
        };
        notify(wake);
    }
}

/// Wakes waiters the state machine chose; called with the lock released.
fn notify(wakers: Vec<Arc<Notify>>) {
    for w in wakers {
        w.notify_one();
    }
}

impl state::Handle for WorkerProcess {
    type Home = tokio::runtime::Id;

    fn id(&self) -> state::WorkerId {
        self.id
    }

    fn home(&self) -> Option<tokio::runtime::Id> {
        WorkerProcess::home(self)
    }
}
