//! Operator routes. Under `/admin`, with `Authorization: Bearer <token>`:
//! `GET /admin/workers`, `POST /admin/workers/restart` (`?function=`,
//! `?language=`, `?force=true`), `POST /admin/workers/{id}/restart`,
//! `GET /admin/functions`, `GET /admin/nodes` (the cluster's nodes by their
//! heartbeats; this node alone without a shared store), `GET /admin/series[?function=]` (the last 15 minutes
//! in 5-second buckets, for the console's charts), `ANY /admin/invoke/{name}[/{tail}]`
//! (the console's invocation, handled in `crate::api`: with `--admin-listen` the
//! admin listener serves no `/fn`). Open, for probes and scrapers: `GET /healthz`,
//! `GET /readyz`, `GET /metrics`.
//!
//! No admin route changes a function or its code; they act on workers, or run a
//! function as any client could.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::api::error::ApiError;
use crate::pool::RestartFilter;
use crate::server::AppState;
use crate::store::FunctionName;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .service(web::resource("/admin/workers").route(web::get().to(workers)))
        .service(web::resource("/admin/workers/restart").route(web::post().to(restart_all)))
        .service(web::resource("/admin/workers/{id}/restart").route(web::post().to(restart_one)))
        .service(web::resource("/admin/functions").route(web::get().to(functions)))
        .service(web::resource("/admin/series").route(web::get().to(series)))
        .service(web::resource("/admin/nodes").route(web::get().to(nodes)))
        .service(web::resource("/admin/invoke/{name}").to(crate::api::console_invoke))
        .service(web::resource("/admin/invoke/{name}/{tail:.*}").to(crate::api::console_invoke));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the store is loaded (it is, once routes are served) and every
/// language has a live worker.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.pool.is_ready() {
        Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the worker pool is not warm yet"))
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (queued, by_state, idle_memory) = state.pool.gauges();
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.telemetry.encode(queued, &by_state, idle_memory))
}

/// A node is counted alive while its heartbeat is younger than this.
const ALIVE_WITHIN_MS: u64 = 3 * crate::cluster::HEARTBEAT_EVERY.as_millis() as u64;

/// `GET /admin/nodes`: every node of the cluster by its heartbeat row, this one
/// marked `self`; without a shared store, this node alone.
async fn nodes(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let Some(db) = &state.cluster else {
        let this = json!({ "node": "local", "address": state.main_addr.to_string(), "self": true, "alive": true });
        return Ok(HttpResponse::Ok().json(json!({ "store": "local", "nodes": [this] })));
    };
    let rows = db.nodes().await.map_err(|e| crate::store::StoreError::Unavailable(e.0))?;
    let nodes: Vec<_> = rows
        .into_iter()
        .map(|row| {
            let (is_self, alive) = (row.node == db.node(), row.seen_ms_ago < ALIVE_WITHIN_MS);
            let mut v = json!(row);
            v["self"] = json!(is_self);
            v["alive"] = json!(alive);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "store": "postgres", "nodes": nodes })))
}

async fn workers(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    // Each worker's RSS is a /proc read: on a blocking thread, not the HTTP one.
    let pool = state.pool.clone();
    let workers = web::block(move || pool.workers())
        .await
        .map_err(|e| ApiError::internal(format!("listing the workers failed: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({ "workers": workers })))
}

async fn functions(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    Ok(HttpResponse::Ok().json(json!({ "functions": state.telemetry.functions() })))
}

#[derive(Deserialize)]
struct SeriesQuery {
    function: Option<String>,
}

async fn series(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<SeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let only = query.function.as_deref().map(FunctionName::parse).transpose()?;
    Ok(HttpResponse::Ok().json(state.telemetry.series(only.as_ref().map(FunctionName::as_str))))
}

#[derive(Deserialize)]
struct RestartQuery {
    function: Option<String>,
    language: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn restart_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<RestartQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let filter = RestartFilter {
        id: None,
        function: query.function.as_deref().map(FunctionName::parse).transpose()?,
        language: query.language.as_deref().map(parse_language).transpose()?,
    };
    let restarted = state.pool.restart(&filter, query.force).await;
    tracing::info!(count = restarted.len(), force = query.force, "workers restarted by the admin API");
    Ok(HttpResponse::Ok().json(json!({ "restarted": restarted })))
}

async fn restart_one(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<u64>,
    query: web::Query<RestartQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let filter = RestartFilter { id: Some(*id), ..Default::default() };
    let restarted = state.pool.restart(&filter, query.force).await;
    if restarted.is_empty() {
        return Err(ApiError::not_found(format!("worker {id}")));
    }
    Ok(HttpResponse::Ok().json(json!({ "restarted": restarted })))
}

fn parse_language(s: &str) -> Result<polyfaas_protocol::Language, ApiError> {
    polyfaas_protocol::Language::parse(s)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", format!("unknown language {s:?}")))
}

/// 401 without a bearer token, 403 with a wrong one or when no token is
/// configured (admin routes are then off), 429 while the address backs off.
fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    Ok(state.auth.check(req, crate::auth::Scope::Admin)?)
}
