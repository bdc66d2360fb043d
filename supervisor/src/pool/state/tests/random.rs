//! Random event sequences: after every step, every invariant holds, and the
//! fairness rules held for the grant that step made.

use std::sync::Arc;

use polyfaas_protocol::Language;
use proptest::prelude::*;
use tokio::sync::Notify;

use super::{Fake, Harness, function, key};
use crate::pool::state::{Checkin, Checkout, Measure, RestartStep, Sizes, WorkerId, WorkerState};
use crate::store::Deployed;

#[derive(Debug, Clone)]
enum Event {
    /// A call to function `f` arrives (or a waiter of it retries).
    Call(usize),
    /// The i-th running invocation finishes normally.
    Finish(usize),
    /// The i-th running invocation's worker dies mid-way.
    Crash(usize),
    /// A parked worker (the i-th registered) dies.
    DieParked(usize),
    /// The i-th draining worker's process exits.
    Exit(usize),
    /// A blank start for language l completes (or fails).
    Blank(usize, bool),
    /// Function f moves to a new version.
    Redeploy(usize),
    /// Restart worker i, gracefully or not.
    Restart(usize, bool),
    /// A waiter gives up (its queue timeout).
    GiveUp(usize),
    /// The i-th registered worker is measured at `n` MiB; idle ones are trimmed.
    Measure(usize, u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..4usize).prop_map(Event::Call),
        3 => any::<usize>().prop_map(Event::Finish),
        1 => any::<usize>().prop_map(Event::Crash),
        1 => any::<usize>().prop_map(Event::DieParked),
        2 => any::<usize>().prop_map(Event::Exit),
        1 => (0..2usize, any::<bool>()).prop_map(|(l, ok)| Event::Blank(l, ok)),
        1 => (0..4usize).prop_map(Event::Redeploy),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, f)| Event::Restart(i, f)),
        1 => any::<usize>().prop_map(Event::GiveUp),
        2 => (any::<usize>(), 0..6u64).prop_map(|(i, n)| Event::Measure(i, n)),
    ]
}

const LANGUAGES: [Language; 2] = [Language::Wasm, Language::Js];

/// The model: what the callers of the state machine hold.
struct Model {
    h: Harness,
    functions: Vec<Arc<Deployed>>,
    running: Vec<(Arc<Deployed>, Fake)>,
    /// Handles the pool let go of; their exits are reported later.
    dying: Vec<Fake>,
    waiters: Vec<(u64, Arc<Deployed>)>,
    pending_blanks: Vec<usize>,
    pending_readings: Vec<Measure>,
}

impl Model {
    fn new(sizes: Sizes, concurrency: &[u32]) -> Self {
        let functions = concurrency
            .iter()
            .enumerate()
            .map(|(i, c)| function(&format!("f{i}"), 1, LANGUAGES[i % 2], *c))
            .collect::<Vec<_>>();
        let mut h = Harness::new(sizes);
        for f in &functions {
            h.st.serve_version(&f.name, Some(1));
        }
        Self {
            h,
            functions,
            running: Vec::new(),
            dying: Vec::new(),
            waiters: Vec::new(),
            pending_blanks: Vec::new(),
            pending_readings: Vec::new(),
        }
    }

    fn step(&mut self, e: Event) -> Result<(), String> {
        let now = self.h.tick();
        match e {
            Event::Call(i) => {
                let f = self.functions[i].clone();
                let waiting = self.waiters.iter().position(|(_, w)| Arc::ptr_eq(w, &f));
                let me = waiting.map(|p| self.waiters[p].0);
                let free_before = self.h.st.sizes.slots() - self.h.st.total_held;
                let held_before = self.h.st.held(&key(&f));
                // The best-ranked eligible waiter other than the caller, before the call.
                let first_before = self
                    .h
                    .st
                    .ranked_eligible()
                    .into_iter()
                    .filter(|id| Some(*id) != me)
                    .map(|id| {
                        let of = &self.waiters.iter().find(|(w, _)| *w == id).unwrap().1;
                        (self.h.st.held(&key(of)), id)
                    })
                    .min();
                // Callers at either home, or at none.
                let near = [Some(0), Some(1), None][i % 3];
                match self.h.st.checkout(&f, me, now, near.as_ref()) {
                    Ok(Some(grant)) => {
                        // Rule 2: the reserve is only for functions holding none.
                        if held_before > 0 && free_before <= self.h.st.sizes.reserved() {
                            return Err(format!("{} holding {held_before} took the reserve", f.name));
                        }
                        // Rule 3: nobody eligible ranked before the caller.
                        if let Some(first) = first_before
                            && first < (held_before, me.unwrap_or(u64::MAX))
                        {
                            return Err(format!("{} passed waiter {first:?}", f.name));
                        }
                        if let Some(p) = waiting {
                            self.h.st.dequeue(self.waiters.remove(p).0);
                        }
                        let worker = match grant {
                            Checkout::Warm(w) => w,
                            Checkout::Blank(w) => {
                                self.h.st.specialized(w.0, &key(&f), Ok(()), now);
                                w
                            }
                            Checkout::Spawn { victim } => {
                                self.dying.extend(victim);
                                let w = self.h.start(f.language, Some(f.clone()));
                                self.h.st.specialized(w.0, &key(&f), Ok(()), now);
                                w
                            }
                        };
                        self.running.push((f, worker));
                    }
                    Ok(None) if waiting.is_none() => {
                        if let Ok(id) = self.h.st.enqueue(&f, Arc::new(Notify::new())) {
                            self.waiters.push((id, f));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("unexpected refusal {e}")),
                }
            }
            Event::Finish(i) if !self.running.is_empty() => {
                let (f, w) = self.running.swap_remove(i % self.running.len());
                // Sometimes measured at check-in, as a first invocation is.
                let memory = (i % 3 == 0).then_some(((i % 7) as u64) << 20);
                match self.h.st.checkin(w, &key(&f), now, memory) {
                    Checkin::Parked => {}
                    Checkin::Retire(w) | Checkin::Replace(w) => self.dying.push(w),
                }
            }
            Event::Crash(i) if !self.running.is_empty() => {
                let (f, w) = self.running.swap_remove(i % self.running.len());
                self.h.st.abandon(Some(w.0), &key(&f));
                self.h.st.exited(w.0);
            }
            Event::DieParked(i) => {
                let parked: Vec<WorkerId> = self
                    .h
                    .st
                    .records()
                    .filter(|(_, r)| matches!(r.state, WorkerState::Idle | WorkerState::Blank))
                    .map(|(id, _)| id)
                    .collect();
                if !parked.is_empty() {
                    let id = parked[i % parked.len()];
                    if self.h.st.exited(id).is_none() {
                        return Err(format!("parked worker {id} was not returned at its exit"));
                    }
                }
            }
            Event::Exit(i) if !self.dying.is_empty() => {
                let w = self.dying.swap_remove(i % self.dying.len());
                if self.h.st.exited(w.0).is_some() {
                    return Err(format!("dying worker {} was still parked", w.0));
                }
            }
            Event::Blank(l, ok) => {
                let language = LANGUAGES[l];
                let plan = self.h.st.plan_blanks(language, ok, now);
                self.dying.extend(plan.retired);
                self.pending_blanks.extend(std::iter::repeat_n(l, plan.start));
                if let Some(p) = self.pending_blanks.iter().position(|x| *x == l) {
                    self.pending_blanks.remove(p);
                    if ok {
                        let w = self.h.start(language, None);
                        self.dying.extend(self.h.st.blank_ready(language, w));
                    } else {
                        self.h.st.blank_failed(language, now);
                    }
                }
            }
            Event::Redeploy(i) => {
                let old = self.functions[i].clone();
                let new = function(old.name.as_str(), old.version + 1, old.language, old.limits.concurrency);
                self.dying.extend(self.h.st.serve_version(&new.name, Some(new.version)));
                self.functions[i] = new;
            }
            Event::Restart(i, force) => {
                let ids: Vec<WorkerId> = self.h.st.records().map(|(id, _)| id).collect();
                if !ids.is_empty() {
                    match self.h.st.restart(ids[i % ids.len()], force) {
                        Some(RestartStep::Replace(w)) => self.dying.push(w),
                        Some(RestartStep::Kill(_)) | Some(RestartStep::Drain) | None => {}
                    }
                }
            }
            Event::GiveUp(i) if !self.waiters.is_empty() => {
                let (id, _) = self.waiters.swap_remove(i % self.waiters.len());
                self.h.st.dequeue(id);
            }
            Event::Measure(i, mib) => {
                // A reading may be applied late, after other events: as the
                // sampler's, taken outside the lock.
                let wanted = self.h.st.to_measure(i % 2 == 0);
                if !wanted.is_empty() {
                    self.pending_readings.push(wanted[i % wanted.len()]);
                }
                if (self.pending_readings.len() > 1 || i % 2 == 0) && !self.pending_readings.is_empty() {
                    let what = self.pending_readings.remove(0);
                    self.dying.extend(self.h.st.measured(what, mib << 20));
                }
                self.dying.extend(self.h.st.trim());
                if self.h.st.over_budget() && self.h.st.records().any(|(_, r)| r.state == WorkerState::Idle) {
                    return Err("trimmed, yet idle workers are over the budget".into());
                }
            }
            _ => {}
        }
        self.h.st.check_invariants()?;
        if self.h.st.queued() != self.waiters.len() {
            return Err("queue length drifted".into());
        }
        if self.h.st.total_held != self.running.len() {
            return Err(format!("{} slots held for {} running", self.h.st.total_held, self.running.len()));
        }
        let bound = self.h.st.sizes.max_processes + self.dying.len();
        if self.h.st.live() > bound {
            return Err(format!("{} live, bound {bound}", self.h.st.live()));
        }
        for (f, _) in &self.running {
            if self.h.st.held(&key(f)) > f.limits.concurrency as usize {
                return Err(format!("{} over its concurrency", f.name));
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_every_invariant(
        max_running in 1..6usize,
        more_processes in 0..4usize,
        idle_mib in 0..12u64,
        warm_blank in 0..3usize,
        max_queue in 0..5usize,
        concurrency in proptest::collection::vec(1..5u32, 4),
        events in proptest::collection::vec(event(), 1..120),
    ) {
        let sizes = Sizes {
            max_running,
            max_processes: max_running + more_processes,
            idle_memory: idle_mib << 20,
            warm_blank,
            max_queue,
        };
        let mut model = Model::new(sizes, &concurrency);
        for (n, e) in events.into_iter().enumerate() {
            let what = format!("{e:?}");
            if let Err(broken) = model.step(e) {
                prop_assert!(false, "step {n} ({what}): {broken}");
            }
        }
    }
}
