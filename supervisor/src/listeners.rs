//! Which listener serves which routes. With `--admin-listen`, the main listener
//! (the one the world reaches, and the origin functions' pages are served from)
//! serves only invocations and the probes (`/healthz`, `/readyz`); management
//! (`/api/v1/functions...`, the multipart upload of `/api/v1/handler/{name}`),
//! `/admin` and `/metrics` answer there `404` as if they did not exist, and are
//! served only on the admin listener, which in turn does not invoke functions.
//! Without `--admin-listen` everything is on the main listener, as before.
//!
//! Owns the classification of a request into [`Class`]; it must never let a
//! route through on a listener that does not serve its class, and never look at
//! anything a client can forge to choose the listener (only the local address of
//! the connection's socket).

use std::net::SocketAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use crate::api::error::ApiError;
use crate::server::AppState;

/// What a request is, for the listener split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// `/healthz`, `/readyz`: on both listeners.
    Probe,
    /// `/fn/...`, and `/api/v1/handler/{name}` with anything but a multipart body.
    Invoke,
    /// Everything else: management, `/admin`, `/metrics`, unknown routes.
    Manage,
}

fn classify(req: &ServiceRequest) -> Class {
    let path = req.path();
    if path == "/healthz" || path == "/readyz" {
        return Class::Probe;
    }
    if path == "/fn" || path.starts_with("/fn/") {
        return Class::Invoke;
    }
    // The original project's route: a multipart POST deploys, the rest invokes
    // (the same test the route itself makes).
    if path.starts_with("/api/v1/handler/") && !crate::api::body::is_multipart(req.request()) {
        return Class::Invoke;
    }
    Class::Manage
}

/// Answers `404 not_found` to a route the listener the request came in on does
/// not serve.
pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let admin = req.app_data::<web::Data<AppState>>().and_then(|s| s.admin_addr);
    if let Some(admin) = admin {
        let on_admin = listener_of(&req) == admin;
        let served = match classify(&req) {
            Class::Probe => true,
            Class::Invoke => !on_admin,
            Class::Manage => on_admin,
        };
        if !served {
            let error = ApiError::not_found(format!("route {} {}", req.method(), req.path()));
            return Ok(req.into_response(error.error_response()).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// The bound address of the listener that accepted the connection.
fn listener_of(req: &ServiceRequest) -> SocketAddr {
    req.app_config().local_addr()
}
