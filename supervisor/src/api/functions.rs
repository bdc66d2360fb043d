//! Deploying, listing, describing and deleting functions, rolling back, and
//! reading their logs: the management routes. Every one of them asks
//! `state.auth` first (open when no token is configured); invocation never does.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::body::is_multipart;
use super::error::ApiError;
use super::upload::{Spooled, spool_upload};
use crate::auth::Scope;
use crate::deploy::{Deployer, blocking};
use crate::server::AppState;
use crate::store::{Deployed, FunctionName};

/// `POST /api/v1/handler/{name}`: a multipart upload (the original project's
/// deploy route), or, with any other body, an invocation.
pub(crate) async fn compat_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: String,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if !is_multipart(&req) {
        return super::invoke::compat_invoke(state, req, name, payload).await;
    }
    state.auth.check(&req, Scope::Manage)?;
    let name = FunctionName::parse(&name)?;
    let _slot = upload_slot(&state)?;
    let zip = receive(&state, &req, payload).await?;
    let deployed = deploy(&state, name, zip, state.config.keep_versions).await?;
    // Field order and spelling as the original answered.
    #[derive(serde::Serialize)]
    struct Uploaded {
        status: &'static str,
        message: String,
    }
    Ok(HttpResponse::Ok().json(Uploaded { status: "ok", message: format!("Handler {} uploaded", deployed.name) }))
}

#[derive(serde::Deserialize)]
pub struct PutQuery {
    keep: Option<usize>,
}

/// `PUT /api/v1/functions/{name}[?keep=N]`: body `application/zip` (or multipart).
pub(crate) async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<PutQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let name = FunctionName::parse(&name)?;
    let _slot = upload_slot(&state)?;
    let zip = receive(&state, &req, payload).await?;
    // `max-versions` caps what an uploader may ask to keep.
    let keep = query.keep.unwrap_or(state.config.keep_versions).clamp(1, state.config.max_versions);
    let deployed = deploy(&state, name, zip, keep).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(summary(&deployed)))
}

/// A place among the uploads in progress (held until the deploy ends), or
/// `429 overloaded` when `max-concurrent-uploads` are already in progress.
pub(super) fn upload_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.uploads.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "{} uploads are already in progress, the most this server takes at once; retry later",
                state.config.max_concurrent_uploads
            ),
        )
        .retry_after(1)
    })
}

async fn receive(state: &AppState, req: &HttpRequest, payload: web::Payload) -> Result<Spooled, ApiError> {
    let (limit, deadline) = (state.config.max_upload_bytes, state.config.body_timeout);
    spool_upload(req, payload, limit, deadline, &state.spool_dir).await
}

/// Deploys a received upload and counts it, by its answer's code, in the metrics.
async fn deploy(state: &AppState, name: FunctionName, zip: Spooled, keep: usize) -> Result<Arc<Deployed>, ApiError> {
    let bytes = usize::try_from(zip.size).unwrap_or(usize::MAX);
    let deployer = Deployer {
        store: &state.store,
        pool: &state.pool,
        locks: &state.deploys,
        default_timeout_ms: state.config.timeout_ms,
    };
    let result = deployer.deploy(name, zip, keep).await.map_err(ApiError::from);
    state.telemetry.upload(result.as_ref().map_or_else(|e| e.code, |_| "ok"), bytes);
    result
}

/// `GET /api/v1/functions`
pub(crate) async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let functions: Vec<_> = state.store.list().iter().map(|d| summary(d)).collect();
    Ok(HttpResponse::Ok().json(json!({ "functions": functions })))
}

/// `GET /api/v1/functions/{name}`: the current version and every stored one.
pub(crate) async fn describe(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let name = FunctionName::parse(&name)?;
    let (current, versions) =
        state.store.versions(&name).ok_or_else(|| ApiError::not_found(format!("function {name}")))?;
    let mut body = summary(&current);
    body["versions"] = json!(versions);
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE /api/v1/functions/{name}`
pub(crate) async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let name = FunctionName::parse(&name)?;
    let _one_at_a_time = state.deploys.lock(&name).await;
    let store = state.store.clone();
    let target = name.clone();
    if !blocking(move || store.delete(&target)).await?? {
        return Err(ApiError::not_found(format!("function {name}")));
    }
    state.pool.serve_version(&name, None);
    state.telemetry.forget(name.as_str());
    state.logs.forget(name.as_str());
    Ok(HttpResponse::Ok().json(json!({ "name": name.as_str(), "deleted": true })))
}

#[derive(serde::Deserialize)]
pub struct RollbackQuery {
    version: Option<u64>,
}

/// `POST /api/v1/functions/{name}/rollback[?version=N]`: the previous version (or
/// version N) becomes current again. New invocations go to it; workers of the
/// version it replaces finish what they run and retire.
pub(crate) async fn rollback(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<RollbackQuery>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let name = FunctionName::parse(&name)?;
    let _one_at_a_time = state.deploys.lock(&name).await;
    let (store, target, to) = (state.store.clone(), name.clone(), query.version);
    let current = blocking(move || store.rollback(&target, to)).await??;
    state.pool.serve_version(&name, Some(current.version));
    tracing::info!(function = %name, version = current.version, "rolled back");
    Ok(HttpResponse::Ok().json(summary(&current)))
}

#[derive(serde::Deserialize)]
pub struct LogsQuery {
    after: Option<String>,
    wait: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/v1/functions/{name}/logs[?after=CURSOR][&wait=MS][&limit=N]`: the
/// function's kept invocation logs, oldest first. Without `after`, the newest
/// `limit` (default and most: 50); with it, only entries newer than the cursor.
/// `wait` long-polls (up to 30 s) until there is one. `cursor` continues after
/// the newest entry returned. On a node of a cluster, the entries are every
/// node's (each names its `node`), read from the shared store.
pub(crate) async fn logs(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<LogsQuery>,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, Scope::Manage)?;
    let name = FunctionName::parse(&name)?;
    if state.store.current(&name).is_none() {
        return Err(ApiError::not_found(format!("function {name}")));
    }
    let limit = query.limit.unwrap_or(crate::logs::HISTORY);
    let wait = query.wait.filter(|ms| *ms > 0).map(Duration::from_millis);
    let bad_cursor =
        |e: crate::logs::InvalidCursor| ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string());
    let (page, cursor) = match &state.cluster_logs {
        // One node: its own memory.
        None => {
            let after = query.after.as_deref().map(|t| state.logs.parse_cursor(t)).transpose().map_err(bad_cursor)?;
            let page = match wait {
                Some(wait) => state.logs.wait(name.as_str(), after, limit, wait).await,
                None => state.logs.page(name.as_str(), after, limit),
            };
            let cursor = state.logs.format_cursor(page.cursor);
            (page, cursor)
        }
        // A cluster: every node's, from the shared store.
        Some(cluster) => {
            let after = query.after.as_deref().map(|t| cluster.parse_cursor(t)).transpose().map_err(bad_cursor)?;
            let unavailable = |e: crate::store::shared::db::Unavailable| crate::store::StoreError::Unavailable(e.0);
            let page = match wait {
                Some(wait) => cluster.wait(name.as_str(), after, limit, wait).await,
                None => cluster.page(name.as_str(), after, limit).await,
            }
            .map_err(unavailable)?;
            let cursor = cluster.format_cursor(page.cursor);
            (page, cursor)
        }
    };
    let entries: Vec<&crate::logs::LogEntry> = page.entries.iter().map(|e| &**e).collect();
    Ok(HttpResponse::Ok().json(json!({
        "name": name.as_str(),
        "logs": entries,
        "cursor": cursor,
        "cluster": state.cluster_logs.is_some(),
    })))
}

fn summary(d: &Deployed) -> serde_json::Value {
    json!({
        "name": d.name.as_str(),
        "version": d.version,
        "language": d.language.as_str(),
        "entrypoint": d.entrypoint,
        "sha256": d.record.sha256,
        "size": d.record.size,
        "createdUnix": d.record.created_unix,
        "limits": d.limits,
    })
}
