//! The supervisor's end of a worker socket: a tokio `UnixStream` plus a read buffer.
//!
//! A `Connection` is registered with the runtime that created it. The supervisor
//! keeps an idle worker's socket unregistered ([`Connection::into_parts`]) and
//! registers it with whichever runtime runs the next exchange
//! ([`Connection::from_parts`]): the request's own thread then waits for the
//! answer in its own event loop, with no hop through another thread.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::frame::{self, FrameError};
use crate::message::FromWorker;

/// Reads and writes whole frames on one socket.
pub struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Connection {
    pub fn new(stream: UnixStream) -> Self {
        Self { stream, buf: Vec::with_capacity(8 * 1024) }
    }

    /// Registers a non-blocking socket with the current runtime, with the read
    /// buffer it had before (see [`Connection::into_parts`]).
    ///
    /// # Errors
    /// If there is no current runtime with I/O enabled, or registration fails.
    pub fn from_parts(stream: std::os::unix::net::UnixStream, buf: Vec<u8>) -> std::io::Result<Self> {
        Ok(Self { stream: UnixStream::from_std(stream)?, buf })
    }

    /// Deregisters the socket from its runtime and gives it back, still
    /// non-blocking, with the (empty) read buffer for reuse.
    ///
    /// # Errors
    /// `Unexpected` if bytes beyond the last frame are buffered: the peer wrote
    /// something it was not asked for. `Io` if deregistering fails.
    pub fn into_parts(self) -> Result<(std::os::unix::net::UnixStream, Vec<u8>), FrameError> {
        if !self.buf.is_empty() {
            return Err(FrameError::Unexpected { expected: "nothing after the answer" });
        }
        Ok((self.stream.into_std()?, self.buf))
    }

    /// Reads the next message.
    ///
    /// # Returns
    /// `Ok(None)` on a clean end of stream (the peer closed between frames).
    ///
    /// # Errors
    /// `TruncatedFrame` if the stream ends mid-frame; `TooLarge` or `Decode` for a
    /// frame that breaks the protocol; `Io` from the socket.
    pub async fn read_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some((msg, used)) = frame::decode(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(msg));
            }
            // Reserve for the announced frame (already checked against the cap), so a
            // large body is read in few syscalls.
            if let Some(len) = frame::body_len(&self.buf)? {
                let want = frame::HEADER_LEN + len;
                self.buf.reserve(want.saturating_sub(self.buf.len()));
            } else {
                self.buf.reserve(8 * 1024);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(FrameError::TruncatedFrame) };
            }
        }
    }

    /// Writes one message as one frame.
    pub async fn write_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        let bytes = frame::encode(msg)?;
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// Reads the worker's first message, which must be a `Hello` of our version.
    ///
    /// # Returns
    /// The worker's pid as it reports it.
    pub async fn read_hello(&mut self) -> Result<u32, FrameError> {
        match self.read_frame::<FromWorker>().await? {
            Some(hello) => check_hello(hello),
            None => Err(FrameError::TruncatedFrame),
        }
    }
}

/// Accepts a `Hello` of this crate's protocol version.
pub fn check_hello(msg: FromWorker) -> Result<u32, FrameError> {
    match msg {
        FromWorker::Hello { pid, protocol_version } if protocol_version == crate::PROTOCOL_VERSION => Ok(pid),
        FromWorker::Hello { protocol_version, .. } => {
            Err(FrameError::VersionMismatch { theirs: protocol_version, ours: crate::PROTOCOL_VERSION })
        }
        _ => Err(FrameError::Unexpected { expected: "Hello" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToWorker;

    #[tokio::test]
    async fn frames_cross_a_socket_and_eof_is_clean() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        a.write_frame(&FromWorker::Hello { pid: 42, protocol_version: crate::PROTOCOL_VERSION }).await.expect("write");
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        assert_eq!(b.read_hello().await.expect("hello"), 42);
        assert_eq!(b.read_frame::<ToWorker>().await.expect("read"), Some(ToWorker::Shutdown));
        drop(a);
        assert_eq!(b.read_frame::<ToWorker>().await.expect("clean eof"), None);
    }

    #[tokio::test]
    async fn a_socket_moves_between_runtimes_between_frames() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut a = Connection::new(a);
        let (socket, buf) = Connection::new(b).into_parts().expect("nothing buffered");
        let thread = std::thread::spawn(move || {
            let other = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
            other.block_on(async move {
                let mut b = Connection::from_parts(socket, buf).expect("register");
                b.read_frame::<ToWorker>().await.expect("read")
            })
        });
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        assert_eq!(thread.join().expect("thread"), Some(ToWorker::Shutdown));
    }

    #[tokio::test]
    async fn unread_bytes_keep_a_socket_from_moving() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        // Both frames may arrive in one read; the second stays buffered.
        assert_eq!(b.read_frame::<ToWorker>().await.expect("read"), Some(ToWorker::Shutdown));
        if !b.buf.is_empty() {
            assert!(matches!(b.into_parts(), Err(FrameError::Unexpected { .. })));
        }
    }

    #[tokio::test]
    async fn eof_mid_frame_is_an_error() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut b = Connection::new(b);
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.expect("write");
        drop(a);
        assert!(matches!(b.read_frame::<ToWorker>().await, Err(FrameError::TruncatedFrame)));
    }

    #[tokio::test]
    async fn wrong_version_and_wrong_first_message_are_errors() {
        let wrong = FromWorker::Hello { pid: 1, protocol_version: crate::PROTOCOL_VERSION + 1 };
        assert!(matches!(check_hello(wrong), Err(FrameError::VersionMismatch { .. })));
        assert!(matches!(check_hello(FromWorker::InitOk), Err(FrameError::Unexpected { .. })));
    }
}
