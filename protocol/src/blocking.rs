//! The worker's end of the socket: the same frames over a blocking `std` stream.

use std::io::{Read, Write};

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
