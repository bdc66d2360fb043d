//! Uploads spooled to disk as they arrive: a bundle of up to `max-upload-bytes`
//! never sits whole in the server's memory while its client sends it, however
//! many are in flight (their number is capped by `max-concurrent-uploads`).
//!
//! Owns the spool files under `<data-dir>/uploads` (emptied at start); each is
//! removed when its [`Spooled`] is dropped. It must never keep an upload's bytes
//! in memory beyond one network chunk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::body::{bad_multipart, declared_length, is_multipart, timed_out};
use super::error::ApiError;

/// An upload on disk; the file goes when this is dropped.
pub struct Spooled {
    pub path: PathBuf,
    pub size: u64,
}

impl AsRef<Path> for Spooled {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "cannot remove a spooled upload: {e}");
        }
    }
}

/// The spool directory of `data_dir`, emptied: files left there belong to
/// uploads of an earlier run that never finished.
pub fn reset_spool(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("uploads");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Spools an uploaded bundle into `dir` within `deadline`: the first file part
/// of a `multipart/form-data` body (the original project's upload), or else the
/// raw body (`application/zip`), at most `limit` bytes.
pub(crate) async fn spool_upload(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: Duration,
    dir: &Path,
) -> Result<Spooled, ApiError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!("upload-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot create a spool file for the upload: {e}")))?;
    // From here the file is removed whatever happens.
    let mut spooled = Spooled { path, size: 0 };
    let size = tokio::time::timeout(deadline, spool(req, payload, limit, file))
        .await
        .unwrap_or_else(|_| Err(timed_out(deadline)))?;
    spooled.size = size;
    Ok(spooled)
}

async fn spool(req: &HttpRequest, payload: web::Payload, limit: usize, file: tokio::fs::File) -> Result<u64, ApiError> {
    if !is_multipart(req) {
        if declared_length(req).is_some_and(|len| len > limit) {
            return Err(ApiError::too_large(limit));
        }
        return write_capped(payload, limit, file).await;
    }
    // Multipart framing adds a little to the file itself; allow for it.
    if declared_length(req).is_some_and(|len| len > limit.saturating_add(64 * 1024)) {
        return Err(ApiError::too_large(limit));
    }
    let mut parts = actix_multipart::Multipart::new(req.headers(), payload);
    while let Some(part) = parts.next().await {
        let part = part.map_err(bad_multipart)?;
        if part.content_disposition().and_then(|cd| cd.get_filename()).is_some() {
            return write_capped(part, limit, file).await;
        }
    }
    Err(ApiError::invalid_bundle("the multipart upload has no file part"))
}

async fn write_capped<S, E>(mut stream: S, limit: usize, mut file: tokio::fs::File) -> Result<u64, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let disk = |e: std::io::Error| ApiError::internal(format!("cannot write the upload to disk: {e}"));
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > limit as u64 {
            return Err(ApiError::too_large(limit));
        }
        file.write_all(&chunk).await.map_err(disk)?;
    }
    file.flush().await.map_err(disk)?;
    Ok(size)
}
