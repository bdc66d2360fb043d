//! `X-Request-Id`: taken from the client when it sends a sane one, generated
//! otherwise, echoed on the response and written on the invocation's log line.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

/// The request's id, in the request's extensions: the header value itself, so
/// the extension, the response header and the log line share one allocation.
#[derive(Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Sane (printable ASCII) by construction, so never the default.
        self.0.to_str().unwrap_or_default()
    }
}

const HEADER: &str = "x-request-id";

pub(crate) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.headers().get(HEADER).filter(|v| v.to_str().is_ok_and(is_sane)).cloned().unwrap_or_else(generate);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    res.headers_mut().insert(HeaderName::from_static(HEADER), id);
    Ok(res)
}

/// Short printable ASCII only: it goes into log lines.
fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Unique within a run (a counter) and across runs (a start-time prefix).
fn generate() -> HeaderValue {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        nanos ^ std::process::id().rotate_left(16)
    });
    let id = format!("{prefix:08x}-{:08x}", COUNTER.fetch_add(1, Ordering::Relaxed));
    // Hex digits and a dash: always a valid header value.
    HeaderValue::try_from(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sane_and_unique() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(is_sane(RequestId(a).as_str()));
        assert!(!is_sane("has space"));
        assert!(!is_sane(""));
        assert!(!is_sane(&"x".repeat(129)));
    }
}
