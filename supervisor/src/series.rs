//! The last 15 minutes of invocations, in 5-second buckets: how many, how many
//! failed, and their p99 latency. The console's charts read it from
//! `GET /admin/series`; [`crate::telemetry`] records into it under the lock it
//! already holds for the function's figures.
//!
//! Owns the bucket arithmetic. It must never allocate on the invocation path
//! beyond one bucket per function per 5 s (a bounded, sparse ring: a function
//! that is not invoked keeps no buckets) and never do I/O.

use std::collections::VecDeque;

use serde::Serialize;

/// Width of one bucket.
pub const BUCKET_SECONDS: u64 = 5;
/// How far back the series go.
pub const WINDOW_SECONDS: u64 = 15 * 60;
const MAX_BUCKETS: usize = (WINDOW_SECONDS / BUCKET_SECONDS) as usize;
/// Latency bins: bin `i` holds durations up to `FIRST_BIN_MS * 2^i`; the last
/// bin holds everything longer.
const BINS: usize = 20;
const FIRST_BIN_MS: f64 = 0.25;

#[derive(Clone)]
struct Bucket {
    /// Start of the bucket, in seconds since the epoch (a multiple of [`BUCKET_SECONDS`]).
    start: u64,
    invocations: u32,
    errors: u32,
    max_ms: f64,
    bins: [u32; BINS],
}

/// One function's (or the server's) recent buckets, oldest first.
#[derive(Default)]
pub struct Series {
    buckets: VecDeque<Bucket>,
}

/// A series as JSON, in columns (what uPlot draws): only buckets with
/// invocations are listed; a missing bucket had none.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Columns {
    /// Bucket starts, unix seconds.
    pub t: Vec<u64>,
    pub invocations: Vec<u32>,
    pub errors: Vec<u32>,
    /// The 99th percentile's bin bound (at most the slowest invocation), in ms.
    pub p99_ms: Vec<f64>,
}

impl Series {
    /// Counts one invocation that ended at `now_unix`.
    pub fn record(&mut self, now_unix: u64, elapsed_ms: f64, failed: bool) {
        let start = now_unix - now_unix % BUCKET_SECONDS;
        if self.buckets.back().is_none_or(|b| b.start < start) {
            if self.buckets.len() == MAX_BUCKETS {
                self.buckets.pop_front();
            }
            self.buckets.push_back(Bucket { start, invocations: 0, errors: 0, max_ms: 0.0, bins: [0; BINS] });
        }
        // A clock stepped back lands in the newest bucket rather than reorder the ring.
        let Some(bucket) = self.buckets.back_mut() else { return };
        bucket.invocations = bucket.invocations.saturating_add(1);
        if failed {
            bucket.errors = bucket.errors.saturating_add(1);
        }
        bucket.max_ms = bucket.max_ms.max(elapsed_ms);
        bucket.bins[bin_of(elapsed_ms)] = bucket.bins[bin_of(elapsed_ms)].saturating_add(1);
    }

    /// The buckets of the last [`WINDOW_SECONDS`] before `now_unix`.
    pub fn columns(&self, now_unix: u64) -> Columns {
        let since = now_unix.saturating_sub(WINDOW_SECONDS);
        let mut out = Columns { t: Vec::new(), invocations: Vec::new(), errors: Vec::new(), p99_ms: Vec::new() };
        for b in self.buckets.iter().filter(|b| b.start >= since) {
            out.t.push(b.start);
            out.invocations.push(b.invocations);
            out.errors.push(b.errors);
            out.p99_ms.push(p99(b));
        }
        out
    }
}

fn bin_of(ms: f64) -> usize {
    let mut bound = FIRST_BIN_MS;
    for i in 0..BINS - 1 {
        if ms <= bound {
            return i;
        }
        bound *= 2.0;
    }
    BINS - 1
}

/// The upper bound of the bin holding the nearest-rank 99th percentile, capped
/// by the slowest invocation of the bucket (so one fast call reads as itself).
fn p99(b: &Bucket) -> f64 {
    let rank = (f64::from(b.invocations) * 0.99).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    let mut bound = FIRST_BIN_MS;
    for count in b.bins {
        seen += u64::from(count);
        if seen >= rank {
            return (bound.min(b.max_ms) * 1000.0).round() / 1000.0;
        }
        bound *= 2.0;
    }
    (b.max_ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_land_in_five_second_buckets() {
        let mut s = Series::default();
        s.record(1000, 1.0, false);
        s.record(1004, 3.0, true);
        s.record(1005, 100.0, false);
        let c = s.columns(1010);
        assert_eq!(c.t, vec![1000, 1005]);
        assert_eq!(c.invocations, vec![2, 1]);
        assert_eq!(c.errors, vec![1, 0]);
        assert_eq!(c.p99_ms, vec![3.0, 100.0]);
    }

    #[test]
    fn the_ring_is_bounded_and_old_buckets_leave_the_window() {
        let mut s = Series::default();
        for i in 0..(MAX_BUCKETS as u64 + 50) {
            s.record(i * BUCKET_SECONDS, 1.0, false);
        }
        assert_eq!(s.buckets.len(), MAX_BUCKETS);
        let now = (MAX_BUCKETS as u64 + 50) * BUCKET_SECONDS;
        let c = s.columns(now);
        assert!(c.t.iter().all(|t| *t >= now - WINDOW_SECONDS));
    }

    #[test]
    fn p99_is_the_bin_of_the_slow_tail() {
        let mut s = Series::default();
        for _ in 0..98 {
            s.record(0, 0.1, false);
        }
        s.record(0, 50.0, false);
        s.record(0, 60.0, false);
        // 99th of 100 is the 50 ms call: its bin is (32, 64].
        assert_eq!(s.columns(0).p99_ms, vec![60.0]);
        assert_eq!(bin_of(0.1), 0);
        assert_eq!(bin_of(1e9), BINS - 1);
    }
}
