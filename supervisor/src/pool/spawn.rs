//! Starting workers and keeping the pool whole: a new process (on the pool's
//! runtime), `Init` to specialize it, blank workers replenished per language with
//! backoff, the bookkeeping when a worker exits, and counting failed `Init`s.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, Weak};
use std::time::Instant;

use polyfaas_protocol::{Init, Language, Limits};
use tracing::{debug, info, warn};

use super::process::{ExitReason, WorkerError, WorkerProcess};
use super::registry::{self, FnKey, State, WorkerInfo, WorkerState};
use super::{
    INIT_TIMEOUT, Inner, MAX_BACKOFF, MAX_UNHEALTHY_BACKOFF, MIN_BACKOFF, PoolError, UNHEALTHY_AFTER, UNHEALTHY_BACKOFF,
};
use crate::store::Deployed;

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Bookkeeping only; a panic elsewhere cannot leave it half-updated in a
        // way that is worse than stopping the server.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failed `Init`; past `UNHEALTHY_AFTER` in a row the function is
    /// refused for a doubling backoff.
    pub(super) fn record_init_failure(&self, key: &FnKey, error: &PoolError) {
        let mut st = self.lock();
        let entry = st.init_failures.entry(key.clone()).or_insert(registry::InitFailures {
            count: 0,
            until: Instant::now(),
            last_error: String::new(),
        });
        entry.count += 1;
        entry.last_error = error.to_string();
        if entry.count >= UNHEALTHY_AFTER {
            let doublings = (entry.count - UNHEALTHY_AFTER).min(6);
            let backoff = (UNHEALTHY_BACKOFF * 2u32.pow(doublings)).min(MAX_UNHEALTHY_BACKOFF);
            entry.until = Instant::now() + backoff;
            warn!(function = %key.0, version = key.1, failures = entry.count, ?backoff, "function marked unhealthy: its Init keeps failing");
        }
    }

    /// Gives back a `live` slot taken for a worker that never started.
    pub(super) fn forget_one(&self) {
        self.lock().live -= 1;
        self.available.notify_one();
    }

    /// Starts one worker process on the pool's runtime. `counted`: whether it
    /// holds a `live` slot (given back by its exit hook) and is in the registry.
    pub(super) async fn start_worker(
        self: Arc<Self>,
        language: Language,
        counted: bool,
    ) -> Result<WorkerProcess, PoolError> {
        let id = self.next_worker_id.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Inner> = Arc::downgrade(&self);
        let bin = self.config.worker_bin.clone();
        let args =
            self.config.languages.iter().find(|(l, _)| *l == language).map(|(_, a)| a.clone()).unwrap_or_default();
        let on_exit = move |id: u64, reason: ExitReason| {
            if let Some(inner) = weak.upgrade() {
                inner.worker_exited(id, language, counted, reason);
            }
        };
        let started = self.runtime.spawn(async move { WorkerProcess::start(id, &bin, language, &args, on_exit).await });
        let worker = match started.await {
            Ok(Ok(worker)) => worker,
            Ok(Err(e)) => return Err(PoolError::NotReady(e.to_string())),
            Err(e) => return Err(PoolError::NotReady(format!("worker start task failed: {e}"))),
        };
        if counted {
            self.lock().workers.insert(
                worker.id,
                WorkerInfo {
                    pid: worker.pid,
                    language,
                    function: None,
                    state: WorkerState::Blank,
                    invocations: 0,
                    restarts: 0,
                    started: Instant::now(),
                    kill: worker.kill.clone(),
                    drain: false,
                },
            );
        }
        Ok(worker)
    }

    /// Sends `Init` to a blank worker. `Ok(None)`: the worker died before taking
    /// it, try another.
    pub(super) async fn specialize(
        &self,
        worker: WorkerProcess,
        f: &Arc<Deployed>,
    ) -> Result<Option<WorkerProcess>, PoolError> {
        let init = Init {
            function: f.name.to_string(),
            version: f.version,
            language: f.language,
            bundle_dir: f.bundle_dir.to_string_lossy().into_owned(),
            entrypoint: f.entrypoint.clone(),
            limits: Limits {
                timeout_ms: f.limits.timeout_ms,
                memory_mb: f.limits.memory_mb,
                max_output_bytes: self.config.max_output_bytes,
            },
            env: f.env.clone(),
        };
        {
            let mut st = self.lock();
            if let Some(info) = st.workers.get_mut(&worker.id) {
                info.state = WorkerState::Initializing;
                info.function = Some(f.clone());
            }
        }
        let mut worker = worker;
        match worker.init(init, INIT_TIMEOUT).await {
            Ok(Ok(())) => Ok(Some(worker)),
            Ok(Err(message)) => Err(PoolError::InitFailed(message)),
            Err(WorkerError::GoneBeforeJob(_)) => Ok(None),
            Err(e) => Err(PoolError::InitFailed(e.to_string())),
        }
    }

    /// Called by a worker's watcher when its process is gone.
    fn worker_exited(self: Arc<Self>, id: u64, language: Language, counted: bool, reason: ExitReason) {
        match &reason {
            ExitReason::Retired => {}
            // A clean exit once the pool let go of the worker (it was draining,
            // or the pool is shutting down) is a retirement whose exit the
            // watcher saw before the retirement: not a death.
            ExitReason::Died(why) if why == "exited with code 0" && self.let_go(id) => {
                debug!(worker = id, "worker exited after the pool let go");
            }
            ExitReason::Died(why) => {
                warn!(worker = id, "worker died: {why}");
                self.telemetry.worker_restart("crashed");
            }
            ExitReason::Killed(why) => {
                warn!(worker = id, "worker killed: {why}");
                self.telemetry.worker_restart(if *why == "hard deadline" { "timeout" } else { "killed" });
            }
        }
        if !counted {
            return;
        }
        {
            let mut st = self.lock();
            st.live -= 1;
            st.workers.remove(&id);
            // It may have died while idle or blank: drop the dead handle.
            drop(st.take_parked(id));
        }
        self.available.notify_one();
        self.replenish(language, false);
    }

    /// Whether the pool is done with worker `id`: shutting down, or the worker draining.
    fn let_go(&self, id: u64) -> bool {
        let st = self.lock();
        st.shutting_down || st.workers.get(&id).is_some_and(|w| w.state == WorkerState::Draining)
    }

    /// Starts blank workers until `warm_blank` of `language` are ready or coming,
    /// as far as the pool's size allows. With `make_room` (the language just used
    /// its blank worker, so it is in demand) a full pool retires its least
    /// recently used idle worker for the new blank one: that worker would be the
    /// next victim anyway, and its replacement's process start (~5 ms) then
    /// happens here instead of inside the next cold start.
    pub(super) fn replenish(self: &Arc<Self>, language: Language, make_room: bool) {
        let mut to_start = 0;
        let mut retired = Vec::new();
        {
            let mut st = self.lock();
            if st.shutting_down || st.spawn_backoff.is_some_and(|(until, _)| Instant::now() < until) {
                return;
            }
            loop {
                let have = st.blank.get(&language).map_or(0, Vec::len)
                    + st.blank_starting.get(&language).copied().unwrap_or(0);
                if have >= self.config.warm_blank {
                    break;
                }
                if st.live >= self.config.max_workers {
                    let victim = if make_room { st.take_least_recently_used() } else { None };
                    let Some(victim) = victim else { break };
                    // Its slot passes to the new worker; its exit hook gives back
                    // the count it held.
                    st.set_state(victim.id, WorkerState::Draining);
                    retired.push(victim);
                }
                st.live += 1;
                *st.blank_starting.entry(language).or_default() += 1;
                to_start += 1;
            }
        }
        drop(retired);
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
                            retry.replenish(language, false);
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
