//! Who may manage functions and operate the server: the bearer-token check of the
//! management routes (deploy, rollback, delete, logs, list, describe) and of
//! `/admin`, and what happens to those who fail it.
//!
//! Owns: the token comparison (constant time), the per-address table of recent
//! failures (bounded), the backoff (`429` with `Retry-After`, even for the right
//! token, while an address is backing off) and the rate-limited log lines about
//! failures. It must never log a presented token, never let one address's table
//! entry grow with its traffic, and never guard an invocation route.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use tracing::warn;

/// Why a request may not use a management or admin route. The api maps each to
/// its status and code (`401`, `403`, `429` with `Retry-After`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no admin token is configured; admin routes are off")]
    AdminDisabled,
    #[error("too many failed authentications from this address; retry in {seconds} s")]
    Throttled { seconds: u32 },
    #[error("wrong token")]
    WrongToken,
    #[error("this route needs Authorization: Bearer <token>")]
    NoToken,
}

impl AuthError {
    /// For the failure log line.
    fn label(&self) -> &'static str {
        match self {
            Self::AdminDisabled => "admin_disabled",
            Self::Throttled { .. } => "auth_throttled",
            Self::WrongToken => "forbidden",
            Self::NoToken => "unauthorized",
        }
    }
}

/// Failures an address may have within [`WINDOW`] before it must back off.
const FREE_FAILURES: u32 = 5;
/// How long failures are remembered.
const WINDOW: Duration = Duration::from_secs(60);
/// The first backoff; it doubles with each further failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Most addresses remembered at once: the table's memory is bounded whatever
/// the number of clients.
const MAX_ADDRESSES: usize = 4096;
/// At most one failure line per address per period, and at most
/// [`LINES_PER_PERIOD`] of them for all addresses together.
const LOG_PERIOD: Duration = Duration::from_secs(10);
const LINES_PER_PERIOD: u32 = 20;

/// What a route needs from its caller.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Deploy, rollback, delete, logs, list, describe: open when no token is set.
    Manage,
    /// `/admin`: off (403 `admin_disabled`) when no token is set.
    Admin,
}

pub struct Guard {
    token: Option<String>,
    failures: Mutex<Failures>,
}

impl Guard {
    pub fn new(token: Option<String>) -> Self {
        Self { token, failures: Mutex::new(Failures::default()) }
    }

    /// `Ok` when the request may use a route of `scope`: 401 without a bearer
    /// token, 403 with a wrong one, 429 while its address backs off.
    pub fn check(&self, req: &HttpRequest, scope: Scope) -> Result<(), AuthError> {
        let Some(expected) = self.token.as_deref() else {
            return match scope {
                Scope::Manage => Ok(()),
                Scope::Admin => Err(AuthError::AdminDisabled),
            };
        };
        let address = client_key(req);
        let now = Instant::now();
        if let Some(wait) = self.lock().backing_off(address, now) {
            let seconds = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
            return Err(AuthError::Throttled { seconds });
        }
        let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(bearer);
        let error = match given {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
                self.lock().succeeded(address);
                return Ok(());
            }
            Some(_) => AuthError::WrongToken,
            None => AuthError::NoToken,
        };
        let report = self.lock().failed(address, now);
        if let Some(Report { failures, suppressed }) = report {
            warn!(
                client = %address,
                route = %req.path(),
                failures_in_window = failures,
                suppressed_lines = suppressed,
                "authentication failed ({})", error.label()
            );
        }
        Err(error)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Bearer <token>`, scheme in any case.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The connection's address (not `X-Forwarded-For`, which any client can write).
/// IPv6 clients are keyed by their /64: one host usually has the whole prefix.
fn client_key(req: &HttpRequest) -> IpAddr {
    match req.peer_addr().map(|a| a.ip()) {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        Some(v4) => v4,
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

/// Compares without an early exit, so the time taken does not tell an attacker
/// how many leading bytes were right. (The length is not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

/// A log line to write: failures of the address in the window, and failure
/// lines left out (for any address) since the last line written.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    failures: u32,
    suppressed: u64,
}

#[derive(Default)]
struct Failures {
    by_address: HashMap<IpAddr, Record>,
    period_start: Option<Instant>,
    lines_in_period: u32,
    suppressed: u64,
}

#[derive(Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
    last_line: Option<Instant>,
    last_seen: Instant,
}

impl Failures {
    /// How long `address` must still wait, if it is backing off.
    fn backing_off(&mut self, address: IpAddr, now: Instant) -> Option<Duration> {
        let record = self.by_address.get(&address)?;
        let wait = record.blocked_until?.checked_duration_since(now).filter(|d| !d.is_zero());
        if wait.is_some() {
            self.suppressed += 1;
        }
        wait
    }

    fn succeeded(&mut self, address: IpAddr) {
        self.by_address.remove(&address);
    }

    /// Counts a failure; returns the line to log, if one is due.
    fn failed(&mut self, address: IpAddr, now: Instant) -> Option<Report> {
        if !self.by_address.contains_key(&address) && self.by_address.len() >= MAX_ADDRESSES {
            self.make_room(now);
        }
        let record = self.by_address.entry(address).or_insert(Record {
            window_start: now,
            failures: 0,
            blocked_until: None,
            last_line: None,
            last_seen: now,
        });
        if now.duration_since(record.window_start) > WINDOW {
            record.window_start = now;
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_seen = now;
        if record.failures >= FREE_FAILURES {
            let doublings = (record.failures - FREE_FAILURES).min(16);
            let backoff = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
            record.blocked_until = Some(now + backoff);
        }
        let failures = record.failures;
        let address_due = record.last_line.is_none_or(|at| now.duration_since(at) >= LOG_PERIOD);
        if self.period_start.is_none_or(|at| now.duration_since(at) >= LOG_PERIOD) {
            self.period_start = Some(now);
            self.lines_in_period = 0;
        }
        if address_due && self.lines_in_period < LINES_PER_PERIOD {
            self.lines_in_period += 1;
            if let Some(record) = self.by_address.get_mut(&address) {
                record.last_line = Some(now);
            }
            Some(Report { failures, suppressed: std::mem::take(&mut self.suppressed) })
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Forgets records that no longer matter, else the least recently seen one.
    fn make_room(&mut self, now: Instant) {
        self.by_address.retain(|_, r| {
            now.duration_since(r.window_start) <= WINDOW || r.blocked_until.is_some_and(|until| until > now)
        });
        if self.by_address.len() >= MAX_ADDRESSES
            && let Some(oldest) = self.by_address.iter().min_by_key(|(_, r)| r.last_seen).map(|(a, _)| *a)
        {
            self.by_address.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn parses_bearer() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn backs_off_after_a_few_failures_and_a_success_clears() {
        let mut f = Failures::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            f.failed(ip(1), now);
            assert_eq!(f.backing_off(ip(1), now), None);
        }
        f.failed(ip(1), now);
        assert_eq!(f.backing_off(ip(1), now), Some(FIRST_BACKOFF));
        assert_eq!(f.backing_off(ip(2), now), None, "other addresses are not affected");
        assert_eq!(f.backing_off(ip(1), now + FIRST_BACKOFF), None, "the backoff ends");
        f.failed(ip(1), now + FIRST_BACKOFF);
        assert_eq!(f.backing_off(ip(1), now + FIRST_BACKOFF), Some(FIRST_BACKOFF * 2), "and doubles");
        f.succeeded(ip(1));
        assert_eq!(f.backing_off(ip(1), now + FIRST_BACKOFF), None);
    }

    #[test]
    fn log_lines_are_rate_limited_per_address_and_overall() {
        let mut f = Failures::default();
        let now = Instant::now();
        assert_eq!(f.failed(ip(1), now), Some(Report { failures: 1, suppressed: 0 }));
        assert_eq!(f.failed(ip(1), now), None);
        assert_eq!(f.failed(ip(1), now), None);
        assert_eq!(f.failed(ip(1), now + LOG_PERIOD), Some(Report { failures: 4, suppressed: 2 }));
        let later = now + LOG_PERIOD * 2;
        let lines = (0..1000).filter(|n| f.failed(ip(100 + n), later).is_some()).count();
        assert_eq!(lines, LINES_PER_PERIOD as usize);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut f = Failures::default();
        let now = Instant::now();
        for n in 0..(MAX_ADDRESSES as u32 * 3) {
            f.failed(ip(n), now);
        }
        assert!(f.by_address.len() <= MAX_ADDRESSES);
    }
}
