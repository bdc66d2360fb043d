//! The pool's state machine: where every worker is, which function holds which
//! invocation slots, and who waits. Plain data behind the pool's mutex — no
//! awaits, no I/O, no processes — so every rule here is unit-tested with fake
//! workers (`tests.rs`, including a randomized sequence with invariant checks).
//!
//! **Workers.** Each live process is counted once, from the moment a start is
//! reserved until its exit is reported: `live = registered + starting`, at most
//! `max_processes` (one over for each replacement in flight; a restart starts
//! at most eight at a time). A registered worker
//! is in exactly one place: parked *blank* (per language), parked *idle* (per
//! function version, least recently used first to go), or out with its owner
//! (initializing, busy, draining).
//!
//! **Memory.** Idle workers are kept by a memory budget, not a count: each is
//! charged its measured private memory (`measured`), and `trim` retires the least
//! recently used while their sum is over `idle_memory`. A worker bigger than the
//! whole budget is never parked idle (it would push every other one out, and then
//! go itself). The budget never stops an invocation from starting a process; it
//! only decides which parked ones go.
//!
//! **Slots.** Capacity is counted in invocation slots (`max_running ×
//! SLOTS_PER_WORKER`), not in workers, so the rules hold unchanged once a worker
//! runs several invocations at once. An invocation holds one slot from the moment
//! it is granted until its owner checks the worker in or lets the slot go.
//!
//! **Fairness.** (1) A function holds at most its `concurrency` slots. (2) The
//! last `reserved` free slots go only to a function that holds none: a function
//! with long invocations can never take the whole pool, so a bystander always
//! finds a slot unless every slot is held by a *different* function's
//! long-running invocation. (3) Waiters are served by fewest slots held, then by
//! arrival; a new arrival never passes an eligible waiter that ranks before it.
//!
//! Every count here is changed in exactly one method; nothing outside this file
//! can touch the fields. It must never block, call a worker, or hand the same
//! worker to two owners.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyfaas_protocol::Language;
use tokio::sync::Notify;

use super::{MAX_UNHEALTHY_BACKOFF, PoolError, UNHEALTHY_AFTER, UNHEALTHY_BACKOFF};
use crate::store::{Deployed, FunctionName};

#[cfg(test)]
mod invariants;
mod memory;
mod processes;
#[cfg(test)]
mod tests;
mod types;

pub use self::memory::Measure;
pub use self::types::{Checkin, Checkout, InitFailures, RestartStep, Sizes, WorkerRecord, WorkerState};

pub type WorkerId = u64;
pub type WaiterId = u64;
/// A function version: what a warm worker is specialized for.
pub type FnKey = (FunctionName, u64);

/// Invocations one worker runs at once. Fairness and capacity are counted in
/// these slots; a pipelining pool raises it without changing any rule.
pub const SLOTS_PER_WORKER: usize = 1;

/// What the state machine needs of a worker handle.
pub trait Handle {
    /// Where a worker waits for its answers (the event loop its socket is
    /// registered with): handing it to a caller elsewhere costs a move.
    type Home: PartialEq;
    fn id(&self) -> WorkerId;
    fn home(&self) -> Option<Self::Home>;
}

struct Idle<W> {
    worker: W,
    last_used: Instant,
    /// What it is charged against `idle_memory`: its record's `memory`.
    memory: u64,
}

struct Waiter {
    key: FnKey,
    concurrency: usize,
    wake: Arc<Notify>,
}

/// The pool's maps: looked up on every invocation, keyed by what an operator
/// deployed (function names, versions, languages, worker ids).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub struct PoolState<W> {
    sizes: Sizes,
    workers: HashMap<WorkerId, WorkerRecord>,
    idle: HashMap<FnKey, Vec<Idle<W>>>,
    /// The sum of every idle worker's `memory`.
    idle_bytes: u64,
    /// Every idle worker by when it was parked, oldest first: the next to go.
    lru: BTreeMap<(Instant, WorkerId), FnKey>,
    /// The last measured memory of a specialized worker, per language: what a
    /// new worker is charged until it is measured itself.
    typical: HashMap<Language, u64>,
    blank: HashMap<Language, Vec<W>>,
    /// Process starts reserved and not yet registered (or failed).
    starting: usize,
    /// Of those, the blank workers being started, per language.
    blank_starting: HashMap<Language, usize>,
    /// Slots held per function version; no zero entries.
    held: HashMap<FnKey, usize>,
    total_held: usize,
    waiters: BTreeMap<WaiterId, Waiter>,
    next_waiter: WaiterId,
    /// The version each function serves (`None`: deleted); workers of other
    /// versions are retired as soon as they are parked or checked in.
    serving: HashMap<FunctionName, Option<u64>>,
    init_failures: HashMap<FnKey, InitFailures>,
    spawn_backoff: Option<(Instant, Duration)>,
    shutting_down: bool,
}

impl<W: Handle> PoolState<W> {
    pub fn new(sizes: Sizes) -> Self {
        Self {
            sizes,
            workers: HashMap::default(),
            idle: HashMap::default(),
            idle_bytes: 0,
            lru: BTreeMap::new(),
            typical: HashMap::default(),
            blank: HashMap::default(),
            starting: 0,
            blank_starting: HashMap::default(),
            held: HashMap::default(),
            total_held: 0,
            waiters: BTreeMap::new(),
            next_waiter: 1,
            serving: HashMap::default(),
            init_failures: HashMap::default(),
            spawn_backoff: None,
            shutting_down: false,
        }
    }

    // ---- invocations -------------------------------------------------------

    /// Grants `function` a slot and a worker, or says to wait (`Ok(None)`).
    /// `waiter`: the caller's place in the queue, if it has one; a grant takes
    /// it out of the queue. `near`: the caller's home; an idle worker already
    /// there goes before a more recently used one elsewhere.
    ///
    /// # Errors
    /// `ShuttingDown`, or `Unhealthy` while the function's `Init` keeps failing.
    pub fn checkout(
        &mut self,
        function: &Arc<Deployed>,
        waiter: Option<WaiterId>,
        now: Instant,
        near: Option<&W::Home>,
    ) -> Result<Option<Checkout<W>>, PoolError> {
        if self.shutting_down {
            return Err(PoolError::ShuttingDown);
        }
        let key: FnKey = (function.name.clone(), function.version);
        if let Some(f) = self.init_failures.get(&key)
            && f.count >= UNHEALTHY_AFTER
            && now < f.until
        {
            return Err(PoolError::Unhealthy {
                failures: f.count,
                last_error: f.last_error.clone(),
                retry_after: f.until.saturating_duration_since(now),
            });
        }
        let concurrency = function.limits.concurrency.max(1) as usize;
        if !self.may_take(&key, concurrency) || self.outranked(&key, waiter) {
            return Ok(None);
        }
        let language = function.language;
        let grant = if let Some(worker) = self.pop_idle(&key, near) {
            self.set_state(worker.id(), WorkerState::Busy);
            Checkout::Warm(worker)
        } else if let Some(worker) = self.blank.get_mut(&language).and_then(Vec::pop) {
            if let Some(record) = self.workers.get_mut(&worker.id()) {
                record.state = WorkerState::Initializing;
                record.function = Some(function.clone());
            }
            Checkout::Blank(worker)
        } else if self.live() < self.sizes.max_processes {
            self.starting += 1;
            Checkout::Spawn { victim: None }
        } else if let Some(victim) = self.take_blank_except(language).or_else(|| self.take_least_recently_used()) {
            // The victim stays live until its exit is reported: the pool is one
            // over its size for that moment, as with any replacement.
            self.set_state(victim.id(), WorkerState::Draining);
            self.starting += 1;
            Checkout::Spawn { victim: Some(victim) }
        } else {
            // A slot is free but every worker is out or still starting.
            return Ok(None);
        };
        *self.held.entry(key).or_default() += 1;
        self.total_held += 1;
        if let Some(id) = waiter {
            self.waiters.remove(&id);
        }
        Ok(Some(grant))
    }

    /// Whether `key` may take a slot now, by rules (1) and (2).
    fn may_take(&self, key: &FnKey, concurrency: usize) -> bool {
        let held = self.held.get(key).copied().unwrap_or(0);
        let free = self.sizes.slots().saturating_sub(self.total_held);
        held < concurrency && free > 0 && (held == 0 || free > self.sizes.reserved())
    }

    /// Whether an eligible waiter ranks before the caller (rule 3).
    fn outranked(&self, key: &FnKey, me: Option<WaiterId>) -> bool {
        let rank = (self.held.get(key).copied().unwrap_or(0), me.unwrap_or(WaiterId::MAX));
        self.eligible().any(|(held, id)| Some(id) != me && (held, id) < rank)
    }

    /// Every eligible waiter, in arrival order, with the slots its function
    /// holds (its rank). Waiters of one function version queue side by side, so
    /// the last one's answer is reused for the next of the same version rather
    /// than looked up again: this runs on every check-out and check-in.
    fn eligible(&self) -> impl Iterator<Item = (usize, WaiterId)> + '_ {
        let mut last: Option<(&FnKey, usize, Option<usize>)> = None;
        self.waiters.iter().filter_map(move |(id, w)| {
            let held = match last {
                Some((key, concurrency, held)) if concurrency == w.concurrency && *key == w.key => held,
                _ => {
                    let held =
                        self.may_take(&w.key, w.concurrency).then(|| self.held.get(&w.key).copied().unwrap_or(0));
                    last = Some((&w.key, w.concurrency, held));
                    held
                }
            };
            held.map(|h| (h, *id))
        })
    }

    /// Takes a place in the wait queue.
    ///
    /// # Errors
    /// `Overloaded` when the queue is full.
    pub fn enqueue(&mut self, function: &Deployed, wake: Arc<Notify>) -> Result<WaiterId, PoolError> {
        if self.waiters.len() >= self.sizes.max_queue {
            return Err(PoolError::Overloaded);
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        let key = (function.name.clone(), function.version);
        self.waiters.insert(id, Waiter { key, concurrency: function.limits.concurrency.max(1) as usize, wake });
        Ok(id)
    }

    pub fn dequeue(&mut self, id: WaiterId) {
        self.waiters.remove(&id);
    }

    /// The waiters to wake now, best first: as many eligible ones as there are
    /// free slots (they re-run `checkout`; one that loses the race waits again).
    pub fn to_wake(&self) -> Vec<Arc<Notify>> {
        let wake = |id: WaiterId| self.waiters[&id].wake.clone();
        match self.sizes.slots().saturating_sub(self.total_held) {
            // Nobody is eligible without a free slot.
            0 => Vec::new(),
            // The common case, on every check-in: the best one, without sorting.
            1 => self.eligible().min().map(|(_, id)| wake(id)).into_iter().collect(),
            free => self.ranked_eligible().into_iter().take(free).map(wake).collect(),
        }
    }

    /// Every waiter, to be woken at shutdown (each then sees `ShuttingDown`).
    pub fn all_waiters(&self) -> Vec<Arc<Notify>> {
        self.waiters.values().map(|w| w.wake.clone()).collect()
    }

    /// Eligible waiters in the order they are served.
    pub fn ranked_eligible(&self) -> Vec<WaiterId> {
        let mut ids: Vec<(usize, WaiterId)> = self.eligible().collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Gives back a slot: the invocation ended without checking a worker in
    /// (its worker died or broke, or none could be started). The worker, if
    /// any, is never handed out again; its exit is reported later.
    pub fn abandon(&mut self, worker: Option<WorkerId>, key: &FnKey) {
        if let Some(id) = worker {
            self.set_state(id, WorkerState::Draining);
        }
        self.release(key);
    }

    fn release(&mut self, key: &FnKey) {
        if let Some(n) = self.held.get_mut(key) {
            *n -= 1;
            self.total_held -= 1;
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }

    /// Returns a worker after its invocation and gives back the slot.
    /// `memory`: its private memory, if the caller just measured it.
    pub fn checkin(&mut self, worker: W, key: &FnKey, now: Instant, memory: Option<u64>) -> Checkin<W> {
        self.release(key);
        let stale = self.serving.get(&key.0).is_some_and(|v| *v != Some(key.1));
        let id = worker.id();
        let Some(record) = self.workers.get_mut(&id) else {
            // Its exit was already reported: nothing to park.
            return Checkin::Retire(worker);
        };
        record.invocations += 1;
        if self.shutting_down || stale {
            record.state = WorkerState::Draining;
            Checkin::Retire(worker)
        } else if record.drain {
            record.state = WorkerState::Draining;
            Checkin::Replace(worker)
        } else {
            if let Some(bytes) = memory {
                self.charge(id, bytes);
            }
            match self.push_idle(key.clone(), worker, now) {
                Ok(()) => Checkin::Parked,
                Err(too_big) => Checkin::Retire(too_big),
            }
        }
    }

    /// The outcome of `Init` on a worker granted as `Blank` or `Spawn`.
    pub fn specialized(&mut self, id: WorkerId, key: &FnKey, result: Result<(), &PoolError>, now: Instant) {
        match result {
            Ok(()) => {
                self.init_failures.remove(key);
                self.set_state(id, WorkerState::Busy);
            }
            Err(error) => {
                self.set_state(id, WorkerState::Draining);
                let entry = self.init_failures.entry(key.clone()).or_insert(InitFailures {
                    count: 0,
                    until: now,
                    last_error: String::new(),
                });
                entry.count += 1;
                entry.last_error = error.to_string();
                if entry.count >= UNHEALTHY_AFTER {
                    let doublings = (entry.count - UNHEALTHY_AFTER).min(6);
                    entry.until = now + (UNHEALTHY_BACKOFF * 2u32.pow(doublings)).min(MAX_UNHEALTHY_BACKOFF);
                }
            }
        }
    }

    /// How often in a row `key`'s `Init` failed, and until when it is refused.
    #[cfg(test)]
    pub fn init_failures(&self, key: &FnKey) -> Option<(u32, Instant)> {
        self.init_failures.get(key).map(|f| (f.count, f.until))
    }

    // ---- views -------------------------------------------------------------

    /// Every process counted against the pool's size.
    pub fn live(&self) -> usize {
        self.workers.len() + self.starting
    }

    pub fn queued(&self) -> usize {
        self.waiters.len()
    }

    #[cfg(test)]
    pub fn held(&self, key: &FnKey) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }

    pub fn records(&self) -> impl Iterator<Item = (WorkerId, &WorkerRecord)> {
        self.workers.iter().map(|(id, r)| (*id, r))
    }

    pub fn record(&self, id: WorkerId) -> Option<&WorkerRecord> {
        self.workers.get(&id)
    }

    /// Whether a worker of `language` is alive in any state.
    pub fn has_worker_of(&self, language: Language) -> bool {
        self.workers.values().any(|w| w.language == language)
    }

    pub fn count_by_state(&self) -> Vec<(&'static str, usize)> {
        WorkerState::ALL.iter().map(|s| (s.as_str(), self.workers.values().filter(|w| w.state == *s).count())).collect()
    }

    // ---- the parked lists --------------------------------------------------

    fn set_state(&mut self, id: WorkerId, state: WorkerState) {
        if let Some(record) = self.workers.get_mut(&id) {
            record.state = state;
        }
    }

    /// Parks `worker` idle for `key`, charged its record's memory; a worker
    /// bigger than the whole budget is refused (`Err`, marked draining: the
    /// caller retires it). Every idle worker is parked here and leaves through
    /// `remove_idle` (or the bulk removals in `serve_version` and `shut_down`),
    /// which keep `idle_bytes` and `lru`.
    fn push_idle(&mut self, key: FnKey, worker: W, now: Instant) -> Result<(), W> {
        let id = worker.id();
        let Some(record) = self.workers.get_mut(&id) else { return Err(worker) };
        if record.memory > self.sizes.idle_memory {
            record.state = WorkerState::Draining;
            return Err(worker);
        }
        record.state = WorkerState::Idle;
        let memory = record.memory;
        self.idle_bytes += memory;
        self.lru.insert((now, id), key.clone());
        self.idle.entry(key).or_default().push(Idle { worker, last_used: now, memory });
        Ok(())
    }

    fn remove_idle(&mut self, key: &FnKey, index: usize) -> Option<W> {
        let list = self.idle.get_mut(key)?;
        if index >= list.len() {
            return None;
        }
        let idle = list.remove(index);
        if list.is_empty() {
            self.idle.remove(key);
        }
        self.idle_bytes -= idle.memory;
        self.lru.remove(&(idle.last_used, idle.worker.id()));
        Some(idle.worker)
    }

    /// The most recently used idle worker of `key` (its caches are warmest)
    /// of those at home `near`, else of all.
    fn pop_idle(&mut self, key: &FnKey, near: Option<&W::Home>) -> Option<W> {
        let list = self.idle.get(key)?;
        let at_home = near.and_then(|near| list.iter().rposition(|w| w.worker.home().as_ref() == Some(near)));
        let index = at_home.or(list.len().checked_sub(1))?;
        self.remove_idle(key, index)
    }

    /// Removes the idle worker that has waited longest, of any function.
    fn take_least_recently_used(&mut self) -> Option<W> {
        let (&(_, id), key) = self.lru.iter().next()?;
        let key = key.clone();
        let index = self.idle.get(&key)?.iter().position(|w| w.worker.id() == id)?;
        self.remove_idle(&key, index)
    }

    /// A blank worker of a language other than `keep`: when the pool is full, a
    /// blank worker (cheap to start again) gives way before a warm one.
    fn take_blank_except(&mut self, keep: Language) -> Option<W> {
        let language = self.blank.iter().find(|(l, ws)| **l != keep && !ws.is_empty()).map(|(l, _)| *l)?;
        self.blank.get_mut(&language)?.pop()
    }

    /// Takes worker `id` out of the idle or blank lists, if it is there.
    fn take_parked(&mut self, id: WorkerId) -> Option<W> {
        for list in self.blank.values_mut() {
            if let Some(i) = list.iter().position(|w| w.id() == id) {
                return Some(list.remove(i));
            }
        }
        let (key, i) = self.find_idle(id)?;
        self.remove_idle(&key, i)
    }

    /// Where worker `id` is parked idle: its function version and index.
    fn find_idle(&self, id: WorkerId) -> Option<(FnKey, usize)> {
        let key = self.workers.get(&id)?.function.as_ref().map(|f| (f.name.clone(), f.version))?;
        let i = self.idle.get(&key)?.iter().position(|w| w.worker.id() == id)?;
        Some((key, i))
    }
}
