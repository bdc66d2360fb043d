//! The state machine's memory side: what each worker is charged, measurements
//! as they come in, and idle workers retired down to the budget. Measuring is
//! the caller's (it reads /proc outside the lock); this file only keeps the sums.

use polyfaas_protocol::Language;

use super::types::WorkerState;
use super::{Handle, PoolState, WorkerId};

/// A worker to measure: its id and pid, and how many invocations it had run.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    pub id: WorkerId,
    pub pid: u32,
    pub invocations: u64,
}

/// What a worker is charged before any specialized worker of its language was
/// measured: more than a WASM or JS worker uses, less than Python's or Ruby's.
const UNMEASURED: u64 = 16 << 20;

impl<W: Handle> PoolState<W> {
    /// What a new worker of `language` is charged until it is measured.
    pub(super) fn typical_memory(&self, language: Language) -> u64 {
        self.typical.get(&language).copied().unwrap_or(UNMEASURED)
    }

    /// The workers to measure now, with their pids: with `all`, every one not
    /// draining; else those never measured and those that ran an invocation
    /// since (between invocations a worker runs nothing of its own, but a
    /// handler's leftover thread could; `all` catches that).
    pub fn to_measure(&self, all: bool) -> Vec<Measure> {
        self.workers
            .iter()
            .filter(|(_, r)| r.state != WorkerState::Draining && (all || r.measured_at != Some(r.invocations)))
            .map(|(id, r)| Measure { id: *id, pid: r.pid, invocations: r.invocations })
            .collect()
    }

    /// Records a worker's private memory, as measured while it had run
    /// `what.invocations`; a reading taken before its latest invocation is
    /// dropped (the next round measures it again). Returns the worker if it was
    /// idle and has grown past the whole budget: the caller retires it.
    pub fn measured(&mut self, what: Measure, bytes: u64) -> Option<W> {
        let record = self.workers.get(&what.id)?;
        if record.invocations != what.invocations {
            return None;
        }
        let idle = record.state == WorkerState::Idle;
        self.charge(what.id, bytes);
        let (key, i) = if idle { self.find_idle(what.id)? } else { return None };
        let entry = self.idle.get_mut(&key)?.get_mut(i)?;
        self.idle_bytes = self.idle_bytes - entry.memory + bytes;
        entry.memory = bytes;
        if bytes <= self.sizes.idle_memory {
            return None;
        }
        let worker = self.remove_idle(&key, i)?;
        self.set_state(what.id, WorkerState::Draining);
        Some(worker)
    }

    /// Charges worker `id` `bytes` (not its idle entry: see `measured`).
    pub(super) fn charge(&mut self, id: WorkerId, bytes: u64) {
        let Some(record) = self.workers.get_mut(&id) else { return };
        record.memory = bytes;
        record.measured_at = Some(record.invocations);
        if record.function.is_some() {
            self.typical.insert(record.language, bytes);
        }
    }

    /// Whether the idle workers use more than the budget.
    pub fn over_budget(&self) -> bool {
        self.idle_bytes > self.sizes.idle_memory
    }

    /// Retires the least recently used idle workers until the rest fit the
    /// budget; the caller drops them outside the lock.
    pub fn trim(&mut self) -> Vec<W> {
        let mut retired = Vec::new();
        while self.over_budget() {
            let Some(victim) = self.take_least_recently_used() else { break };
            self.set_state(victim.id(), WorkerState::Draining);
            retired.push(victim);
        }
        retired
    }

    /// Memory charged to idle workers, all together.
    pub fn idle_bytes(&self) -> u64 {
        self.idle_bytes
    }
}
