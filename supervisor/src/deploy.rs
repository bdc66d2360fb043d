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

use std::time::Duration;

use std::sync::Arc;

use polyfaas_protocol::{Artifact, Language};

use crate::api::error::ApiError;
use crate::api::upload::Spooled;
use crate::pool::PrepareError;
use crate::server::AppState;
use crate::store::{Deployed, FunctionName, Staged, StoreError};

/// Deploys `zip` as the new current version of `name`, then keeps only the newest
/// `keep` versions on disk.
pub async fn deploy(
    state: &AppState,
    name: FunctionName,
    zip: Spooled,
    keep: usize,
) -> Result<Arc<Deployed>, ApiError> {
    let bytes = usize::try_from(zip.size).unwrap_or(usize::MAX);
    let result = deploy_inner(state, name, zip, keep).await;
    state.telemetry.upload(result.as_ref().map_or_else(|e| e.code, |_| "ok"), bytes);
    result
}

async fn deploy_inner(
    state: &AppState,
    name: FunctionName,
    zip: Spooled,
    keep: usize,
) -> Result<Arc<Deployed>, ApiError> {
    let _one_at_a_time = state.deploys.lock(&name).await;
    let store = state.store.clone();
    let mut staged = blocking(move || -> Result<Staged, ApiError> {
        // The store unpacks from memory: the zip is read back only now, once the
        // upload is complete and holds one of the few upload slots.
        let bytes = std::fs::read(&zip.path)
            .map_err(|e| ApiError::internal(format!("cannot read the spooled upload back: {e}")))?;
        drop(zip);
        Ok(store.stage(&name, &bytes)?)
    })
    .await??;
    let artifacts = match prepare(state, &staged).await.and_then(|a| vet_artifacts(&staged, a)) {
        Ok(artifacts) => artifacts,
        Err(e) => {
            let store = state.store.clone();
            blocking(move || store.discard(staged)).await?;
            return Err(e);
        }
    };
    let store = state.store.clone();
    let deployed = blocking(move || -> Result<Arc<Deployed>, StoreError> {
        for artifact in &artifacts {
            if let Err(e) = store.add_artifact(&mut staged, &artifact.file_name, &artifact.bytes) {
                store.discard(staged);
                return Err(e);
            }
        }
        store.commit(staged)
    })
    .await??;
    state.pool.serve_version(&deployed.name, Some(deployed.version));
    tracing::info!(function = %deployed.name, version = deployed.version, "deployed");
    let (store, name) = (state.store.clone(), deployed.name.clone());
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

/// Checks the staged bundle in a worker; returns what the worker made of it.
async fn prepare(state: &AppState, staged: &Staged) -> Result<Vec<Artifact>, ApiError> {
    if !state.pool.supports(staged.language) {
        return Err(ApiError::invalid_bundle(format!(
            "language {:?} is not available on this server",
            staged.language.as_str()
        )));
    }
    let prepared = state.pool.prepare(
        staged.language,
        staged.dir.to_string_lossy().into_owned(),
        staged.entrypoint.clone(),
        staged.env.clone(),
    );
    let prepared = match dry_run_deadline(state, staged).await {
        // Dropping the preparation kills its worker (the pool spawns them kill-on-drop).
        Some(deadline) => tokio::time::timeout(deadline, prepared).await.map_err(|_| {
            ApiError::invalid_handler(format!(
                "the top level of {} did not finish within {} ms (the function's timeoutMs, at most {} s, plus {} s \
                 to start the runtime): a bundle must load quickly; do slow work in the handler",
                staged.entrypoint,
                deadline.as_millis(),
                MAX_DRY_RUN.as_secs(),
                DRY_RUN_START.as_secs()
            ))
        })?,
        None => prepared.await,
    };
    prepared.map_err(|e| match e {
        PrepareError::Rejected(message) => ApiError::invalid_handler(message),
        PrepareError::Pool(e) => e.into(),
    })
}

/// The most a script's top level may take at upload, whatever its `timeoutMs`.
const MAX_DRY_RUN: Duration = Duration::from_secs(60);
/// Added to it for starting the runtime and loading the bundle's files.
const DRY_RUN_START: Duration = Duration::from_secs(5);

/// How long the dry-run of `staged` may take: the function's `timeoutMs` (the
/// server's default if it sets none), at most [`MAX_DRY_RUN`], plus
/// [`DRY_RUN_START`]. WASM runs none of its code at upload, only a compile, which
/// keeps the pool's own generous bound (`None`).
async fn dry_run_deadline(state: &AppState, staged: &Staged) -> Option<Duration> {
    if matches!(staged.language, polyfaas_protocol::Language::Wasm) {
        return None;
    }
    // The store has checked metadata.json (and its timeoutMs range) already.
    let text = tokio::fs::read(staged.dir.join("metadata.json")).await.ok();
    let value: Option<serde_json::Value> = text.and_then(|t| serde_json::from_slice(&t).ok());
    let timeout_ms = value.and_then(|v| v["timeoutMs"].as_u64()).unwrap_or(state.config.timeout_ms);
    Some(Duration::from_millis(timeout_ms).min(MAX_DRY_RUN) + DRY_RUN_START)
}

/// Keeps from a `Prepared` answer only what its worker could legitimately make:
/// nothing for a script (its dry run ran user code, which may have forged the
/// answer: the upload is refused and logged), one precompiled module for wasm.
fn vet_artifacts(staged: &Staged, artifacts: Vec<Artifact>) -> Result<Vec<Artifact>, ApiError> {
    let names = || artifacts.iter().map(|a| a.file_name.chars().take(80).collect::<String>()).collect::<Vec<_>>();
    match staged.language {
        Language::Wasm => {
            let [artifact] = artifacts.as_slice() else {
                tracing::error!(function = %staged.name, files = ?names(), "a wasm compile sent other than one file");
                return Err(ApiError::internal("the compiling worker answered with an unexpected set of files"));
            };
            if !crate::store::integrity::is_artifact_name(&artifact.file_name) {
                tracing::error!(function = %staged.name, files = ?names(), "a wasm compile sent an unexpected file name");
                return Err(ApiError::internal("the compiling worker answered with an unexpected file name"));
            }
            Ok(artifacts)
        }
        _ if artifacts.is_empty() => Ok(artifacts),
        language => {
            tracing::warn!(function = %staged.name, language = language.as_str(), files = ?names(),
                "refusing an upload: the dry run of a script answered with files (a forged Prepared frame?)");
            Err(ApiError::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_handler",
                format!(
                    "the dry run of this {} bundle answered with files; a script's dry run makes none, so the \
                     answer was forged by the bundle's code",
                    language.as_str()
                ),
            ))
        }
    }
}

/// Runs store I/O off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("store task failed: {e}")))
}
