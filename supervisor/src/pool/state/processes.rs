//! The state machine's process side: starts reserved and registered, exits,
//! parking replacements, blank workers per language, versions, restarts and
//! shutdown. Each method is one transition; see the parent module for the rules.

use std::sync::Arc;
use std::time::{Duration, Instant};

use polyfaas_protocol::Language;

use super::types::{BlankPlan, RestartStep, WorkerRecord, WorkerState};
use super::{FnKey, Handle, Idle, PoolState, WorkerId};
use crate::pool::process::KillSwitch;
use crate::pool::{MAX_BACKOFF, MIN_BACKOFF};
use crate::store::{Deployed, FunctionName};

impl<W: Handle> PoolState<W> {
    /// Reserves a process start outside `checkout` (a replacement): it may take
    /// the pool one over its size until the worker it replaces has exited.
    pub fn reserve_start(&mut self) {
        self.starting += 1;
    }

    /// A reserved start said `Hello`: it is a registered worker from now on.
    pub fn register(
        &mut self,
        id: WorkerId,
        pid: u32,
        language: Language,
        function: Option<Arc<Deployed>>,
        kill: Arc<KillSwitch>,
        now: Instant,
    ) {
        self.starting = self.starting.saturating_sub(1);
        let state = if function.is_some() { WorkerState::Initializing } else { WorkerState::Blank };
        let record = WorkerRecord {
            pid,
            language,
            function,
            state,
            invocations: 0,
            restarts: 0,
            started: now,
            kill,
            drain: false,
            memory: self.typical_memory(language),
            measured_at: None,
        };
        self.workers.insert(id, record);
    }

    /// A reserved start failed before `Hello`.
    pub fn start_failed(&mut self) {
        self.starting = self.starting.saturating_sub(1);
    }

    /// A worker's process is gone. Returns its handle if it was parked (the
    /// caller drops it outside the lock).
    pub fn exited(&mut self, id: WorkerId) -> Option<W> {
        // Found through its record, so taken out of the parked lists first.
        let parked = self.take_parked(id);
        self.workers.remove(&id)?;
        parked
    }

    pub fn set_restarts(&mut self, id: WorkerId, restarts: u32) {
        if let Some(record) = self.workers.get_mut(&id) {
            record.restarts = restarts;
        }
    }

    /// Parks a replacement: idle if specialized for a served version, else blank.
    /// Returns it if the pool no longer wants it.
    pub fn park(&mut self, worker: W, key: Option<FnKey>, now: Instant) -> Option<W> {
        let id = worker.id();
        let Some(record) = self.workers.get_mut(&id) else { return Some(worker) };
        if self.shutting_down {
            record.state = WorkerState::Draining;
            return Some(worker);
        }
        match key {
            Some(key) if self.serving.get(&key.0).is_none_or(|v| *v == Some(key.1)) => {
                return self.push_idle(key, worker, now).err();
            }
            Some(_) => {
                record.state = WorkerState::Draining;
                return Some(worker);
            }
            None => {
                record.state = WorkerState::Blank;
                record.function = None;
                let language = record.language;
                self.blank.entry(language).or_default().push(worker);
            }
        }
        None
    }

    /// Plans blank workers for `language` up to `warm_blank` ready or coming, as
    /// far as the pool's size allows. With `make_room` (the language just used
    /// its blank worker) a full pool retires its least recently used idle worker
    /// for each: that worker would be the next victim anyway.
    pub fn plan_blanks(&mut self, language: Language, make_room: bool, now: Instant) -> BlankPlan<W> {
        let mut plan = BlankPlan { start: 0, retired: Vec::new() };
        if self.shutting_down || self.spawn_backoff.is_some_and(|(until, _)| now < until) {
            return plan;
        }
        loop {
            let have = self.blank.get(&language).map_or(0, Vec::len)
                + self.blank_starting.get(&language).copied().unwrap_or(0);
            if have >= self.sizes.warm_blank {
                break;
            }
            if self.live() >= self.sizes.max_processes {
                let Some(victim) = make_room.then(|| self.take_least_recently_used()).flatten() else { break };
                self.set_state(victim.id(), WorkerState::Draining);
                plan.retired.push(victim);
            }
            self.starting += 1;
            *self.blank_starting.entry(language).or_default() += 1;
            plan.start += 1;
        }
        plan
    }

    /// A planned blank worker started (and was registered). Returns it if the
    /// pool no longer wants it.
    pub fn blank_ready(&mut self, language: Language, worker: W) -> Option<W> {
        self.uncount_blank_start(language);
        self.spawn_backoff = None;
        self.park(worker, None, Instant::now())
    }

    /// A planned blank worker failed to start: returns the backoff before the
    /// next try, which doubles with each failure in a row.
    pub fn blank_failed(&mut self, language: Language, now: Instant) -> Duration {
        self.uncount_blank_start(language);
        self.start_failed();
        let backoff = self.spawn_backoff.map_or(MIN_BACKOFF, |(_, d)| (d * 2).min(MAX_BACKOFF));
        self.spawn_backoff = Some((now + backoff, backoff));
        backoff
    }

    fn uncount_blank_start(&mut self, language: Language) {
        if let Some(n) = self.blank_starting.get_mut(&language) {
            *n = n.saturating_sub(1);
        }
    }

    // ---- versions, restarts, shutdown --------------------------------------

    /// Records that `name` now serves `version` (or nothing) and returns the
    /// idle workers of every other version, to be dropped.
    pub fn serve_version(&mut self, name: &FunctionName, version: Option<u64>) -> Vec<W> {
        self.serving.insert(name.clone(), version);
        // A new version (or none) starts with a clean slate.
        self.init_failures.retain(|(n, v), _| n != name || Some(*v) == version);
        let stale: Vec<FnKey> = self.idle.keys().filter(|(n, v)| n == name && Some(*v) != version).cloned().collect();
        let removed: Vec<Idle<W>> = stale.into_iter().filter_map(|k| self.idle.remove(&k)).flatten().collect();
        self.idle_bytes -= removed.iter().map(|i| i.memory).sum::<u64>();
        for i in &removed {
            self.lru.remove(&(i.last_used, i.worker.id()));
        }
        let retired: Vec<W> = removed.into_iter().map(|i| i.worker).collect();
        for w in &retired {
            self.set_state(w.id(), WorkerState::Draining);
        }
        retired
    }

    /// Whether `function` is still the version its name serves.
    pub fn is_served(&self, function: &Deployed) -> bool {
        self.serving.get(&function.name).is_none_or(|v| *v == Some(function.version))
    }

    /// What a restart does to worker `id` (None: it is gone, or already draining
    /// for another restart).
    pub fn restart(&mut self, id: WorkerId, force: bool) -> Option<RestartStep<W>> {
        let record = self.workers.get(&id)?;
        if force {
            return Some(RestartStep::Kill(record.kill.clone()));
        }
        if let Some(worker) = self.take_parked(id) {
            self.set_state(id, WorkerState::Draining);
            return Some(RestartStep::Replace(worker));
        }
        let record = self.workers.get_mut(&id)?;
        if record.drain || record.state == WorkerState::Draining {
            return None;
        }
        record.drain = true;
        record.state = WorkerState::Draining;
        Some(RestartStep::Drain)
    }

    /// Stops handing out workers; returns every parked one, to be dropped.
    pub fn shut_down(&mut self) -> Vec<W> {
        self.shutting_down = true;
        let mut out: Vec<W> = self.idle.drain().flat_map(|(_, ws)| ws.into_iter().map(|i| i.worker)).collect();
        self.idle_bytes = 0;
        self.lru.clear();
        out.extend(self.blank.drain().flat_map(|(_, ws)| ws));
        for w in &out {
            if let Some(record) = self.workers.get_mut(&w.id()) {
                record.state = WorkerState::Draining;
            }
        }
        out
    }
}
