//! The public HTTP routes. Handlers here parse and check the request, call the
//! store or the pool, and shape the answer; errors become JSON in [`error`] only.
//!
//! - `/api/v1/handler/{name}`: the original project's routes, byte-compatible;
//! - `/api/v1/functions[/{name}[/logs|/rollback]]`: deploy, list, describe, delete,
//!   recent logs, rollback;
//! - `/api/v1/export`, `/api/v1/import`: every function in one archive, and back;
//! - `/fn/{name}[/{tail}]`: invoke with the full request.
//!
//! Health, readiness, metrics and the admin routes are in `crate::admin`.

pub mod body;
pub mod error;
mod functions;
mod invoke;
pub(crate) use self::invoke::console_invoke;
pub mod request_id;
mod transfer;
pub mod upload;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};

use self::error::ApiError;
use crate::server;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A query string that does not parse (`?keep=abc`) is a JSON error too.
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_query", e.to_string()).into()
    }));
    cfg.service(web::resource("/api/v1/functions").route(web::get().to(functions::list)))
        .service(
            web::resource("/api/v1/functions/{name}")
                .route(web::put().to(functions::put))
                .route(web::get().to(functions::describe))
                .route(web::delete().to(functions::delete)),
        )
        .service(web::resource("/api/v1/functions/{name}/logs").route(web::get().to(functions::logs)))
        .service(web::resource("/api/v1/functions/{name}/rollback").route(web::post().to(functions::rollback)))
        .service(web::resource("/api/v1/export").route(web::get().to(transfer::export)))
        .service(web::resource("/api/v1/import").route(web::post().to(transfer::import)))
        .default_service(web::to(no_route));
}

/// The invocation routes, registered before every other route: the router tries
/// routes in order, and a route with a `{segment}` is a regex match, so the
/// routes that every invocation takes are plain prefixes and are tried first.
/// Their handlers split the name (and the tail) themselves.
/// - `/fn/{name}[/{tail}]`;
/// - `/api/v1/handler/{name}`, the original project's: `GET` invokes, `POST`
///   deploys a multipart upload and invokes with any other body.
pub fn invoke_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/fn").default_service(web::to(invoke::invoke)))
        .service(web::scope("/api/v1/handler").default_service(web::to(compat)));
}

/// `/api/v1/handler/{name}`: one segment after the prefix, as the pattern
/// `{name}` would match, else no route.
async fn compat(
    state: web::Data<server::AppState>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let rest = req.match_info().unprocessed();
    let name = match rest.strip_prefix('/') {
        Some(name) if !name.is_empty() && !name.contains('/') => name.to_string(),
        _ => return no_route(req).await,
    };
    match *req.method() {
        Method::GET => invoke::compat_invoke(state, req, name, payload).await,
        Method::POST => functions::compat_post(state, req, name, payload).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} {}: this route takes GET (invoke) or POST (deploy or invoke)", req.method(), req.path()),
        )),
    }
}

async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!("route {} {}", req.method(), req.path())))
}
