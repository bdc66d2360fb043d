//! Idle workers kept by memory, not by count; running invocations capped by slots.

use polyfaas_protocol::Language;

use super::{Harness, function, sizes};
use crate::pool::state::{Sizes, WorkerState};

const MIB: u64 = 1 << 20;

#[test]
fn idle_workers_are_kept_while_their_memory_fits_and_the_least_recently_used_go_first() {
    let mut h = Harness::new(Sizes { max_running: 2, max_processes: 100, idle_memory: 10 * MIB, ..sizes(2) });
    let functions: Vec<_> = (0..5).map(|i| function(&format!("f{i}"), 1, Language::Wasm, 8)).collect();
    let mut ids = Vec::new();
    for f in &functions {
        let w = h.run(f).unwrap();
        ids.push(w.0);
        h.done(f, w);
    }
    assert_eq!(h.st.live(), 5, "five idle workers with two running slots: processes are not capped by slots");
    let measured: Vec<_> = h.st.to_measure(false).into_iter().map(|(id, _)| id).collect();
    assert_eq!(measured.len(), 5, "each ran since it was last measured");
    for id in measured {
        h.st.measured(id, 3 * MIB);
    }
    assert!(h.st.to_measure(false).is_empty(), "nothing ran since");
    assert_eq!(h.st.to_measure(true).len(), 5, "a sweep measures idle workers too");
    assert!(h.st.over_budget());
    let trimmed: Vec<_> = h.st.trim().into_iter().map(|w| w.0).collect();
    assert_eq!(trimmed, vec![ids[0], ids[1]], "the two least recently used go");
    assert_eq!(h.st.idle_bytes(), 9 * MIB);
    for id in trimmed {
        assert_eq!(h.state_of(id), Some(WorkerState::Draining));
    }
    h.st.check_invariants().unwrap();
    // A worker that grows while idle is charged its new size.
    h.st.measured(ids[4], 2 * MIB);
    assert_eq!(h.st.idle_bytes(), 8 * MIB);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_new_worker_is_charged_what_its_language_typically_uses_until_measured() {
    let mut h = Harness::new(Sizes { max_processes: 10, ..sizes(4) });
    let a = function("a", 1, Language::Python, 8);
    let w = h.run(&a).unwrap();
    h.st.measured(w.0, 40 * MIB);
    h.done(&a, w);
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
    let id = w.0;
    h.done(&f, w);
    let trimmed: Vec<_> = h.st.trim().into_iter().map(|w| w.0).collect();
    assert_eq!(trimmed, vec![id]);
    assert_eq!(h.st.idle_bytes(), 0);
    h.st.check_invariants().unwrap();
}
