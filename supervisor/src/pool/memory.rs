//! What idle workers cost: each worker's private memory, read from
//! `/proc/<pid>/statm` once a second for the workers that ran since they were
//! last measured (every ten seconds for all of them), and the default budget
//! for all idle workers together. The
//! sums and the trimming live in the state machine; this file only reads /proc.
//! It must never hold the pool's lock while it reads.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;
use super::state::Measure;

/// How often workers that ran are measured again (and the idle ones trimmed).
const EVERY: Duration = Duration::from_secs(1);
/// Every this many rounds, every worker is measured, idle ones too.
const SWEEP_EVERY: u64 = 10;

/// The part of the machine's memory that idle workers get when
/// `--pool-memory-mb` is not set.
const DEFAULT_SHARE: u64 = 4;

/// Measures workers and trims idle ones to the budget until the pool is gone.
pub(super) async fn keep_measuring(pool: Weak<Inner>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 1u64.. {
        tick.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        measure_once(&inner, round % SWEEP_EVERY == 0);
    }
}

fn measure_once(inner: &Arc<Inner>, all: bool) {
    let wanted = inner.lock().to_measure(all);
    if wanted.is_empty() {
        return;
    }
    // Read outside the lock: a worker that exits meanwhile just has no reading.
    // (Up to a few thousand small reads of /proc: milliseconds, so they stay on
    // this task rather than a blocking thread.)
    let readings: Vec<(Measure, u64)> =
        wanted.into_iter().filter_map(|what| private_bytes(what.pid).map(|bytes| (what, bytes))).collect();
    if readings.is_empty() {
        warn_once_unreadable();
    }
    let retired = {
        let mut st = inner.lock();
        let mut retired: Vec<_> = readings.into_iter().filter_map(|(what, bytes)| st.measured(what, bytes)).collect();
        retired.extend(st.trim());
        retired
    };
    // Each retired worker closes its socket as it drops, and exits.
    drop(retired);
}

/// Workers are charged a guess for as long as /proc cannot be read; say so once.
fn warn_once_unreadable() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!("cannot read workers' memory from /proc/<pid>/statm: idle workers are charged an estimate");
    });
}

/// Memory only this process holds: resident pages that are not shared with a
/// file or another process (`resident - shared` of statm). The worker binary's
/// and the runtimes' code, mapped by every worker, is not counted.
pub(super) fn private_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut fields = statm.split_ascii_whitespace().skip(1).map(str::parse::<u64>);
    let (resident, shared) = (fields.next()?.ok()?, fields.next()?.ok()?);
    Some(resident.saturating_sub(shared) * page_size())
}

fn page_size() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    sysconf(SysconfVar::PAGE_SIZE).ok().flatten().and_then(|n| u64::try_from(n).ok()).unwrap_or(4096)
}

/// A quarter of the memory this server may use: the machine's, or the lowest
/// memory limit of its cgroup and the cgroups above it (`MemoryMax=` of a
/// systemd unit or slice, a container's limit) if lower.
pub fn default_budget() -> u64 {
    // sysinfo(2), not /proc/meminfo: the systemd unit's `ProcSubset=pid` hides it.
    let machine = nix::sys::sysinfo::sysinfo().map_or(4 << 30, |info| info.ram_total());
    crate::cgroup::memory_limit().map_or(machine, |limit| limit.min(machine)) / DEFAULT_SHARE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_private_memory_and_the_budget_is_a_share_of_the_machine() {
        let own = private_bytes(std::process::id()).expect("statm of this process");
        assert!(own > 0);
        let budget = default_budget();
        let machine = nix::sys::sysinfo::sysinfo().expect("sysinfo").ram_total();
        assert!(budget > 0 && budget <= machine / DEFAULT_SHARE, "{budget} of {machine}");
    }
}
