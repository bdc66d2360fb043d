//! Moving functions between stores: `GET /api/v1/export` answers one archive of
//! every function with all its stored versions (`crate::store::archive`), and
//! `POST /api/v1/import` reads one into this server's store, local or shared.
//! With `polyfaas export` and `polyfaas import`, this is how one node's
//! functions move into a cluster, and how a store is backed up.
//!
//! An import checks every version as an upload is checked (a worker loads it;
//! WASM is compiled here), keeps its version number and creation time, and
//! leaves current the version that was current. A function this store already
//! has is skipped, never overwritten. Owns those two routes; it must never hold
//! an archive in memory (both are spooled to disk), and never import a bundle
//! that does not match the manifest's sha256.

use std::fs::File;
use std::io::Seek;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::error::ApiError;
use super::functions::upload_slot;
use super::upload::spool_upload;
use crate::auth::Scope;
use crate::deploy::{Deployer, blocking};
use crate::server::AppState;
use crate::store::FunctionName;
use crate::store::archive::{self, ArchiveError, Reader};

/// What one read of the archive file hands over to the answer.
const CHUNK: usize = 64 << 10;

/// `GET /api/v1/export`: `application/zip`, every function and version.
pub(crate) async fn export(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let _slot = upload_slot(&state)?;
    let (store, dir) = (state.store.clone(), state.spool_dir.clone());
    let (file, manifest) = blocking(move || -> Result<_, ApiError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("export-{}-{n}", std::process::id()));
        let mut file = File::options().read(true).write(true).create_new(true).open(&path).map_err(spool_error)?;
        // Unlinked at once: the open file is all there is, gone when the answer is.
        std::fs::remove_file(&path).map_err(spool_error)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let manifest = archive::write(&*store, &mut file, now)?;
        file.rewind().map_err(spool_error)?;
        Ok((file, manifest))
    })
    .await??;
    let len = file.metadata().map_err(spool_error)?.len();
    let versions: usize = manifest.functions.iter().map(|f| f.versions.len()).sum();
    tracing::info!(functions = manifest.functions.len(), versions, bytes = len, "exported");
    let body = futures_util::stream::unfold(Some(tokio::fs::File::from_std(file)), |file| async move {
        let mut file = file?;
        let mut chunk = vec![0; CHUNK];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(web::Bytes::from(chunk)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(("content-disposition", "attachment; filename=\"polyfaas-export.zip\""))
        .no_chunking(len)
        .streaming(body))
}

fn spool_error(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("cannot write the export archive: {e}"))
}

/// `POST /api/v1/import`: the body is an archive `GET /api/v1/export` wrote.
/// `200` when every function in it was imported or skipped; `422
/// import_incomplete` when some could not be, with what was done either way.
pub(crate) async fn import(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let _slot = upload_slot(&state)?;
    // An archive holds a whole store: capped by what the store may hold.
    let limit = usize::try_from(state.config.max_store_bytes).unwrap_or(usize::MAX);
    let spooled = spool_upload(&req, payload, limit, state.config.body_timeout, &state.spool_dir).await?;
    let path = spooled.path.clone();
    let mut reader = blocking(move || {
        let file = File::open(&path).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        Reader::open(file)
    })
    .await?
    .map_err(|e| match e {
        ArchiveError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_archive", e.to_string()),
        ArchiveError::Format(_) => ApiError::new(StatusCode::BAD_REQUEST, "unsupported_format", e.to_string()),
    })?;
    let deployer = Deployer {
        store: &state.store,
        pool: &state.pool,
        locks: &state.deploys,
        default_timeout_ms: state.config.timeout_ms,
    };
    let max_bundle = state.config.max_upload_bytes as u64;
    let functions = std::mem::take(&mut reader.manifest.functions);
    let (mut imported, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for function in functions {
        let Ok(name) = FunctionName::parse(&function.name) else { continue };
        if state.store.current(&name).is_some() {
            skipped.push(json!({ "name": function.name, "reason": "exists: delete it first to import it" }));
            continue;
        }
        let mut versions = function.versions.clone();
        versions.sort_by_key(|v| v.version);
        let mut done = Vec::new();
        for version in versions {
            let (function_name, wanted) = (function.name.clone(), version.clone());
            let (back, bytes) = blocking(move || {
                let mut reader = reader;
                let bytes = reader.bundle(&function_name, &wanted, max_bundle);
                (reader, bytes)
            })
            .await?;
            reader = back;
            let result = match bytes {
                Ok(bytes) => deployer
                    .import(
                        name.clone(),
                        bytes,
                        version.version,
                        version.created_unix,
                        version.version == function.current,
                    )
                    .await
                    .map_err(ApiError::from),
                Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_archive", e.to_string())),
            };
            if let Err(e) = result {
                failed.push(json!({
                    "name": function.name, "version": version.version, "code": e.code, "error": e.message,
                    "importedVersions": done,
                }));
                break;
            }
            done.push(version.version);
        }
        if done.is_empty() {
            continue;
        }
        let current = state.store.current(&name).map(|d| d.version);
        state.pool.serve_version(&name, current);
        tracing::info!(function = %name, versions = ?done, ?current, "imported");
        if done.len() == function.versions.len() {
            imported.push(json!({ "name": function.name, "versions": done, "current": current }));
        }
    }
    let mut answer = json!({ "imported": imported, "skipped": skipped, "failed": failed });
    if failed.is_empty() {
        return Ok(HttpResponse::Ok().json(answer));
    }
    answer["code"] = json!("import_incomplete");
    answer["error"] = json!(format!("{} of the archive's functions could not be imported whole", failed.len()));
    Ok(HttpResponse::UnprocessableEntity().json(answer))
}
