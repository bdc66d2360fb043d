//! Wires the store, the pool and the HTTP server together, and runs until SIGTERM
//! or SIGINT: then stops accepting, lets in-flight requests finish, stops workers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::{Context, Result};
use polyfaas_protocol::Language;
use tracing::info;

use crate::config::Config;
use crate::pool::{Pool, PoolConfig};
use crate::store::local::LocalStore;
use crate::store::{BundleStore, FunctionLimits, LimitsPolicy, UnpackLimits};

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<dyn BundleStore>,
    pub pool: Pool,
    pub config: Config,
    /// Uploads are staged and committed one at a time: version numbers and the
    /// pool's switch to a new version stay in order.
    pub deploys: tokio::sync::Mutex<()>,
}

pub async fn run(config: Config) -> Result<()> {
    // Worker drivers get their own runtime, so a busy HTTP thread never delays
    // noticing a dead worker or a missed deadline.
    let pool_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pool")
        .enable_all()
        .build()
        .context("starting the pool runtime")?;

    let store = open_store(&config)?;
    let pool = Pool::new(
        PoolConfig {
            worker_bin: config.worker_bin.clone(),
            max_workers: config.workers,
            warm_blank: config.warm_workers,
            max_queue: config.max_queue,
            queue_timeout: config.queue_timeout,
            kill_grace: Duration::from_millis(500),
            max_output_bytes: config.max_output_bytes,
            languages: vec![Language::Wasm],
        },
        pool_runtime.handle().clone(),
    );
    for f in store.list() {
        pool.serve_version(&f.name, Some(f.version));
    }
    pool.warm_up();

    let listener = std::net::TcpListener::bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(AppState { store, pool: pool.clone(), config, deploys: tokio::sync::Mutex::new(()) });
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(crate::api::routes))
        .listen(listener)?
        .shutdown_timeout(30)
        .run();
    info!("polyfaas ready: listening on http://{addr}");
    server.await?;

    info!("stopping workers");
    pool.shutdown(Duration::from_secs(5)).await;
    // Workers are already gone; nothing on this runtime needs waiting for.
    pool_runtime.shutdown_background();
    info!("stopped");
    Ok(())
}

fn open_store(config: &Config) -> Result<Arc<dyn BundleStore>> {
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
    let store = LocalStore::open(&config.data_dir, policy, unpack)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}
