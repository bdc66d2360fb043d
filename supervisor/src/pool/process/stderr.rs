//! A worker's stderr in the server's log: its own diagnostics, and whatever user
//! code writes to fd 2. Read as it comes and never buffered beyond one cut line;
//! each line escaped (it cannot start a line of its own or carry terminal
//! escapes), labelled with the worker's pid, and let through a budget that all
//! workers share, since the server has one log.

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::logging;

/// The longest worker stderr line logged; the rest of the line is counted, not kept.
const STDERR_LINE_MAX: usize = 4 * 1024;
/// What a logged line costs beyond its text (timestamp, level, label), so that a
/// flood of short lines is capped too.
const STDERR_LINE_COST: usize = 128;
/// The server has one stderr for every worker: worker output reaches it at most
/// `STDERR_RATE` bytes a second, after a burst of `STDERR_BURST`. Past that,
/// lines are dropped and counted. Legitimate output is a few lines per worker
/// start (the worker's own log) and the odd panic message.
const STDERR_BURST: f64 = 256.0 * 1024.0;
const STDERR_RATE: f64 = 32.0 * 1024.0;

/// The token bucket behind `STDERR_RATE`, shared by every worker's forwarder.
struct StderrBudget {
    tokens: f64,
    at: Instant,
}

impl StderrBudget {
    /// Takes `cost` bytes of budget if there are that many.
    fn take(&mut self, cost: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * STDERR_RATE).min(STDERR_BURST);
        self.at = now;
        let cost = cost as f64;
        if self.tokens < cost {
            return false;
        }
        self.tokens -= cost;
        true
    }
}

static STDERR_BUDGET: LazyLock<Mutex<StderrBudget>> =
    LazyLock::new(|| Mutex::new(StderrBudget { tokens: STDERR_BURST, at: Instant::now() }));

/// Splits a byte stream into lines of at most `STDERR_LINE_MAX` bytes without
/// ever holding more than that: the rest of a longer line is only counted.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
    /// Bytes of the current line past `STDERR_LINE_MAX`.
    cut: usize,
}

impl LineSplitter {
    /// Feeds bytes; `emit(line, cut)` is called for each line they complete.
    fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8], usize)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| *b == b'\n');
            let part = &bytes[..end.unwrap_or(bytes.len())];
            let keep = part.len().min(STDERR_LINE_MAX - self.line.len());
            self.line.extend_from_slice(&part[..keep]);
            self.cut += part.len() - keep;
            match end {
                Some(at) => {
                    bytes = &bytes[at + 1..];
                    self.flush(emit);
                }
                None => bytes = &[],
            }
        }
    }

    /// Emits the line so far (an unterminated one at the end), unless it is blank.
    fn flush(&mut self, emit: &mut impl FnMut(&[u8], usize)) {
        if !self.line.is_empty() || self.cut > 0 {
            emit(&self.line, self.cut);
        }
        self.line.clear();
        self.cut = 0;
    }
}

/// Lines and bytes dropped over the budget, not yet reported.
#[derive(Default)]
struct Dropped {
    lines: u64,
    bytes: u64,
}

impl Dropped {
    /// Logs the count, if any, and starts again from zero.
    fn report(&mut self, pid: u32) {
        if self.lines > 0 {
            let (dropped_lines, dropped_bytes) = (self.lines, self.bytes);
            warn!(
                worker_pid = pid,
                dropped_lines, dropped_bytes, "worker {pid} stderr: output over the log rate cap was dropped"
            );
            *self = Dropped::default();
        }
    }
}

/// How long a flood may go unreported once the worker falls quiet.
const DROPPED_REPORT_AFTER: Duration = Duration::from_secs(1);

/// Logs a worker's stderr (its own diagnostics, and whatever user code writes to
/// fd 2) as the server's events: each line escaped, so it cannot start a line of
/// its own or carry terminal escapes; labelled with the worker's pid; cut at
/// `STDERR_LINE_MAX`; and let through at most at `STDERR_RATE`. A flood is read
/// and counted as it comes, never buffered, and the count is logged before the
/// next line let through, or once the worker has been quiet for a second.
pub(super) async fn forward_stderr(mut stderr: tokio::process::ChildStderr, pid: u32) {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0u8; 16 * 1024];
    let mut lines = LineSplitter::default();
    let mut dropped = Dropped::default();
    let emit = |line: &[u8], cut: usize, dropped: &mut Dropped| {
        // A line the log's filter would discard costs no budget and is not
        // counted as dropped: with RUST_LOG=warn, a burst of worker starts
        // (each logs its sandbox's layers at INFO) would otherwise be reported
        // as output lost, and leave no budget for what follows.
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        let allowed = STDERR_BUDGET
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(line.len() + STDERR_LINE_COST, Instant::now());
        if !allowed {
            dropped.lines += 1;
            dropped.bytes += (line.len() + cut + 1) as u64;
            return;
        }
        dropped.report(pid);
        let text = logging::escape(line);
        if cut > 0 {
            info!(worker_pid = pid, "worker {pid} stderr: {text} [{cut} more bytes of this line cut]");
        } else {
            info!(worker_pid = pid, "worker {pid} stderr: {text}");
        }
    };
    loop {
        match tokio::time::timeout(DROPPED_REPORT_AFTER, stderr.read(&mut chunk)).await {
            Err(_) => dropped.report(pid),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => lines.feed(&chunk[..n], &mut |line, cut| emit(line, cut, &mut dropped)),
        }
    }
    lines.flush(&mut |line, cut| emit(line, cut, &mut dropped));
    dropped.report(pid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut lines = LineSplitter::default();
        let mut emit = |line: &[u8], cut: usize| out.push((line.to_vec(), cut));
        for chunk in chunks {
            lines.feed(chunk, &mut emit);
        }
        lines.flush(&mut emit);
        out
    }

    #[test]
    fn lines_are_split_across_chunks_and_cut_without_buffering() {
        // Blank lines are skipped: they would cost the budget and say nothing.
        assert_eq!(split(&[b"ab", b"c\nd", b"\n\ne"]), [(b"abc".to_vec(), 0), (b"d".to_vec(), 0), (b"e".to_vec(), 0)]);
        let long = vec![b'x'; 3 * STDERR_LINE_MAX];
        let out = split(&[&long, &long, b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0.len(), out[0].1), (STDERR_LINE_MAX, 5 * STDERR_LINE_MAX));
        assert_eq!(out[1], (b"next".to_vec(), 0));
    }

    /// Counts the events that reach the log, by level.
    #[derive(Clone, Default)]
    struct Counts(std::sync::Arc<Mutex<(usize, usize)>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counts {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if *event.metadata().level() == tracing::Level::WARN {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
        }
    }

    /// (INFO lines, WARN lines) logged while forwarding a flood of 4 MB of
    /// stderr (more than the burst) under a log filter at `level`.
    fn forward_flood(level: tracing::level_filters::LevelFilter) -> (usize, usize) {
        use tracing_subscriber::{Layer, layer::SubscriberExt};
        let counts = Counts::default();
        let subscriber = tracing_subscriber::registry().with(counts.clone().with_filter(level));
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                let mut child = tokio::process::Command::new("sh")
                    .args(["-c", "head -c 4000000 /dev/zero | tr '\\0' x | fold -w 99 >&2"])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("sh");
                let stderr = child.stderr.take().expect("piped stderr");
                forward_stderr(stderr, 1).await;
                child.wait().await.expect("sh exits");
            });
        });
        *counts.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[test]
    fn lines_the_filter_discards_are_neither_charged_nor_reported_as_dropped() {
        use tracing::level_filters::LevelFilter;
        // At WARN, nothing of the flood is logged, and no loss is reported.
        assert_eq!(forward_flood(LevelFilter::WARN), (0, 0));
        // At INFO, the burst is logged, the rest dropped and reported.
        let (info, warn) = forward_flood(LevelFilter::INFO);
        assert!(info > 0 && info < 40_000, "{info} lines let through");
        assert!(warn > 0, "the dropped lines were reported");
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut budget = StderrBudget { tokens: STDERR_BURST, at: start };
        assert!(budget.take(STDERR_BURST as usize, start));
        assert!(!budget.take(1, start));
        assert!(budget.take(STDERR_RATE as usize / 2, start + Duration::from_millis(500)));
        assert!(!budget.take(STDERR_RATE as usize, start + Duration::from_millis(600)));
        // Never more than the burst, however long the quiet.
        assert!(!budget.take(STDERR_BURST as usize + 1, start + Duration::from_secs(3600)));
    }
}
