//! The pool's bookkeeping: where every worker is and what state it is in. Plain
//! data behind the pool's mutex; no awaits, no I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyfaas_protocol::Language;
use serde::Serialize;

use super::process::{KillSwitch, WorkerProcess};
use crate::store::{Deployed, FunctionName};

pub type FnKey = (FunctionName, u64);

/// A worker's life, as `/admin/workers` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Runtime loaded, no function: ready to be specialized.
    Blank,
    /// Being specialized with `Init`.
    Initializing,
    /// Specialized and warm, waiting for an invocation of its function.
    Idle,
    /// Running an invocation.
    Busy,
    /// Finishing its invocation, then it is replaced and shut down.
    Draining,
}

impl WorkerState {
    pub const ALL: [WorkerState; 5] =
        [WorkerState::Blank, WorkerState::Initializing, WorkerState::Idle, WorkerState::Busy, WorkerState::Draining];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Blank => "blank",
            WorkerState::Initializing => "initializing",
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Draining => "draining",
        }
    }
}

/// What the pool knows of one live worker process.
pub struct WorkerInfo {
    pub pid: u32,
    pub language: Language,
    pub function: Option<Arc<Deployed>>,
    pub state: WorkerState,
    pub invocations: u64,
    /// How many workers this one replaced, through restarts of its predecessors.
    pub restarts: u32,
    pub started: Instant,
    pub kill: Arc<KillSwitch>,
    /// Set by a graceful restart of a busy worker: replace it when it is released.
    pub drain: bool,
}

pub struct IdleWorker {
    pub worker: WorkerProcess,
    pub last_used: Instant,
}

#[derive(Default)]
pub struct State {
    pub workers: HashMap<u64, WorkerInfo>,
    pub idle: HashMap<FnKey, Vec<IdleWorker>>,
    pub blank: HashMap<Language, Vec<WorkerProcess>>,
    /// Blank workers being started, per language.
    pub blank_starting: HashMap<Language, usize>,
    /// Every worker process counted against `max_workers`, in any state,
    /// including those being started.
    pub live: usize,
    pub queued: usize,
    /// The version each function serves; workers of other versions are retired
    /// as soon as they are idle.
    pub serving: HashMap<FunctionName, u64>,
    pub spawn_backoff: Option<(Instant, Duration)>,
    /// Per function version: at most `concurrency` invocations at once.
    pub concurrency: HashMap<FnKey, Arc<tokio::sync::Semaphore>>,
    /// Function versions whose `Init` failed, with how often in a row and until
    /// when they are refused without trying again.
    pub init_failures: HashMap<FnKey, InitFailures>,
    pub shutting_down: bool,
}

pub struct InitFailures {
    pub count: u32,
    pub until: Instant,
    pub last_error: String,
}

impl State {
    pub fn set_state(&mut self, id: u64, state: WorkerState) {
        if let Some(info) = self.workers.get_mut(&id) {
            info.state = state;
        }
    }

    /// Removes and returns the idle worker that has waited longest, of any function.
    pub fn take_least_recently_used(&mut self) -> Option<WorkerProcess> {
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

    /// Removes and returns a blank worker of a language other than `keep`: when
    /// the pool is full, a blank worker (cheap to start again) gives way before
    /// a warm one.
    pub fn take_blank_except(&mut self, keep: Language) -> Option<WorkerProcess> {
        let language = self.blank.iter().find(|(l, ws)| **l != keep && !ws.is_empty()).map(|(l, _)| *l)?;
        self.blank.get_mut(&language)?.pop()
    }

    /// Takes worker `id` out of the idle or blank lists, if it is there.
    pub fn take_parked(&mut self, id: u64) -> Option<WorkerProcess> {
        for list in self.blank.values_mut() {
            if let Some(i) = list.iter().position(|w| w.id == id) {
                return Some(list.remove(i));
            }
        }
        let key = self.idle.iter().find(|(_, ws)| ws.iter().any(|w| w.worker.id == id)).map(|(k, _)| k.clone())?;
        let list = self.idle.get_mut(&key)?;
        let i = list.iter().position(|w| w.worker.id == id)?;
        let worker = list.remove(i).worker;
        if list.is_empty() {
            self.idle.remove(&key);
        }
        Some(worker)
    }

    /// Whether a worker of `language` is alive in any state.
    pub fn has_worker_of(&self, language: Language) -> bool {
        self.workers.values().any(|w| w.language == language)
    }

    pub fn count_by_state(&self) -> Vec<(&'static str, usize)> {
        WorkerState::ALL.iter().map(|s| (s.as_str(), self.workers.values().filter(|w| w.state == *s).count())).collect()
    }
}

/// One worker, as `/admin/workers` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    pub id: u64,
    pub pid: u32,
    pub state: WorkerState,
    pub language: &'static str,
    pub function: Option<String>,
    pub version: Option<u64>,
    pub invocations: u64,
    pub restarts: u32,
    pub uptime_ms: u64,
    pub rss_bytes: Option<u64>,
}

impl WorkerView {
    pub fn of(id: u64, info: &WorkerInfo) -> Self {
        Self {
            id,
            pid: info.pid,
            state: info.state,
            language: info.language.as_str(),
            function: info.function.as_ref().map(|f| f.name.to_string()),
            version: info.function.as_ref().map(|f| f.version),
            invocations: info.invocations,
            restarts: info.restarts,
            uptime_ms: info.started.elapsed().as_millis() as u64,
            rss_bytes: None,
        }
    }
}

/// Resident set size of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}
