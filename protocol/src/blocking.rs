//! The worker's end of the socket: the same frames over a blocking `std` stream,
//! and [`SocketReader`], the reading half that also receives the descriptors the
//! supervisor attaches to frames.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use serde::{Serialize, de::DeserializeOwned};

use crate::frame::{self, FrameError, HEADER_LEN};

/// Reads the next message from `r`.
///
/// # Returns
/// `Ok(None)` on a clean end of stream before the first byte of a frame.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::TruncatedFrame),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Checked against the cap before the body buffer is allocated.
    let len = frame::body_len(&header)?.unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::TruncatedFrame,
        _ => FrameError::Io(e),
    })?;
    let (msg, rest) = postcard::take_from_bytes(&body).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(Some(msg))
}

/// Writes one message as one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    w.write_all(&frame::encode(msg)?)?;
    w.flush()?;
    Ok(())
}

/// The worker's reading half of the supervisor socket.
///
/// It sleeps in `poll(POLLIN)` rather than in a blocking `recv`. A blocking reader
/// waits on the socket's one wait queue, which the kernel also wakes, for writers,
/// whenever the supervisor consumes an answer the worker sent
/// (`unix_write_space`): an idle worker was woken for nothing after every
/// invocation, two context switches more. `poll` registers for `POLLIN` alone,
/// and the kernel skips it for that wakeup.
///
/// Until [`SocketReader::refuse_fds`], it reads with `recvmsg` and keeps, in
/// order, the descriptors that arrive with the bytes it reads (the bundle
/// directory of `Prepare` and `Init`), for [`SocketReader::take_fd`]. They are
/// received close-on-exec. After it, reads are plain `recv`s, and the kernel
/// closes any descriptor sent along unread: a specialized worker has no use for
/// one, and its syscall filter has no `recvmsg`.
pub struct SocketReader {
    socket: UnixStream,
    fds: VecDeque<OwnedFd>,
    taking_fds: bool,
}

/// At most this many descriptors arrive with one read: the supervisor sends one
/// per frame, and a read that would carry more is an error (`MSG_CTRUNC`).
const FDS_PER_READ: usize = 4;

impl SocketReader {
    pub fn new(socket: UnixStream) -> Self {
        Self { socket, fds: VecDeque::new(), taking_fds: true }
    }

    /// The oldest descriptor received and not yet taken.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
    }

    /// Stops receiving descriptors, and closes any not taken.
    pub fn refuse_fds(&mut self) {
        self.taking_fds = false;
        self.fds.clear();
    }

    fn wait_readable(&self) -> io::Result<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                // Readable, hung up or in error: the read itself says which.
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn recv_with_fds(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
        let mut space = nix::cmsg_space!([RawFd; FDS_PER_READ]);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<UnixAddr>(self.socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        let mut received = Vec::new();
        // `cmsgs` fails on MSG_CTRUNC (more descriptors than room, which the
        // supervisor never sends): the read is an error and the worker exits,
        // closing whatever the kernel did install.
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                received.extend(fds);
            }
        }
        let bytes = msg.bytes;
        for fd in received {
            // SAFETY: the kernel has just installed `fd` in this process's table
            // for this `recvmsg` (SCM_RIGHTS), and nothing else in the process has
            // seen its number: this `OwnedFd` is its only owner, and closes it once.
            self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(bytes)
    }
}

impl Read for SocketReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait_readable()?;
        if self.taking_fds { self.recv_with_fds(buf) } else { self.socket.read(buf) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToWorker;

    #[test]
    fn round_trip_and_eof() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &ToWorker::Shutdown).expect("write");
        let mut r = buf.as_slice();
        assert_eq!(read_frame::<ToWorker>(&mut r).expect("read"), Some(ToWorker::Shutdown));
        assert_eq!(read_frame::<ToWorker>(&mut r).expect("eof"), None);
    }

    #[test]
    fn truncated_and_oversized_are_errors() {
        let mut r: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(read_frame::<ToWorker>(&mut r), Err(FrameError::TruncatedFrame)));
        let mut r: &[u8] = &[0, 0];
        assert!(matches!(read_frame::<ToWorker>(&mut r), Err(FrameError::TruncatedFrame)));
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame::<ToWorker>(&mut r), Err(FrameError::TooLarge { .. })));
    }
}
