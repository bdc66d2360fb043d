//! Each rule of the state machine, by example.

use std::sync::Arc;
use std::time::Duration;

use polyfaas_protocol::Language;
use tokio::sync::Notify;

use super::{Fake, Harness, function, key, sizes};
use crate::pool::PoolError;
use crate::pool::state::{Checkin, Checkout, RestartStep, Sizes, WorkerState};

#[test]
fn prefers_warm_then_blank_then_a_new_process() {
    let mut h = Harness::new(sizes(4));
    let f = function("f", 1, Language::Wasm, 8);
    h.warm(Language::Wasm);
    let now = h.tick();
    let Some(Checkout::Blank(b)) = h.st.checkout(&f, None, now, None).unwrap() else { panic!("blank first") };
    assert_eq!(h.state_of(b.0), Some(WorkerState::Initializing));
    h.st.specialized(b.0, &key(&f), Ok(()), now);
    let Some(Checkout::Spawn { victim: None }) = h.st.checkout(&f, None, now, None).unwrap() else {
        panic!("then spawn")
    };
    assert_eq!(h.st.live(), 2, "a reserved start counts");
    h.done(&f, b);
    let Some(Checkout::Warm(w)) = h.st.checkout(&f, None, now, None).unwrap() else { panic!("warm wins") };
    assert_eq!(w.0, 1);
    h.st.check_invariants().unwrap();
}

#[test]
fn an_idle_worker_at_the_callers_home_goes_first_then_the_most_recent() {
    let mut h = Harness::new(Sizes { warm_blank: 0, ..sizes(4) });
    let f = function("f", 1, Language::Wasm, 8);
    let workers: Vec<Fake> = std::iter::from_fn(|| h.run(&f)).take(3).collect();
    assert_eq!(workers.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 2, 3]);
    for w in workers {
        h.done(&f, w);
    }
    let now = h.tick();
    // Homes are odd and even ids: 2 is the only one at home 0, though 3 is more recent.
    let Some(Checkout::Warm(w)) = h.st.checkout(&f, None, now, Some(&0)).unwrap() else { panic!("warm") };
    assert_eq!(w.0, 2);
    let Some(Checkout::Warm(w)) = h.st.checkout(&f, None, now, Some(&0)).unwrap() else { panic!("warm") };
    assert_eq!(w.0, 3, "none left at home 0: the most recently used");
    let Some(Checkout::Warm(w)) = h.st.checkout(&f, None, now, None).unwrap() else { panic!("warm") };
    assert_eq!(w.0, 1);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_full_pool_evicts_a_blank_of_another_language_then_the_least_recently_used() {
    let mut h = Harness::new(Sizes { warm_blank: 1, max_queue: 4, ..sizes(3) });
    let (a, b, c) =
        (function("a", 1, Language::Wasm, 8), function("b", 1, Language::Wasm, 8), function("c", 1, Language::Js, 8));
    let wa = h.run(&a).unwrap();
    let wb = h.run(&b).unwrap();
    h.done(&a, wa); // a is the older idle worker
    h.done(&b, wb);
    h.warm(Language::Python); // pool full: 2 idle + 1 blank python
    assert_eq!(h.st.live(), 3);
    let now = h.tick();
    let Some(Checkout::Spawn { victim: Some(v) }) = h.st.checkout(&c, None, now, None).unwrap() else { panic!() };
    assert_eq!(h.state_of(v.0), Some(WorkerState::Draining));
    assert_eq!(h.st.record(v.0).unwrap().language, Language::Python, "the blank goes first");
    h.st.exited(v.0);
    let wc = h.start(Language::Js, Some(c.clone()));
    h.st.specialized(wc.0, &key(&c), Ok(()), now);
    let d = function("d", 1, Language::Js, 8);
    let Some(Checkout::Spawn { victim: Some(v) }) = h.st.checkout(&d, None, now, None).unwrap() else { panic!() };
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
    assert!(h.st.checkout(&hog, Some(hog_wait), now, None).unwrap().is_none());
    assert!(h.st.checkout(&third, None, now, None).unwrap().is_none(), "no barging past an eligible waiter");
    h.done(&other, o1);
    // 2 free now: the third (none held) ranks before the hog (2 held) though it came later.
    assert_eq!(h.st.ranked_eligible(), vec![third_wait, hog_wait]);
    assert_eq!(h.st.to_wake().len(), 2);
    assert!(h.st.checkout(&third, Some(third_wait), now, None).unwrap().is_some());
    h.st.dequeue(third_wait);
    h.st.check_invariants().unwrap();
}

#[test]
fn a_full_queue_is_overloaded() {
    let mut h = Harness::new(Sizes { warm_blank: 0, max_queue: 2, ..sizes(1) });
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
    assert!(matches!(h.st.checkin(b, &key(&v1), now, None), Checkin::Retire(Fake(2))));
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
    assert!(matches!(h.st.checkin(busy, &key(&f), now, None), Checkin::Replace(Fake(1))));
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
        let Some(Checkout::Spawn { .. }) = h.st.checkout(&f, None, now, None).unwrap() else { panic!() };
        let w = h.start(f.language, Some(f.clone()));
        h.st.specialized(w.0, &key(&f), Err(&err), now);
        h.st.abandon(Some(w.0), &key(&f));
        h.st.exited(w.0);
    }
    let now = h.tick();
    assert!(matches!(h.st.checkout(&f, None, now, None), Err(PoolError::Unhealthy { failures: 3, .. })));
    let later = now + Duration::from_secs(2);
    assert!(h.st.checkout(&f, None, later, None).unwrap().is_some(), "tried again after the backoff");
    h.st.serve_version(&f.name, Some(2));
    assert!(h.st.init_failures(&key(&f)).is_none(), "a new version starts clean");
}

#[test]
fn blank_workers_are_planned_per_language_and_make_room_when_asked() {
    let mut h = Harness::new(Sizes { warm_blank: 1, max_queue: 4, ..sizes(2) });
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
    assert!(matches!(h.st.checkout(&f, None, now, None), Err(PoolError::ShuttingDown)));
    assert!(matches!(h.st.checkin(w, &key(&f), now, None), Checkin::Retire(_)));
    h.st.check_invariants().unwrap();
}
