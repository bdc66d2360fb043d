//! The state machine with fake workers: each rule by example, then random event
//! sequences with every invariant checked after each step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyfaas_protocol::Language;
use proptest::prelude::*;
use tokio::sync::Notify;

use super::{Checkin, Checkout, FnKey, Handle, PoolState, RestartStep, Sizes, WorkerId, WorkerState};
use crate::pool::PoolError;
use crate::pool::process::KillSwitch;
use crate::store::{Deployed, FunctionLimits, FunctionName, VersionRecord};

#[derive(Debug, PartialEq)]
struct Fake(WorkerId);

impl Handle for Fake {
    fn id(&self) -> WorkerId {
        self.0
    }
}

fn function(name: &str, version: u64, language: Language, concurrency: u32) -> Arc<Deployed> {
    Arc::new(Deployed {
        name: FunctionName::parse(name).unwrap(),
        version,
        language,
        entrypoint: "main".into(),
        bundle_dir: PathBuf::from("/nonexistent"),
        limits: FunctionLimits { timeout_ms: 1000, memory_mb: 64, concurrency },
        env: Vec::new(),
        record: VersionRecord {
            version,
            sha256: String::new(),
            size: 0,
            language: language.as_str().into(),
            created_unix: 0,
        },
    })
}

fn key(f: &Deployed) -> FnKey {
    (f.name.clone(), f.version)
}

fn sizes(max_workers: usize) -> Sizes {
    Sizes { max_workers, warm_blank: 1, max_queue: 16 }
}

/// A state machine plus the fake process table behind it.
struct Harness {
    st: PoolState<Fake>,
    next_id: WorkerId,
    now: Instant,
}

impl Harness {
    fn new(sizes: Sizes) -> Self {
        Self { st: PoolState::new(sizes), next_id: 1, now: Instant::now() }
    }

    fn tick(&mut self) -> Instant {
        self.now += Duration::from_millis(1);
        self.now
    }

    /// Completes a reserved start: a registered worker.
    fn start(&mut self, language: Language, function: Option<Arc<Deployed>>) -> Fake {
        let id = self.next_id;
        self.next_id += 1;
        let now = self.tick();
        self.st.register(id, 1000 + id as u32, language, function, Arc::new(KillSwitch::default()), now);
        Fake(id)
    }

    /// Starts the blank workers `plan_blanks` asks for and parks them.
    fn warm(&mut self, language: Language) {
        let now = self.tick();
        let plan = self.st.plan_blanks(language, false, now);
        for _ in 0..plan.start {
            let w = self.start(language, None);
            assert!(self.st.blank_ready(language, w).is_none());
        }
    }

    /// Checks out and, for blank or spawned workers, completes `Init`: a busy
    /// worker, as the pool hands it to an invocation.
    fn run(&mut self, f: &Arc<Deployed>) -> Option<Fake> {
        let now = self.tick();
        let worker = match self.st.checkout(f, None, now).unwrap()? {
            Checkout::Warm(w) => return Some(w),
            Checkout::Blank(w) => w,
            Checkout::Spawn { victim } => {
                if let Some(v) = victim {
                    self.st.exited(v.0);
                }
                self.start(f.language, Some(f.clone()))
            }
        };
        self.st.specialized(worker.0, &key(f), Ok(()), now);
        Some(worker)
    }

    fn done(&mut self, f: &Deployed, w: Fake) {
        let now = self.tick();
        assert!(matches!(self.st.checkin(w, &key(f), now), Checkin::Parked));
    }

    fn state_of(&self, id: WorkerId) -> Option<WorkerState> {
        self.st.record(id).map(|r| r.state)
    }
}

#[test]
fn prefers_warm_then_blank_then_a_new_process() {
    let mut h = Harness::new(sizes(4));
    let f = function("f", 1, Language::Wasm, 8);
    h.warm(Language::Wasm);
    let now = h.tick();
    let Some(Checkout::Blank(b)) = h.st.checkout(&f, None, now).unwrap() else { panic!("blank first") };
    assert_eq!(h.state_of(b.0), Some(WorkerState::Initializing));
    h.st.specialized(b.0, &key(&f), Ok(()), now);
    let Some(Checkout::Spawn { victim: None }) = h.st.checkout(&f, None, now).unwrap() else { panic!("then spawn") };
    assert_eq!(h.st.live(), 2, "a reserved start counts");
    h.done(&f, b);
    let Some(Checkout::Warm(w)) = h.st.checkout(&f, None, now).unwrap() else { panic!("warm wins") };
    assert_eq!(w.0, 1);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_full_pool_evicts_a_blank_of_another_language_then_the_least_recently_used() {
    let mut h = Harness::new(Sizes { max_workers: 3, warm_blank: 1, max_queue: 4 });
    let (a, b, c) =
        (function("a", 1, Language::Wasm, 8), function("b", 1, Language::Wasm, 8), function("c", 1, Language::Js, 8));
    let wa = h.run(&a).unwrap();
    let wb = h.run(&b).unwrap();
    h.done(&a, wa); // a is the older idle worker
    h.done(&b, wb);
    h.warm(Language::Python); // pool full: 2 idle + 1 blank python
    assert_eq!(h.st.live(), 3);
    let now = h.tick();
    let Some(Checkout::Spawn { victim: Some(v) }) = h.st.checkout(&c, None, now).unwrap() else { panic!() };
    assert_eq!(h.state_of(v.0), Some(WorkerState::Draining));
    assert_eq!(h.st.record(v.0).unwrap().language, Language::Python, "the blank goes first");
    h.st.exited(v.0);
    let wc = h.start(Language::Js, Some(c.clone()));
    h.st.specialized(wc.0, &key(&c), Ok(()), now);
    let d = function("d", 1, Language::Js, 8);
    let Some(Checkout::Spawn { victim: Some(v) }) = h.st.checkout(&d, None, now).unwrap() else { panic!() };
    assert_eq!(v.0, 1, "then the least recently used idle worker (a's)");
    h.st.check_invariants().unwrap();
}

#[test]
fn concurrency_caps_a_function_and_its_excess_waits() {
    let mut h = Harness::new(sizes(8));
    let f = function("f", 1, Language::Wasm, 2);
    let _w1 = h.run(&f).unwrap();
    let w2 = h.run(&f).unwrap();
    assert!(h.run(&f).is_none(), "a third is over concurrency 2");
    assert_eq!(h.st.held(&key(&f)), 2);
    h.done(&f, w2);
    assert!(h.run(&f).is_some(), "a slot came back");
}

#[test]
fn a_hog_never_takes_the_reserved_slot_and_a_bystander_gets_it() {
    let mut h = Harness::new(sizes(8));
    let hog = function("hog", 1, Language::Wasm, 16);
    let held: Vec<Fake> = std::iter::from_fn(|| h.run(&hog)).collect();
    assert_eq!(held.len(), 7, "8 slots, 1 reserved for functions holding none");
    let bystander = function("bystander", 1, Language::Wasm, 4);
    let w = h.run(&bystander).expect("the bystander takes the reserved slot");
    assert!(h.run(&bystander).is_none(), "holding one, it may not take more from the reserve");
    h.done(&bystander, w);
    assert!(h.run(&bystander).is_some(), "and the next bystander call finds it again");
    h.st.check_invariants().unwrap();
}

#[test]
fn waiters_are_served_by_fewest_slots_held_then_by_arrival() {
    let mut h = Harness::new(sizes(4));
    let hog = function("hog", 1, Language::Wasm, 16);
    let other = function("other", 1, Language::Wasm, 16);
    let third = function("third", 1, Language::Wasm, 16);
    let mut hog_workers: Vec<Fake> = std::iter::from_fn(|| h.run(&hog)).collect();
    assert_eq!(hog_workers.len(), 3);
    let o1 = h.run(&other).unwrap();
    // Both wait: the hog (3 held) first, then the third (none held).
    let hog_wait = h.st.enqueue(&hog, Arc::new(Notify::new())).unwrap();
    let third_wait = h.st.enqueue(&third, Arc::new(Notify::new())).unwrap();
    assert!(h.st.ranked_eligible().is_empty(), "nothing free");
    h.done(&hog, hog_workers.pop().unwrap());
    assert_eq!(h.st.ranked_eligible(), vec![third_wait], "the freed slot is the reserve: not for the hog");
    let now = h.tick();
    assert!(h.st.checkout(&hog, Some(hog_wait), now).unwrap().is_none());
    assert!(h.st.checkout(&third, None, now).unwrap().is_none(), "no barging past an eligible waiter");
    h.done(&other, o1);
    // 2 free now: the third (none held) ranks before the hog (2 held) though it came later.
    assert_eq!(h.st.ranked_eligible(), vec![third_wait, hog_wait]);
    assert_eq!(h.st.to_wake().len(), 2);
    assert!(h.st.checkout(&third, Some(third_wait), now).unwrap().is_some());
    h.st.dequeue(third_wait);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_full_queue_is_overloaded() {
    let mut h = Harness::new(Sizes { max_workers: 1, warm_blank: 0, max_queue: 2 });
    let f = function("f", 1, Language::Wasm, 1);
    h.st.enqueue(&f, Arc::new(Notify::new())).unwrap();
    h.st.enqueue(&f, Arc::new(Notify::new())).unwrap();
    assert!(matches!(h.st.enqueue(&f, Arc::new(Notify::new())), Err(PoolError::Overloaded)));
    assert_eq!(h.st.queued(), 2);
}

#[test]
fn a_new_version_retires_idle_workers_of_the_old_and_checked_in_stale_ones() {
    let mut h = Harness::new(sizes(4));
    let v1 = function("f", 1, Language::Js, 8);
    let a = h.run(&v1).unwrap();
    let b = h.run(&v1).unwrap();
    h.done(&v1, a);
    let retired = h.st.serve_version(&v1.name, Some(2));
    assert_eq!(retired, vec![Fake(1)]);
    assert_eq!(h.state_of(1), Some(WorkerState::Draining));
    let now = h.tick();
    assert!(matches!(h.st.checkin(b, &key(&v1), now), Checkin::Retire(Fake(2))));
    assert!(!h.st.is_served(&v1));
    h.st.check_invariants().unwrap();
}

#[test]
fn a_graceful_restart_drains_a_busy_worker_and_replaces_a_parked_one() {
    let mut h = Harness::new(sizes(4));
    let f = function("f", 1, Language::Wasm, 8);
    let busy = h.run(&f).unwrap();
    let parked = h.run(&f).unwrap();
    h.done(&f, parked);
    assert!(matches!(h.st.restart(2, false), Some(RestartStep::Replace(Fake(2)))));
    assert!(matches!(h.st.restart(1, false), Some(RestartStep::Drain)));
    assert!(h.st.restart(1, false).is_none(), "already draining");
    assert_eq!(h.state_of(1), Some(WorkerState::Draining));
    let now = h.tick();
    assert!(matches!(h.st.checkin(busy, &key(&f), now), Checkin::Replace(Fake(1))));
    assert!(matches!(h.st.restart(1, true), Some(RestartStep::Kill(_))));
    h.st.check_invariants().unwrap();
}

#[test]
fn init_failures_make_a_function_unhealthy_until_its_backoff_ends() {
    let mut h = Harness::new(sizes(4));
    let f = function("f", 1, Language::Python, 8);
    let err = PoolError::InitFailed("boom".into());
    for _ in 0..3 {
        let now = h.tick();
        let Some(Checkout::Spawn { .. }) = h.st.checkout(&f, None, now).unwrap() else { panic!() };
        let w = h.start(f.language, Some(f.clone()));
        h.st.specialized(w.0, &key(&f), Err(&err), now);
        h.st.abandon(Some(w.0), &key(&f));
        h.st.exited(w.0);
    }
    let now = h.tick();
    assert!(matches!(h.st.checkout(&f, None, now), Err(PoolError::Unhealthy { failures: 3, .. })));
    let later = now + Duration::from_secs(2);
    assert!(h.st.checkout(&f, None, later).unwrap().is_some(), "tried again after the backoff");
    h.st.serve_version(&f.name, Some(2));
    assert!(h.st.init_failures(&key(&f)).is_none(), "a new version starts clean");
}

#[test]
fn blank_workers_are_planned_per_language_and_make_room_when_asked() {
    let mut h = Harness::new(Sizes { max_workers: 2, warm_blank: 1, max_queue: 4 });
    let f = function("f", 1, Language::Wasm, 8);
    let g = function("g", 1, Language::Wasm, 8);
    let a = h.run(&f).unwrap();
    let b = h.run(&g).unwrap();
    h.done(&f, a);
    h.done(&g, b);
    let now = h.tick();
    let plan = h.st.plan_blanks(Language::Js, false, now);
    assert_eq!((plan.start, plan.retired.len()), (0, 0), "full, and no room asked for");
    let plan = h.st.plan_blanks(Language::Js, true, now);
    assert_eq!((plan.start, plan.retired), (1, vec![Fake(1)]), "the least recently used idle worker makes room");
    let backoff = h.st.blank_failed(Language::Js, now);
    assert_eq!(h.st.plan_blanks(Language::Js, true, now).start, 0, "backing off for {backoff:?}");
    h.st.check_invariants().unwrap();
}

#[test]
fn shutting_down_hands_out_nothing_and_returns_every_parked_worker() {
    let mut h = Harness::new(sizes(4));
    let f = function("f", 1, Language::Wasm, 8);
    h.warm(Language::Ruby);
    let w = h.run(&f).unwrap();
    let parked = h.st.shut_down();
    assert_eq!(parked.len(), 1);
    let now = h.tick();
    assert!(matches!(h.st.checkout(&f, None, now), Err(PoolError::ShuttingDown)));
    assert!(matches!(h.st.checkin(w, &key(&f), now), Checkin::Retire(_)));
    h.st.check_invariants().unwrap();
}

// ---- random sequences --------------------------------------------------------

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
}

impl Model {
    fn new(max_workers: usize, warm_blank: usize, max_queue: usize, concurrency: &[u32]) -> Self {
        let functions = concurrency
            .iter()
            .enumerate()
            .map(|(i, c)| function(&format!("f{i}"), 1, LANGUAGES[i % 2], *c))
            .collect::<Vec<_>>();
        let mut h = Harness::new(Sizes { max_workers, warm_blank, max_queue });
        for f in &functions {
            h.st.serve_version(&f.name, Some(1));
        }
        Self { h, functions, running: Vec::new(), dying: Vec::new(), waiters: Vec::new(), pending_blanks: Vec::new() }
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
                match self.h.st.checkout(&f, me, now) {
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
                match self.h.st.checkin(w, &key(&f), now) {
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
            _ => {}
        }
        self.h.st.check_invariants()?;
        if self.h.st.queued() != self.waiters.len() {
            return Err("queue length drifted".into());
        }
        if self.h.st.total_held != self.running.len() {
            return Err(format!("{} slots held for {} running", self.h.st.total_held, self.running.len()));
        }
        let bound = self.h.st.sizes.max_workers + self.dying.len();
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
        max_workers in 1..6usize,
        warm_blank in 0..3usize,
        max_queue in 0..5usize,
        concurrency in proptest::collection::vec(1..5u32, 4),
        events in proptest::collection::vec(event(), 1..120),
    ) {
        let mut model = Model::new(max_workers, warm_blank, max_queue, &concurrency);
        for (n, e) in events.into_iter().enumerate() {
            let what = format!("{e:?}");
            if let Err(broken) = model.step(e) {
                prop_assert!(false, "step {n} ({what}): {broken}");
            }
        }
    }
}
