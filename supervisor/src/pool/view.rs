//! How `/admin/workers` shows a worker: a snapshot of its record, with its
//! memory read from /proc. Read-only; it never changes the pool.

use serde::Serialize;

use super::state::{WorkerId, WorkerRecord, WorkerState};

/// One worker, as `/admin/workers` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    pub id: u64,
    pub pid: u32,
    pub state: WorkerState,
    pub language: &'static str,
    pub function: Option<String>,
    pub version: Option<u64>,
    pub invocations: u64,
    pub restarts: u32,
    pub uptime_ms: u64,
    pub rss_bytes: Option<u64>,
    /// What the pool charges it against `--pool-memory-mb` while it is idle:
    /// its private memory as last measured (or its language's estimate).
    pub memory_bytes: u64,
}

impl WorkerView {
    pub fn of(id: WorkerId, info: &WorkerRecord) -> Self {
        Self {
            id,
            pid: info.pid,
            state: info.state,
            language: info.language.as_str(),
            function: info.function.as_ref().map(|f| f.name.to_string()),
            version: info.function.as_ref().map(|f| f.version),
            invocations: info.invocations,
            restarts: info.restarts,
            uptime_ms: info.started.elapsed().as_millis() as u64,
            rss_bytes: None,
            memory_bytes: info.memory,
        }
    }
}

/// Resident set size of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}
