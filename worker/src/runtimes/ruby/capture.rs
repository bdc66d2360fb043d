//! A WASI stdout/stderr for a store that lives as long as the worker: each
//! invocation's output is drained by the host afterwards, and capped.
//!
//! wasmtime-wasi asks a `StdoutStream` for its stream once per store, so the
//! buffer is shared (`Arc<Mutex<…>>`) between that stream and the host.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Clone)]
pub struct Capture(Arc<Mutex<Buffer>>);

struct Buffer {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl Capture {
    pub fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(Buffer { bytes: Vec::new(), cap, overflowed: false })))
    }

    pub fn set_cap(&self, cap: usize) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).cap = cap;
    }

    /// Takes what was written since the last call, and whether some was dropped.
    pub fn take(&self) -> (Vec<u8>, bool) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut b.bytes), std::mem::replace(&mut b.overflowed, false))
    }

    fn push(&self, data: &[u8]) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = b.cap.saturating_sub(b.bytes.len());
        if data.len() > room {
            b.overflowed = true;
        }
        let n = data.len().min(room);
        b.bytes.extend_from_slice(&data[..n]);
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Never 0: wasmtime-wasi's blocking write loops until there is room, and
        // past the cap the excess is dropped (and reported) rather than refused.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
