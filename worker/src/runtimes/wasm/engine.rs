//! The one place the wasmtime engine is configured.
//!
//! A worker runs one invocation at a time, so the pooling allocator is sized for a
//! single live instance; its memory slots are reused (and reset copy-on-write from
//! the module's image) from one invocation to the next.

use std::hash::{DefaultHasher, Hash, Hasher};

use anyhow::Result;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The largest linear memory any function may ask for: all of wasm32. It reserves
/// address space, not memory; each function's own `memoryMb` is enforced per
/// `Store` by a limiter.
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// The part of a table reset by `memset` rather than `madvise`: 8,192 entries.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

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
    // Memory slots are reset with `madvise` (the default), not kept resident and
    // reset by `memset`: measured under load, keeping 2 MiB resident (with or
    // without PAGEMAP_SCAN) cost 30–60 µs more per invocation than the 6 page
    // faults a fresh slot takes, because the reset rewrites the guest's whole
    // 1 MiB stack region. Without PAGEMAP_SCAN it rewrites the first 2 MiB
    // whatever was touched; with it, Linux (6.18) reports never-touched pages of
    // a mapping not registered with userfaultfd as written too, so the scan
    // finds the same range. A table is small (8 bytes an entry, reset only as
    // far as it is long): `memset` saves a `madvise` and a page fault each time.
    pool.table_keep_resident(TABLE_KEEP_RESIDENT);

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
