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
pub use self::invoke::console_invoke;
pub mod request_id;
mod transfer;
pub mod upload;

use actix_web::{HttpResponse, web};

use self::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // A query string that does not parse (`?keep=abc`) is a JSON error too.
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_query", e.to_string()).into()
    }));
    cfg.service(
        web::resource("/api/v1/handler/{name}")
            .route(web::post().to(functions::compat_post))
            .route(web::get().to(invoke::compat_invoke)),
    )
    .service(web::resource("/api/v1/functions").route(web::get().to(functions::list)))
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

/// `/fn/{name}[/{tail}]`, registered before every other route: the router tries
/// routes in order, and a route with a `{segment}` is a regex match, so the one
/// route that every invocation takes is a plain prefix and is tried first. The
/// handler splits the name and the tail itself.
pub fn invoke_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/fn").default_service(web::to(invoke::invoke)));
}

async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!("route {} {}", req.method(), req.path())))
}
