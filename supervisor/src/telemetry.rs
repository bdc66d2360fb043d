//! What the server counts: Prometheus metrics for `/metrics`, and the per-function
//! figures behind `/admin/functions`, and the last 15 minutes in 5-second buckets
//! behind `/admin/series` (the console's charts; `crate::series`). Recording is a
//! few atomic adds and one short lock; nothing here does I/O. A deleted function's figures and metric series
//! go with it (invocation logs are kept in `crate::logs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::series::{Columns, Series};

/// How many recent latencies per function the percentiles are computed from.
const LATENCY_WINDOW: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    function: String,
    outcome: String,
}

fn labels(function: &str, outcome: &str) -> InvocationLabels {
    InvocationLabels { function: function.into(), outcome: outcome.into() }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabel {
    language: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

pub struct Telemetry {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    latency: Family<FunctionLabel, Histogram>,
    queue_depth: Gauge,
    workers: Family<StateLabel, Gauge>,
    idle_memory: Gauge,
    restarts: Family<ReasonLabel, Counter>,
    cold_starts: Family<LanguageLabel, Counter>,
    uploads: Family<OutcomeLabel, Counter>,
    upload_bytes: Counter,
    functions: Mutex<Figures>,
}

/// Everything behind the one lock an invocation takes.
#[derive(Default)]
struct Figures {
    by_name: HashMap<String, FunctionStats>,
    /// All functions together.
    total: Series,
}

struct FunctionStats {
    /// This function's `ok` invocation counter and latency histogram, looked up
    /// in their families once, when the function is first seen (a lookup by
    /// labels allocates their strings).
    ok: Counter,
    latency: Histogram,
    invocations: u64,
    errors: BTreeMap<String, u64>,
    recent_ms: VecDeque<f64>,
    last_error: Option<LastError>,
    /// Every `outcome` label this function's series were created with.
    outcomes: BTreeSet<String>,
    recent: Series,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at_unix: u64,
}

/// One function's figures, as `/admin/functions` shows them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionReport {
    pub name: String,
    pub invocations: u64,
    pub errors: BTreeMap<String, u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub last_error: Option<LastError>,
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "polyfaas_invocations",
            "Invocations by function and outcome (ok or the error code)",
            invocations.clone(),
        );
        let latency = Family::<FunctionLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "polyfaas_invocation_duration_seconds",
            "Invocation latency as the server saw it",
            latency.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("polyfaas_queue_depth", "Invocations waiting for a worker", queue_depth.clone());
        let workers = Family::<StateLabel, Gauge>::default();
        registry.register("polyfaas_workers", "Worker processes by state", workers.clone());
        let idle_memory = Gauge::default();
        registry.register(
            "polyfaas_idle_worker_memory_bytes",
            "Private memory of idle workers, all together (kept under --pool-memory-mb)",
            idle_memory.clone(),
        );
        let restarts = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "polyfaas_worker_restarts",
            "Workers ended other than by retirement, by reason",
            restarts.clone(),
        );
        let cold_starts = Family::<LanguageLabel, Counter>::default();
        registry.register(
            "polyfaas_cold_starts",
            "Invocations that first loaded their function into a worker",
            cold_starts.clone(),
        );
        let uploads = Family::<OutcomeLabel, Counter>::default();
        registry.register("polyfaas_uploads", "Uploads by outcome (ok or the error code)", uploads.clone());
        let upload_bytes = Counter::default();
        registry.register("polyfaas_upload_bytes", "Bytes of bundles uploaded", upload_bytes.clone());
        Self {
            registry,
            invocations,
            latency,
            queue_depth,
            workers,
            idle_memory,
            restarts,
            cold_starts,
            uploads,
            upload_bytes,
            functions: Mutex::new(Figures::default()),
        }
    }

    /// Records one finished invocation. `outcome` is `ok` or an error code.
    pub fn invocation(&self, function: &str, outcome: &str, elapsed: Duration, error: Option<&str>) {
        let now = unix_now();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let mut figures = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        figures.total.record(now, ms, error.is_some());
        if !figures.by_name.contains_key(function) {
            let stats = FunctionStats {
                ok: self.invocations.get_or_create_owned(&labels(function, "ok")),
                latency: self.latency.get_or_create_owned(&FunctionLabel { function: function.into() }),
                invocations: 0,
                errors: BTreeMap::new(),
                recent_ms: VecDeque::new(),
                last_error: None,
                // Its `ok` series exists from now on, so `forget` removes it.
                outcomes: BTreeSet::from(["ok".to_string()]),
                recent: Series::default(),
            };
            figures.by_name.insert(function.to_string(), stats);
        }
        let Some(stats) = figures.by_name.get_mut(function) else { return };
        if outcome == "ok" {
            stats.ok.inc();
        } else {
            self.invocations.get_or_create(&labels(function, outcome)).inc();
        }
        stats.latency.observe(elapsed.as_secs_f64());
        stats.recent.record(now, ms, error.is_some());
        stats.invocations += 1;
        if !stats.outcomes.contains(outcome) {
            stats.outcomes.insert(outcome.to_string());
        }
        if stats.recent_ms.len() == LATENCY_WINDOW {
            stats.recent_ms.pop_front();
        }
        stats.recent_ms.push_back(ms);
        if let Some(message) = error {
            *stats.errors.entry(outcome.to_string()).or_default() += 1;
            stats.last_error = Some(LastError { code: outcome.into(), message: message.into(), at_unix: now });
        }
    }

    /// Invocations of the functions that still exist, all outcomes (for the
    /// status line's rate).
    pub fn invocations_total(&self) -> u64 {
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).by_name.values().map(|s| s.invocations).sum()
    }

    pub fn cold_start(&self, language: &str) {
        self.cold_starts.get_or_create(&LanguageLabel { language: language.into() }).inc();
    }

    pub fn worker_restart(&self, reason: &str) {
        self.restarts.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    pub fn upload(&self, outcome: &str, bytes: usize) {
        self.uploads.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        self.upload_bytes.inc_by(bytes as u64);
    }

    /// Forgets a deleted function's figures and removes its metric series: a
    /// server that deploys and deletes many functions must not keep a series per
    /// name forever. (A scraper sees the series end, as when a target goes away.)
    pub fn forget(&self, function: &str) {
        let stats = self.functions.lock().unwrap_or_else(|p| p.into_inner()).by_name.remove(function);
        for outcome in stats.map(|s| s.outcomes).unwrap_or_default() {
            self.invocations.remove(&InvocationLabels { function: function.into(), outcome });
        }
        self.latency.remove(&FunctionLabel { function: function.into() });
    }

    /// The Prometheus text exposition, with the point-in-time gauges set first.
    pub fn encode(&self, queue_depth: usize, workers_by_state: &[(&str, usize)], idle_memory: u64) -> String {
        self.queue_depth.set(queue_depth as i64);
        self.idle_memory.set(i64::try_from(idle_memory).unwrap_or(i64::MAX));
        for (state, n) in workers_by_state {
            self.workers.get_or_create(&StateLabel { state: (*state).into() }).set(*n as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn functions(&self) -> Vec<FunctionReport> {
        let figures = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<FunctionReport> = figures
            .by_name
            .iter()
            .map(|(name, s)| {
                let mut sorted: Vec<f64> = s.recent_ms.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                FunctionReport {
                    name: name.clone(),
                    invocations: s.invocations,
                    errors: s.errors.clone(),
                    p50_ms: percentile(&sorted, 0.50),
                    p99_ms: percentile(&sorted, 0.99),
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The server's recent buckets, and those of `only` (or of every function
    /// invoked in the window), for `/admin/series`.
    pub fn series(&self, only: Option<&str>) -> SeriesReport {
        let now = unix_now();
        let figures = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        let functions = figures
            .by_name
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, s)| (name.clone(), s.recent.columns(now)))
            .filter(|(_, c)| !c.t.is_empty())
            .collect();
        SeriesReport {
            now_unix: now,
            bucket_seconds: crate::series::BUCKET_SECONDS,
            window_seconds: crate::series::WINDOW_SECONDS,
            total: figures.total.columns(now),
            functions,
        }
    }
}

/// `/admin/series`: the last 15 minutes, per function and for the server.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesReport {
    pub now_unix: u64,
    pub bucket_seconds: u64,
    pub window_seconds: u64,
    pub total: Columns,
    pub functions: BTreeMap<String, Columns>,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((sorted[rank - 1] * 1000.0).round() / 1000.0)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
    }

    #[test]
    fn counts_invocations_and_errors() {
        let t = Telemetry::new();
        t.invocation("f", "ok", Duration::from_millis(2), None);
        t.invocation("f", "timeout", Duration::from_millis(9), Some("too slow"));
        let report = t.functions();
        assert_eq!(report[0].invocations, 2);
        assert_eq!(report[0].errors.get("timeout"), Some(&1));
        let text = t.encode(0, &[("idle", 1)], 0);
        assert!(text.contains(r#"polyfaas_invocations_total{function="f",outcome="ok"} 1"#), "{text}");
    }

    #[test]
    fn forgetting_a_function_removes_its_series() {
        let t = Telemetry::new();
        t.invocation("gone", "ok", Duration::from_millis(2), None);
        t.invocation("gone", "timeout", Duration::from_millis(9), Some("too slow"));
        t.invocation("kept", "ok", Duration::from_millis(2), None);
        t.forget("gone");
        let text = t.encode(0, &[], 0);
        assert!(!text.contains("\"gone\""), "{text}");
        assert!(text.contains("\"kept\""), "{text}");
        assert!(t.functions().iter().all(|f| f.name != "gone"));
        let series = t.series(None);
        assert!(series.functions.contains_key("kept") && !series.functions.contains_key("gone"));
        assert_eq!(series.total.invocations.iter().sum::<u32>(), 3);
    }
}
