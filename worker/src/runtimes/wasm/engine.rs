//! The one place the wasmtime engine is configured, and the deadline clock that
//! drives its epoch interruption.
//!
//! A worker runs one invocation at a time, so the pooling allocator is sized for a
//! single live instance; its memory slots are reused (and reset copy-on-write from
//! the module's image) from one invocation to the next.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The largest linear memory any function may ask for: all of wasm32. It reserves
/// address space, not memory; each function's own `memoryMb` is enforced per
/// `Store` by a limiter.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// Builds the engine every wasm worker uses, for compiling and for running.
/// Precompiled modules are only valid for an engine built by this same function.
pub fn new_engine() -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // One invocation at a time; a second slot lets a new instance be allocated
    // while the previous store is still being dropped.
    pool.total_core_instances(2)
        .total_memories(2)
        .total_tables(2)
        .total_component_instances(0)
        .total_stacks(0)
        .max_memory_size(MAX_MEMORY_BYTES);

    let mut config = Config::new();
    config
        // Deadlines interrupt a running handler at the next loop back-edge or call.
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Instantiation maps the module's data segments copy-on-write instead of
        // copying them: a 4 MB module instantiates in microseconds.
        .memory_init_cow(true)
        // Deep recursion is a trap (`call stack exhausted`), not a dead worker.
        .max_wasm_stack(1 << 20);
    Ok(Engine::new(&config)?)
}

/// Names the precompiled-module file for this engine. A module precompiled by a
/// different wasmtime version or configuration gets a different name, so a worker
/// never tries to load an incompatible one.
pub fn artifact_name(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("module-{:016x}.cwasm", hasher.finish())
}

/// Interrupts the engine's running code when an invocation's deadline passes.
///
/// One thread per worker sleeps until the armed deadline, then bumps the epoch
/// once; each store's epoch deadline is one tick past the epoch at its start.
pub struct DeadlineClock {
    arm: mpsc::Sender<Option<Instant>>,
}

impl DeadlineClock {
    pub fn start(engine: Engine) -> Self {
        let (arm, armed) = mpsc::channel::<Option<Instant>>();
        std::thread::Builder::new()
            .name("deadline".into())
            .spawn(move || {
                let mut deadline: Option<Instant> = None;
                loop {
                    let next = match deadline {
                        None => armed.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                        Some(at) => armed.recv_timeout(at.saturating_duration_since(Instant::now())),
                    };
                    match next {
                        Ok(d) => deadline = d,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            engine.increment_epoch();
                            deadline = None;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the deadline thread: {e}"));
        Self { arm }
    }

    /// Arms the clock for an invocation that may run for `budget`.
    pub fn arm(&self, budget: Duration) {
        // A send only fails if the thread is gone, and then nothing can interrupt
        // the handler but the supervisor's hard deadline, which still holds.
        let _ = self.arm.send(Some(Instant::now() + budget));
    }

    pub fn disarm(&self) {
        let _ = self.arm.send(None);
    }
}
