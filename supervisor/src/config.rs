//! Configuration: command-line flags, `POLYFAAS_*` environment variables and an
//! optional TOML file, in that order of precedence, then the built-in defaults.
//!
//! One struct, [`Settings`], is all three sources: clap reads flags and env vars
//! into it, serde reads the file into it (and merges the two), and
//! [`Settings::resolve`] fills the gaps with defaults into [`Config`]. Adding a
//! key is a field in `Settings` (its flag, env var, file key and help) and its
//! decided value in `Config` (with the default, in `resolve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use polyfaas_protocol::sandbox::MAX_FUNCTION_MEMORY_MB;
use serde::{Deserialize, Serialize};

/// Every setting of `polyfaas serve`. Unset fields fall through to the next source.
#[derive(Debug, Default, Clone, clap::Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port and logs it [default: 127.0.0.1:8080]
    #[arg(long, env = "POLYFAAS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for bundles and state [default: ./data]
    #[arg(long, env = "POLYFAAS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most invocations running at once, all functions together, each in its own worker process [default: 8]
    #[arg(long, env = "POLYFAAS_WORKERS")]
    pub workers: Option<usize>,
    /// TOML file with any of these settings (kebab-case keys); flags and env vars win
    #[arg(long, env = "POLYFAAS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Invocation timeout for functions that set no `timeoutMs`, in ms [default: 10000]
    #[arg(long, env = "POLYFAAS_TIMEOUT_MS")]
    pub timeout_ms: Option<u64>,
    /// Largest `timeoutMs` a function may set [default: 300000]
    #[arg(long, env = "POLYFAAS_MAX_TIMEOUT_MS")]
    pub max_timeout_ms: Option<u64>,
    /// Memory limit for functions that set no `memoryMb`, in MiB [default: 128]
    #[arg(long, env = "POLYFAAS_MEMORY_MB")]
    pub memory_mb: Option<u64>,
    /// Largest `memoryMb` a function may set [default: 4096]
    #[arg(long, env = "POLYFAAS_MAX_MEMORY_MB")]
    pub max_memory_mb: Option<u64>,
    /// Concurrency for functions that set no `concurrency` [default: 16]
    #[arg(long, env = "POLYFAAS_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// Largest `concurrency` a function may set [default: 1024]
    #[arg(long, env = "POLYFAAS_MAX_CONCURRENCY")]
    pub max_concurrency: Option<u32>,
    /// Largest invocation request body, in bytes [default: 6291456 (6 MiB)]
    #[arg(long, env = "POLYFAAS_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Largest response body, and largest captured logs, per invocation [default: 6291456]
    #[arg(long, env = "POLYFAAS_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: Option<u64>,
    /// Bytes of invocation logs kept for `GET .../logs`, all functions together; the oldest go first [default: 67108864 (64 MiB)]
    #[arg(long, env = "POLYFAAS_MAX_LOG_BYTES")]
    pub max_log_bytes: Option<usize>,
    /// Largest uploaded bundle (zip), in bytes [default: 67108864 (64 MiB)]
    #[arg(long, env = "POLYFAAS_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<usize>,
    /// Largest unpacked bundle, in bytes [default: 268435456 (256 MiB)]
    #[arg(long, env = "POLYFAAS_MAX_UNPACKED_BYTES")]
    pub max_unpacked_bytes: Option<u64>,
    /// Most files and folders in one bundle [default: 10000]
    #[arg(long, env = "POLYFAAS_MAX_BUNDLE_ENTRIES")]
    pub max_bundle_entries: Option<usize>,
    /// Most invocations waiting for a worker; past it, 429 [default: 1024]
    #[arg(long, env = "POLYFAAS_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Longest an invocation waits for a worker before 429, in ms [default: 30000]
    #[arg(long, env = "POLYFAAS_QUEUE_TIMEOUT_MS")]
    pub queue_timeout_ms: Option<u64>,
    /// Versions kept per function after each upload (older ones are deleted; ?keep=N per upload) [default: 10]
    #[arg(long, env = "POLYFAAS_KEEP_VERSIONS")]
    pub keep_versions: Option<usize>,
    /// Most versions kept per function: `keep-versions` and `?keep=N` are capped to it [default: 100]
    #[arg(long, env = "POLYFAAS_MAX_VERSIONS")]
    pub max_versions: Option<usize>,
    /// Most functions stored; a new one past it is refused with 429 too_many_functions [default: 1000]
    #[arg(long, env = "POLYFAAS_MAX_FUNCTIONS")]
    pub max_functions: Option<usize>,
    /// Most bytes of bundles and compiled modules stored in all; past it uploads get 413 quota_exceeded [default: 10 GiB]
    #[arg(long, env = "POLYFAAS_MAX_STORE_BYTES")]
    pub max_store_bytes: Option<u64>,
    /// Blank workers kept ready per language, for fast cold starts [default: 1]
    #[arg(long, env = "POLYFAAS_WARM_WORKERS")]
    pub warm_workers: Option<usize>,
    /// Memory that idle warm workers may keep, all together, in MiB; past it the least recently used are
    /// stopped (their next call is a cold start) [default: a quarter of the machine's or cgroup's memory]
    #[arg(long, env = "POLYFAAS_POOL_MEMORY_MB")]
    pub pool_memory_mb: Option<u64>,
    /// How long a new worker process may take to start and report ready before it is killed, in ms
    /// [default: 10000]
    #[arg(long, env = "POLYFAAS_WORKER_START_TIMEOUT_MS")]
    pub worker_start_timeout_ms: Option<u64>,
    /// How much nicer than the server workers run, 0 to 19: the server's own work (reading requests,
    /// handing them out, sending answers) goes before any handler's when both want a core [default: 5]
    #[arg(long, env = "POLYFAAS_WORKER_NICE")]
    pub worker_nice: Option<u8>,
    /// Path of the worker binary [default: polyfaas-worker beside polyfaas]
    #[arg(long, env = "POLYFAAS_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// CRuby's WASI build; without the file, Ruby bundles are refused [default: runtimes/ruby+stdlib.wasm]
    #[arg(long, env = "POLYFAAS_RUBY_WASM")]
    pub ruby_wasm: Option<PathBuf>,
    /// Where compiled runtimes (Ruby) are cached [default: <data-dir>/runtimes]
    #[arg(long, env = "POLYFAAS_RUNTIME_CACHE")]
    pub runtime_cache: Option<PathBuf>,
    /// User that workers run as when the server runs as root [default: nobody]
    #[arg(long, env = "POLYFAAS_WORKER_USER")]
    pub worker_user: Option<String>,
    /// Group that workers run as when the server runs as root [default: nogroup]
    #[arg(long, env = "POLYFAAS_WORKER_GROUP")]
    pub worker_group: Option<String>,
    /// Sandbox layers to switch off, for debugging (comma list: seccomp, landlock, rlimits, netns, drop-privileges, ...) [default: none]
    #[arg(long, env = "POLYFAAS_SANDBOX_DISABLE", value_delimiter = ',')]
    pub sandbox_disable: Option<Vec<String>>,
    /// Let workers serve when a sandbox layer cannot be applied (logged loudly) [default: false]
    #[arg(long, env = "POLYFAAS_SANDBOX_ALLOW_DEGRADED")]
    pub sandbox_allow_degraded: Option<bool>,
    /// Bearer token for the management routes (deploy, rollback, delete, logs, list, describe) and /admin; without
    /// one (or a token file) management is open to whoever reaches the server and /admin answers 403
    #[arg(long, env = "POLYFAAS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token (first line), instead of --admin-token; without either, the
    /// `admin-token` credential of systemd (`$CREDENTIALS_DIRECTORY/admin-token`) if there is one
    #[arg(long, env = "POLYFAAS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address with no admin token, so that anyone who reaches it may deploy,
    /// delete and read the logs of functions [default: false]
    #[arg(long, env = "POLYFAAS_INSECURE_OPEN_MANAGEMENT", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_open_management: Option<bool>,
    /// Log line format: `plain` (journald-friendly) or `json` [default: plain]
    #[arg(long, env = "POLYFAAS_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, in ms [default: 30000]
    #[arg(long, env = "POLYFAAS_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Most client connections open at once; more wait in the listen backlog. Lowered at
    /// startup to what the open-file limit leaves room for [default: 10000]
    #[arg(long, env = "POLYFAAS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Threads that serve HTTP (and exchange with workers) [default: half the CPUs, at least 1]
    #[arg(long, env = "POLYFAAS_HTTP_THREADS")]
    pub http_threads: Option<usize>,
    /// How long a new connection has to send its first request's headers, in ms; then 408 and closed [default: 5000]
    #[arg(long, env = "POLYFAAS_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// A second address for the management routes, `/admin` and `/metrics`; when set, the main listener serves
    /// only invocations, `/healthz` and `/readyz`, and answers 404 to the rest [default: none, all on --listen]
    #[arg(long, env = "POLYFAAS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Drop every `Set-Cookie` a function's response carries, so no function can set cookies on the server's
    /// origin [default: false]
    #[arg(long, env = "POLYFAAS_STRIP_SET_COOKIE", num_args = 0..=1, default_missing_value = "true")]
    pub strip_set_cookie: Option<bool>,
    /// Most uploads being received and deployed at once; past it, 429 with Retry-After [default: 4]
    #[arg(long, env = "POLYFAAS_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: Option<usize>,
    /// How long a client has to send a whole request body (uploads included; then 408), and to read a whole answer, in ms [default: 60000]
    #[arg(long, env = "POLYFAAS_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Where functions are kept: unset, the data dir alone; a `postgres://` URL, a PostgreSQL database shared by
    /// every node of a cluster (the data dir then holds this node's copy) [default: the data dir]
    #[arg(long, env = "POLYFAAS_STORE", hide_env_values = true)]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

/// The settings in force, every value decided.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub memory_mb: u64,
    pub max_memory_mb: u64,
    pub concurrency: u32,
    pub max_concurrency: u32,
    pub max_request_bytes: usize,
    pub max_output_bytes: u64,
    pub max_log_bytes: usize,
    pub max_upload_bytes: usize,
    pub max_unpacked_bytes: u64,
    pub max_bundle_entries: usize,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    pub warm_workers: usize,
    /// None: a share of the machine's memory, decided when the pool starts.
    pub pool_memory_mb: Option<u64>,
    pub keep_versions: usize,
    pub max_versions: usize,
    pub max_functions: usize,
    pub max_store_bytes: u64,
    pub worker_start_timeout: Duration,
    pub worker_nice: u8,
    pub worker_bin: PathBuf,
    pub ruby_wasm: PathBuf,
    pub runtime_cache: PathBuf,
    pub worker_user: String,
    pub worker_group: String,
    pub sandbox_disable: Vec<String>,
    pub sandbox_allow_degraded: bool,
    pub admin_token: Option<String>,
    pub insecure_open_management: bool,
    pub log_format: LogFormat,
    pub drain_timeout: Duration,
    pub max_connections: usize,
    pub http_threads: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub admin_listen: Option<SocketAddr>,
    pub strip_set_cookie: bool,
    pub max_concurrent_uploads: usize,
    pub store: Option<String>,
}

impl Settings {
    /// Reads the config file named by the flags or env (if any) and resolves.
    pub fn load(self) -> Result<Config> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        self.or(file)?.resolve()
    }

    /// Field by field: ours where set, else `fallback`'s. Through serde (the
    /// file's own keys), so a new setting needs no line here.
    fn or(self, fallback: Settings) -> Result<Settings> {
        let config = self.config.clone();
        let mut ours = serde_json::to_value(self).context("merging settings")?;
        let theirs = serde_json::to_value(fallback).context("merging settings")?;
        if let (Some(ours), Some(theirs)) = (ours.as_object_mut(), theirs.as_object()) {
            for (key, value) in theirs {
                if ours.get(key).is_none_or(serde_json::Value::is_null) {
                    ours.insert(key.clone(), value.clone());
                }
            }
        }
        let mut merged: Settings = serde_json::from_value(ours).context("merging settings")?;
        merged.config = config;
        Ok(merged)
    }

    fn resolve(self) -> Result<Config> {
        let worker_bin = match self.worker_bin {
            // Absolute: workers start in `/`.
            Some(p) => std::path::absolute(&p).with_context(|| format!("resolving --worker-bin {}", p.display()))?,
            None => std::env::current_exe().context("locating the polyfaas binary")?.with_file_name("polyfaas-worker"),
        };
        // Last: systemd's `LoadCredential=admin-token:...`, when run with one.
        let credential = std::env::var_os("CREDENTIALS_DIRECTORY").map(|d| PathBuf::from(d).join("admin-token"));
        let admin_token = match (self.admin_token, &self.admin_token_file, credential) {
            (Some(token), _, _) => Some(token),
            (None, Some(file), _) => Some(read_token(file)?),
            (None, None, Some(file)) if file.exists() => Some(read_token(&file)?),
            _ => None,
        }
        .filter(|t| !t.is_empty());
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let config = Config {
            ruby_wasm: self.ruby_wasm.unwrap_or_else(|| PathBuf::from("runtimes/ruby+stdlib.wasm")),
            // Absolute: the Ruby module's path in it is passed to workers, which
            // start in `/`.
            runtime_cache: std::path::absolute(self.runtime_cache.unwrap_or_else(|| data_dir.join("runtimes")))
                .context("resolving the runtime cache directory")?,
            worker_user: self.worker_user.unwrap_or_else(|| "nobody".into()),
            worker_group: self.worker_group.unwrap_or_else(|| "nogroup".into()),
            sandbox_disable: self.sandbox_disable.unwrap_or_default(),
            sandbox_allow_degraded: self.sandbox_allow_degraded.unwrap_or(false),
            listen: self.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            workers: self.workers.unwrap_or(8),
            timeout_ms: self.timeout_ms.unwrap_or(10_000),
            max_timeout_ms: self.max_timeout_ms.unwrap_or(300_000),
            memory_mb: self.memory_mb.unwrap_or(128),
            max_memory_mb: self.max_memory_mb.unwrap_or(MAX_FUNCTION_MEMORY_MB),
            concurrency: self.concurrency.unwrap_or(16),
            max_concurrency: self.max_concurrency.unwrap_or(1024),
            max_request_bytes: self.max_request_bytes.unwrap_or(6 << 20),
            max_output_bytes: self.max_output_bytes.unwrap_or(6 << 20),
            max_log_bytes: self.max_log_bytes.unwrap_or(64 << 20),
            max_upload_bytes: self.max_upload_bytes.unwrap_or(64 << 20),
            max_unpacked_bytes: self.max_unpacked_bytes.unwrap_or(256 << 20),
            max_bundle_entries: self.max_bundle_entries.unwrap_or(10_000),
            max_queue: self.max_queue.unwrap_or(1024),
            queue_timeout: Duration::from_millis(self.queue_timeout_ms.unwrap_or(30_000)),
            worker_start_timeout: Duration::from_millis(self.worker_start_timeout_ms.unwrap_or(10_000).max(1)),
            warm_workers: self.warm_workers.unwrap_or(1),
            worker_nice: self.worker_nice.unwrap_or(5),
            pool_memory_mb: self.pool_memory_mb,
            // The cap wins over the default it caps.
            keep_versions: self.keep_versions.unwrap_or(10).clamp(1, self.max_versions.unwrap_or(100).max(1)),
            max_versions: self.max_versions.unwrap_or(100).max(1),
            max_functions: self.max_functions.unwrap_or(1000),
            max_store_bytes: self.max_store_bytes.unwrap_or(10 << 30),
            worker_bin,
            admin_token,
            insecure_open_management: self.insecure_open_management.unwrap_or(false),
            log_format: self.log_format.unwrap_or(LogFormat::Plain),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms.unwrap_or(30_000)),
            max_connections: self.max_connections.unwrap_or(10_000),
            http_threads: self.http_threads.unwrap_or_else(default_http_threads),
            header_timeout: Duration::from_millis(self.header_timeout_ms.unwrap_or(5_000)),
            body_timeout: Duration::from_millis(self.body_timeout_ms.unwrap_or(60_000)),
            admin_listen: self.admin_listen,
            strip_set_cookie: self.strip_set_cookie.unwrap_or(false),
            max_concurrent_uploads: self.max_concurrent_uploads.unwrap_or(4),
            store: self.store.filter(|s| !s.is_empty()),
        };
        config.check()?;
        Ok(config)
    }
}

impl Config {
    fn check(&self) -> Result<()> {
        if self.workers == 0 {
            bail!("workers must be at least 1");
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.max_timeout_ms {
            bail!("timeout-ms must be between 1 and max-timeout-ms ({})", self.max_timeout_ms);
        }
        if self.memory_mb == 0 || self.memory_mb > self.max_memory_mb || self.max_memory_mb > MAX_FUNCTION_MEMORY_MB {
            bail!(
                "memory-mb must be between 1 and max-memory-mb, which is at most {MAX_FUNCTION_MEMORY_MB} (all of wasm32)"
            );
        }
        if self.concurrency == 0 || self.concurrency > self.max_concurrency {
            bail!("concurrency must be between 1 and max-concurrency ({})", self.max_concurrency);
        }
        if self.max_log_bytes < 1 << 20 {
            bail!("max-log-bytes must be at least 1048576 (1 MiB): one invocation keeps up to 64 KiB of logs");
        }
        // Management is served where the admin listener is, if there is one.
        let management = self.admin_listen.unwrap_or(self.listen);
        if self.admin_token.is_none() && !management.ip().is_loopback() && !self.insecure_open_management {
            bail!(
                "refusing to listen on {management} for management with no admin token: anyone who reaches it could \
                 deploy, delete and read the logs of functions. Set an admin token (--admin-token, \
                 --admin-token-file or POLYFAAS_ADMIN_TOKEN), listen on a loopback address (or move management \
                 to one with --admin-listen), or pass --insecure-open-management if the network in front of the \
                 server already decides who may reach it"
            );
        }
        if self.worker_nice > 19 {
            bail!("worker-nice must be between 0 and 19 (the nice values above the server's own)");
        }
        if self.max_concurrent_uploads == 0 {
            bail!("max-concurrent-uploads must be at least 1");
        }
        if self.max_connections == 0 {
            bail!("max-connections must be at least 1");
        }
        if self.http_threads == 0 {
            bail!("http-threads must be at least 1");
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            bail!("header-timeout-ms and body-timeout-ms must be at least 1");
        }
        // Request and response bodies travel in one protocol frame each.
        let frame_room = polyfaas_protocol::MAX_FRAME_LEN - (1 << 20);
        if self.max_request_bytes > frame_room || self.max_output_bytes as usize > frame_room / 2 {
            bail!("max-request-bytes and max-output-bytes must fit the worker protocol's frame cap");
        }
        Ok(())
    }
}

/// Half the CPUs, at least one. The supervisor is about a third of an
/// invocation's CPU (the worker most of the rest), and each HTTP thread beyond what
/// it needs costs wakeups: on 2 cores, one thread instead of two took the
/// supervisor's CPU per request down by a third or more, and its context switches
/// per request by half (README, Performance).
fn default_http_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The first line of a token file.
fn read_token(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading admin token file {}", file.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

fn read_file(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: Settings = toml::from_str("workers = 7\ntimeout-ms = 500\nlisten = \"127.0.0.1:9\"").expect("toml");
        let cli = Settings { workers: Some(2), ..Default::default() };
        let c = cli.or(file).expect("merge").resolve().expect("valid");
        assert_eq!(c.workers, 2);
        assert_eq!(c.timeout_ms, 500);
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(c.max_queue, 1024);
    }

    #[test]
    fn every_kind_of_value_survives_the_merge() {
        let file: Settings = toml::from_str(
            "store = \"postgres://db/x\"\nsandbox-disable = [\"netns\"]\nlog-format = \"json\"\n\
             admin-listen = \"127.0.0.1:9\"\nstrip-set-cookie = true\ndata-dir = \"/srv/f\"",
        )
        .expect("toml");
        let cli =
            Settings { log_format: Some(LogFormat::Plain), config: Some("/etc/f.toml".into()), ..Default::default() };
        let merged = cli.or(file).expect("merge");
        assert_eq!(merged.config.as_deref(), Some(Path::new("/etc/f.toml")), "the file's own path is the flag's");
        let c = merged.resolve().expect("valid");
        assert_eq!(c.store.as_deref(), Some("postgres://db/x"));
        assert_eq!(c.sandbox_disable, vec!["netns".to_string()]);
        assert_eq!(c.log_format, LogFormat::Plain, "the flag wins");
        assert_eq!(c.admin_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9))));
        assert!(c.strip_set_cookie);
        assert_eq!(c.data_dir, PathBuf::from("/srv/f"));
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Settings>("wokers = 3").is_err());
        assert!(Settings { workers: Some(0), ..Default::default() }.resolve().is_err());
        assert!(Settings { timeout_ms: Some(999_999), ..Default::default() }.resolve().is_err());
        assert!(Settings { max_connections: Some(0), ..Default::default() }.resolve().is_err());
        assert!(Settings { http_threads: Some(0), ..Default::default() }.resolve().is_err());
        assert!(Settings { header_timeout_ms: Some(0), ..Default::default() }.resolve().is_err());
        assert!(Settings { worker_nice: Some(20), ..Default::default() }.resolve().is_err());
        assert_eq!(
            Settings { worker_nice: Some(19), ..Default::default() }.resolve().map(|c| c.worker_nice).ok(),
            Some(19)
        );
    }

    #[test]
    fn connection_settings_come_from_the_file_too() {
        let file: Settings =
            toml::from_str("max-connections = 500\nheader-timeout-ms = 2000\nbody-timeout-ms = 9000\nhttp-threads = 3")
                .expect("toml");
        let c = Settings::default().or(file).expect("merge").resolve().expect("valid");
        assert_eq!(c.max_connections, 500);
        assert_eq!(c.http_threads, 3);
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.body_timeout, Duration::from_secs(9));
        let d = Settings::default().resolve().expect("defaults");
        assert_eq!(
            (d.max_connections, d.header_timeout, d.body_timeout.as_secs()),
            (10_000, Duration::from_secs(5), 60)
        );
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(d.http_threads, (cpus / 2).max(1), "half the CPUs, at least one");
    }

    #[test]
    fn open_management_off_loopback_needs_a_token_or_the_flag() {
        let anywhere = Some(SocketAddr::from(([0, 0, 0, 0], 0)));
        let err = Settings { listen: anywhere, ..Default::default() }.resolve().expect_err("refused");
        assert!(err.to_string().contains("--insecure-open-management"), "{err}");
        let token = Settings { listen: anywhere, admin_token: Some("t".into()), ..Default::default() };
        assert!(token.resolve().is_ok());
        let split = Settings {
            listen: anywhere,
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        };
        assert!(split.resolve().is_ok(), "management on loopback only");
        let wide_admin = Settings { admin_listen: anywhere, ..Default::default() };
        assert!(wide_admin.resolve().is_err());
        let flag = Settings { listen: anywhere, insecure_open_management: Some(true), ..Default::default() };
        assert!(flag.resolve().is_ok());
        assert!(
            Settings { listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))), ..Default::default() }.resolve().is_ok()
        );
    }
}
