//! A per-worker clock that fires an action when an invocation's deadline passes:
//! wasm bumps the engine's epoch, Python raises an exception in the running code.
//!
//! One thread per worker sleeps until the armed deadline. Arming and disarming are
//! a lock and a store, not a message: the thread is woken only when a new deadline
//! is earlier than the time it already sleeps until (in practice: the first
//! invocation after an idle spell). Under load it wakes about once per timeout,
//! finds a later deadline armed, and sleeps again. A wakeup per invocation cost
//! two context switches on the hot path.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// The running invocation's deadline, if one is running.
    armed: Option<Instant>,
    /// When the thread will next look by itself; `None`: it is parked until woken.
    wakes_at: Option<Instant>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data, valid after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct DeadlineClock {
    shared: Arc<Shared>,
    thread: Option<Thread>,
}

impl DeadlineClock {
    /// Starts the clock's thread; `on_expire` runs on it each time an armed
    /// deadline passes before it is disarmed. It runs under the clock's lock, so
    /// a `disarm` that races with it returns only after it: an expiry can never
    /// land on the next invocation.
    pub fn start(on_expire: impl Fn() + Send + 'static) -> Self {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()) });
        let theirs = shared.clone();
        let started = std::thread::Builder::new().name("deadline".into()).spawn(move || watch(&theirs, on_expire));
        let thread = match started {
            Ok(handle) => Some(handle.thread().clone()),
            Err(e) => {
                // Then only the supervisor's hard deadline (a kill) stops a long handler.
                tracing::error!("cannot start the deadline thread: {e}");
                None
            }
        };
        Self { shared, thread }
    }

    /// Arms the clock for an invocation that may run for `budget`.
    pub fn arm(&self, budget: Duration) {
        let at = Instant::now() + budget;
        let mut st = self.shared.lock();
        st.armed = Some(at);
        let sleeps_past_it = st.wakes_at.is_none_or(|wakes| wakes > at);
        drop(st);
        if sleeps_past_it {
            self.wake();
        }
    }

    pub fn disarm(&self) {
        self.shared.lock().armed = None;
    }

    fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

impl Drop for DeadlineClock {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.wake();
    }
}

/// The clock thread: sleep until the armed deadline (or until woken), fire if it
/// has passed. An `unpark` between unlocking and parking is not lost: `park`
/// then returns at once.
fn watch(shared: &Shared, on_expire: impl Fn()) {
    loop {
        let sleep = {
            let mut st = shared.lock();
            if st.closed {
                return;
            }
            let now = Instant::now();
            match st.armed {
                Some(at) if at <= now => {
                    on_expire();
                    st.armed = None;
                    st.wakes_at = None;
                    None
                }
                Some(at) => {
                    st.wakes_at = Some(at);
                    Some(at - now)
                }
                None => {
                    st.wakes_at = None;
                    None
                }
            }
        };
        match sleep {
            Some(d) => std::thread::park_timeout(d),
            None => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn counting_clock() -> (DeadlineClock, Arc<AtomicU32>) {
        let fired = Arc::new(AtomicU32::new(0));
        let counter = fired.clone();
        (
            DeadlineClock::start(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            fired,
        )
    }

    fn wait_for(fired: &AtomicU32, n: u32) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while fired.load(Ordering::SeqCst) < n {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn fires_once_when_an_armed_deadline_passes() {
        let (clock, fired) = counting_clock();
        clock.arm(Duration::from_millis(20));
        assert!(wait_for(&fired, 1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_disarmed_deadline_never_fires() {
        let (clock, fired) = counting_clock();
        for _ in 0..100 {
            clock.arm(Duration::from_millis(30));
            clock.disarm();
        }
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(fired.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_shorter_deadline_after_a_long_one_still_fires_on_time() {
        let (clock, fired) = counting_clock();
        clock.arm(Duration::from_secs(3600));
        clock.disarm();
        clock.arm(Duration::from_millis(20));
        assert!(wait_for(&fired, 1));
        // And again after an expiry, from the parked state.
        clock.arm(Duration::from_millis(20));
        assert!(wait_for(&fired, 2));
    }
}
