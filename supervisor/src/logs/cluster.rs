//! The logs of a cluster: every node ships its invocations' entries to the
//! shared store, and any node's logs route reads them all back from there, each
//! marked with the node that ran it, through the same cursor API as one node
//! (`after`, `wait`, `limit`).
//!
//! Owns the shipping loop (batches every [`SHIP_EVERY`], off the request path;
//! a batch the database refused goes back to the outbox, whose byte budget
//! bounds what an outage can cost), the cluster-wide retention pass, the
//! cluster cursor (`pg-<id>`: ids persist, so a cursor outlives a restart) and
//! the wake-up of long-polling readers when any node's batch commits. It must
//! never be called from an invocation, nor make a reader wait on the database
//! longer than the store's deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Cursor, HISTORY, InvalidCursor, Logs, MAX_WAIT, Page};
use crate::store::shared::db::{Db, Unavailable};

/// How often a node writes what its invocations logged.
pub const SHIP_EVERY: Duration = Duration::from_millis(200);
/// The most one batch carries (one entry more, if a single one is bigger).
const BATCH_BYTES: usize = 4 << 20;
/// How often a node holds the cluster's logs to the byte budget.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// A waiting reader looks again this often even without a notification (the
/// listening connection may be reconnecting).
const RECHECK: Duration = Duration::from_secs(2);
/// The pause after a batch was refused: the store's connection is shared with
/// deploys, which should not queue behind a shipper's reconnect attempts.
const RETRY_AFTER: Duration = Duration::from_secs(2);

pub struct ClusterLogs {
    db: Arc<Db>,
    /// Bumped whenever any node's batch commits.
    batches: watch::Sender<u64>,
}

impl ClusterLogs {
    pub fn new(db: Arc<Db>) -> Self {
        Self { db, batches: watch::Sender::new(0) }
    }

    /// A node's batch committed (the store's listening connection heard it).
    pub fn notified(&self) {
        self.batches.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Like [`Logs::page`], for the whole cluster.
    pub async fn page(&self, function: &str, after: Option<Cursor>, limit: usize) -> Result<Page, Unavailable> {
        let (entries, cursor) = self.db.log_page(function, after.map(|c| c.0), limit.clamp(1, HISTORY)).await?;
        Ok(Page { entries: entries.into_iter().map(Arc::new).collect(), cursor: Cursor(cursor) })
    }

    /// Like [`Logs::wait`], for the whole cluster.
    pub async fn wait(
        &self,
        function: &str,
        after: Option<Cursor>,
        limit: usize,
        wait: Duration,
    ) -> Result<Page, Unavailable> {
        let mut batches = self.batches.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let page = self.page(function, after, limit).await?;
            let now = tokio::time::Instant::now();
            if !page.entries.is_empty() || now >= deadline {
                return Ok(page);
            }
            let _ = tokio::time::timeout_at(deadline.min(now + RECHECK), batches.changed()).await;
        }
    }

    pub fn format_cursor(&self, cursor: Cursor) -> String {
        format!("pg-{:x}", cursor.0)
    }

    /// Parses a cursor a node of this cluster returned.
    pub fn parse_cursor(&self, text: &str) -> Result<Cursor, InvalidCursor> {
        text.strip_prefix("pg-")
            .filter(|hex| !hex.is_empty() && hex.len() <= 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .map(Cursor)
            .ok_or_else(|| InvalidCursor(text.chars().take(64).collect()))
    }

    /// Ships `logs`' outbox to the database until the server stops, and keeps
    /// the cluster's logs within `budget` bytes.
    pub async fn ship(self: Arc<Self>, logs: Arc<Logs>, budget: usize) {
        let mut tick = tokio::time::interval(SHIP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut trim = tokio::time::interval(TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut failing, mut dropped) = (false, 0);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = trim.tick() => {
                    match self.db.trim_logs(budget).await {
                        Ok(0) | Err(_) => {}
                        Ok(n) => info!(rows = n, "the cluster's logs trimmed to their budget"),
                    }
                    continue;
                }
            }
            // What waited at the tick, in batches of at most BATCH_BYTES. Not
            // what arrives meanwhile: under load that would ship continuously,
            // a transaction per few entries (hundreds a second), where one per
            // tick carries them all and lets `insert_logs` skip the entries its
            // own trim would delete.
            let mut due = logs.outgoing_len();
            while due > 0 {
                let batch = logs.take_outgoing(BATCH_BYTES);
                if batch.is_empty() {
                    break;
                }
                due = due.saturating_sub(batch.len());
                match self.db.insert_logs(&batch, HISTORY).await {
                    Ok(()) if failing => {
                        failing = false;
                        info!("invocation logs reach the shared store again");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        let now_dropped = logs.put_back(batch);
                        if !failing {
                            warn!("invocation logs wait for the shared store (kept here meanwhile): {e}");
                        }
                        if now_dropped > dropped {
                            warn!(dropped = now_dropped - dropped, "invocation logs dropped: the outbox is full");
                            dropped = now_dropped;
                        }
                        failing = true;
                        tokio::time::sleep(RETRY_AFTER).await;
                        break;
                    }
                }
            }
        }
    }
}
