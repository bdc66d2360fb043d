//! The tokio runtime that wasmtime-wasi's synchronous WASI calls run on.
//!
//! wasmtime-wasi runs each WASI call a guest makes inside a tokio runtime: the
//! current one if the calling thread has entered one, else a multi-threaded
//! runtime of its own, built on first use. Its own would start threads whenever
//! the first call comes, and a thread that exists before the sandbox's function
//! layer would not carry that layer. So the worker enters runtimes of its own on
//! the main thread, and never leaves them:
//!
//! - [`enter_blank`], while the worker is blank: a current-thread runtime, which
//!   starts no thread. The Ruby VM boots on it; its calls complete at once (no
//!   timer, no I/O readiness, which this runtime would not drive).
//! - [`start_threads`], at the sandbox's step 12, once the function layer is on:
//!   a runtime with one worker thread, which drives timers and I/O, for the
//!   function's calls. Its threads inherit the layer.
//!
//! Must never: start a thread before [`start_threads`].

use tokio::runtime::{Builder, Runtime};

/// Enters the blank worker's runtime on this thread.
///
/// # Errors
/// If tokio cannot create its drivers (descriptors exhausted).
pub fn enter_blank() -> std::io::Result<()> {
    enter(Builder::new_current_thread().enable_io().enable_time().build()?);
    Ok(())
}

/// Enters the function's runtime on this thread, over the blank one, and starts
/// its thread.
///
/// # Errors
/// If tokio cannot create its drivers or its thread.
pub fn start_threads() -> std::io::Result<()> {
    enter(Builder::new_multi_thread().worker_threads(1).thread_name("wasi-io").enable_io().enable_time().build()?);
    Ok(())
}

/// Makes `runtime` the current one on this thread for the rest of the process.
/// It is leaked (it lives as long as the process anyway), and so is the guard
/// that would restore the previous runtime.
fn enter(runtime: Runtime) {
    let runtime: &'static Runtime = Box::leak(Box::new(runtime));
    std::mem::forget(runtime.enter());
}
