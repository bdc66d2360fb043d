//! One frame = a big-endian `u32` length, then that many bytes of postcard.
//!
//! This module only turns bytes into a message and back; the connections own the
//! sockets. An incomplete buffer is an expected state (`Ok(None)`), not an error.

use serde::{Serialize, de::DeserializeOwned};

/// The largest frame either side will send or accept. It bounds every buffer the
/// protocol allocates; it must hold the largest request or response body plus the
/// largest precompiled module, and nothing bigger is ever read. A reader that
/// knows less may be expected (the supervisor, reading a worker that runs user
/// code) passes a lower bound of its own to [`body_len_within`].
pub const MAX_FRAME_LEN: usize = 128 * 1024 * 1024;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// What [`encode`] reserves up front: a small request or answer, headers included.
const TYPICAL_FRAME_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    #[error("frame does not decode: {0}")]
    Decode(#[source] postcard::Error),
    #[error("message does not encode: {0}")]
    Encode(#[source] postcard::Error),
    #[error("peer speaks protocol version {theirs}, this side speaks {ours}")]
    VersionMismatch { theirs: u32, ours: u32 },
    #[error("expected {expected}, got another message")]
    Unexpected { expected: &'static str },
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one frame (length prefix included).
///
/// # Errors
/// `TooLarge` if the encoded message would exceed [`MAX_FRAME_LEN`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    // Room for a typical invocation's frame: grown from the prefix's 4 bytes, an
    // answer was reallocated six times (callgrind, both sides).
    let mut out = Vec::with_capacity(TYPICAL_FRAME_LEN);
    out.resize(HEADER_LEN, 0);
    out = postcard::to_extend(msg, out).map_err(FrameError::Encode)?;
    let len = out.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN });
    }
    // Cannot truncate: `len <= MAX_FRAME_LEN < u32::MAX`.
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Reads the length prefix at the start of `buf`, against [`MAX_FRAME_LEN`].
///
/// # Returns
/// `Ok(None)` if fewer than [`HEADER_LEN`] bytes are buffered, else the body length.
///
/// # Errors
/// `TooLarge` as soon as the prefix announces more than [`MAX_FRAME_LEN`], before
/// anyone reserves memory for it.
pub fn body_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    body_len_within(buf, MAX_FRAME_LEN)
}

/// [`body_len`] against the lower of `max` and [`MAX_FRAME_LEN`].
///
/// # Errors
/// `TooLarge` as soon as the prefix announces more than that bound.
pub fn body_len_within(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut be = [0u8; HEADER_LEN];
    be.copy_from_slice(header);
    let len = u32::from_be_bytes(be) as usize;
    let max = max.min(MAX_FRAME_LEN);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Decodes one frame from the front of `buf`, against [`MAX_FRAME_LEN`].
///
/// # Returns
/// `Ok(None)` if `buf` does not yet hold a whole frame; otherwise the message and
/// the number of bytes it took, which the caller drops from its buffer.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    decode_within(buf, MAX_FRAME_LEN)
}

/// [`decode`] against the lower of `max` and [`MAX_FRAME_LEN`].
pub fn decode_within<T: DeserializeOwned>(buf: &[u8], max: usize) -> Result<Option<(T, usize)>, FrameError> {
    let Some(len) = body_len_within(buf, max)? else {
        return Ok(None);
    };
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    // A frame must be exactly one message: trailing bytes mean the peers disagree
    // about the schema, and guessing would be worse than failing.
    let (msg, rest) = postcard::take_from_bytes(body).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(Some((msg, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;

    fn invoke() -> ToWorker {
        ToWorker::Invoke(Invoke {
            id: 7,
            request: HttpRequest {
                method: "POST".into(),
                path: "/a/b".into(),
                query: "x=1".into(),
                headers: vec![("x-h".into(), "v".into())],
                body: br#"{"name":"John"}"#.to_vec(),
            },
            deadline_ms: 1000,
        })
    }

    #[test]
    fn round_trips_every_message() {
        let to: Vec<ToWorker> = vec![
            invoke(),
            ToWorker::Shutdown,
            ToWorker::Init(Init {
                function: "f".into(),
                version: 3,
                language: Language::Wasm,
                entrypoint: "m.wasm".into(),
                limits: Limits { timeout_ms: 1, memory_mb: 2, max_output_bytes: 3 },
                env: vec![("K".into(), "V".into())],
                wasm: WasmOptions { args: vec!["--gfm".into()], content_type: "text/html".into(), cgi: false },
            }),
            ToWorker::Prepare(Prepare {
                language: Language::Js,
                entrypoint: "h.js".into(),
                env: vec![("K".into(), "V".into())],
            }),
        ];
        for msg in to {
            let bytes = encode(&msg).expect("encodes");
            let (back, used) = decode::<ToWorker>(&bytes).expect("decodes").expect("whole");
            assert_eq!(back, msg);
            assert_eq!(used, bytes.len());
        }
        let from = FromWorker::Response {
            id: 9,
            response: HttpResponse { status: 201, headers: vec![], body: vec![0, 255, 1] },
            logs: Logs { text: "log".into(), truncated: true },
            stats: Stats { duration_us: 5, cold: true },
        };
        let bytes = encode(&from).expect("encodes");
        assert_eq!(decode::<FromWorker>(&bytes).expect("decodes"), Some((from, bytes.len())));
    }

    #[test]
    fn partial_input_is_incomplete_not_an_error() {
        let bytes = encode(&invoke()).expect("encodes");
        for cut in 0..bytes.len() {
            assert!(decode::<ToWorker>(&bytes[..cut]).expect("no error").is_none(), "cut {cut}");
        }
    }

    #[test]
    fn two_frames_in_one_buffer_decode_one_at_a_time() {
        let mut bytes = encode(&ToWorker::Shutdown).expect("encodes");
        bytes.extend(encode(&invoke()).expect("encodes"));
        let (first, used) = decode::<ToWorker>(&bytes).expect("ok").expect("whole");
        assert_eq!(first, ToWorker::Shutdown);
        let (second, _) = decode::<ToWorker>(&bytes[used..]).expect("ok").expect("whole");
        assert_eq!(second, invoke());
    }

    #[test]
    fn oversized_length_is_rejected_before_the_body_arrives() {
        let header = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(decode::<ToWorker>(&header), Err(FrameError::TooLarge { .. })));
        assert!(matches!(decode::<ToWorker>(&[0xff; 4]), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn a_lower_bound_is_checked_from_the_prefix_alone() {
        let bytes = encode(&invoke()).expect("encodes");
        let len = bytes.len() - HEADER_LEN;
        assert!(decode_within::<ToWorker>(&bytes, len).expect("fits").is_some());
        let err = decode_within::<ToWorker>(&bytes[..HEADER_LEN], len - 1).expect_err("over the bound");
        assert!(matches!(err, FrameError::TooLarge { len: l, max } if l == len && max == len - 1));
        // A bound above the protocol's own cap does not raise it.
        let header = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(decode_within::<ToWorker>(&header, usize::MAX), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        // Every length prefix with a few patterns of body bytes, including a
        // variant tag past the end of the enum and vector lengths far past the input.
        for body in [vec![0xff; 16], vec![0x80; 16], vec![9, 0, 0], vec![2, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend(&body);
            assert!(decode::<ToWorker>(&frame).is_err(), "{body:?}");
            assert!(decode::<FromWorker>(&frame).is_err(), "{body:?}");
        }
    }

    #[test]
    fn trailing_bytes_in_a_frame_are_an_error() {
        let mut body = postcard::to_stdvec(&ToWorker::Shutdown).expect("encodes");
        body.push(0);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(&body);
        assert!(decode::<ToWorker>(&frame).is_err());
    }
}
