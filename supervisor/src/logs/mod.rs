//! The kept logs of invocations: what `GET /api/v1/functions/{name}/logs` reads,
//! and what the CLI's `logs -f` and the console's live tail follow with a cursor.
//!
//! Owns: one sequence number for the whole server (every entry gets the next
//! one), each function's newest [`HISTORY`] entries, a byte budget for all of
//! them together (the oldest entry of any function goes first), the cursor
//! format, the wake-up of long-polling readers, and, on a node of a cluster, the
//! outbox of entries not yet written to the shared store ([`cluster`] ships them
//! and reads the cluster's logs back with the same cursor API). It must never
//! hold more than its budget, never block a recorder on a reader, and never do
//! I/O.

pub mod cluster;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use tokio::sync::watch;

/// Entries kept per function (newest first to stay), and the most one page holds.
pub const HISTORY: usize = 50;
/// How much of one invocation's logs is kept.
pub const ENTRY_CAP: usize = 64 * 1024;
/// The longest a reader may wait for a new entry.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// What an entry costs beyond its strings: the struct, the Arc, the indexes.
const ENTRY_OVERHEAD: usize = 256;

/// One invocation's captured output.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Strictly increasing across the whole server (all functions); in a
    /// cluster, across the whole cluster.
    pub seq: u64,
    /// The node that ran the invocation.
    #[serde(serialize_with = "as_str")]
    pub node: Arc<str>,
    pub request_id: String,
    pub at_unix: u64,
    /// The function's version that ran.
    pub version: u64,
    /// `ok` or the error code.
    pub outcome: String,
    /// The HTTP status sent to the caller.
    pub status: u16,
    pub duration_ms: f64,
    pub text: String,
    /// True when the handler's output, or what is kept of it here, was cut.
    pub truncated: bool,
    /// What keeping it costs against the budget.
    #[serde(skip)]
    pub(crate) cost: usize,
}

fn as_str<S: Serializer>(text: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text)
}

/// What an invocation hands over to be kept.
pub struct NewEntry<'a> {
    pub request_id: &'a str,
    pub version: u64,
    pub outcome: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub text: &'a str,
    pub truncated: bool,
}

/// A position in the server's log sequence: entries after it are newer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(u64);

#[derive(Debug, thiserror::Error)]
#[error("invalid cursor {0:?}: pass back a cursor this server returned")]
pub struct InvalidCursor(String);

/// One answer: entries oldest first, and the cursor to continue after them.
pub struct Page {
    pub entries: Vec<Arc<LogEntry>>,
    pub cursor: Cursor,
}

pub struct Logs {
    inner: Mutex<Inner>,
    /// The newest seq, for readers waiting on any new entry.
    latest: watch::Sender<u64>,
    budget: usize,
    /// Tells this run's cursors from an earlier run's (whose seqs restarted).
    boot: u32,
    /// This node's name, on every entry.
    node: Arc<str>,
}

/// An entry on its way to the shared store, with its function's name.
pub type Outgoing = (Arc<str>, Arc<LogEntry>);

#[derive(Default)]
struct Inner {
    last_seq: u64,
    by_function: HashMap<Arc<str>, VecDeque<Arc<LogEntry>>>,
    /// Every kept entry's seq and function, oldest first: the eviction order.
    order: BTreeMap<u64, Arc<str>>,
    bytes: usize,
    /// On a node of a cluster: entries not yet shipped, oldest first.
    outbox: Option<Outbox>,
}

/// Entries waiting to be shipped, under the same byte budget as the kept ones:
/// while the database is away the oldest are dropped (and counted).
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    dropped: u64,
}

/// Which logs a node keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Its own only (one node).
    Here,
    /// Its own, and a copy of each for the shared store ([`cluster::Shipper`]).
    AndShip,
}

impl Logs {
    /// Keeps at most `budget` bytes of entries, all functions together, each
    /// marked with `node`.
    pub fn new(budget: usize, node: &str, keep: Keep) -> Self {
        let boot = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
            ^ std::process::id().rotate_left(16);
        let inner = Inner { outbox: (keep == Keep::AndShip).then(Outbox::default), ..Inner::default() };
        Self { inner: Mutex::new(inner), latest: watch::Sender::new(0), budget, boot, node: Arc::from(node) }
    }

    /// Keeps one invocation's logs (the first [`ENTRY_CAP`] bytes); returns its seq.
    pub fn record(&self, function: &str, new: NewEntry<'_>) -> u64 {
        let cut = floor_char_boundary(new.text, ENTRY_CAP);
        // A copy of the kept part only: the handler's text may be megabytes.
        let text = new.text[..cut].to_string();
        let truncated = new.truncated || cut < new.text.len();
        let cost = ENTRY_OVERHEAD + text.len() + new.request_id.len() + new.outcome.len() + function.len();
        let mut inner = self.lock();
        inner.last_seq += 1;
        let seq = inner.last_seq;
        let entry = Arc::new(LogEntry {
            seq,
            node: self.node.clone(),
            request_id: new.request_id.to_string(),
            at_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            version: new.version,
            outcome: new.outcome.to_string(),
            status: new.status,
            duration_ms: (new.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            text,
            truncated,
            cost,
        });
        let key: Arc<str> = match inner.by_function.get_key_value(function) {
            Some((key, _)) => key.clone(),
            None => Arc::from(function),
        };
        inner.bytes += cost;
        inner.order.insert(seq, key.clone());
        if let Some(outbox) = &mut inner.outbox {
            outbox.push((key.clone(), entry.clone()), self.budget);
        }
        let history = inner.by_function.entry(key).or_default();
        history.push_back(entry);
        let dropped = if history.len() > HISTORY { history.pop_front() } else { None };
        if let Some(old) = dropped {
            inner.bytes -= old.cost;
            inner.order.remove(&old.seq);
        }
        inner.evict_to(self.budget);
        drop(inner);
        self.latest.send_replace(seq);
        seq
    }

    /// `function`'s entries after `after` (oldest first, at most `limit`), or
    /// without `after` its newest `limit` entries.
    pub fn page(&self, function: &str, after: Option<Cursor>, limit: usize) -> Page {
        let limit = limit.clamp(1, HISTORY);
        let inner = self.lock();
        let entries: Vec<Arc<LogEntry>> = match inner.by_function.get(function) {
            None => Vec::new(),
            Some(history) => match after {
                Some(Cursor(after)) => {
                    let first = history.partition_point(|e| e.seq <= after);
                    history.iter().skip(first).take(limit).cloned().collect()
                }
                None => history.iter().skip(history.len().saturating_sub(limit)).cloned().collect(),
            },
        };
        // With nothing returned, nothing of this function is newer than the
        // newest seq of all: continuing from there misses nothing.
        let cursor = match entries.last() {
            Some(last) => Cursor(last.seq),
            None => Cursor(inner.last_seq.max(after.map_or(0, |c| c.0))),
        };
        Page { entries, cursor }
    }

    /// Like [`Logs::page`], but with nothing to return waits (up to `wait`,
    /// capped at [`MAX_WAIT`]) until an entry of `function` lands.
    pub async fn wait(&self, function: &str, after: Option<Cursor>, limit: usize, wait: Duration) -> Page {
        // Subscribed before looking, so an entry recorded in between still wakes us.
        let mut latest = self.latest.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let page = self.page(function, after, limit);
            if !page.entries.is_empty() {
                return page;
            }
            match tokio::time::timeout_at(deadline, latest.changed()).await {
                Ok(Ok(())) => continue,
                _ => return page,
            }
        }
    }

    /// Drops a deleted function's entries (kept and unshipped).
    pub fn forget(&self, function: &str) {
        let mut inner = self.lock();
        if let Some(history) = inner.by_function.remove(function) {
            for entry in history {
                inner.bytes -= entry.cost;
                inner.order.remove(&entry.seq);
            }
        }
        if let Some(outbox) = &mut inner.outbox {
            outbox.queue.retain(|(f, _)| &**f != function);
            outbox.bytes = outbox.queue.iter().map(|(_, e)| e.cost).sum();
        }
    }

    /// How many entries wait to be shipped.
    pub fn outgoing_len(&self) -> usize {
        self.lock().outbox.as_ref().map_or(0, |outbox| outbox.queue.len())
    }

    /// Takes the oldest unshipped entries, at most `max_bytes` of them (always
    /// at least one, if there is one).
    pub fn take_outgoing(&self, max_bytes: usize) -> Vec<Outgoing> {
        let mut inner = self.lock();
        let Some(outbox) = &mut inner.outbox else { return Vec::new() };
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some((_, entry)) = outbox.queue.front() {
            if !batch.is_empty() && bytes + entry.cost > max_bytes {
                break;
            }
            bytes += entry.cost;
            batch.extend(outbox.queue.pop_front());
        }
        outbox.bytes -= bytes;
        batch
    }

    /// Puts back a batch that could not be shipped, before anything newer; past
    /// the budget the oldest go. Returns how many were dropped so far in all.
    pub fn put_back(&self, batch: Vec<Outgoing>) -> u64 {
        let mut inner = self.lock();
        let Some(outbox) = &mut inner.outbox else { return 0 };
        for item in batch.into_iter().rev() {
            outbox.bytes += item.1.cost;
            outbox.queue.push_front(item);
        }
        outbox.trim(self.budget);
        outbox.dropped
    }

    /// Bytes kept now, by the same measure the budget uses.
    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The cursor's text: opaque to clients.
    pub fn format_cursor(&self, cursor: Cursor) -> String {
        format!("{:08x}-{:x}", self.boot, cursor.0)
    }

    /// Parses a cursor this server returned. One from an earlier run of the
    /// server (its seqs restarted) means "from the beginning".
    pub fn parse_cursor(&self, text: &str) -> Result<Cursor, InvalidCursor> {
        let invalid = || InvalidCursor(text.chars().take(64).collect());
        let (boot, seq) = text.split_once('-').ok_or_else(invalid)?;
        let parse = |s: &str| (!s.is_empty() && s.len() <= 16).then(|| u64::from_str_radix(s, 16).ok()).flatten();
        let (boot, seq) = (parse(boot).ok_or_else(invalid)?, parse(seq).ok_or_else(invalid)?);
        Ok(if boot == u64::from(self.boot) { Cursor(seq) } else { Cursor(0) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Outbox {
    fn push(&mut self, item: Outgoing, budget: usize) {
        self.bytes += item.1.cost;
        self.queue.push_back(item);
        self.trim(budget);
    }

    fn trim(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some((_, old)) = self.queue.pop_front() else { break };
            self.bytes -= old.cost;
            self.dropped += 1;
        }
    }
}

impl Inner {
    /// Drops the oldest entries, whatever their function, until within `budget`.
    fn evict_to(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some((seq, function)) = self.order.pop_first() else { break };
            let Some(history) = self.by_function.get_mut(&function) else { continue };
            // The oldest entry overall is the oldest of its function.
            if history.front().is_some_and(|e| e.seq == seq)
                && let Some(old) = history.pop_front()
            {
                self.bytes -= old.cost;
            }
            if history.is_empty() {
                self.by_function.remove(&function);
            }
        }
    }
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0)
}

/// The entries of `batch` that survive keeping each function's newest `keep`,
/// in the batch's order. The shipper writes only these: the rest would be
/// deleted by the retention trim of the same transaction, unseen by any reader,
/// and at a few thousand invocations a second writing them was most of the
/// database's work.
pub fn newest_per_function(batch: &[Outgoing], keep: usize) -> Vec<&Outgoing> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut kept: Vec<&Outgoing> = batch
        .iter()
        .rev()
        .filter(|(function, _)| {
            let n = seen.entry(&**function).or_default();
            *n += 1;
            *n <= keep
        })
        .collect();
    kept.reverse();
    kept
}

/// The start of a handler's logs for the server's own log line: at most `max`
/// bytes, on one line, with control and bidi characters escaped (a handler must
/// not forge server log lines), and how much was left out.
pub fn excerpt(text: &str, max: usize) -> String {
    let (start, cut) = crate::logging::cut(text.trim_end(), max);
    let more = if cut > 0 { format!(" … {cut} more bytes") } else { String::new() };
    format!("{}{more}", crate::logging::escape(start.as_bytes()))
}

#[cfg(test)]
mod tests;
