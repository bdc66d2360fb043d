//! The state machine's vocabulary: its sizes, a worker's record and state, and
//! the decisions its methods return. Plain data.

use std::sync::Arc;
use std::time::Instant;

use polyfaas_protocol::Language;
use serde::Serialize;

use super::SLOTS_PER_WORKER;
use crate::pool::process::KillSwitch;
use crate::store::Deployed;

/// The pool's fixed sizes.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Most invocations running at once, all functions together: the slots.
    pub max_running: usize,
    /// Most worker processes alive at once, in every state: what the open-file
    /// limit leaves room for. Idle workers past `idle_memory` go before it.
    pub max_processes: usize,
    /// Memory that idle (specialized, parked) workers may use, all together;
    /// past it the least recently used are retired.
    pub idle_memory: u64,
    /// Blank workers kept ready per language.
    pub warm_blank: usize,
    /// Most invocations waiting at once.
    pub max_queue: usize,
}

impl Sizes {
    pub fn slots(&self) -> usize {
        self.max_running * SLOTS_PER_WORKER
    }

    /// Free slots kept for functions that hold none: one per eight slots.
    pub fn reserved(&self) -> usize {
        (self.slots() / 8).max(1)
    }
}

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
    /// Finishing its invocation, or exiting; it is never handed out again.
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

/// What the pool knows of one registered worker process.
pub struct WorkerRecord {
    pub pid: u32,
    pub language: Language,
    pub function: Option<Arc<Deployed>>,
    pub state: WorkerState,
    pub invocations: u64,
    /// How many workers this one replaced, through restarts of its predecessors.
    pub restarts: u32,
    pub started: Instant,
    pub kill: Arc<KillSwitch>,
    /// A graceful restart asked for it while it was out: replace it at check-in.
    pub(super) drain: bool,
    /// Memory charged to it (private resident bytes): measured, or until then
    /// what its language's specialized workers typically use.
    pub memory: u64,
    /// Its invocation count when `memory` was last measured (None: never).
    pub(super) measured_at: Option<u64>,
}

/// What a grant gives the invocation (which holds a slot from now on).
pub enum Checkout<W> {
    /// A warm worker of the function version: run the invocation on it.
    Warm(W),
    /// A blank worker of the language: specialize it, then run.
    Blank(W),
    /// Start a new process (a start is reserved) once `victim`, whose place it
    /// takes, is dropped.
    Spawn { victim: Option<W> },
}

/// What becomes of a worker checked in after its invocation.
pub enum Checkin<W> {
    /// Parked idle for its function version.
    Parked,
    /// Its version is no longer served, or the pool is shutting down: drop it.
    Retire(W),
    /// A graceful restart asked for it: start its replacement, then drop it.
    Replace(W),
}

/// What a restart does to one worker.
pub enum RestartStep<W> {
    /// Parked: replace it now (it is already out of the parked lists).
    Replace(W),
    /// Out with its owner: replaced when checked in.
    Drain,
    /// Killed at once through its switch.
    Kill(Arc<KillSwitch>),
}

/// Blank workers to start for one language, and workers retired to make room.
pub struct BlankPlan<W> {
    pub start: usize,
    pub retired: Vec<W>,
}

pub struct InitFailures {
    pub count: u32,
    pub until: Instant,
    pub last_error: String,
}
