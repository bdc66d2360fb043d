//! Invoking a function: the request becomes one `Invoke` frame, the worker's
//! answer becomes the response. The per-request path is: look up the current
//! version, read the body (capped), `pool.invoke`, copy the answer out.
//!
//! The answer comes from user code, and the connection it goes out on may carry
//! the next request, to another function (keep-alive, pipelining). So the framing
//! is the server's alone ([`respond`]): only statuses 200–599, no body where HTTP
//! has none, no framing or hop-by-hop header from the handler. Whatever user code
//! wrote reaches the server's log escaped.
//!
//! Functions share the server's origin, so their pages must not act on it: each
//! response gets a `Content-Security-Policy: sandbox` of its own (an opaque
//! origin: no script access to the server's other pages, no cookies or storage of
//! the origin) unless the function opts out, and with `strip-set-cookie` no
//! `Set-Cookie` from a handler reaches the client.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use tracing::{info, warn};

use super::request_id::RequestId;

use super::body::read_body;
use super::error::ApiError;
use crate::logging;
use crate::logs::{NewEntry, excerpt};
use crate::pool::Outcome;
use crate::server::AppState;
use crate::store::FunctionName;

/// The most of one invocation's handler logs copied into the server's log; all
/// of it (up to its own cap) is in `GET /api/v1/functions/{name}/logs`.
const LOG_EXCERPT: usize = 2048;

/// `ANY /fn/{name}` and `ANY /fn/{name}/{tail}`.
pub(crate) async fn invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // What follows `/fn` (decoded as the router decodes paths): `/{name}` or
    // `/{name}/{tail}`; `/fn` and `/fn/` name no function and are no route.
    let rest = req.match_info().unprocessed();
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (name, tail) = match rest.split_once('/') {
        Some((name, tail)) => (name, format!("/{tail}")),
        None => (rest, "/".to_string()),
    };
    if name.is_empty() {
        return Err(ApiError::not_found(format!("route {} {}", req.method(), req.path())));
    }
    run(&state, &req, name, tail, payload, Caller::Public).await
}

/// `GET /api/v1/handler/{name}` (and a non-multipart `POST`): the original
/// project's invocation route.
pub(crate) async fn compat_invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: String,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    run(&state, &req, &name, "/".to_string(), payload, Caller::Public).await
}

/// `ANY /admin/invoke/{name}[/{tail}]`: the console's invocation, on the admin
/// listener (which serves no `/fn`) or the main one. It needs the admin token,
/// which the function never sees (the `Authorization` header is dropped), and its
/// answer is always sandboxed, whatever the function's setting: it comes from the
/// origin the console runs on.
pub(crate) async fn console_invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.auth.check(&req, crate::auth::Scope::Admin)?;
    let name = req.match_info().get("name").unwrap_or_default().to_string();
    let tail = format!("/{}", req.match_info().get("tail").unwrap_or_default());
    run(&state, &req, &name, tail, payload, Caller::Console).await
}

/// Who asked for an invocation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A client of `/fn` or the original project's route: the request goes to
    /// the handler as it came.
    Public,
    /// The operator's console, with the admin token.
    Console,
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    path: String,
    payload: web::Payload,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let name = FunctionName::parse(name)?;
    let function = state.store.current(&name).ok_or_else(|| ApiError::not_found(format!("function {name}")))?;
    let body = read_body(req, payload, state.config.max_request_bytes, state.config.body_timeout).await?;
    let request = polyfaas_protocol::HttpRequest {
        method: req.method().to_string(),
        path,
        query: req.query_string().to_string(),
        headers: req
            .headers()
            .iter()
            .filter(|(k, _)| caller == Caller::Public || *k != actix_web::http::header::AUTHORIZATION)
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    };
    let invocation = state.pool.invoke(&function, request).await;
    let policy = Policy {
        sandbox: function.sandbox_responses || caller == Caller::Console,
        strip_set_cookie: state.config.strip_set_cookie,
    };
    let answer = answer(invocation.outcome, invocation.worker_pid, req.method(), policy);
    let request_id = req.extensions().get::<RequestId>().cloned();
    let request_id = request_id.as_ref().map_or("", RequestId::as_str);
    let record = Record {
        name: &name,
        version: function.version,
        request_id,
        worker_pid: invocation.worker_pid,
        elapsed: started.elapsed(),
        logs: invocation.logs.as_ref(),
        stats: invocation.stats.as_ref(),
    };
    record.log(state, &answer);
    match (caller, answer) {
        // Where the console's curl line should send the same request: the main
        // listener, which the console's own origin may not be.
        (Caller::Console, Ok(mut response)) => {
            if let Ok(value) = HeaderValue::try_from(state.main_addr.to_string()) {
                response.headers_mut().insert(HeaderName::from_static("x-polyfaas-main-listener"), value);
            }
            Ok(response)
        }
        (_, answer) => answer,
    }
}

/// The one place an invocation's ending becomes HTTP: the handler's answer in
/// the server's framing ([`respond`]), or the error of the README's table.
fn answer(
    outcome: Outcome,
    worker_pid: Option<u32>,
    method: &Method,
    policy: Policy,
) -> Result<HttpResponse, ApiError> {
    let (status, code, message) = match outcome {
        Outcome::Answered(response) => return respond(response, worker_pid.unwrap_or_default(), method, policy),
        Outcome::Refused(e) => return Err(e.into()),
        Outcome::HandlerError(message) => (StatusCode::BAD_GATEWAY, "handler_error", message),
        Outcome::Timeout(message) => (StatusCode::GATEWAY_TIMEOUT, "timeout", message),
        Outcome::MemoryLimit(message) => (StatusCode::BAD_GATEWAY, "memory_limit", message),
        Outcome::ResponseTooLarge(message) => (StatusCode::BAD_GATEWAY, "response_too_large", message),
        Outcome::WorkerDied(message) => (StatusCode::BAD_GATEWAY, "worker_crashed", message),
    };
    Err(ApiError::new(status, code, message))
}

/// What is known of one invocation once it has been answered, for the one log
/// line, the metrics record and the kept logs every invocation gets.
struct Record<'a> {
    name: &'a FunctionName,
    version: u64,
    request_id: &'a str,
    worker_pid: Option<u32>,
    elapsed: std::time::Duration,
    logs: Option<&'a polyfaas_protocol::Logs>,
    stats: Option<&'a polyfaas_protocol::Stats>,
}

impl Record<'_> {
    /// The one place an invocation is logged: one line in the server's log (with
    /// an escaped excerpt of what the handler logged), one metrics record, and an
    /// entry in the function's kept logs whenever a worker ran the handler. A
    /// worker that died or was killed sends no logs back, so its entry says why;
    /// a refusal (`429`, `503`) ran nothing and keeps nothing.
    fn log(&self, state: &AppState, answer: &Result<HttpResponse, ApiError>) {
        let Self { name, version, request_id, worker_pid, elapsed, logs, stats } = *self;
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let excerpt = logs.filter(|l| !l.text.is_empty()).map(|l| excerpt(&l.text, LOG_EXCERPT));
        let (outcome, status, note) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                let (handler_us, cold) = stats.map_or((0, false), |s| (s.duration_us, s.cold));
                info!(function = %name, version, worker_pid, request_id = %request_id, status, elapsed_ms, handler_us, cold, "invoked");
                if let Some(text) = &excerpt {
                    info!(function = %name, request_id = %request_id, "handler logs: {text}");
                }
                state.telemetry.invocation(name.as_str(), "ok", elapsed, None);
                ("ok", status, None)
            }
            Err(error) => {
                let status = error.status.as_u16();
                let message = logging::escape(error.message.as_bytes());
                warn!(function = %name, version, worker_pid, request_id = %request_id, status, code = error.code, elapsed_ms, "invocation failed: {message}");
                if let Some(text) = &excerpt {
                    warn!(function = %name, request_id = %request_id, "handler logs: {text}");
                }
                state.telemetry.invocation(name.as_str(), error.code, elapsed, Some(&error.message));
                (error.code, status, Some(error.message.as_str()))
            }
        };
        let text = match (logs, worker_pid) {
            (Some(logs), _) => Some((logs.text.as_str(), logs.truncated)),
            (None, Some(_)) => note.map(|n| (n, false)),
            (None, None) => None,
        };
        if let Some((text, truncated)) = text {
            let entry = NewEntry { request_id, version, outcome, status, duration: elapsed, text, truncated };
            state.logs.record(name.as_str(), entry);
        }
    }
}

/// Headers a handler may not set: the message's framing (which the server alone
/// decides, or a body could be read as the next response on the connection) and
/// the other hop-by-hop headers of RFC 9110 §7.6.1. Names are compared parsed,
/// so in lower case.
fn server_only(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
    )
}

/// What the server adds to or removes from every response of one function.
#[derive(Clone, Copy, Debug)]
struct Policy {
    /// Add `Content-Security-Policy: sandbox`.
    sandbox: bool,
    /// Drop `Set-Cookie` (and the obsolete `Set-Cookie2`).
    strip_set_cookie: bool,
}

/// Copies the worker's response out, as a response of the server's own framing.
///
/// A handler's own `Content-Security-Policy` is kept, and the sandbox goes out as
/// one more `Content-Security-Policy` header: browsers enforce every policy a
/// response carries, so the sandbox holds whatever the handler's says (even a
/// `sandbox allow-same-origin` of its own), and its policy is not rewritten.
///
/// # Errors
/// `502 handler_error` for a status a handler may not answer: 1xx (interim
/// responses and protocol switches are the server's business) and anything
/// outside 100–599. A 204, a 304 or the answer to a `HEAD` goes out without the
/// body the handler gave, and headers that are not valid HTTP are dropped.
fn respond(
    response: polyfaas_protocol::HttpResponse,
    worker_pid: u32,
    method: &Method,
    policy: Policy,
) -> Result<HttpResponse, ApiError> {
    let status = match StatusCode::from_u16(response.status) {
        Ok(status) if (200..=599).contains(&status.as_u16()) => status,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "handler_error",
                format!("the handler answered with status {}; a handler may answer 200 to 599", response.status),
            ));
        }
    };
    let mut out = HttpResponse::build(status);
    for (name, value) in &response.headers {
        let (Ok(n), Ok(v)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) else {
            continue;
        };
        let cookie = matches!(n.as_str(), "set-cookie" | "set-cookie2");
        if !server_only(&n) && !(cookie && policy.strip_set_cookie) {
            out.append_header((n, v));
        }
    }
    if policy.sandbox {
        out.append_header((actix_web::http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")));
    }
    out.insert_header((HeaderName::from_static("x-polyfaas-worker-pid"), HeaderValue::from(worker_pid)));
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) || method == Method::HEAD;
    Ok(if bodiless { out.body(actix_web::body::None::new()) } else { out.body(response.body) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::{BodySize, MessageBody};

    const PLAIN: Policy = Policy { sandbox: false, strip_set_cookie: false };

    fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> polyfaas_protocol::HttpResponse {
        polyfaas_protocol::HttpResponse {
            status,
            headers: headers.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn interim_and_unknown_statuses_are_refused() {
        for status in [0, 99, 100, 101, 103, 199, 600, 999, 65535] {
            let err = respond(answer(status, &[], b""), 1, &Method::GET, PLAIN).expect_err("refused");
            assert_eq!((err.status, err.code), (StatusCode::BAD_GATEWAY, "handler_error"), "{status}");
        }
        for status in [200, 204, 299, 304, 404, 599] {
            assert_eq!(
                respond(answer(status, &[], b""), 1, &Method::GET, PLAIN).expect("ok").status().as_u16(),
                status
            );
        }
    }

    #[test]
    fn no_body_goes_out_where_http_has_none() {
        let forged = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nforged";
        for (status, method) in [(204, Method::GET), (304, Method::GET), (200, Method::HEAD)] {
            let r = respond(answer(status, &[], forged), 1, &method, PLAIN).expect("ok");
            assert_eq!(r.body().size(), BodySize::None, "{status} {method}");
        }
        let r = respond(answer(200, &[], forged), 1, &Method::GET, PLAIN).expect("ok");
        assert_eq!(r.body().size(), BodySize::Sized(forged.len() as u64));
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_the_servers() {
        let headers = [
            ("Content-Length", "0"),
            ("transfer-encoding", "chunked"),
            ("Connection", "close"),
            ("upgrade", "websocket"),
            ("x-bad", "a\r\nx-injected: 1"),
            ("x-polyfaas-worker-pid", "1"),
            ("x-ok", "yes"),
        ];
        let r = respond(answer(200, &headers, b"body"), 42, &Method::GET, PLAIN).expect("ok");
        let names: Vec<&str> = r.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(r.headers().get("x-ok").map(HeaderValue::as_bytes), Some(&b"yes"[..]));
        assert_eq!(r.headers().get("x-polyfaas-worker-pid").map(HeaderValue::as_bytes), Some(&b"42"[..]));
        for gone in ["content-length", "transfer-encoding", "connection", "upgrade", "x-bad", "x-injected"] {
            assert!(!names.contains(&gone), "{gone} in {names:?}");
        }
    }

    #[test]
    fn the_sandbox_is_added_beside_the_handlers_own_policy() {
        let sandbox = Policy { sandbox: true, strip_set_cookie: false };
        let r = respond(answer(200, &[], b"<script>1</script>"), 1, &Method::GET, sandbox).expect("ok");
        let csp: Vec<&[u8]> = r.headers().get_all("content-security-policy").map(HeaderValue::as_bytes).collect();
        assert_eq!(csp, [&b"sandbox"[..]]);
        let theirs = [("Content-Security-Policy", "sandbox allow-scripts allow-same-origin")];
        let r = respond(answer(200, &theirs, b""), 1, &Method::GET, sandbox).expect("ok");
        let csp: Vec<&[u8]> = r.headers().get_all("content-security-policy").map(HeaderValue::as_bytes).collect();
        assert_eq!(csp, [&b"sandbox allow-scripts allow-same-origin"[..], &b"sandbox"[..]]);
    }

    #[test]
    fn set_cookie_is_dropped_only_when_asked() {
        let cookies = [("Set-Cookie", "session=stolen; Path=/"), ("set-cookie2", "a=b"), ("x-ok", "1")];
        let r = respond(answer(200, &cookies, b""), 1, &Method::GET, PLAIN).expect("ok");
        assert!(r.headers().contains_key("set-cookie"));
        let strip = Policy { sandbox: false, strip_set_cookie: true };
        let r = respond(answer(200, &cookies, b""), 1, &Method::GET, strip).expect("ok");
        assert!(!r.headers().contains_key("set-cookie") && !r.headers().contains_key("set-cookie2"));
        assert!(r.headers().contains_key("x-ok"));
    }
}
