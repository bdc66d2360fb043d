//! The state machine with fake workers: each rule by example (`rules`), and
//! random event sequences with every invariant checked after each step
//! (`random`). This file holds the harness both use.

mod memory;
mod random;
mod rules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyfaas_protocol::Language;

use super::{Checkin, Checkout, FnKey, Handle, PoolState, Sizes, WorkerId, WorkerState};
use crate::pool::process::KillSwitch;
use crate::store::{Deployed, FunctionLimits, FunctionName, VersionRecord};

#[derive(Debug, PartialEq)]
pub(super) struct Fake(WorkerId);

impl Handle for Fake {
    /// Two homes: odd and even ids.
    type Home = u64;

    fn id(&self) -> WorkerId {
        self.0
    }

    fn home(&self) -> Option<u64> {
        Some(self.0 % 2)
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
        sandbox_responses: true,
        wasm: Default::default(),
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

/// A pool of `n` processes that runs up to `n` invocations, with no memory limit.
fn sizes(n: usize) -> Sizes {
    Sizes { max_running: n, max_processes: n, idle_memory: u64::MAX, warm_blank: 1, max_queue: 16 }
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
        let worker = match self.st.checkout(f, None, now, None).unwrap()? {
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
        assert!(matches!(self.st.checkin(w, &key(f), now, None), Checkin::Parked));
    }

    fn state_of(&self, id: WorkerId) -> Option<WorkerState> {
        self.st.record(id).map(|r| r.state)
    }
}
