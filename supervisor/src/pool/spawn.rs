//! Starting workers and keeping the pool whole: a new process (on the pool's
//! runtime), `Init` to specialize it, blank workers replenished per language with
//! backoff, and what happens when a worker exits. Every count changes in the
//! state machine ([`super::state`]); this file only carries its decisions out.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, Weak};
use std::time::Instant;

use polyfaas_protocol::launch::WorkerLaunch;
use polyfaas_protocol::{Init, Language, Limits};
use tracing::{info, warn};

use super::process::{ExitReason, KillReason, WorkerError, WorkerProcess};
use super::state::PoolState;
use super::{INIT_TIMEOUT, Inner, PoolError, notify};
use crate::store::Deployed;

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, PoolState<WorkerProcess>> {
        // Decisions only, each one method of the state machine: a panic elsewhere
        // cannot leave it half-updated in a way that is worse than stopping.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts one worker process on the pool's runtime. `counted`: its start was
    /// reserved in the state machine, and it is registered there (for `function`,
    /// if it is to be specialized at once); the caller reports a failure.
    pub(super) async fn start_worker(
        self: Arc<Self>,
        language: Language,
        counted: bool,
        function: Option<Arc<Deployed>>,
    ) -> Result<WorkerProcess, PoolError> {
        let id = self.next_worker_id.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Inner> = Arc::downgrade(&self);
        let (bin, start_timeout) = (self.config.worker_bin.clone(), self.config.start_timeout);
        let launch = WorkerLaunch {
            // Filled in by `process::spawn`: the number of the socket it hands over.
            fd: -1,
            language,
            ruby_module: if language == Language::Ruby { self.config.ruby_module.clone() } else { None },
            parent_pid: Some(std::process::id()),
            sandbox: self.config.sandbox.clone(),
        };
        let on_exit = move |id: u64, reason: ExitReason| {
            if let Some(inner) = weak.upgrade() {
                inner.worker_exited(id, language, counted, reason);
            }
        };
        let started =
            self.runtime.spawn(async move { WorkerProcess::start(id, &bin, &launch, start_timeout, on_exit).await });
        let worker = match started.await {
            Ok(Ok(worker)) => worker,
            Ok(Err(e)) => return Err(PoolError::NotReady(e.to_string())),
            Err(e) => return Err(PoolError::NotReady(format!("worker start task failed: {e}"))),
        };
        if counted {
            self.lock().register(worker.id, worker.pid, language, function, worker.kill.clone(), Instant::now());
        }
        Ok(worker)
    }

    /// Sends `Init` to a worker. `Ok(None)`: the worker died before taking it,
    /// try another.
    pub(super) async fn specialize(
        &self,
        worker: WorkerProcess,
        f: &Arc<Deployed>,
    ) -> Result<Option<WorkerProcess>, PoolError> {
        // Checked by the store when it loaded the version: a precompiled module that
        // is not the one it stored is never mapped into a worker.
        if let Some(why) = self.config.refusals.check(f.name.as_str(), f.version) {
            return Err(PoolError::InitFailed(why));
        }
        let init = Init {
            function: f.name.to_string(),
            version: f.version,
            language: f.language,
            entrypoint: f.entrypoint.clone(),
            limits: Limits {
                timeout_ms: f.limits.timeout_ms,
                memory_mb: f.limits.memory_mb,
                max_output_bytes: self.config.max_output_bytes,
            },
            env: f.env.clone(),
            wasm: f.wasm.clone(),
        };
        let mut worker = worker;
        match worker.init(init, &f.bundle_dir, INIT_TIMEOUT).await {
            Ok(Ok(())) => Ok(Some(worker)),
            Ok(Err(message)) => Err(PoolError::InitFailed(message)),
            Err(WorkerError::GoneBeforeJob(_)) => Ok(None),
            // The server's store is at fault, not the handler: nothing was sent.
            Err(e @ WorkerError::BundleDir(_)) => Err(PoolError::NotReady(e.to_string())),
            Err(e) => Err(PoolError::InitFailed(e.to_string())),
        }
    }

    /// Called by a worker's watcher when its process is gone.
    fn worker_exited(self: Arc<Self>, id: u64, language: Language, counted: bool, reason: ExitReason) {
        match &reason {
            ExitReason::Retired => {}
            ExitReason::Died(why) => {
                warn!(worker = id, "worker died: {why}");
                self.telemetry.worker_restart("crashed");
            }
            ExitReason::Killed(why) => {
                warn!(worker = id, "worker killed: {why}");
                self.telemetry.worker_restart(match why {
                    KillReason::HardDeadline => "timeout",
                    KillReason::OnRequest | KillReason::ProtocolError => "killed",
                });
            }
        }
        if !counted {
            return;
        }
        let (parked, wake) = {
            let mut st = self.lock();
            (st.exited(id), st.to_wake())
        };
        // It may have died while idle or blank: the dead handle goes here.
        drop(parked);
        notify(wake);
        self.replenish(language, false);
    }

    /// Starts blank workers of `language` as the state machine plans them (see
    /// `PoolState::plan_blanks`; `make_room`: the language just used its blank
    /// worker, so a full pool retires its least recently used idle worker for a
    /// new blank one, and the next cold start does not wait for a process).
    pub(super) fn replenish(self: &Arc<Self>, language: Language, make_room: bool) {
        let plan = self.lock().plan_blanks(language, make_room, Instant::now());
        drop(plan.retired);
        for _ in 0..plan.start {
            let inner = self.clone();
            self.runtime.spawn(async move {
                match inner.clone().start_worker(language, true, None).await {
                    Ok(worker) => {
                        let (unwanted, wake) = {
                            let mut st = inner.lock();
                            (st.blank_ready(language, worker), st.to_wake())
                        };
                        drop(unwanted);
                        notify(wake);
                    }
                    Err(e) => {
                        let (backoff, wake) = {
                            let mut st = inner.lock();
                            (st.blank_failed(language, Instant::now()), st.to_wake())
                        };
                        // Its place is free again: a waiter may start a process itself.
                        notify(wake);
                        warn!(language = language.as_str(), ?backoff, "cannot start a blank worker: {e}");
                        let retry = inner.clone();
                        inner.runtime.spawn(async move {
                            tokio::time::sleep(backoff).await;
                            retry.replenish(language, false);
                        });
                    }
                }
            });
        }
        if plan.start > 0 {
            info!(language = language.as_str(), count = plan.start, "starting blank workers");
        }
    }
}
