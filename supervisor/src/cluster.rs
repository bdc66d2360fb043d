//! Following the shared store: keeps this node's copy of every function in step
//! with PostgreSQL, so a deploy, rollback or delete made on any node is served
//! here too.
//!
//! Every node `LISTEN`s on the store's channel; a change names a function, and
//! the node brings that function's copy in line with the database: installs the
//! versions it lacks (checked against their sha256; a WASM module is compiled
//! here, never shipped; a script's top level is not run again, it was checked
//! on the node that took the upload), points at the database's current version,
//! drops versions the database no longer has, and moves the pool. In-flight
//! invocations finish on the version they started on, as on a single node.
//!
//! A node catches up in full when it starts (before it serves), whenever its
//! listening connection comes back, and every [`RESYNC_EVERY`] as a safety net;
//! it writes its heartbeat row every [`HEARTBEAT_EVERY`]. The same connection
//! hears other nodes' log batches land, for readers long-polling the logs.
//! With the database gone it keeps serving what it has and retries.
//!
//! Owns that loop and the install of another node's version. It must never
//! serve an invocation from the database, nor hold a function's deploy lock
//! across anything but that function's catch-up.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web;
use polyfaas_protocol::Language;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tracing::{info, warn};

use crate::deploy::{blocking, vet_artifacts};
use crate::server::AppState;
use crate::store::local::LocalStore;
use crate::store::shared::db::logs::LOG_CHANNEL;
use crate::store::shared::db::{CHANNEL, Db, Unavailable};
use crate::store::{BundleStore, FunctionName, VersionRecord};

/// How often a node catches up in full even without a notification.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How often a node writes its heartbeat row.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Wait before listening again after the database went away.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// This function could not be brought in line; the others still are.
    #[error("{0}")]
    Failed(String),
}

pub struct Follower {
    state: web::Data<AppState>,
    local: Arc<LocalStore>,
    db: Arc<Db>,
    started_unix: u64,
}

impl Follower {
    pub fn new(state: web::Data<AppState>, local: Arc<LocalStore>, db: Arc<Db>) -> Self {
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { state, local, db, started_unix }
    }

    /// This node's row in the nodes table (`GET /admin/nodes`).
    async fn heartbeat(&self) -> Result<(), Unavailable> {
        self.db.heartbeat(&self.state.main_addr.to_string(), self.started_unix).await
    }

    /// Brings every function in line: those in the database and those held here.
    pub async fn resync_all(&self) -> Result<(), Unavailable> {
        let mut names: BTreeSet<String> = self.db.names().await?.into_iter().collect();
        names.extend(self.local.list().iter().map(|d| d.name.to_string()));
        for name in names {
            match self.resync(&name).await {
                Ok(()) => {}
                Err(SyncError::Unavailable(e)) => return Err(e),
                Err(SyncError::Failed(e)) => warn!(function = %name, "cannot follow the shared store: {e}"),
            }
        }
        Ok(())
    }

    /// Listens for changes until the server stops, reconnecting as needed.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.listen().await {
                warn!("not following the shared store, retrying in {RETRY_AFTER:?}: {e}");
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    async fn listen(&self) -> Result<(), Unavailable> {
        let (client, mut connection) = Db::connect(self.db.config()).await?;
        let (tx, mut changed) = mpsc::unbounded_channel::<String>();
        let logs = self.state.cluster_logs.clone();
        // The connection is driven here; its notifications become names (or
        // wake the logs' waiting readers).
        let driver = tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == LOG_CHANNEL => {
                        if let Some(logs) = &logs {
                            logs.notified();
                        }
                    }
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!("shared store listening connection lost: {e}");
                        break;
                    }
                }
            }
        });
        let _stop_driver = AbortOnDrop(driver);
        client.batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {LOG_CHANNEL}")).await?;
        // Whatever changed while no one listened.
        self.resync_all().await?;
        self.heartbeat().await?;
        info!("following the shared store");
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        tick.tick().await;
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                name = changed.recv() => {
                    let Some(name) = name else {
                        return Err(Unavailable("the listening connection closed".into()));
                    };
                    match self.resync(&name).await {
                        Ok(()) => {}
                        Err(SyncError::Unavailable(e)) => return Err(e),
                        Err(SyncError::Failed(e)) => warn!(function = %name, "cannot follow the shared store: {e}"),
                    }
                }
                _ = tick.tick() => self.resync_all().await?,
                _ = heartbeat.tick() => self.heartbeat().await?,
            }
        }
    }

    /// Brings one function's copy in line with the database.
    async fn resync(&self, name: &str) -> Result<(), SyncError> {
        let Ok(name) = FunctionName::parse(name) else {
            return Err(SyncError::Failed(format!(
                "{:?} is not a function name",
                name.chars().take(80).collect::<String>()
            )));
        };
        let _one_at_a_time = self.state.deploys.lock(&name).await;
        let Some(remote) = self.db.function(name.as_str()).await? else {
            let (local, target) = (self.local.clone(), name.clone());
            if blocking(move || local.delete(&target)).await.map_err(failed)?.map_err(failed)? {
                self.state.pool.serve_version(&name, None);
                self.state.telemetry.forget(name.as_str());
                self.state.logs.forget(name.as_str());
                info!(function = %name, "deleted (following the shared store)");
            }
            return Ok(());
        };
        let held: Vec<u64> = self
            .local
            .versions(&name)
            .map(|(_, records)| records.iter().map(|r| r.version).collect())
            .unwrap_or_default();
        // The current version first, so it serves soonest; then newest first.
        let mut missing: Vec<&VersionRecord> = remote.versions.iter().filter(|r| !held.contains(&r.version)).collect();
        missing.sort_by_key(|r| (r.version != remote.current, Reverse(r.version)));
        for record in missing {
            self.install(&name, record.clone(), record.version == remote.current).await?;
        }
        if self.local.current(&name).map(|d| d.version) != Some(remote.current) {
            let (local, target, to) = (self.local.clone(), name.clone(), remote.current);
            blocking(move || local.rollback(&target, Some(to))).await.map_err(failed)?.map_err(failed)?;
            info!(function = %name, version = remote.current, "current version switched (following the shared store)");
        }
        let gone: Vec<u64> = held.into_iter().filter(|v| !remote.versions.iter().any(|r| r.version == *v)).collect();
        if !gone.is_empty() {
            let (local, target) = (self.local.clone(), name.clone());
            blocking(move || local.remove_versions(&target, &gone)).await.map_err(failed)?.map_err(failed)?;
        }
        self.state.pool.serve_version(&name, Some(remote.current));
        Ok(())
    }

    /// Unpacks another node's version here: its bytes checked against the
    /// recorded sha256, a WASM module compiled by a fresh worker.
    async fn install(&self, name: &FunctionName, record: VersionRecord, current: bool) -> Result<(), SyncError> {
        let bytes =
            self.db.bundle(name.as_str(), record.version).await?.ok_or_else(|| {
                SyncError::Failed(format!("version {} vanished while being installed", record.version))
            })?;
        if hex::encode(Sha256::digest(&bytes)) != record.sha256 {
            return Err(SyncError::Failed(format!(
                "version {}'s bundle does not match its recorded sha256: not installed",
                record.version
            )));
        }
        let (local, target) = (self.local.clone(), name.clone());
        let staged = blocking(move || local.stage(&target, &bytes)).await.map_err(failed)?.map_err(failed)?;
        let artifacts = if staged.language == Language::Wasm {
            let prepared = self
                .state
                .pool
                .prepare(staged.language, &staged.dir, staged.entrypoint.clone(), Vec::new())
                .await
                .map_err(|e| SyncError::Failed(format!("compiling version {}: {e}", record.version)));
            match prepared.and_then(|a| vet_artifacts(&staged, a).map_err(failed)) {
                Ok(artifacts) => artifacts,
                Err(e) => {
                    let local = self.local.clone();
                    let _ = blocking(move || local.discard(staged)).await;
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        let (local, version) = (self.local.clone(), record.version);
        blocking(move || {
            let mut staged = staged;
            for artifact in &artifacts {
                if let Err(e) = local.add_artifact(&mut staged, &artifact.file_name, &artifact.bytes) {
                    local.discard(staged);
                    return Err(e);
                }
            }
            local.commit_as(staged, Some(record), current)
        })
        .await
        .map_err(failed)?
        .map_err(failed)?;
        info!(function = %name, version, "installed (following the shared store)");
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> SyncError {
    SyncError::Failed(e.to_string())
}

/// Stops the listening connection's driver when listening ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
