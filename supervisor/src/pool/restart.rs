//! Restarting workers on an operator's request.
//!
//! Graceful (the default): a parked worker (blank or idle) is replaced by a new
//! one of the same language and function, warmed first, then shut down; a busy
//! worker is marked to drain, finishes its invocation, and is replaced the same
//! way when it is released. No client request fails. Forced: the worker is killed
//! at once (its in-flight request, if any, gets `worker_crashed`) and a
//! replacement of the same kind is started, so the pool returns to its size.

use std::sync::Arc;
use std::time::Instant;

use polyfaas_protocol::Language;
use serde::Serialize;

use super::process::{KillReason, WorkerProcess};
use super::state::{RestartStep, WorkerRecord, WorkerState};
use super::{Inner, Pool, notify};
use crate::store::{Deployed, FunctionName};

/// Which workers to restart; unset fields match everything.
#[derive(Debug, Default, Clone)]
pub struct RestartFilter {
    pub id: Option<u64>,
    pub function: Option<FunctionName>,
    pub language: Option<Language>,
}

impl RestartFilter {
    fn matches(&self, id: u64, info: &WorkerRecord) -> bool {
        self.id.is_none_or(|want| want == id)
            && self.language.is_none_or(|want| want == info.language)
            && self.function.as_ref().is_none_or(|want| info.function.as_ref().is_some_and(|f| &f.name == want))
    }
}

/// One worker a restart acted on.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restarted {
    pub id: u64,
    pub pid: u32,
    pub language: &'static str,
    pub function: Option<String>,
    /// Its state when the restart was asked for.
    pub state: WorkerState,
    /// `replaced` (already done), `draining` (replaced when its invocation
    /// ends) or `killed`.
    pub action: &'static str,
}

/// What a replacement must be: same language, same function version.
struct Spec {
    language: Language,
    function: Option<Arc<Deployed>>,
    restarts: u32,
}

impl Spec {
    fn of(record: &WorkerRecord) -> Self {
        Spec { language: record.language, function: record.function.clone(), restarts: record.restarts }
    }
}

/// Replacements a restart starts at once.
const REPLACEMENTS_AT_ONCE: usize = 8;

impl Pool {
    /// Restarts the workers `filter` selects. Returns once parked workers are
    /// replaced; busy ones are replaced when their invocation ends.
    pub async fn restart(&self, filter: &RestartFilter, force: bool) -> Vec<Restarted> {
        let mut report = Vec::new();
        let mut parked = Vec::new();
        let mut killed = Vec::new();
        {
            let mut st = self.inner.lock();
            let mut ids: Vec<u64> = st.records().filter(|(id, r)| filter.matches(*id, r)).map(|(id, _)| id).collect();
            ids.sort_unstable();
            for id in ids {
                let Some(record) = st.record(id) else { continue };
                let spec = Spec::of(record);
                let mut entry = Restarted {
                    id,
                    pid: record.pid,
                    language: record.language.as_str(),
                    function: record.function.as_ref().map(|f| f.name.to_string()),
                    state: record.state,
                    action: "replaced",
                };
                match st.restart(id, force) {
                    Some(RestartStep::Kill(switch)) => {
                        switch.kill(KillReason::OnRequest);
                        entry.action = "killed";
                        killed.push(spec);
                    }
                    Some(RestartStep::Replace(worker)) => parked.push(worker),
                    // Already draining for an earlier restart: it is replaced all the same.
                    Some(RestartStep::Drain) | None => entry.action = "draining",
                }
                report.push(entry);
            }
        }
        // Each replacement is a process more until the worker it replaces is
        // gone: a few at a time, so restarting thousands of idle workers stays
        // within the process cap (and the descriptors set aside for it).
        let gate = Arc::new(tokio::sync::Semaphore::new(REPLACEMENTS_AT_ONCE));
        let mut tasks = Vec::new();
        for old in parked {
            let (inner, gate) = (self.inner.clone(), gate.clone());
            tasks.push(self.inner.runtime.spawn(async move {
                let _turn = gate.acquire_owned().await;
                inner.replace_now(old).await
            }));
        }
        for spec in killed {
            let (inner, gate) = (self.inner.clone(), gate.clone());
            tasks.push(self.inner.runtime.spawn(async move {
                let _turn = gate.acquire_owned().await;
                inner.start_replacement(spec).await
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        report
    }
}

impl Inner {
    /// Replaces `old` in the background (used when a draining worker is released).
    pub(super) fn replace(self: Arc<Self>, old: WorkerProcess) {
        let inner = self.clone();
        self.runtime.spawn(async move { inner.replace_now(old).await });
    }

    /// Starts and warms a replacement for `old`, then shuts `old` down.
    async fn replace_now(self: Arc<Self>, old: WorkerProcess) {
        let spec = self.lock().record(old.id).map(Spec::of);
        if let Some(spec) = spec {
            self.clone().start_replacement(spec).await;
        }
        self.telemetry.worker_restart("restarted");
        drop(old);
    }

    /// Starts a worker like `spec`, specializes it if `spec` has a function that
    /// is still served, and parks it. It holds a start of its own: the pool may be
    /// one over its size until the worker it replaces has exited.
    async fn start_replacement(self: Arc<Self>, spec: Spec) {
        let function = {
            let mut st = self.lock();
            st.reserve_start();
            spec.function.filter(|f| st.is_served(f))
        };
        let worker = match self.clone().start_worker(spec.language, true, function.clone()).await {
            Ok(worker) => worker,
            Err(e) => {
                tracing::warn!("cannot start a replacement worker: {e}");
                let wake = {
                    let mut st = self.lock();
                    st.start_failed();
                    st.to_wake()
                };
                notify(wake);
                return;
            }
        };
        self.lock().set_restarts(worker.id, spec.restarts + 1);
        let (worker, key) = match function {
            None => (worker, None),
            Some(function) => match self.specialize(worker, &function).await {
                Ok(Some(worker)) => (worker, Some((function.name.clone(), function.version))),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(function = %function.name, "replacement worker did not start: {e}");
                    return;
                }
            },
        };
        let (unwanted, wake) = {
            let mut st = self.lock();
            (st.park(worker, key, Instant::now()), st.to_wake())
        };
        drop(unwanted);
        notify(wake);
    }
}
