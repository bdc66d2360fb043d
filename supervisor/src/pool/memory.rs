//! What idle workers cost: each worker's private memory, read from
//! `/proc/<pid>/statm` once a second for the workers that ran since they were
//! last measured (every ten seconds for all of them), and the default budget
//! for all idle workers together. The
//! sums and the trimming live in the state machine; this file only reads /proc.
//! It must never hold the pool's lock while it reads.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;

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
    let readings: Vec<(u64, u64)> =
        wanted.into_iter().filter_map(|(id, pid)| private_bytes(pid).map(|bytes| (id, bytes))).collect();
    let trimmed = {
        let mut st = inner.lock();
        for (id, bytes) in readings {
            st.measured(id, bytes);
        }
        st.trim()
    };
    // Each retired worker closes its socket as it drops, and exits.
    drop(trimmed);
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

/// A quarter of the memory this server may use: the machine's, or its cgroup's
/// limit (`MemoryMax=` of a systemd unit, a container's limit) if lower.
pub fn default_budget() -> u64 {
    let machine = meminfo_total().unwrap_or(4 << 30);
    cgroup_limit().map_or(machine, |limit| limit.min(machine)) / DEFAULT_SHARE
}

fn meminfo_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The cgroup v2 memory limit of this process, if it has one.
fn cgroup_limit() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", path.trim_end())).ok()?;
    max.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_private_memory_and_the_budget_is_a_share_of_the_machine() {
        let own = private_bytes(std::process::id()).expect("statm of this process");
        assert!(own > 0);
        let budget = default_budget();
        assert!(budget > 0 && budget <= meminfo_total().unwrap_or(u64::MAX));
    }
}
