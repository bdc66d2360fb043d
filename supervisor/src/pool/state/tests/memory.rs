//! Idle workers kept by memory, not by count; running invocations capped by slots.

use polyfaas_protocol::Language;

use super::{Fake, Harness, function, key, sizes};
use crate::pool::state::{Checkin, Sizes, WorkerId, WorkerState};

const MIB: u64 = 1 << 20;

/// Measures every worker `to_measure(all)` names at `bytes`; returns their ids
/// and the workers the measurements retired.
fn measure(h: &mut Harness, all: bool, bytes: u64) -> (Vec<WorkerId>, Vec<Fake>) {
    let mut ids = Vec::new();
    let mut retired = Vec::new();
    for what in h.st.to_measure(all) {
        ids.push(what.id);
        retired.extend(h.st.measured(what, bytes));
    }
    (ids, retired)
}

fn ids(workers: Vec<Fake>) -> Vec<WorkerId> {
    workers.into_iter().map(|w| w.0).collect()
}

#[test]
fn idle_workers_are_kept_while_their_memory_fits_and_the_least_recently_used_go_first() {
    let mut h = Harness::new(Sizes { max_running: 2, max_processes: 100, idle_memory: 10 * MIB, ..sizes(2) });
    let functions: Vec<_> = (0..5).map(|i| function(&format!("f{i}"), 1, Language::Wasm, 8)).collect();
    let mut workers = Vec::new();
    for f in &functions {
        let w = h.run(f).unwrap();
        workers.push(w.0);
        // Measured at its first check-in, as the pool does.
        assert!(matches!(h.st.checkin(w, &key(f), h.now, Some(3 * MIB)), Checkin::Parked));
    }
    assert_eq!(h.st.live(), 5, "five idle workers with two running slots: processes are not capped by slots");
    assert!(h.st.to_measure(false).is_empty(), "each was measured as it was checked in");
    // f0 is used again: now f1 is the least recently used.
    let w0 = h.run(&functions[0]).unwrap();
    h.done(&functions[0], w0);
    let (measured, retired) = measure(&mut h, false, 3 * MIB);
    assert_eq!(measured, vec![workers[0]], "only f0's ran since it was last measured");
    assert!(retired.is_empty());
    assert_eq!(h.st.to_measure(true).len(), 5, "a sweep measures idle workers too");
    assert!(h.st.over_budget());
    assert_eq!(ids(h.st.trim()), vec![workers[1], workers[2]], "the two least recently used go, not the first started");
    assert_eq!(h.st.idle_bytes(), 9 * MIB);
    assert_eq!(h.state_of(workers[1]), Some(WorkerState::Draining));
    h.st.check_invariants().unwrap();
    // A worker that shrinks (or grows) while idle is charged its new size.
    let what = h.st.to_measure(true).into_iter().find(|m| m.id == workers[4]).unwrap();
    assert!(h.st.measured(what, 2 * MIB).is_none());
    assert_eq!(h.st.idle_bytes(), 8 * MIB);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_worker_bigger_than_the_whole_budget_is_never_parked_and_pushes_no_one_out() {
    let mut h = Harness::new(Sizes { max_processes: 10, idle_memory: 10 * MIB, ..sizes(4) });
    let (small, big) = (function("small", 1, Language::Js, 8), function("big", 1, Language::Js, 8));
    let w = h.run(&small).unwrap();
    let small_id = w.0;
    assert!(matches!(h.st.checkin(w, &key(&small), h.now, Some(4 * MIB)), Checkin::Parked));
    let w = h.run(&big).unwrap();
    let Checkin::Retire(gone) = h.st.checkin(w, &key(&big), h.now, Some(64 * MIB)) else { panic!("parked") };
    assert_eq!(h.state_of(gone.0), Some(WorkerState::Draining));
    assert!(h.st.trim().is_empty(), "the small one stays");
    assert_eq!(h.state_of(small_id), Some(WorkerState::Idle));
    // One that grows past the budget while idle is handed back to be retired.
    let what = h.st.to_measure(true).into_iter().find(|m| m.id == small_id).unwrap();
    assert_eq!(h.st.measured(what, 11 * MIB).map(|w| w.0), Some(small_id));
    assert_eq!(h.st.idle_bytes(), 0);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_reading_taken_before_the_latest_invocation_is_dropped() {
    let mut h = Harness::new(Sizes { max_processes: 10, ..sizes(4) });
    let f = function("f", 1, Language::Python, 8);
    let w = h.run(&f).unwrap();
    let id = w.0;
    h.done(&f, w);
    let stale = h.st.to_measure(false)[0];
    let w = h.run(&f).unwrap();
    h.done(&f, w);
    let before = h.st.record(id).unwrap().memory;
    assert!(h.st.measured(stale, 99 * MIB).is_none());
    assert_eq!(h.st.record(id).unwrap().memory, before, "the old reading is not applied");
    assert_eq!(h.st.to_measure(false).len(), 1, "and the worker is still due");
    h.st.check_invariants().unwrap();
}

#[test]
fn a_new_worker_is_charged_what_its_language_typically_uses_until_measured() {
    let mut h = Harness::new(Sizes { max_processes: 10, ..sizes(4) });
    let a = function("a", 1, Language::Python, 8);
    let w = h.run(&a).unwrap();
    assert!(matches!(h.st.checkin(w, &key(&a), h.now, Some(40 * MIB)), Checkin::Parked));
    let b = function("b", 1, Language::Python, 8);
    let wb = h.run(&b).unwrap();
    assert_eq!(h.st.record(wb.0).unwrap().memory, 40 * MIB);
    let c = function("c", 1, Language::Wasm, 8);
    let wc = h.run(&c).unwrap();
    assert!(h.st.record(wc.0).unwrap().memory < 40 * MIB, "another language's figure is not used");
    h.st.check_invariants().unwrap();
}

#[test]
fn running_invocations_are_capped_by_slots_however_many_processes_fit() {
    let mut h = Harness::new(Sizes { max_running: 2, max_processes: 50, ..sizes(2) });
    let (a, b, c) =
        (function("a", 1, Language::Wasm, 8), function("b", 1, Language::Wasm, 8), function("c", 1, Language::Wasm, 8));
    let _wa = h.run(&a).unwrap();
    let wb = h.run(&b).unwrap();
    assert!(h.run(&c).is_none(), "two slots, both held");
    h.done(&b, wb);
    assert!(h.run(&c).is_some(), "a new process for c while b's worker stays idle");
    assert_eq!(h.st.live(), 3);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_budget_of_zero_keeps_no_idle_worker() {
    let mut h = Harness::new(Sizes { idle_memory: 0, ..sizes(4) });
    let f = function("f", 1, Language::Js, 8);
    let w = h.run(&f).unwrap();
    let Checkin::Retire(gone) = h.st.checkin(w, &key(&f), h.now, Some(MIB)) else { panic!("parked") };
    assert_eq!(h.state_of(gone.0), Some(WorkerState::Draining));
    assert_eq!(h.st.idle_bytes(), 0);
    h.st.check_invariants().unwrap();
}
