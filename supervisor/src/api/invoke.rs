//! Invoking a function: the request becomes one `Invoke` frame, the worker's
//! answer becomes the response. The per-request path is: look up the current
//! version, read the body (capped), `pool.invoke`, copy the answer out.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use tracing::{info, warn};

use super::request_id::RequestId;

use super::body::read_body;
use super::error::ApiError;
use crate::logs::{NewEntry, excerpt};
use crate::pool::Invoked;
use crate::server::AppState;
use crate::store::FunctionName;

/// How much of a handler's logs the server's own log line shows.
const LOG_EXCERPT: usize = 2048;

/// `ANY /fn/{name}` and `ANY /fn/{name}/{tail}`.
pub async fn invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default().to_string();
    let tail = format!("/{}", req.match_info().get("tail").unwrap_or_default());
    run(&state, &req, &name, tail, payload).await
}

/// `GET /api/v1/handler/{name}` (and a non-multipart `POST`): the original
/// project's invocation route.
pub async fn compat_invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    run(&state, &req, &name, "/".to_string(), payload).await
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    path: String,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let name = FunctionName::parse(name)?;
    let function = state.store.current(&name).ok_or_else(|| ApiError::not_found(format!("function {name}")))?;
    let body = read_body(req, payload, state.config.max_request_bytes).await?;
    let request = polyfaas_protocol::HttpRequest {
        method: req.method().to_string(),
        path,
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    };
    let outcome = state.pool.invoke(&function, request).await;

    // One log line and one metrics record per invocation, whatever happened;
    // what the handler logged is kept (bounded) and excerpted in the server log.
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let version = function.version;
    let keep = |outcome: &str, status: u16, logs: &polyfaas_protocol::Logs| {
        let entry = NewEntry {
            request_id: &request_id,
            version,
            outcome,
            status,
            duration: elapsed,
            text: &logs.text,
            truncated: logs.truncated,
        };
        state.logs.record(name.as_str(), entry);
    };
    let (result, worker_pid) = match outcome {
        Ok(Invoked { worker_pid, result }) => (result, worker_pid),
        Err(e) => {
            let error = ApiError::from(e);
            warn!(function = %name, version, request_id = %request_id, status = error.status.as_u16(), elapsed_ms, "invocation failed: {}", error.message);
            state.telemetry.invocation(name.as_str(), error.code, elapsed, Some(&error.message));
            // A worker that died mid-invocation ran the handler: its callers
            // look for it in the logs. (Refusals such as 429 ran nothing.)
            if error.code == "worker_crashed" || error.code == "timeout" {
                let note = polyfaas_protocol::Logs { text: error.message.clone(), truncated: false };
                keep(error.code, error.status.as_u16(), &note);
            }
            return Err(error);
        }
    };
    match result {
        Ok(done) => {
            let (status, handler_us, cold) = (done.response.status, done.stats.duration_us, done.stats.cold);
            info!(function = %name, version, worker_pid, request_id = %request_id, status, elapsed_ms, handler_us, cold, "invoked");
            if !done.logs.text.is_empty() {
                info!(function = %name, request_id = %request_id, "handler logs: {}", excerpt(&done.logs.text, LOG_EXCERPT));
            }
            state.telemetry.invocation(name.as_str(), "ok", elapsed, None);
            // `respond` answers 502 for a status HTTP cannot carry.
            let sent = StatusCode::from_u16(status).map_or(502, |s| s.as_u16());
            keep("ok", sent, &done.logs);
            Ok(respond(done.response, worker_pid))
        }
        Err(failure) => {
            let error = ApiError::from_failure(failure.kind, failure.message);
            let status = error.status.as_u16();
            warn!(function = %name, version, worker_pid, request_id = %request_id, status, elapsed_ms, "handler failed: {}", error.message);
            if !failure.logs.text.is_empty() {
                warn!(function = %name, request_id = %request_id, "handler logs: {}", excerpt(&failure.logs.text, LOG_EXCERPT));
            }
            state.telemetry.invocation(name.as_str(), error.code, elapsed, Some(&error.message));
            keep(error.code, status, &failure.logs);
            Err(error)
        }
    }
}

/// Copies the worker's response out, dropping headers HTTP/1.1 does not let a
/// handler set (framing is the server's job) and any that are not valid.
fn respond(response: polyfaas_protocol::HttpResponse, worker_pid: u32) -> HttpResponse {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    for (name, value) in &response.headers {
        let hop_by_hop = matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection" | "keep-alive");
        if hop_by_hop {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            out.append_header((n, v));
        }
    }
    out.insert_header(("x-polyfaas-worker-pid", worker_pid.to_string()));
    out.body(response.body)
}
