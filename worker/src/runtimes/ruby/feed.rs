//! The VM's WASI stdin: how the host hands the prelude its input (an
//! invocation's request, the function's environment, the entrypoint's name) as
//! bytes, without writing them into Ruby source to be parsed.
//!
//! The host fills the feed before a call and empties it after; in between the
//! prelude reads it to the end (`STDIN.read`), and a read of an empty feed is
//! end-of-file, never a wait. What a call did not read is dropped with it, so
//! an invocation never sees the bytes of another.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

#[derive(Clone, Default)]
pub struct Feed(Arc<Mutex<Bytes>>);

impl Feed {
    /// What the next reads return, replacing anything unread.
    pub fn set(&self, bytes: Vec<u8>) {
        *self.lock() = Bytes::from(bytes);
    }

    /// Drops whatever the last call left unread.
    pub fn clear(&self) {
        *self.lock() = Bytes::new();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bytes> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `size` bytes from the front; `None` once it is empty.
    fn take(&self, size: usize) -> Option<Bytes> {
        let mut b = self.lock();
        if b.is_empty() {
            return None;
        }
        let n = size.min(b.len());
        Some(b.split_to(n))
    }
}

impl IsTerminal for Feed {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for Feed {
    // The default would wrap `async_stream` in an adapter that reads ahead on a
    // task of its own; this stream is read in place, on the caller's thread.
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Feed {
    async fn ready(&mut self) {}
}

impl InputStream for Feed {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        // `Closed` is end-of-file to WASI preview 1's `fd_read` (0 bytes read);
        // the stream stays usable, and the next call's bytes are read from it.
        self.take(size).ok_or(StreamError::Closed)
    }
}

impl tokio::io::AsyncRead for Feed {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(bytes) = self.take(buf.remaining()) {
            buf.put_slice(&bytes);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_set_then_end_of_file_then_the_next_call() {
        let feed = Feed::default();
        let mut stream = feed.p2_stream();
        assert!(matches!(stream.read(10), Err(StreamError::Closed)), "empty is end-of-file");
        feed.set(b"hello".to_vec());
        assert_eq!(stream.read(3).expect("bytes").as_ref(), b"hel");
        assert_eq!(stream.read(10).expect("bytes").as_ref(), b"lo");
        assert!(matches!(stream.read(10), Err(StreamError::Closed)));
        feed.set(b"left over".to_vec());
        feed.clear();
        assert!(matches!(stream.read(10), Err(StreamError::Closed)), "cleared bytes are gone");
        feed.set(b"next".to_vec());
        assert_eq!(stream.read(10).expect("bytes").as_ref(), b"next");
    }
}
