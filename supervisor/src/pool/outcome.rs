//! How one invocation ended: the one value the pool hands back for every
//! invocation, whatever happened, so its caller maps it to HTTP in one place and
//! logs it in one place.
//!
//! Owns the vocabulary of endings (answered, the handler failed in one of the
//! ways a worker reports, the worker died or was killed, the pool refused). It
//! must never decide HTTP statuses or codes: that is the api's (`api/invoke.rs`),
//! whose table is the README's contract.

use polyfaas_protocol::{FailureKind, HttpResponse, Logs, Stats};

use super::PoolError;

/// One invocation, end to end.
pub struct Invocation {
    /// The worker that ran it; `None` when the pool refused before any worker did.
    pub worker_pid: Option<u32>,
    pub outcome: Outcome,
    /// What the handler logged, when a worker answered (a dead or killed worker
    /// sends nothing back).
    pub logs: Option<Logs>,
    /// The worker's own measurements, when it answered.
    pub stats: Option<Stats>,
}

/// How it ended.
pub enum Outcome {
    /// The handler answered. Its status is the handler's own choice: whether
    /// HTTP lets a handler send it is the api's to check.
    Answered(HttpResponse),
    /// The handler trapped, threw, panicked or exited non-zero; its worker serves on.
    HandlerError(String),
    /// The handler ran past its deadline: interrupted in place (its worker
    /// serves on), or its worker missed the hard deadline and was killed.
    Timeout(String),
    /// The handler hit its memory limit.
    MemoryLimit(String),
    /// The handler's response, headers or logs went over their caps.
    ResponseTooLarge(String),
    /// The worker died during the invocation, or broke the protocol and was killed.
    WorkerDied(String),
    /// No handler ran this invocation: the pool refused it (full queue, no
    /// worker, a function that fails to start, shutdown).
    Refused(PoolError),
}

impl Outcome {
    /// What a worker reported about a handler that ran and failed.
    pub fn failure(kind: FailureKind, message: String) -> Self {
        match kind {
            FailureKind::HandlerError => Self::HandlerError(message),
            FailureKind::Timeout => Self::Timeout(message),
            FailureKind::MemoryLimit => Self::MemoryLimit(message),
            FailureKind::ResponseTooLarge => Self::ResponseTooLarge(message),
        }
    }
}

impl Invocation {
    /// An invocation no worker ran.
    pub fn refused(error: PoolError) -> Self {
        Self { worker_pid: None, outcome: Outcome::Refused(error), logs: None, stats: None }
    }

    /// An invocation whose worker sent no answer back (died, or was killed).
    pub fn lost(worker_pid: u32, outcome: Outcome) -> Self {
        Self { worker_pid: Some(worker_pid), outcome, logs: None, stats: None }
    }
}
