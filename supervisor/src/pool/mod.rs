//! The worker pool: which worker runs which invocation.
//!
//! Workers are processes ([`process`]). Each is, at any moment, in exactly one
//! place: *blank* (runtime loaded, no function; kept warm per language so a cold
//! start costs only `Init`), *idle* for one function version (warm, reused), or
//! *leased* to one invocation. An invocation takes, in order of preference: an idle
//! worker of its function version, a blank worker (specialized with `Init`), a new
//! worker if the pool is below its size, or the place of the least recently used
//! idle worker of another function. When none of these is possible it waits in a
//! bounded queue; a full queue or a long wait is `Overloaded` (HTTP 429).
//!
//! The state lock is a `std` mutex held only for bookkeeping, never across an
//! await. No user code runs in this process: the pool only moves frames.

pub mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use polyfaas_protocol::{Artifact, FailureKind, HttpRequest, HttpResponse, Init, Invoke, Language, Limits, Logs, Prepare, Stats};
use tokio::sync::{Notify, oneshot};
use tracing::{info, warn};

use self::process::{ExitReason, InvokeOutcome, Job, WorkerError, WorkerProcess};
use crate::store::{Deployed, FunctionName};

/// How long `Init` may take (it evaluates the function's top level).
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Prepare` may take (it compiles the whole module).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(300);
/// Blank-worker spawn retries back off from this, doubling, up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    /// Languages this build has a runtime for.
    pub languages: Vec<Language>,
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

type FnKey = (FunctionName, u64);

struct IdleWorker {
    worker: WorkerProcess,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    idle: HashMap<FnKey, Vec<IdleWorker>>,
    blank: HashMap<Language, Vec<WorkerProcess>>,
    /// Blank workers being started, per language.
    blank_starting: HashMap<Language, usize>,
    /// Every worker process counted against `max_workers`, in any state.
    live: usize,
    queued: usize,
    /// The version each function serves; workers of other versions are retired
    /// as soon as they are idle.
    serving: HashMap<FunctionName, u64>,
    spawn_backoff: Option<(Instant, Duration)>,
    shutting_down: bool,
}

struct Inner {
    config: PoolConfig,
    state: Mutex<State>,
    /// Woken once per worker that becomes available (idle, blank or exited).
    available: Notify,
    next_worker_id: AtomicU64,
    next_invocation_id: AtomicU64,
    /// Worker drivers run here, not on the HTTP server's threads.
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
    pub fn new(config: PoolConfig, runtime: tokio::runtime::Handle) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                available: Notify::new(),
                next_worker_id: AtomicU64::new(1),
                next_invocation_id: AtomicU64::new(1),
                runtime,
            }),
        }
    }

    pub fn supports(&self, language: Language) -> bool {
        self.inner.config.languages.contains(&language)
    }

    /// Starts the blank workers of every language.
    pub fn warm_up(&self) {
        for &language in &self.inner.config.languages {
            self.inner.replenish(language);
        }
    }

    /// Records that `name` now serves `version` (or nothing: `None`), and retires
    /// idle workers of every other version.
    pub fn serve_version(&self, name: &FunctionName, version: Option<u64>) {
        let retired: Vec<IdleWorker> = {
            let mut st = self.inner.lock();
            st.serving.insert(name.clone(), version.unwrap_or(0));
            let stale: Vec<FnKey> =
                st.idle.keys().filter(|(n, v)| n == name && Some(*v) != version).cloned().collect();
            stale.into_iter().filter_map(|k| st.idle.remove(&k)).flatten().collect()
        };
        // Dropped outside the lock: each driver then shuts its worker down.
        drop(retired);
    }

    /// Runs one invocation of `function`.
    ///
    /// # Errors
    /// A [`PoolError`] when no worker could run it to the end; a handler that
    /// failed is not an error here but an `Invoked` with a `HandlerFailure`.
    pub async fn invoke(&self, function: &Deployed, mut request: HttpRequest) -> Result<Invoked, PoolError> {
        let queue_deadline = tokio::time::Instant::now() + self.inner.config.queue_timeout;
        loop {
            let lease = self.acquire(function, queue_deadline).await?;
            let id = self.inner.next_invocation_id.fetch_add(1, Ordering::Relaxed);
            let deadline_ms = function.limits.timeout_ms;
            let hard = Duration::from_millis(deadline_ms) + self.inner.config.kill_grace;
            let (tx, rx) = oneshot::channel();
            if let Err(job) = lease.worker.submit(Job::Invoke(Invoke { id, request, deadline_ms }, hard, tx)) {
                // The worker died while idle; take another.
                let Job::Invoke(invoke, ..) = job else { unreachable!("submit gives back the job it was given") };
                request = invoke.request;
                continue;
            }
            let worker_pid = lease.worker.pid;
            let outcome = match rx.await {
                Ok(outcome) => outcome,
                Err(_) => Err(WorkerError::Crashed("its driver ended".into())),
            };
            return match outcome {
                Ok(InvokeOutcome::Response { response, logs, stats }) => {
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
    pub async fn prepare(&self, language: Language, bundle_dir: String, entrypoint: String) -> Result<Vec<Artifact>, PrepareError> {
        let worker = self.inner.clone().start_worker(language, false).await?;
        let (tx, rx) = oneshot::channel();
        let job = Job::Prepare(Prepare { language, bundle_dir, entrypoint }, PREPARE_TIMEOUT, tx);
        if worker.submit(job).is_err() {
            return Err(PoolError::NotReady("the preparing worker died".into()).into());
        }
        match rx.await {
            Ok(Ok(Ok(artifacts))) => Ok(artifacts),
            Ok(Ok(Err(message))) => Err(PrepareError::Rejected(message)),
            Ok(Err(WorkerError::HardTimeout)) => {
                Err(PrepareError::Rejected(format!("preparing the bundle took longer than {PREPARE_TIMEOUT:?}")))
            }
            Ok(Err(e)) => Err(PrepareError::Rejected(format!("the bundle crashed the worker preparing it: {e}"))),
            Err(_) => Err(PoolError::NotReady("the preparing worker died".into()).into()),
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

    async fn acquire(&self, function: &Deployed, queue_deadline: tokio::time::Instant) -> Result<Lease, PoolError> {
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
                    Step::Warm(idle.worker)
                } else if let Some(blank) = st.blank.get_mut(&language).and_then(Vec::pop) {
                    Step::Blank(blank)
                } else if st.live < self.inner.config.max_workers {
                    st.live += 1;
                    Step::Spawn(None)
                } else if let Some(victim) = st.take_least_recently_used() {
                    // The victim's slot passes to the new worker; its exit hook
                    // gives back the count it held.
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
            match step {
                Step::Warm(worker) => return Ok(Lease { worker, key }),
                Step::Blank(worker) => {
                    self.inner.replenish(language);
                    match self.specialize(worker, function).await? {
                        Some(worker) => return Ok(Lease { worker, key }),
                        None => continue,
                    }
                }
                Step::Spawn(victim) => {
                    drop(victim);
                    let worker = match self.inner.clone().start_worker(language, true).await {
                        Ok(worker) => worker,
                        Err(e) => {
                            self.inner.forget_one();
                            return Err(e);
                        }
                    };
                    match self.specialize(worker, function).await? {
                        Some(worker) => return Ok(Lease { worker, key }),
                        None => continue,
                    }
                }
                Step::Wait => {
                    if tokio::time::timeout_at(queue_deadline, available).await.is_err() {
                        return Err(PoolError::Overloaded);
                    }
                }
            }
        }
    }

    /// Sends `Init` to a blank worker. `Ok(None)`: the worker died before taking
    /// it, try another.
    async fn specialize(&self, worker: WorkerProcess, f: &Deployed) -> Result<Option<WorkerProcess>, PoolError> {
        let init = Init {
            function: f.name.to_string(),
            version: f.version,
            language: f.language,
            bundle_dir: f.bundle_dir.to_string_lossy().into_owned(),
            entrypoint: f.entrypoint.clone(),
            limits: Limits {
                timeout_ms: f.limits.timeout_ms,
                memory_mb: f.limits.memory_mb,
                max_output_bytes: self.inner.config.max_output_bytes,
            },
            env: f.env.clone(),
        };
        let (tx, rx) = oneshot::channel();
        if worker.submit(Job::Init(Box::new(init), INIT_TIMEOUT, tx)).is_err() {
            return Ok(None);
        }
        match rx.await {
            Ok(Ok(Ok(()))) => Ok(Some(worker)),
            Ok(Ok(Err(message))) => Err(PoolError::InitFailed(message)),
            Ok(Err(WorkerError::GoneBeforeJob(_))) => Ok(None),
            Ok(Err(e)) => Err(PoolError::InitFailed(e.to_string())),
            Err(_) => Ok(None),
        }
    }

    /// Returns a worker after its invocation: idle for its function, or retired
    /// if the function has moved to another version or the pool is stopping.
    fn release(&self, lease: Lease) {
        let Lease { worker, key } = lease;
        let retire = {
            let mut st = self.inner.lock();
            let stale = st.serving.get(&key.0).is_some_and(|v| *v != key.1);
            if st.shutting_down || stale {
                Some(worker)
            } else {
                st.idle.entry(key).or_default().push(IdleWorker { worker, last_used: Instant::now() });
                None
            }
        };
        if retire.is_none() {
            self.inner.available.notify_one();
        }
    }
}

impl State {
    /// Removes and returns the idle worker that has waited longest, of any function.
    fn take_least_recently_used(&mut self) -> Option<WorkerProcess> {
        let (key, index) = self
            .idle
            .iter()
            .flat_map(|(k, ws)| ws.iter().enumerate().map(move |(i, w)| (w.last_used, k, i)))
            .min_by_key(|(used, ..)| *used)
            .map(|(_, k, i)| (k.clone(), i))?;
        let list = self.idle.get_mut(&key)?;
        let victim = list.remove(index);
        if list.is_empty() {
            self.idle.remove(&key);
        }
        Some(victim.worker)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Bookkeeping only; a panic elsewhere cannot leave it half-updated in a
        // way that is worse than stopping the server.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives back a `live` slot taken for a worker that never started.
    fn forget_one(&self) {
        self.lock().live -= 1;
        self.available.notify_one();
    }

    /// Starts one worker process on the pool's runtime. `counted`: whether it
    /// holds a `live` slot, to be given back by its exit hook.
    async fn start_worker(self: Arc<Self>, language: Language, counted: bool) -> Result<WorkerProcess, PoolError> {
        let id = self.next_worker_id.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Inner> = Arc::downgrade(&self);
        let bin = self.config.worker_bin.clone();
        let on_exit = move |id: u64, reason: ExitReason| {
            if let Some(inner) = weak.upgrade() {
                inner.worker_exited(id, language, counted, reason);
            }
        };
        let started = self.runtime.spawn(async move { WorkerProcess::start(id, &bin, language, on_exit).await });
        match started.await {
            Ok(Ok(worker)) => Ok(worker),
            Ok(Err(e)) => Err(PoolError::NotReady(e.to_string())),
            Err(e) => Err(PoolError::NotReady(format!("worker start task failed: {e}"))),
        }
    }

    /// Called by a worker's driver when its process is gone.
    fn worker_exited(self: Arc<Self>, id: u64, language: Language, counted: bool, reason: ExitReason) {
        match &reason {
            ExitReason::Retired => {}
            ExitReason::Died(why) => warn!(worker = id, "worker died: {why}"),
            ExitReason::Killed(why) => warn!(worker = id, "worker killed: {why}"),
        }
        if !counted {
            return;
        }
        {
            let mut st = self.lock();
            st.live -= 1;
            // It may have died while idle or blank: drop the dead handle.
            if let Some(list) = st.blank.get_mut(&language) {
                list.retain(|w| w.id != id);
            }
            st.idle.retain(|_, list| {
                list.retain(|w| w.worker.id != id);
                !list.is_empty()
            });
        }
        self.available.notify_one();
        self.replenish(language);
    }

    /// Starts blank workers until `warm_blank` of `language` are ready or coming,
    /// as far as the pool's size allows.
    fn replenish(self: &Arc<Self>, language: Language) {
        let mut to_start = 0;
        {
            let mut st = self.lock();
            if st.shutting_down || st.spawn_backoff.is_some_and(|(until, _)| Instant::now() < until) {
                return;
            }
            loop {
                let have = st.blank.get(&language).map_or(0, Vec::len) + st.blank_starting.get(&language).copied().unwrap_or(0);
                if have >= self.config.warm_blank || st.live >= self.config.max_workers {
                    break;
                }
                st.live += 1;
                *st.blank_starting.entry(language).or_default() += 1;
                to_start += 1;
            }
        }
        for _ in 0..to_start {
            let inner = self.clone();
            self.runtime.spawn(async move {
                let started = inner.clone().start_worker(language, true).await;
                let mut st = inner.lock();
                if let Some(n) = st.blank_starting.get_mut(&language) {
                    *n -= 1;
                }
                match started {
                    Ok(worker) if !st.shutting_down => {
                        st.spawn_backoff = None;
                        st.blank.entry(language).or_default().push(worker);
                        drop(st);
                        inner.available.notify_one();
                    }
                    Ok(worker) => {
                        drop(st);
                        drop(worker);
                    }
                    Err(e) => {
                        st.live -= 1;
                        let backoff = st.spawn_backoff.map_or(MIN_BACKOFF, |(_, d)| (d * 2).min(MAX_BACKOFF));
                        st.spawn_backoff = Some((Instant::now() + backoff, backoff));
                        drop(st);
                        warn!(language = language.as_str(), ?backoff, "cannot start a blank worker: {e}");
                        inner.available.notify_one();
                        let retry = inner.clone();
                        inner.runtime.spawn(async move {
                            tokio::time::sleep(backoff).await;
                            retry.replenish(language);
                        });
                    }
                }
            });
        }
        if to_start > 0 {
            info!(language = language.as_str(), count = to_start, "starting blank workers");
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
