//! Wires the store, the pool and the HTTP server together, and runs until SIGTERM
//! or SIGINT: then stops accepting, lets in-flight requests finish (up to the
//! drain timeout), stops the workers and returns. It also returns, with
//! [`systemd::CannotServe`], when no runtime can start a worker at all
//! ([`systemd::Lifecycle`] decides that, and what systemd hears meanwhile).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::{Context, Result};
use polyfaas_protocol::Language;
use tracing::{info, warn};

use crate::config::Config;
use crate::conn_watch;
use crate::pool::{Pool, PoolConfig};
use crate::store::local::LocalStore;
use crate::store::shared::SharedStore;
use crate::store::shared::db::Db;
use crate::store::{BundleStore, FunctionLimits, LimitsPolicy, Quotas, UnpackLimits};
use crate::systemd;
use crate::telemetry::Telemetry;

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<dyn BundleStore>,
    pub pool: Pool,
    pub telemetry: Arc<Telemetry>,
    /// Invocations' kept logs, under one byte budget.
    pub logs: Arc<crate::logs::Logs>,
    /// In a cluster, where the logs route reads every node's logs from.
    pub cluster_logs: Option<Arc<crate::logs::cluster::ClusterLogs>>,
    pub config: Config,
    /// Who may manage functions and use `/admin`.
    pub auth: crate::auth::Guard,
    /// Deploys, rollbacks and deletes of one function run one at a time, so its
    /// version numbers and the pool's switch to a new version stay in order;
    /// different functions never wait for each other.
    pub deploys: crate::deploy_locks::NameLocks,
    /// Uploads being received or deployed; past `max-concurrent-uploads`, 429.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Where uploads are spooled while they arrive.
    pub spool_dir: std::path::PathBuf,
    /// The shared store's database, when there is one (`GET /admin/nodes`).
    pub cluster: Option<Arc<Db>>,
    /// The main listener's bound address (the console's curl lines point at it).
    pub main_addr: std::net::SocketAddr,
    /// The admin listener's bound address, when management has its own
    /// (`crate::listeners` splits the routes by it).
    pub admin_addr: Option<std::net::SocketAddr>,
}

pub(crate) async fn run(mut config: Config) -> Result<()> {
    systemd::notify("STATUS=starting");
    // Absolute and canonical from here on, so every path the store hands out (and
    // logs) is too, whatever the working directory.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    config.data_dir = config
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving the data dir {}", config.data_dir.display()))?;
    let open_files = raise_open_file_limit();
    // Worker watchers (exit, kill, retire) and process starts get their own
    // runtime, so a busy HTTP thread never delays noticing a dead worker. The
    // exchanges themselves run on the request's thread.
    let pool_runtime = PoolRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pool")
            .enable_all()
            .build()
            .context("starting the pool runtime")?,
    ));

    let (store, shared) = open_store(&config).await?;
    let spool_dir = crate::api::upload::reset_spool(&config.data_dir)
        .with_context(|| format!("preparing the upload spool in {}", config.data_dir.display()))?;
    let sandbox = crate::sandbox::worker_sandbox(&config)?;
    let telemetry = Arc::new(Telemetry::new());
    let (languages, ruby_module) = runtimes(&config).await;
    let idle_memory =
        config.pool_memory_mb.map_or_else(crate::pool::default_idle_memory, |mb| mb.saturating_mul(1 << 20));
    let max_processes = process_cap(open_files, crate::cgroup::tasks_limit(), config.workers);
    info!(
        "idle workers may keep {} MiB; at most {} invocations run at once, {max_processes} worker processes live",
        idle_memory >> 20,
        config.workers
    );
    let pool = Pool::new(
        PoolConfig {
            worker_bin: config.worker_bin.clone(),
            start_timeout: config.worker_start_timeout,
            max_running: config.workers,
            max_processes,
            idle_memory,
            warm_blank: config.warm_workers,
            max_queue: config.max_queue,
            queue_timeout: config.queue_timeout,
            kill_grace: Duration::from_millis(500),
            max_output_bytes: config.max_output_bytes,
            languages: languages.clone(),
            sandbox,
            ruby_module,
            refusals: store.refusals(),
        },
        telemetry.clone(),
        pool_runtime.handle(),
    );
    for f in store.list() {
        pool.serve_version(&f.name, Some(f.version));
    }
    pool.warm_up();
    if config.admin_token.is_none() {
        warn!(
            "no admin token configured (POLYFAAS_ADMIN_TOKEN, admin-token-file or the admin-token credential): \
             anyone who reaches {} may deploy, delete and read logs of functions, and /admin routes answer 403",
            config.admin_listen.unwrap_or(config.listen)
        );
    }

    let listener = std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = match config.admin_listen {
        Some(admin) => {
            Some(std::net::TcpListener::bind(admin).with_context(|| format!("binding the admin listener {admin}"))?)
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(std::net::TcpListener::local_addr).transpose()?;
    let drain = config.drain_timeout;
    let lifecycle = systemd::Lifecycle {
        pool: pool.clone(),
        store: store.clone(),
        telemetry: telemetry.clone(),
        // With no blank workers kept, no runtime is expected to have a worker.
        languages: if config.warm_workers == 0 { Vec::new() } else { languages },
        addr,
    };
    let connections = connection_cap(config.max_connections, open_files, max_processes);
    if connections < config.max_connections {
        warn!(
            "accepting at most {connections} connections, not max-connections {}: the open-file limit is {open_files}",
            config.max_connections
        );
    }
    // actix counts connections per HTTP thread; the threads are set here so the
    // per-thread caps add up to at most `connections`.
    let threads = http_threads(config.http_threads, connections);
    let header_timeout = config.header_timeout;
    // Between requests a connection gets the keep-alive wait and then the next
    // request's headers; writing an answer gets as long as reading a body.
    let watch = conn_watch::Limits { idle: KEEP_ALIVE + header_timeout, write: config.body_timeout };
    let auth = crate::auth::Guard::new(config.admin_token.clone());
    let node = format!("{}/{addr}", hostname());
    let keep = if shared.is_some() { crate::logs::Keep::AndShip } else { crate::logs::Keep::Here };
    let logs = Arc::new(crate::logs::Logs::new(config.max_log_bytes, &node, keep));
    let cluster_logs = shared.as_ref().map(|(_, db)| Arc::new(crate::logs::cluster::ClusterLogs::new(db.clone())));
    let state = web::Data::new(AppState {
        store,
        pool: pool.clone(),
        telemetry,
        logs: logs.clone(),
        cluster_logs: cluster_logs.clone(),
        uploads: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_uploads)),
        config,
        auth,
        deploys: crate::deploy_locks::NameLocks::default(),
        spool_dir,
        cluster: shared.as_ref().map(|(_, db)| db.clone()),
        main_addr: addr,
        admin_addr,
    });
    if let Some((local, db)) = shared {
        db.set_node(node);
        // A node serves only once it holds what the cluster serves.
        let follower = crate::cluster::Follower::new(state.clone(), local, db);
        follower.resync_all().await.context("catching up with the shared store")?;
        tokio::spawn(follower.run());
        if let Some(cluster_logs) = cluster_logs {
            tokio::spawn(cluster_logs.ship(logs, state.config.max_log_bytes));
        }
    }
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(crate::listeners::middleware))
            .wrap(actix_web::middleware::from_fn(crate::api::request_id::middleware))
            .wrap(actix_web::middleware::from_fn(conn_watch::middleware))
            // Routes are tried in order, and one with a `{segment}` costs a regex
            // match: invocations first, then the management API (the original
            // project's invocation route is there), the operator's routes last.
            .configure(crate::api::invoke_routes)
            .configure(crate::api::routes)
            .configure(crate::admin::routes)
            .configure(crate::console::routes)
    })
    .workers(threads)
    .max_connections((connections / threads).max(1))
    // The first request's headers must arrive within this, else 408 and closed;
    // the watch bounds every later wait (actix does not).
    .client_request_timeout(header_timeout)
    .keep_alive(KEEP_ALIVE)
    .on_connect(conn_watch::on_connect(watch))
    .client_disconnect_timeout(Duration::from_secs(1))
    .listen(listener)?;
    let server = match admin_listener {
        Some(admin) => server.listen(admin)?,
        None => server,
    };
    let server = server.disable_signals().shutdown_timeout(drain.as_secs().max(1)).run();
    let handle = server.handle();
    if let Some(admin) = admin_addr {
        info!("management, /admin and /metrics only on the admin listener http://{admin}");
    }
    info!("polyfaas ready: listening on http://{addr}");

    // READY=1 once the pool is warm, then watchdog pings and the status line;
    // ends early only when no runtime can start a worker at all.
    let mut lifecycle = tokio::spawn(lifecycle.run());
    let quiet = lifecycle.abort_handle();
    let stopper = handle.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop signal received: draining in-flight requests (up to {drain:?})");
        // No status refresh may overwrite "draining", and systemd stops watching
        // the watchdog once the service is stopping.
        quiet.abort();
        systemd::notify("STOPPING=1\nSTATUS=draining");
        stopper.stop(true).await;
    });

    tokio::pin!(server);
    let verdict = tokio::select! {
        served = server.as_mut() => served.map_err(anyhow::Error::from),
        Ok(cannot) = &mut lifecycle => {
            systemd::notify("STOPPING=1");
            tokio::spawn(async move { handle.stop(false).await });
            let _ = server.await;
            Err(cannot.into())
        }
    };
    info!("stopping workers");
    pool.shutdown(Duration::from_secs(5)).await;
    drop(pool_runtime);
    info!("stopped");
    verdict
}

/// How long an idle keep-alive connection is kept (actix's default, made explicit
/// because the connection watch counts on it).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Open files this process may hold: the soft `RLIMIT_NOFILE`, raised first to
/// the hard limit. A unit's `LimitNOFILE=1024` (often 1024:524288) would otherwise
/// leave a few hundred connections between the server and "Too many open files".
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // The kernel refuses more than fs.nr_open (1,048,576 by default), even under
    // an infinite hard limit.
    const MOST: u64 = 1 << 20;
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard.min(MOST) => match setrlimit(Resource::RLIMIT_NOFILE, hard.min(MOST), hard) {
            Ok(()) => hard.min(MOST),
            Err(e) => {
                warn!("cannot raise the open-file limit from {soft} to {}: {e}", hard.min(MOST));
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            warn!("cannot read the open-file limit: {e}; assuming 1024");
            1024
        }
    }
}

/// The most client connections to accept at once: `wanted`, or less if the
/// open-file limit leaves no room for them beside what the server itself holds
/// (a socket and a pipe per worker, the store's files, the runtimes' epoll and
/// event fds). Each connection takes two descriptors: its socket, and the
/// connection watch's duplicate. Connections past the cap wait in the listen
/// backlog, unaccepted, so they cost no descriptor.
/// Most worker processes alive at once. Each holds up to 4 of the server's
/// descriptors (its socket, stderr pipe, process handle, a spare): a quarter of
/// the open-file limit goes to workers. Each is also up to `TASKS_PER_WORKER`
/// tasks of the cgroup's `pids.max` (`TasksMax=`, a container's pid limit),
/// less what the server's own threads need. At most `MAX_PROCESSES`, and never
/// fewer than the running invocations need.
fn process_cap(open_files: u64, tasks: Option<u64>, running: usize) -> usize {
    let by_files = open_files / 4 / 4;
    let by_tasks = tasks.map_or(u64::MAX, |t| t.saturating_sub(SERVER_TASKS) / TASKS_PER_WORKER);
    let room = usize::try_from(by_files.min(by_tasks)).unwrap_or(usize::MAX);
    room.min(MAX_PROCESSES).max(running + 8)
}

/// A worker's threads (its main thread, the deadline clock, the runtimes'
/// helpers: 4 measured for WASM), with room to spare.
const TASKS_PER_WORKER: u64 = 6;
/// The server's own threads (HTTP, the pool's runtime, blocking helpers).
const SERVER_TASKS: u64 = 64;

/// Worker processes kept at most, however many descriptors there are: each
/// is also a process (and a network namespace) for the kernel to keep.
const MAX_PROCESSES: usize = 4096;

/// HTTP threads to run: `wanted`, but never more than there are connections to
/// share among them, so that each thread's cap (at least one connection) still
/// adds up to at most `connections`.
fn http_threads(wanted: usize, connections: usize) -> usize {
    wanted.min(connections).max(1)
}

fn connection_cap(wanted: usize, open_files: u64, processes: usize) -> usize {
    let reserved = 128 + 4 * processes as u64;
    let room = usize::try_from(open_files.saturating_sub(reserved) / 2).unwrap_or(usize::MAX);
    wanted.min(room).max(16)
}

/// The pool's runtime, shut down without blocking when dropped: it is dropped on
/// the server's own async thread (also on a startup error), where a blocking
/// shutdown would panic. By then workers are stopped or the process is exiting.
struct PoolRuntime(Option<tokio::runtime::Runtime>);

impl PoolRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for PoolRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        warn!("cannot listen for SIGTERM/SIGINT; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// While the Ruby runtime compiles, each `EXTEND_TIMEOUT_USEC` asks systemd for
/// this much more start time (re-sent every third of it)...
const COMPILE_EXTEND: Duration = Duration::from_secs(30);
/// ...up to this long; a compile that takes longer is stopped and Ruby is off.
const COMPILE_LIMIT: Duration = Duration::from_secs(600);

/// The languages this server offers, and the compiled Ruby runtime. Ruby is
/// offered when its runtime file is installed; it is compiled once into the
/// runtime cache (about ten seconds, the first time only).
async fn runtimes(config: &Config) -> (Vec<Language>, Option<std::path::PathBuf>) {
    let languages = vec![Language::Wasm, Language::Js, Language::Python];
    if !config.ruby_wasm.is_file() {
        warn!(path = %config.ruby_wasm.display(), "Ruby runtime not installed (scripts/setup installs it): Ruby bundles will be refused");
        return (languages, None);
    }
    // The first start compiles it (tens of seconds of CPU on a slow machine):
    // systemd hears that the start is still going, bounded by COMPILE_LIMIT.
    systemd::notify("STATUS=loading the Ruby runtime (compiled on the first start only)");
    let compile = tokio::process::Command::new(&config.worker_bin)
        .arg("--precompile")
        .arg(&config.ruby_wasm)
        .arg("--cache-dir")
        .arg(&config.runtime_cache)
        .env_clear()
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output();
    tokio::pin!(compile);
    let deadline = tokio::time::Instant::now() + COMPILE_LIMIT;
    let compiled = loop {
        systemd::extend_start_timeout(COMPILE_EXTEND);
        tokio::select! {
            out = &mut compile => break out,
            () = tokio::time::sleep(COMPILE_EXTEND / 3) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(std::io::Error::other(format!("still compiling after {COMPILE_LIMIT:?}; stopped")));
        }
    };
    match compiled {
        Ok(out) if out.status.success() => {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            info!(module = %path, "Ruby runtime ready");
            return ([languages, vec![Language::Ruby]].concat(), Some(path.into()));
        }
        Ok(out) => warn!(status = %out.status, "compiling the Ruby runtime failed: Ruby bundles will be refused"),
        Err(e) => warn!("cannot run the worker to compile the Ruby runtime: {e}: Ruby bundles will be refused"),
    }
    (languages, None)
}

/// The store this node serves from, and with a shared store (`--store
/// postgres://…`) its local copy and database, for [`crate::cluster::Follower`].
type Shared = Option<(Arc<LocalStore>, Arc<Db>)>;

async fn open_store(config: &Config) -> Result<(Arc<dyn BundleStore>, Shared)> {
    let policy = LimitsPolicy {
        default: FunctionLimits {
            timeout_ms: config.timeout_ms,
            memory_mb: config.memory_mb,
            concurrency: config.concurrency,
        },
        max: FunctionLimits {
            timeout_ms: config.max_timeout_ms,
            memory_mb: config.max_memory_mb,
            concurrency: config.max_concurrency,
        },
    };
    let unpack = UnpackLimits { max_entries: config.max_bundle_entries, max_unpacked_bytes: config.max_unpacked_bytes };
    let quotas = Quotas { max_functions: config.max_functions, max_store_bytes: config.max_store_bytes };
    let local = LocalStore::open(&config.data_dir, policy, unpack, quotas)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let Some(url) = &config.store else {
        return Ok((Arc::new(local), None));
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!("store must be a postgres:// URL (or unset, for the data dir alone)");
    }
    let db = Arc::new(Db::new(url).context("reading the store URL")?);
    db.migrate().await.context("opening the shared store")?;
    info!("functions are kept in the shared store (PostgreSQL); the data dir holds this node's copy");
    let local = Arc::new(local);
    let store = SharedStore::new(local.clone(), db.clone(), tokio::runtime::Handle::current());
    Ok((Arc::new(store), Some((local, db))))
}

/// This machine's name: with the address, a node's name in the shared store.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_a_quarter_of_the_descriptors_and_never_fewer_than_they_run() {
        assert_eq!(process_cap(65_536, None, 8), MAX_PROCESSES);
        assert_eq!(process_cap(20_000, None, 8), 1250);
        assert_eq!(process_cap(1024, None, 8), 64);
        assert_eq!(process_cap(64, None, 8), 16);
        // A container with a pid limit of 1,024 tasks: (1024 - 64) / 6.
        assert_eq!(process_cap(65_536, Some(1024), 8), 160);
        assert_eq!(process_cap(65_536, Some(10), 8), 16);
    }

    #[test]
    fn http_threads_never_outnumber_the_connections_they_share() {
        assert_eq!(http_threads(1, 10_000), 1);
        assert_eq!(http_threads(8, 10_000), 8);
        // 64 threads for 16 connections: per-thread caps of one would add up to 64.
        assert_eq!(http_threads(64, 16), 16);
        assert_eq!(http_threads(0, 16), 1);
    }

    #[test]
    fn the_connection_cap_leaves_room_for_the_server_itself() {
        assert_eq!(connection_cap(10_000, 1 << 20, 8), 10_000);
        assert_eq!(connection_cap(10_000, 1024, 8), (1024 - 128 - 32) / 2);
        assert_eq!(connection_cap(400, 1024, 8), 400);
        assert_eq!(connection_cap(500, 100, 8), 16);
    }
}
