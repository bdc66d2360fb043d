//! An upload, start to finish: stage the zip in the store, have a fresh worker
//! compile and check it, store what it made, commit, and move the pool to the new
//! version. Any failure discards the staged copy; the current version keeps serving.

use std::sync::Arc;

use polyfaas_protocol::Artifact;

use crate::api::error::ApiError;
use crate::pool::PrepareError;
use crate::server::AppState;
use crate::store::{Deployed, FunctionName, Staged, StoreError};

/// Deploys `zip` as the new current version of `name`, then keeps only the newest
/// `keep` versions on disk.
pub async fn deploy(
    state: &AppState,
    name: FunctionName,
    zip: Vec<u8>,
    keep: usize,
) -> Result<Arc<Deployed>, ApiError> {
    let bytes = zip.len();
    let result = deploy_inner(state, name, zip, keep).await;
    state.telemetry.upload(result.as_ref().map_or_else(|e| e.code, |_| "ok"), bytes);
    result
}

async fn deploy_inner(
    state: &AppState,
    name: FunctionName,
    zip: Vec<u8>,
    keep: usize,
) -> Result<Arc<Deployed>, ApiError> {
    let _one_at_a_time = state.deploys.lock().await;
    let store = state.store.clone();
    let staged = blocking(move || store.stage(&name, &zip)).await??;
    let artifacts = match prepare(state, &staged).await {
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
            if let Err(e) = store.add_artifact(&staged, &artifact.file_name, &artifact.bytes) {
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
    state
        .pool
        .prepare(staged.language, staged.dir.to_string_lossy().into_owned(), staged.entrypoint.clone())
        .await
        .map_err(|e| match e {
            PrepareError::Rejected(message) => ApiError::invalid_handler(message),
            PrepareError::Pool(e) => e.into(),
        })
}

/// Runs store I/O off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("store task failed: {e}")))
}
