//! An upload, start to finish: stage the zip in the store, have a fresh worker
//! compile and check it, store what it made, commit, and move the pool to the new
//! version. Any failure discards the staged copy; the current version keeps serving.
//!
//! The preparing worker is believed only as far as its answer can be checked: a
//! script's dry run ran user code (which can write forged frames on the worker's
//! socket), so its `Prepared` must carry no file at all; a wasm compile runs no
//! user code, and its one file must bear a precompiled module's name. The store
//! then writes it only under that name, never over a bundle file, and hashes it.
//!
//! A script's dry-run (its top level, run once in `Prepare`) has a deadline
//! derived from the function's `timeoutMs`, so a bundle whose top level sleeps
//! is refused in seconds rather than holding its deploy for minutes.
//!
//! Owns the deploy sequence and its errors ([`DeployError`]). It must never know
//! HTTP: it takes only what it needs (the store, the pool, the per-name locks,
//! one config value) and the api maps its errors to statuses and codes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use polyfaas_protocol::{Artifact, Language};

use crate::deploy_locks::NameLocks;
use crate::pool::{Pool, PoolError, PrepareError};
use crate::store::{BundleStore, Deployed, FunctionName, Staged, StoreError};

/// Why an upload was not deployed. Nothing of it was stored; the current
/// version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The store refused the bundle or could not write it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bundle names a language this server has no runtime for.
    #[error("language {0:?} is not available on this server")]
    Unsupported(&'static str),
    /// The code does not load, its top level took too long, or its dry run
    /// forged an answer: the message is for the uploader.
    #[error("{0}")]
    InvalidHandler(String),
    /// No worker could be had to prepare the bundle.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The preparing worker answered what no legitimate worker sends.
    #[error("the compiling worker answered with {0}")]
    WorkerAnswer(&'static str),
    /// The spooled upload could not be read back.
    #[error("cannot read the spooled upload back: {0}")]
    Spool(std::io::Error),
    #[error(transparent)]
    Task(#[from] TaskFailed),
}

/// A store task off the async threads panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("store task failed: {0}")]
pub struct TaskFailed(#[from] tokio::task::JoinError);

/// What a deploy needs of the server, and nothing more.
pub struct Deployer<'a> {
    pub store: &'a Arc<dyn BundleStore>,
    pub pool: &'a Pool,
    /// Deploys, rollbacks and deletes of one name run one at a time.
    pub locks: &'a NameLocks,
    /// The server's default `timeoutMs`, for a bundle that sets none.
    pub default_timeout_ms: u64,
}

impl Deployer<'_> {
    /// Deploys the zip at `zip` (removed when it is dropped, once read) as the
    /// new current version of `name`, then keeps only the newest `keep`
    /// versions on disk.
    pub async fn deploy<Z>(&self, name: FunctionName, zip: Z, keep: usize) -> Result<Arc<Deployed>, DeployError>
    where
        Z: AsRef<Path> + Send + 'static,
    {
        let _one_at_a_time = self.locks.lock(&name).await;
        let store = self.store.clone();
        let staged = blocking(move || -> Result<Staged, DeployError> {
            // The store unpacks from memory: the zip is read back only now, once the
            // upload is complete and holds one of the few upload slots.
            let bytes = std::fs::read(zip.as_ref()).map_err(DeployError::Spool)?;
            drop(zip);
            Ok(store.stage(&name, &bytes)?)
        })
        .await??;
        let staged = self.check(staged).await?;
        let store = self.store.clone();
        let deployed = blocking(move || store.commit(staged)).await??;
        self.pool.serve_version(&deployed.name, Some(deployed.version));
        tracing::info!(function = %deployed.name, version = deployed.version, "deployed");
        let (store, name) = (self.store.clone(), deployed.name.clone());
        match blocking(move || store.prune(&name, keep)).await? {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(function = %deployed.name, ?removed, "old versions pruned")
            }
            Ok(_) => {}
            // The new version is committed and serving; a failed prune only leaves files.
            Err(e) => tracing::warn!(function = %deployed.name, "cannot prune old versions: {e}"),
        }
        Ok(deployed)
    }

    /// Stores `bytes` as version `version` of `name` (an import from an archive),
    /// checked as any upload is; current if `make_current` or the function is
    /// new. The caller moves the pool once the function's versions are in.
    pub async fn import(
        &self,
        name: FunctionName,
        bytes: Vec<u8>,
        version: u64,
        created_unix: u64,
        make_current: bool,
    ) -> Result<Arc<Deployed>, DeployError> {
        let _one_at_a_time = self.locks.lock(&name).await;
        let store = self.store.clone();
        let staged = blocking(move || store.stage(&name, &bytes)).await??;
        let staged = self.check(staged).await?;
        let store = self.store.clone();
        Ok(blocking(move || store.import(staged, version, created_unix, make_current)).await??)
    }

    /// Has a fresh worker check the staged bundle and adds what it made (a
    /// precompiled module). On any failure the staged copy is discarded.
    async fn check(&self, mut staged: Staged) -> Result<Staged, DeployError> {
        let artifacts = match self.prepare(&staged).await.and_then(|a| vet_artifacts(&staged, a)) {
            Ok(artifacts) => artifacts,
            Err(e) => {
                let store = self.store.clone();
                blocking(move || store.discard(staged)).await?;
                return Err(e);
            }
        };
        let store = self.store.clone();
        Ok(blocking(move || -> Result<Staged, StoreError> {
            for artifact in &artifacts {
                if let Err(e) = store.add_artifact(&mut staged, &artifact.file_name, &artifact.bytes) {
                    store.discard(staged);
                    return Err(e);
                }
            }
            Ok(staged)
        })
        .await??)
    }

    /// Checks the staged bundle in a worker; returns what the worker made of it.
    async fn prepare(&self, staged: &Staged) -> Result<Vec<Artifact>, DeployError> {
        if !self.pool.supports(staged.language) {
            return Err(DeployError::Unsupported(staged.language.as_str()));
        }
        let prepared = self.pool.prepare(staged.language, &staged.dir, staged.entrypoint.clone(), staged.env.clone());
        let prepared = match self.dry_run_deadline(staged).await {
            // Dropping the preparation kills its worker (the pool spawns them kill-on-drop).
            Some(deadline) => tokio::time::timeout(deadline, prepared).await.map_err(|_| {
                DeployError::InvalidHandler(format!(
                    "the top level of {} did not finish within {} ms (the function's timeoutMs, at most {} s, plus \
                     {} s to start the runtime): a bundle must load quickly; do slow work in the handler",
                    staged.entrypoint,
                    deadline.as_millis(),
                    MAX_DRY_RUN.as_secs(),
                    DRY_RUN_START.as_secs()
                ))
            })?,
            None => prepared.await,
        };
        prepared.map_err(|e| match e {
            PrepareError::Rejected(message) => DeployError::InvalidHandler(message),
            PrepareError::Pool(e) => e.into(),
        })
    }

    /// How long the dry-run of `staged` may take: the function's `timeoutMs` (the
    /// server's default if it sets none), at most [`MAX_DRY_RUN`], plus
    /// [`DRY_RUN_START`]. WASM runs none of its code at upload, only a compile, which
    /// keeps the pool's own generous bound (`None`).
    async fn dry_run_deadline(&self, staged: &Staged) -> Option<Duration> {
        if matches!(staged.language, Language::Wasm) {
            return None;
        }
        // The store has checked metadata.json (and its timeoutMs range) already.
        let text = tokio::fs::read(staged.dir.join("metadata.json")).await.ok();
        let value: Option<serde_json::Value> = text.and_then(|t| serde_json::from_slice(&t).ok());
        let timeout_ms = value.and_then(|v| v["timeoutMs"].as_u64()).unwrap_or(self.default_timeout_ms);
        Some(Duration::from_millis(timeout_ms).min(MAX_DRY_RUN) + DRY_RUN_START)
    }
}

/// The most a script's top level may take at upload, whatever its `timeoutMs`.
const MAX_DRY_RUN: Duration = Duration::from_secs(60);
/// Added to it for starting the runtime and loading the bundle's files.
const DRY_RUN_START: Duration = Duration::from_secs(5);

/// Keeps from a `Prepared` answer only what its worker could legitimately make:
/// nothing for a script (its dry run ran user code, which may have forged the
/// answer: the upload is refused and logged), one precompiled module for wasm.
pub(crate) fn vet_artifacts(staged: &Staged, artifacts: Vec<Artifact>) -> Result<Vec<Artifact>, DeployError> {
    let names = || artifacts.iter().map(|a| a.file_name.chars().take(80).collect::<String>()).collect::<Vec<_>>();
    match staged.language {
        Language::Wasm => {
            let [artifact] = artifacts.as_slice() else {
                tracing::error!(function = %staged.name, files = ?names(), "a wasm compile sent other than one file");
                return Err(DeployError::WorkerAnswer("an unexpected set of files"));
            };
            if !crate::store::integrity::is_artifact_name(&artifact.file_name) {
                tracing::error!(function = %staged.name, files = ?names(), "a wasm compile sent an unexpected file name");
                return Err(DeployError::WorkerAnswer("an unexpected file name"));
            }
            Ok(artifacts)
        }
        _ if artifacts.is_empty() => Ok(artifacts),
        language => {
            tracing::warn!(function = %staged.name, language = language.as_str(), files = ?names(),
                "refusing an upload: the dry run of a script answered with files (a forged Prepared frame?)");
            Err(DeployError::InvalidHandler(format!(
                "the dry run of this {} bundle answered with files; a script's dry run makes none, so the answer \
                 was forged by the bundle's code",
                language.as_str()
            )))
        }
    }
}

/// Runs store I/O off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, TaskFailed> {
    Ok(tokio::task::spawn_blocking(f).await?)
}
