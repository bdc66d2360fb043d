//! The supervisor's end of a worker socket: a tokio `UnixStream` plus a read buffer.
//!
//! A `Connection` is registered with the runtime that created it. The supervisor
//! keeps an idle worker's socket unregistered ([`Connection::into_parts`]) and
//! registers it with whichever runtime runs the next exchange
//! ([`Connection::from_parts`]): the request's own thread then waits for the
//! answer in its own event loop, with no hop through another thread.
//!
//! The peer may be running hostile code, so each connection reads against a frame
//! bound of its own ([`Connection::set_max_frame_len`]), which the supervisor
//! derives from what a legitimate answer can hold: a length prefix above it is an
//! error before a byte of the body is buffered, and the buffer never grows past it.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::frame::{self, FrameError};
use crate::message::FromWorker;

/// The read buffer a connection starts with, and keeps between frames.
const INITIAL_BUF: usize = 8 * 1024;

/// Reads and writes whole frames on one socket.
pub struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
    /// The largest frame this side accepts from the peer (at most [`frame::MAX_FRAME_LEN`]).
    max_frame_len: usize,
}

impl Connection {
    /// A connection that accepts frames up to [`frame::MAX_FRAME_LEN`].
    pub fn new(stream: UnixStream) -> Self {
        Self { stream, buf: Vec::with_capacity(INITIAL_BUF), max_frame_len: frame::MAX_FRAME_LEN }
    }

    /// Registers a non-blocking socket with the current runtime, with the read
    /// buffer it had before (see [`Connection::into_parts`]) and a frame bound.
    ///
    /// # Errors
    /// If there is no current runtime with I/O enabled, or registration fails.
    pub fn from_parts(
        stream: std::os::unix::net::UnixStream,
        buf: Vec<u8>,
        max_frame_len: usize,
    ) -> std::io::Result<Self> {
        Ok(Self { stream: UnixStream::from_std(stream)?, buf, max_frame_len: max_frame_len.min(frame::MAX_FRAME_LEN) })
    }

    /// The largest frame [`Connection::read_frame`] accepts from now on; frames
    /// announcing more are refused from their length prefix. Capped at
    /// [`frame::MAX_FRAME_LEN`].
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.max_frame_len = max.min(frame::MAX_FRAME_LEN);
    }

    /// Deregisters the socket from its runtime and gives it back, still
    /// non-blocking, with the (empty) read buffer for reuse. A buffer that grew
    /// for a large frame is given back at its starting size: an idle connection
    /// holds no memory a peer made it allocate.
    ///
    /// # Errors
    /// `Unexpected` if bytes beyond the last frame are buffered: the peer wrote
    /// something it was not asked for. `Io` if deregistering fails.
    pub fn into_parts(mut self) -> Result<(std::os::unix::net::UnixStream, Vec<u8>), FrameError> {
        if !self.buf.is_empty() {
            return Err(FrameError::Unexpected { expected: "nothing after the answer" });
        }
        if self.buf.capacity() > 8 * INITIAL_BUF {
            self.buf = Vec::with_capacity(INITIAL_BUF);
        }
        Ok((self.stream.into_std()?, self.buf))
    }

    /// Reads the next message.
    ///
    /// # Returns
    /// `Ok(None)` on a clean end of stream (the peer closed between frames).
    ///
    /// # Errors
    /// `TruncatedFrame` if the stream ends mid-frame; `TooLarge` (from the length
    /// prefix alone, against this connection's bound) or `Decode` for a frame that
    /// breaks the protocol; `Io` from the socket.
    pub async fn read_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        loop {
            if let Some((msg, used)) = frame::decode_within(&self.buf, self.max_frame_len)? {
                self.buf.drain(..used);
                return Ok(Some(msg));
            }
            // Room for the whole announced frame (already checked against the
            // bound), so a large body is read in few syscalls, and no more: an
            // exact reservation, not the doubling a plain `reserve` may do.
            let want = match frame::body_len_within(&self.buf, self.max_frame_len)? {
                Some(len) => frame::HEADER_LEN + len,
                None => INITIAL_BUF,
            };
            if self.buf.capacity() == self.buf.len() || want > self.buf.capacity() {
                self.buf.reserve_exact(want.saturating_sub(self.buf.len()).max(1));
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
                let mut b = Connection::from_parts(socket, buf, 1024).expect("register");
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
    async fn a_frame_over_the_connection_bound_is_refused_from_its_prefix() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut b = Connection::new(b);
        b.set_max_frame_len(1024);
        // A prefix announcing 100 MiB, and none of the body: refused at once.
        a.write_all(&(100u32 << 20).to_be_bytes()).await.expect("write");
        let err = b.read_frame::<ToWorker>().await.expect_err("over the bound");
        assert!(matches!(err, FrameError::TooLarge { len, max: 1024 } if len == 100 << 20), "{err}");
        assert!(b.buf.capacity() < 64 * 1024, "reserved {} bytes for a refused frame", b.buf.capacity());
    }

    #[tokio::test]
    async fn a_large_frame_leaves_no_large_buffer_behind() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let big = crate::message::HttpResponse { status: 200, headers: vec![], body: vec![7; 1 << 20] };
        let msg = FromWorker::Response { id: 1, response: big, logs: Default::default(), stats: Default::default() };
        let writer = tokio::spawn(async move { a.write_frame(&msg).await.map(|()| a) });
        assert!(matches!(b.read_frame::<FromWorker>().await, Ok(Some(FromWorker::Response { .. }))));
        let _a = writer.await.expect("task").expect("write");
        let (_, buf) = b.into_parts().expect("nothing buffered");
        assert!(buf.capacity() <= INITIAL_BUF * 8, "kept {} bytes", buf.capacity());
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
