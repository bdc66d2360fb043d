//! A per-worker clock that fires an action when an invocation's deadline passes:
//! wasm bumps the engine's epoch, Python raises an exception in the running code.
//! One thread per worker sleeps until the armed deadline; disarming cancels it.

use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct DeadlineClock {
    arm: mpsc::Sender<Option<Instant>>,
}

impl DeadlineClock {
    /// Starts the clock's thread; `on_expire` runs on it each time an armed
    /// deadline passes before it is disarmed.
    pub fn start(on_expire: impl Fn() + Send + 'static) -> Self {
        let (arm, armed) = mpsc::channel::<Option<Instant>>();
        let started = std::thread::Builder::new().name("deadline".into()).spawn(move || {
            let mut deadline: Option<Instant> = None;
            loop {
                let next = match deadline {
                    None => armed.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    Some(at) => armed.recv_timeout(at.saturating_duration_since(Instant::now())),
                };
                match next {
                    Ok(d) => deadline = d,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        on_expire();
                        deadline = None;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        if let Err(e) = started {
            // Then only the supervisor's hard deadline (a kill) stops a long handler.
            tracing::error!("cannot start the deadline thread: {e}");
        }
        Self { arm }
    }

    /// Arms the clock for an invocation that may run for `budget`.
    pub fn arm(&self, budget: Duration) {
        // A send only fails if the thread is gone; the hard deadline still holds.
        let _ = self.arm.send(Some(Instant::now() + budget));
    }

    pub fn disarm(&self) {
        let _ = self.arm.send(None);
    }
}
