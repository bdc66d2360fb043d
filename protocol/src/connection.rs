//! The supervisor's end of a worker socket: the socket, registered with a tokio
//! runtime for readability only, plus a read buffer.
//!
//! A `Connection` is registered with the runtime that created it. The supervisor
//! keeps a worker's connection registered with the runtime of its last exchange,
//! and moves it ([`Connection::into_parts`], [`Connection::from_parts`]) when an
//! exchange runs on another: the request's own thread then waits for the answer
//! in its own event loop, with no hop through another thread.
//!
//! Readability only, because the kernel signals a Unix socket's writability each
//! time the peer consumes what was sent (`unix_write_space`): with write interest
//! registered, every `Invoke` the worker read woke the thread waiting for its
//! answer once for nothing. Writes go straight to the socket, which has room for
//! any frame but a large one; only a write that would block waits for
//! writability, through a registration of its own ([`Connection::writable`]).
//!
//! The peer may be running hostile code, so each connection reads against a frame
//! bound of its own ([`Connection::set_max_frame_len`]), which the supervisor
//! derives from what a legitimate answer can hold: a length prefix above it is an
//! error before a byte of the body is buffered, and the buffer never grows past it.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::frame::{self, FrameError};
use crate::message::FromWorker;

/// The read buffer a connection starts with, and keeps between frames.
const INITIAL_BUF: usize = 8 * 1024;

/// Reads and writes whole frames on one socket.
pub struct Connection {
    socket: AsyncFd<UnixStream>,
    /// `buf[..filled]` is what was received and not yet decoded; the rest is
    /// room for the next read. All of it is initialized (zeroed once, as it grew),
    /// so reads go straight into it.
    buf: Vec<u8>,
    filled: usize,
    /// The largest frame this side accepts from the peer (at most [`frame::MAX_FRAME_LEN`]).
    max_frame_len: usize,
}

impl Connection {
    /// Registers a non-blocking socket with the current runtime, accepting
    /// frames up to [`frame::MAX_FRAME_LEN`].
    ///
    /// # Errors
    /// If there is no current runtime with I/O enabled, or registration fails.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        Self::from_parts(stream, Vec::new(), frame::MAX_FRAME_LEN)
    }

    /// Registers a non-blocking socket with the current runtime, with the read
    /// buffer it had before (see [`Connection::into_parts`]) and a frame bound.
    ///
    /// # Errors
    /// If there is no current runtime with I/O enabled, or registration fails.
    pub fn from_parts(stream: UnixStream, mut buf: Vec<u8>, max_frame_len: usize) -> io::Result<Self> {
        if buf.len() < INITIAL_BUF {
            buf.resize(INITIAL_BUF, 0);
        }
        Ok(Self {
            socket: register(stream, Interest::READABLE)?,
            buf,
            filled: 0,
            max_frame_len: max_frame_len.min(frame::MAX_FRAME_LEN),
        })
    }

    /// The largest frame [`Connection::read_frame`] accepts from now on; frames
    /// announcing more are refused from their length prefix. Capped at
    /// [`frame::MAX_FRAME_LEN`].
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.max_frame_len = max.min(frame::MAX_FRAME_LEN);
    }

    /// Deregisters the socket from its runtime and gives it back, still
    /// non-blocking, with the read buffer for reuse. A buffer that grew for a
    /// large frame is given back at its starting size: an idle connection holds
    /// no memory a peer made it allocate.
    ///
    /// # Errors
    /// `Unexpected` if bytes beyond the last frame are buffered: the peer wrote
    /// something it was not asked for.
    pub fn into_parts(mut self) -> Result<(UnixStream, Vec<u8>), FrameError> {
        self.settle()?;
        Ok((self.socket.into_inner(), self.buf))
    }

    /// Ends an exchange on a connection that stays registered: nothing may be
    /// buffered beyond the answer, and a buffer that grew for a large frame goes
    /// back to its starting size.
    ///
    /// # Errors
    /// `Unexpected` if bytes beyond the last frame are buffered: the peer wrote
    /// something it was not asked for.
    pub fn settle(&mut self) -> Result<(), FrameError> {
        if self.filled > 0 {
            return Err(FrameError::Unexpected { expected: "nothing after the answer" });
        }
        if self.buf.len() > 8 * INITIAL_BUF {
            self.buf = vec![0; INITIAL_BUF];
        }
        Ok(())
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
            let received = &self.buf[..self.filled];
            if let Some((msg, used)) = frame::decode_within(received, self.max_frame_len)? {
                self.buf.copy_within(used..self.filled, 0);
                self.filled -= used;
                return Ok(Some(msg));
            }
            // Room for the whole announced frame (already checked against the
            // bound), so a large body is read in few syscalls, and no more. An
            // incomplete frame always wants more than is received, so there is room.
            let want = match frame::body_len_within(received, self.max_frame_len)? {
                Some(len) => frame::HEADER_LEN + len,
                None => INITIAL_BUF,
            };
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
            if self.read_some().await? == 0 {
                return if self.filled == 0 { Ok(None) } else { Err(FrameError::TruncatedFrame) };
            }
        }
    }

    /// One read into the buffer's room, once the socket is readable.
    async fn read_some(&mut self) -> io::Result<usize> {
        loop {
            let mut ready = self.socket.readable().await?;
            let room = &mut self.buf[self.filled..];
            let asked = room.len();
            match ready.try_io(|socket| socket.get_ref().read(room)) {
                Ok(Ok(n)) => {
                    // A stream socket reads short only when it had no more: the
                    // readiness is spent, and the next exchange on a connection
                    // that stays registered waits for the next event instead of
                    // first reading nothing. (A readiness that arrived since is
                    // kept: clearing is conditional on the event seen.)
                    if n < asked {
                        ready.clear_ready();
                    }
                    self.filled += n;
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                // Readiness was stale; `try_io` cleared it.
                Err(_would_block) => {}
            }
        }
    }

    /// Writes one message as one frame.
    pub async fn write_frame<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.write_bytes(&frame::encode(msg)?, None).await
    }

    /// Writes one message as one frame, with a duplicate of `fd` for the peer
    /// (`SCM_RIGHTS`). It is attached to the first write that takes bytes of the
    /// frame, so it arrives no later than the frame does (see
    /// [`crate::blocking::SocketReader`], which keeps it until asked).
    pub async fn write_frame_with_fd<T: Serialize>(&mut self, msg: &T, fd: BorrowedFd<'_>) -> Result<(), FrameError> {
        self.write_bytes(&frame::encode(msg)?, Some(fd)).await
    }

    async fn write_bytes(&mut self, bytes: &[u8], mut fd: Option<BorrowedFd<'_>>) -> Result<(), FrameError> {
        let mut sent = 0;
        while sent < bytes.len() {
            let wrote = match fd {
                Some(fd) => send_with_fd(self.socket.get_ref(), &bytes[sent..], fd),
                None => self.socket.get_ref().write(&bytes[sent..]),
            };
            match wrote {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => {
                    sent += n;
                    fd = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Waits until the socket has room again. The connection is registered for
    /// reading only, so this registers a duplicate descriptor of the same socket
    /// for writing, for the length of the wait (the kernel reports a socket that
    /// is already writable at registration). Only a frame larger than the
    /// socket's buffer gets here.
    async fn writable(&self) -> io::Result<()> {
        let second = register(self.socket.get_ref().try_clone()?, Interest::WRITABLE)?;
        let _ready = second.writable().await?;
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

/// Registers an owned socket with the current runtime's reactor.
fn register(socket: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: `register_with_interest` needs the descriptor to stay open, and to
    // be the one `as_raw_fd` returns, for as long as the `AsyncFd` holds it. A
    // `UnixStream` owns its descriptor: it is closed only when the stream drops,
    // which the `AsyncFd` does only after deregistering it (or hands it back by
    // `into_inner`, deregistered), and its `as_raw_fd` always returns that one
    // descriptor. Nothing here reaches the stream mutably (only `get_ref`), so it
    // is never swapped for another.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(io::Error::from)
}

/// One `sendmsg` of `bytes` (or their start) carrying a duplicate of `fd`.
fn send_with_fd(socket: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    let fds = [fd.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&fds)];
    sendmsg::<UnixAddr>(socket.as_raw_fd(), &[io::IoSlice::new(bytes)], &rights, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(io::Error::from)
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

    /// A connected pair: ours registered, theirs a plain blocking socket.
    fn pair() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        (Connection::new(ours).expect("register"), theirs)
    }

    /// Two registered ends.
    fn connections() -> (Connection, Connection) {
        let (a, b) = UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        (Connection::new(a).expect("register"), Connection::new(b).expect("register"))
    }

    #[tokio::test]
    async fn frames_cross_a_socket_and_eof_is_clean() {
        let (mut a, mut b) = connections();
        a.write_frame(&FromWorker::Hello { pid: 42, protocol_version: crate::PROTOCOL_VERSION }).await.expect("write");
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        assert_eq!(b.read_hello().await.expect("hello"), 42);
        assert_eq!(b.read_frame::<ToWorker>().await.expect("read"), Some(ToWorker::Shutdown));
        drop(a);
        assert_eq!(b.read_frame::<ToWorker>().await.expect("clean eof"), None);
    }

    #[tokio::test]
    async fn a_socket_moves_between_runtimes_between_frames() {
        let (mut a, b) = connections();
        let (socket, buf) = b.into_parts().expect("nothing buffered");
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
        let (mut a, mut b) = connections();
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        // Both frames may arrive in one read; the second stays buffered.
        assert_eq!(b.read_frame::<ToWorker>().await.expect("read"), Some(ToWorker::Shutdown));
        if b.filled > 0 {
            assert!(matches!(b.into_parts(), Err(FrameError::Unexpected { .. })));
        }
    }

    #[tokio::test]
    async fn a_frame_over_the_connection_bound_is_refused_from_its_prefix() {
        let (mut b, mut a) = pair();
        b.set_max_frame_len(1024);
        // A prefix announcing 100 MiB, and none of the body: refused at once.
        a.write_all(&(100u32 << 20).to_be_bytes()).expect("write");
        let err = b.read_frame::<ToWorker>().await.expect_err("over the bound");
        assert!(matches!(err, FrameError::TooLarge { len, max: 1024 } if len == 100 << 20), "{err}");
        assert!(b.buf.len() < 64 * 1024, "reserved {} bytes for a refused frame", b.buf.len());
    }

    #[tokio::test]
    async fn a_large_frame_leaves_no_large_buffer_behind() {
        let (mut a, mut b) = connections();
        let big = crate::message::HttpResponse { status: 200, headers: vec![], body: vec![7; 1 << 20] };
        let msg = FromWorker::Response { id: 1, response: big, logs: Default::default(), stats: Default::default() };
        let writer = tokio::spawn(async move { a.write_frame(&msg).await.map(|()| a) });
        assert!(matches!(b.read_frame::<FromWorker>().await, Ok(Some(FromWorker::Response { .. }))));
        let _a = writer.await.expect("task").expect("write");
        let (_, buf) = b.into_parts().expect("nothing buffered");
        assert!(buf.len() <= INITIAL_BUF * 8, "kept {} bytes", buf.len());
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_socket_buffer_waits_for_room() {
        let (mut a, theirs) = pair();
        let big = crate::message::HttpResponse { status: 200, headers: vec![], body: vec![3; 4 << 20] };
        let msg = FromWorker::Response { id: 9, response: big, logs: Default::default(), stats: Default::default() };
        let reader = std::thread::spawn(move || crate::blocking::read_frame::<FromWorker>(&mut &theirs));
        a.write_frame(&msg).await.expect("write");
        let got = reader.join().expect("thread").expect("read");
        assert!(matches!(got, Some(FromWorker::Response { id: 9, response, .. }) if response.body.len() == 4 << 20));
    }

    #[tokio::test]
    async fn a_descriptor_travels_with_its_frame_and_waits_to_be_taken() {
        use std::os::fd::AsFd;
        let (mut a, theirs) = pair();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("main.py"), "x = 1").expect("write");
        let opened = std::fs::File::open(dir.path()).expect("open dir");
        a.write_frame(&ToWorker::Shutdown).await.expect("write");
        a.write_frame_with_fd(&ToWorker::Shutdown, opened.as_fd()).await.expect("write with fd");
        drop(opened);
        let mut reader = crate::blocking::SocketReader::new(theirs);
        assert!(reader.take_fd().is_none(), "nothing before a frame is read");
        assert_eq!(crate::blocking::read_frame::<ToWorker>(&mut reader).expect("read"), Some(ToWorker::Shutdown));
        assert_eq!(crate::blocking::read_frame::<ToWorker>(&mut reader).expect("read"), Some(ToWorker::Shutdown));
        let fd = reader.take_fd().expect("the descriptor arrived with its frame");
        assert!(reader.take_fd().is_none(), "one descriptor, taken once");
        let through = format!("/proc/self/fd/{}/main.py", fd.as_raw_fd());
        assert_eq!(std::fs::read_to_string(through).expect("read through it"), "x = 1");
    }

    #[tokio::test]
    async fn eof_mid_frame_is_an_error() {
        let (mut b, mut a) = pair();
        a.write_all(&[0, 0, 0, 10, 1, 2]).expect("write");
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
