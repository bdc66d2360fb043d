//! The cluster's invocation logs in PostgreSQL (`invocation_logs`): written in
//! batches by each node's shipper, read by any node's logs route.
//!
//! Batches are written one at a time across the cluster (a transaction-scoped
//! advisory lock), so ids become visible in the order they were given out: a
//! reader that has seen id N will never later find a new row below N, which is
//! what makes the id a cursor. Retention is enforced by the writers: each batch
//! trims the functions it touched to their newest rows, and [`Db::trim_logs`]
//! holds everything to a byte budget.

use std::sync::Arc;

use super::{Db, Unavailable};
use crate::logs::{LogEntry, Outgoing};

/// The channel a batch's commit notifies; waiting readers re-read on it.
pub const LOG_CHANNEL: &str = "polyfaas_logs";
/// The advisory lock that puts batches (across all nodes) in one order.
const WRITE_LOCK: i64 = 7_401_734;
/// What one row costs beyond its text, in the byte budget (as on one node).
const ROW_OVERHEAD: i64 = 256;

const COLUMNS: &str = "id, node, request_id, at_unix, version, outcome, status, duration_ms, text, truncated";

impl Db {
    /// Writes a batch of entries, then trims each function it touched to its
    /// newest `keep` rows, and notifies [`LOG_CHANNEL`] — one transaction. Of a
    /// function with more than `keep` entries in the batch, only its newest
    /// `keep` are written ([`crate::logs::newest_per_function`]).
    pub async fn insert_logs(&self, batch: &[Outgoing], keep: usize) -> Result<(), Unavailable> {
        // Rows the trim below would delete unseen are not written at all.
        let batch = crate::logs::newest_per_function(batch, keep);
        if batch.is_empty() {
            return Ok(());
        }
        // PostgreSQL's text cannot hold NUL; a handler's output may.
        let clean = |s: &str| if s.contains('\0') { s.replace('\0', "\u{FFFD}") } else { s.to_string() };
        let functions: Vec<String> = batch.iter().map(|(f, _)| clean(f)).collect();
        let nodes: Vec<String> = batch.iter().map(|(_, e)| clean(&e.node)).collect();
        let ids: Vec<String> = batch.iter().map(|(_, e)| clean(&e.request_id)).collect();
        let at: Vec<i64> = batch.iter().map(|(_, e)| e.at_unix as i64).collect();
        let versions: Vec<i64> = batch.iter().map(|(_, e)| e.version as i64).collect();
        let outcomes: Vec<String> = batch.iter().map(|(_, e)| clean(&e.outcome)).collect();
        let statuses: Vec<i32> = batch.iter().map(|(_, e)| i32::from(e.status)).collect();
        let durations: Vec<f64> = batch.iter().map(|(_, e)| e.duration_ms).collect();
        let texts: Vec<String> = batch.iter().map(|(_, e)| clean(&e.text)).collect();
        let truncated: Vec<bool> = batch.iter().map(|(_, e)| e.truncated).collect();
        let mut touched = functions.clone();
        touched.sort();
        touched.dedup();
        let keep = keep as i64;
        self.with(async |c| {
            let t = c.transaction().await?;
            t.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).await?;
            t.execute(
                "INSERT INTO invocation_logs \
                 (function, node, request_id, at_unix, version, outcome, status, duration_ms, text, truncated) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                 $6::text[], $7::int[], $8::float8[], $9::text[], $10::bool[])",
                &[&functions, &nodes, &ids, &at, &versions, &outcomes, &statuses, &durations, &texts, &truncated],
            )
            .await?;
            // Per function, everything at or below its (keep+1)-th newest id goes.
            t.execute(
                "DELETE FROM invocation_logs l USING ( \
                   SELECT f, (SELECT id FROM invocation_logs WHERE function = f ORDER BY id DESC OFFSET $2 LIMIT 1) \
                   AS edge FROM unnest($1::text[]) AS f) k \
                 WHERE l.function = k.f AND l.id <= k.edge",
                &[&touched, &keep],
            )
            .await?;
            t.execute("SELECT pg_notify($1, '')", &[&LOG_CHANNEL]).await?;
            t.commit().await
        })
        .await
    }

    /// Holds all functions' rows together to `budget` bytes, dropping the oldest.
    pub async fn trim_logs(&self, budget: usize) -> Result<u64, Unavailable> {
        let budget = budget as i64;
        self.with(async |c| {
            c.execute(
                "DELETE FROM invocation_logs WHERE id <= ( \
                   SELECT id FROM ( \
                     SELECT id, sum(octet_length(text) + $2) OVER (ORDER BY id DESC) AS total \
                     FROM invocation_logs) t \
                   WHERE total > $1 ORDER BY id DESC LIMIT 1)",
                &[&budget, &ROW_OVERHEAD],
            )
            .await
        })
        .await
    }

    /// `function`'s rows after id `after` (oldest first, at most `limit`), or
    /// without `after` its newest `limit`; and the id to continue after.
    pub async fn log_page(
        &self,
        function: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<LogEntry>, u64), Unavailable> {
        let limit = limit as i64;
        self.with(async |c| {
            // Read first: a row of this function committed after it has a
            // larger id, so "nothing found, continue after the newest id of
            // all" misses nothing.
            let newest: i64 = c.query_one("SELECT coalesce(max(id), 0) FROM invocation_logs", &[]).await?.get(0);
            let rows = match after {
                Some(after) => {
                    let after = after as i64;
                    c.query(
                        &format!(
                            "SELECT {COLUMNS} FROM invocation_logs WHERE function = $1 AND id > $2 ORDER BY id LIMIT $3"
                        ),
                        &[&function, &after, &limit],
                    )
                    .await?
                }
                None => {
                    let mut rows = c
                        .query(
                            &format!(
                                "SELECT {COLUMNS} FROM invocation_logs WHERE function = $1 ORDER BY id DESC LIMIT $2"
                            ),
                            &[&function, &limit],
                        )
                        .await?;
                    rows.reverse();
                    rows
                }
            };
            let entries: Vec<LogEntry> = rows
                .iter()
                .map(|r| LogEntry {
                    seq: r.get::<_, i64>(0) as u64,
                    node: Arc::from(r.get::<_, &str>(1)),
                    request_id: r.get(2),
                    at_unix: r.get::<_, i64>(3).max(0) as u64,
                    version: r.get::<_, i64>(4).max(0) as u64,
                    outcome: r.get(5),
                    status: u16::try_from(r.get::<_, i32>(6)).unwrap_or(0),
                    duration_ms: r.get(7),
                    text: r.get(8),
                    truncated: r.get(9),
                    cost: 0,
                })
                .collect();
            let cursor = entries.last().map_or(newest.max(0) as u64, |e| e.seq);
            Ok((entries, cursor.max(after.unwrap_or(0))))
        })
        .await
    }
}
