//! The supervisor ↔ worker protocol: what the two processes say to each other and
//! how it is framed on a Unix stream socket.
//!
//! - [`message`]: the messages (`Hello`, `Prepare`, `Init`, `Invoke`, `Shutdown` and
//!   their answers), modelled on OpenWhisk's /init + /run and Lambda's runtime API.
//! - [`frame`]: turns one message into bytes and back. Knows nothing about sockets;
//!   every length is checked against [`MAX_FRAME_LEN`] before anything is allocated.
//! - [`connection`]: owns a tokio `UnixStream` and its read buffer (the supervisor side).
//! - [`blocking`]: the same over a `std` stream (the worker side, which runs one
//!   invocation at a time), and the worker's reader, which also receives the
//!   descriptor a frame carries (the bundle's directory, with `Prepare`/`Init`).
//! - [`launch`] and [`sandbox`]: what reaches a worker before its first message —
//!   its command line and its sandbox configuration — typed once for both sides.
//!
//! This crate must never trust a length or a version it reads: a worker may be
//! running hostile code, and a corrupt frame is an error, never a panic.

pub mod blocking;
pub mod connection;
pub mod frame;
pub mod launch;
pub mod message;
pub mod sandbox;

pub use frame::{FrameError, MAX_FRAME_LEN};
pub use message::*;

/// Bumped on any change to [`message`] that an older peer could not decode.
pub const PROTOCOL_VERSION: u32 = 3;
