//! The one place an error becomes an HTTP response:
//! `{"error": "<human message>", "code": "<stable_snake_case>"}` with its status.
//! Codes are part of the API: add new ones, never rename one.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::deploy::{DeployError, TaskFailed};
use crate::pool::PoolError;
use crate::store::name::InvalidName;
use crate::store::{BundleError, StoreError};

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `Retry-After` on 429 and 503.
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn invalid_bundle(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_bundle", message)
    }

    pub fn invalid_handler(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_handler", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the request body is larger than {limit} bytes"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header(("retry-after", seconds.to_string()));
        }
        response.json(Body { error: &self.message, code: self.code })
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_name", e.to_string())
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        let message = e.to_string();
        match e {
            PoolError::Overloaded => Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message).retry_after(1),
            PoolError::InitFailed(_) => Self::new(StatusCode::BAD_GATEWAY, "handler_error", message),
            PoolError::Unhealthy { retry_after, .. } => {
                let seconds = u32::try_from(retry_after.as_secs().max(1)).unwrap_or(u32::MAX);
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", message).retry_after(seconds)
            }
            PoolError::NotReady(_) | PoolError::ShuttingDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message).retry_after(1)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Bundle(BundleError::Io(io)) | StoreError::Io(io) => {
                tracing::error!("store i/o error: {io}");
                Self::internal(format!("the store could not write the bundle: {io}"))
            }
            StoreError::Bundle(BundleError::TooLarge(_)) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            StoreError::Bundle(ref bundle) => Self::new(StatusCode::BAD_REQUEST, bundle.code(), e.to_string()),
            StoreError::Limit(_) | StoreError::Rejected(_) => Self::invalid_bundle(e.to_string()),
            StoreError::Quota(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded", e.to_string()),
            StoreError::TooManyFunctions(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_functions", e.to_string())
            }
            StoreError::NotFound(name) => Self::not_found(format!("function {name}")),
            StoreError::NoSuchVersion(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::Exists(_) => Self::new(StatusCode::CONFLICT, "exists", e.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!("{e}");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
            }
            StoreError::BadArtifact(_) | StoreError::Index(_) | StoreError::Tampered(_) => {
                tracing::error!("store error: {e}");
                Self::internal(e.to_string())
            }
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let message = e.to_string();
        match e {
            DeployError::Store(e) => e.into(),
            DeployError::Pool(e) => e.into(),
            DeployError::Task(e) => e.into(),
            DeployError::Unsupported(_) => Self::invalid_bundle(message),
            DeployError::InvalidHandler(_) => Self::invalid_handler(message),
            DeployError::WorkerAnswer(_) | DeployError::Spool(_) => Self::internal(message),
        }
    }
}

impl From<TaskFailed> for ApiError {
    fn from(e: TaskFailed) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::AdminDisabled => Self::new(StatusCode::FORBIDDEN, "admin_disabled", message),
            AuthError::Throttled { seconds } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "auth_throttled", message).retry_after(seconds)
            }
            AuthError::WrongToken => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            AuthError::NoToken => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
        }
    }
}
