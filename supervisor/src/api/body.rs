//! Reading request bodies with a cap and a deadline: a declared length over the
//! cap is refused before a byte is read, a stream that runs past it is cut off
//! there, and a body that has not all arrived by the deadline is answered `408`
//! (a client sending one byte a second holds a connection for no longer).
//! Uploads are not read here but spooled to disk (`super::upload`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use super::error::ApiError;

/// Reads the whole body, at most `limit` bytes, within `deadline`.
pub(crate) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
) -> Result<Vec<u8>, ApiError> {
    within(deadline, read_whole(req, payload, limit)).await
}

async fn read_whole(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = declared_length(req);
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::too_large(limit));
    }
    read_capped(payload, limit, declared.unwrap_or(0)).await
}

async fn within(
    deadline: Duration,
    read: impl std::future::Future<Output = Result<Vec<u8>, ApiError>>,
) -> Result<Vec<u8>, ApiError> {
    tokio::time::timeout(deadline, read).await.unwrap_or_else(|_| Err(timed_out(deadline)))
}

/// `408`: the body did not all arrive within `deadline`.
pub(super) fn timed_out(deadline: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!("the request body did not arrive within {} ms", deadline.as_millis()),
    )
}

const MULTIPART: &str = "multipart/form-data";

/// Whether the body is a multipart form (the original project's upload); asked
/// of every `POST` to its route, so without allocating.
pub fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..MULTIPART.len()))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(MULTIPART))
}

pub(super) fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers().get("content-length")?.to_str().ok()?.trim().parse().ok()
}

async fn read_capped<S, E>(mut stream: S, limit: usize, hint: usize) -> Result<Vec<u8>, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut body = Vec::with_capacity(hint.min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) fn bad_multipart(e: actix_multipart::MultipartError) -> ApiError {
    ApiError::invalid_bundle(format!("the multipart upload is malformed: {e}"))
}
