//! The invariants the parent module states, checked by the tests after every step.

use std::collections::HashSet;

use super::types::WorkerState;
use super::{Handle, PoolState};

impl<W: Handle> PoolState<W> {
    /// Checks every invariant the module comment states; the tests call it after
    /// each step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for (language, list) in &self.blank {
            for w in list {
                let r = self.workers.get(&w.id()).ok_or(format!("blank {} has no record", w.id()))?;
                if r.state != WorkerState::Blank || r.language != *language {
                    return Err(format!("blank {} is {:?}", w.id(), r.state));
                }
                if !seen.insert(w.id()) {
                    return Err(format!("worker {} parked twice", w.id()));
                }
            }
        }
        for (key, list) in &self.idle {
            if list.is_empty() {
                return Err(format!("empty idle list for {key:?}"));
            }
            for i in list {
                let r = self.workers.get(&i.worker.id()).ok_or(format!("idle {} has no record", i.worker.id()))?;
                let of = r.function.as_ref().map(|f| (f.name.clone(), f.version));
                if r.state != WorkerState::Idle || of.as_ref() != Some(key) {
                    return Err(format!("idle {} is {:?} for {of:?}", i.worker.id(), r.state));
                }
                if !seen.insert(i.worker.id()) {
                    return Err(format!("worker {} parked twice", i.worker.id()));
                }
            }
        }
        let idle_bytes: u64 = self.idle.values().flatten().map(|i| i.memory).sum();
        if idle_bytes != self.idle_bytes {
            return Err(format!("idle workers charged {idle_bytes}, counted {}", self.idle_bytes));
        }
        for (key, list) in &self.idle {
            for i in list {
                if self.workers.get(&i.worker.id()).map(|r| r.memory) != Some(i.memory) {
                    return Err(format!("idle {} charged other than its record says", i.worker.id()));
                }
                if i.memory > self.sizes.idle_memory {
                    return Err(format!("idle {} is bigger than the whole budget", i.worker.id()));
                }
                if self.lru.get(&(i.last_used, i.worker.id())) != Some(key) {
                    return Err(format!("idle {} is not in the LRU order as parked", i.worker.id()));
                }
            }
        }
        let idle_count: usize = self.idle.values().map(Vec::len).sum();
        if self.lru.len() != idle_count {
            return Err(format!("{} in the LRU order, {idle_count} idle", self.lru.len()));
        }
        let parked_states =
            self.workers.values().filter(|r| matches!(r.state, WorkerState::Blank | WorkerState::Idle)).count();
        if parked_states != seen.len() {
            return Err(format!("{parked_states} records say parked, {} are", seen.len()));
        }
        if self.held.values().any(|n| *n == 0) || self.held.values().sum::<usize>() != self.total_held {
            return Err(format!("held {:?} total {}", self.held, self.total_held));
        }
        if self.total_held > self.sizes.slots() {
            return Err(format!("{} slots held of {}", self.total_held, self.sizes.slots()));
        }
        let busy = self.workers.values().filter(|r| r.state == WorkerState::Busy && !r.drain).count();
        if busy > self.total_held {
            return Err(format!("{busy} busy workers hold {} slots", self.total_held));
        }
        if self.waiters.len() > self.sizes.max_queue {
            return Err(format!("{} waiters, queue of {}", self.waiters.len(), self.sizes.max_queue));
        }
        // The ranking, against a plain look-up of every waiter.
        let mut plain: Vec<(usize, u64)> = self
            .waiters
            .iter()
            .filter(|(_, w)| self.may_take(&w.key, w.concurrency))
            .map(|(id, w)| (self.held.get(&w.key).copied().unwrap_or(0), *id))
            .collect();
        plain.sort_unstable();
        let plain: Vec<u64> = plain.into_iter().map(|(_, id)| id).collect();
        if plain != self.ranked_eligible() {
            return Err(format!("waiters ranked {:?}, should be {plain:?}", self.ranked_eligible()));
        }
        let blank_starting: usize = self.blank_starting.values().sum();
        if blank_starting > self.starting {
            return Err(format!("{blank_starting} blank starts of {} starts", self.starting));
        }
        Ok(())
    }
}
