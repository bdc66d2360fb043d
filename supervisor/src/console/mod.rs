//! The operator console: a static page and its scripts, compiled into the
//! binary, served under `/console` on the listener that serves management (the
//! admin listener when there is one; `crate::listeners` classifies `/console`
//! as management). Its data comes from the token-protected API the page calls
//! with `Authorization: Bearer`; serving the page itself needs no token, since
//! it holds no data.
//!
//! Owns the console's responses and their security headers. It must never serve
//! anything but the embedded files (no filesystem access, no user input in a
//! response), never set a cookie, and never load anything from another origin.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::api::error::ApiError;

/// The console's own policy: only its own scripts and styles, data only from
/// its own origin, never framed. No inline script or style is allowed, so an
/// injected string in the page cannot run.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// The embedded files: name under `/console/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("main.js", JS, include_str!("assets/main.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("dom.js", JS, include_str!("assets/dom.js")),
    ("functions.js", JS, include_str!("assets/functions.js")),
    ("function.js", JS, include_str!("assets/function.js")),
    ("deploy.js", JS, include_str!("assets/deploy.js")),
    ("invoke.js", JS, include_str!("assets/invoke.js")),
    ("workers.js", JS, include_str!("assets/workers.js")),
    ("charts.js", JS, include_str!("assets/charts.js")),
    ("vendor/uPlot.iife.min.js", JS, include_str!("assets/vendor/uPlot.iife.min.js")),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_str!("assets/vendor/uPlot.min.css")),
    ("vendor/fflate.js", JS, include_str!("assets/vendor/fflate.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("assets/index.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/console").route(web::get().to(index)))
        .service(web::resource("/console/").route(web::get().to(index)))
        .service(web::resource("/console/{file:.+}").route(web::get().to(asset)));
}

async fn index() -> HttpResponse {
    respond("text/html; charset=utf-8", INDEX)
}

async fn asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let file = req.match_info().get("file").unwrap_or_default();
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| respond(content_type, body))
        .ok_or_else(|| ApiError::not_found(format!("console file {file}")))
}

fn respond(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header(("cross-origin-opener-policy", HeaderValue::from_static("same-origin")))
        .insert_header(("cross-origin-resource-policy", HeaderValue::from_static("same-origin")))
        // The files change with the binary; a stale cached script must not
        // talk to a newer server.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(body)
}
