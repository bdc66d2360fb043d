//! What systemd hears from the server: the notify protocol (`sd_notify`, one
//! datagram per message to the socket named by `NOTIFY_SOCKET`; without that
//! variable every call is a no-op), and the loop that sends `READY=1`, then
//! `WATCHDOG=1` pings and a current `STATUS=` line for as long as the server runs.
//!
//! It owns the startup verdict: once the port accepts, the pool has
//! [`WARM_UP_LIMIT`] to start a worker of every runtime. All of them: `READY=1`.
//! Some: `READY=1` with a `degraded` status naming the missing runtimes (the
//! others serve, and the pool keeps retrying). None: the server cannot serve
//! anything and will not by restarting, so it stops with [`CannotServe`] (exit
//! code [`EXIT_CANNOT_SERVE`], which the unit does not restart).
//! It must never withhold a watchdog ping because the pool is short of workers:
//! pings say the process is alive and its pool lock answers, nothing more.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyfaas_protocol::Language;
use tracing::{error, warn};

use crate::pool::Pool;
use crate::store::BundleStore;
use crate::telemetry::Telemetry;

/// How long the pool may take to start its first worker of every runtime.
pub const WARM_UP_LIMIT: Duration = Duration::from_secs(15);
/// The status line is refreshed at least this often.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// `EX_CONFIG`: no runtime could start a worker. The unit lists it in
/// `RestartPreventExitStatus=`, so the service ends up failed instead of
/// restarting into the same wall.
pub const EXIT_CANNOT_SERVE: i32 = 78;

#[derive(Debug, thiserror::Error)]
#[error(
    "no worker of any runtime ({languages}) could be started within {limit:?}; the worker errors above say why \
     (a missing or wrong worker binary, or a sandbox layer this kernel refuses)"
)]
pub struct CannotServe {
    languages: String,
    limit: Duration,
}

/// Sends `state` (e.g. `READY=1\nSTATUS=serving`) to systemd, if it is listening.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: '@' stands for the leading NUL.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        warn!("cannot notify systemd ({state:?}): {e}");
    }
}

/// Asks systemd for `by` more time to start, from now (it never shortens).
pub fn extend_start_timeout(by: Duration) {
    notify(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog is
/// on and meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// What the status line is made of.
pub struct Lifecycle {
    pub pool: Pool,
    pub store: Arc<dyn BundleStore>,
    pub telemetry: Arc<Telemetry>,
    /// The runtimes that should each have a worker (none when none is kept warm).
    pub languages: Vec<Language>,
    pub addr: std::net::SocketAddr,
}

impl Lifecycle {
    /// Waits for the pool to warm, tells systemd the verdict, then pings the
    /// watchdog and refreshes the status line until the process ends. Returns
    /// only with [`CannotServe`].
    pub async fn run(self) -> CannotServe {
        let warm = self.pool.wait_ready(WARM_UP_LIMIT).await;
        let missing = self.missing_languages();
        if !warm && missing.len() == self.languages.len() && !self.languages.is_empty() {
            let err = CannotServe { languages: names(&missing), limit: WARM_UP_LIMIT };
            error!("{err}");
            notify(&format!("STATUS=failed: no worker could be started ({})", names(&missing)));
            return err;
        }
        if !missing.is_empty() {
            warn!(
                "degraded: no {} worker could be started within {WARM_UP_LIMIT:?}; serving the other runtimes \
                 and retrying",
                names(&missing)
            );
        }
        let mut status = self.status_line(&missing, 0.0);
        notify(&format!("READY=1\nSTATUS={status}"));
        let watchdog = watchdog_interval();
        let every = watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
        let (mut last_count, mut last_at) = (self.telemetry.invocations_total(), Instant::now());
        loop {
            tokio::time::sleep(every).await;
            // Reading the pool takes its lock: a deadlocked pool stops this loop,
            // the pings with it, and systemd restarts the service.
            let missing = self.missing_languages();
            let count = self.telemetry.invocations_total();
            let rate = count.saturating_sub(last_count) as f64 / last_at.elapsed().as_secs_f64().max(0.001);
            (last_count, last_at) = (count, Instant::now());
            let now = self.status_line(&missing, rate);
            let mut message = String::new();
            if watchdog.is_some() {
                message.push_str("WATCHDOG=1\n");
            }
            if now != status {
                message.push_str(&format!("STATUS={now}"));
                status = now;
            }
            if !message.is_empty() {
                notify(message.trim_end());
            }
        }
    }

    fn missing_languages(&self) -> Vec<Language> {
        self.languages.iter().copied().filter(|l| !self.pool.has_worker_of(*l)).collect()
    }

    /// E.g. `serving 3 functions on 127.0.0.1:8080; 5 workers (1 busy); 2.4 invocations/s`.
    fn status_line(&self, missing: &[Language], rate: f64) -> String {
        let functions = self.store.list().len();
        let (_, by_state, _) = self.pool.gauges();
        let workers: usize = by_state.iter().map(|(_, n)| n).sum();
        let busy = by_state.iter().find(|(s, _)| *s == "busy").map_or(0, |(_, n)| *n);
        let mut line = format!(
            "serving {functions} function{} on {}; {workers} worker{} ({busy} busy); {rate:.1} invocations/s",
            plural(functions),
            self.addr,
            plural(workers)
        );
        if !missing.is_empty() {
            line.push_str(&format!("; degraded: no {} worker", names(missing)));
        }
        line
    }
}

fn names(languages: &[Language]) -> String {
    languages.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
