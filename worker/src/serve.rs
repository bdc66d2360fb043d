//! The worker's message loop: a blank worker is specialized once by `Init`, then
//! answers `Invoke`s one at a time until `Shutdown` or the end of the socket.
//!
//! Every answer is held to what the protocol promises the supervisor (see
//! [`bounded`]), whatever the runtime produced, and a panic inside a runtime
//! (a bug that user code reached) is answered as an error, after which the worker
//! exits rather than run more code on a runtime in an unknown state.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use polyfaas_protocol::blocking::{SocketReader, read_frame, write_frame};
use polyfaas_protocol::{
    FailureKind, FromWorker, HttpResponse, Logs, MAX_HEADERS_LEN, MAX_MESSAGE_LEN, PROTOCOL_VERSION, ToWorker,
};
use tracing::{error, info, warn};

use crate::runtimes::{Blank, Runtime};
use crate::sandbox::{self, Done, SandboxConfig};

/// The socket's read buffer: a typical request frame fits.
const READ_BUFFER: usize = 16 << 10;

/// Serves the supervisor on `socket` until it says `Shutdown` or hangs up.
///
/// The function half of the sandbox is applied on the first `Prepare` or `Init`,
/// before the runtime reads the bundle: both evaluate user code. A worker that
/// cannot confine itself answers with an error and exits.
pub fn run(socket: UnixStream, blank: Blank, sandbox_config: &SandboxConfig) -> Result<()> {
    // Buffered: a frame's length prefix and body arrive together, and are then
    // taken in one read instead of two.
    let socket_reader = SocketReader::new(socket.try_clone().context("cloning the socket")?);
    let mut reader = std::io::BufReader::with_capacity(READ_BUFFER, socket_reader);
    let mut writer = socket;
    write_frame(&mut writer, &FromWorker::Hello { pid: std::process::id(), protocol_version: PROTOCOL_VERSION })?;

    // Consumed by `Init`: a worker serves one function version for its whole life.
    let mut blank = Some(blank);
    let mut runtime: Option<Box<dyn Runtime>> = None;
    // The directory of the one bundle this worker serves, which came with the
    // first `Prepare` or `Init`. Held open for the process's life: the runtime
    // reaches the bundle through it.
    let mut bundle: Option<OwnedFd> = None;
    // Known from `Init`; until then no answer carries a body or logs.
    let mut max_output: u64 = 0;
    // Set when a runtime panicked: answer, then exit.
    let mut poisoned = false;
    while let Some(msg) = read_frame::<ToWorker>(&mut reader)? {
        let reply = match msg {
            ToWorker::Prepare(prepare) => {
                let prepared = match blank.as_mut() {
                    Some(b) => take_bundle(&mut reader, &mut bundle)
                        .and_then(|dir| confine(sandbox_config, dir, None, b))
                        .and_then(|path| guarded(&mut poisoned, || b.prepare(&prepare, &path)).and_then(|r| r)),
                    None => Err("worker is already specialized".into()),
                };
                match prepared {
                    Ok(artifacts) => FromWorker::Prepared { artifacts },
                    Err(message) => FromWorker::PrepareError { message },
                }
            }
            ToWorker::Init(init) => {
                let Some(fresh) = blank.take() else {
                    write_frame(
                        &mut writer,
                        &FromWorker::InitError { message: "worker is already specialized".into() },
                    )?;
                    continue;
                };
                info!(function = %init.function, version = init.version, "specializing");
                let confined = take_bundle(&mut reader, &mut bundle)
                    .and_then(|dir| confine(sandbox_config, dir, Some(init.limits.memory_mb), &fresh));
                let path = match confined {
                    Ok(path) => path,
                    Err(message) => {
                        write_frame(&mut writer, &FromWorker::InitError { message })?;
                        break;
                    }
                };
                max_output = init.limits.max_output_bytes;
                match guarded(&mut poisoned, || fresh.init(&init, &path)).and_then(|r| r) {
                    Ok(rt) => {
                        runtime = Some(rt);
                        FromWorker::InitOk
                    }
                    Err(message) => FromWorker::InitError { message },
                }
            }
            ToWorker::Invoke(invoke) => {
                let id = invoke.id;
                let deadline = Duration::from_millis(invoke.deadline_ms);
                match runtime.as_mut() {
                    Some(rt) => match guarded(&mut poisoned, || rt.invoke(invoke.request, deadline)) {
                        Ok(Ok(done)) => {
                            FromWorker::Response { id, response: done.response, logs: done.logs, stats: done.stats }
                        }
                        Ok(Err(f)) => FromWorker::Failure { id, kind: f.kind, message: f.message, logs: f.logs },
                        Err(message) => FromWorker::Failure {
                            id,
                            kind: FailureKind::HandlerError,
                            message,
                            logs: Default::default(),
                        },
                    },
                    None => {
                        warn!("Invoke before Init");
                        FromWorker::Failure {
                            id,
                            kind: FailureKind::HandlerError,
                            message: "worker has no function".into(),
                            logs: Default::default(),
                        }
                    }
                }
            }
            ToWorker::Shutdown => break,
        };
        write_frame(&mut writer, &bounded(reply, max_output))?;
        if poisoned {
            // Refuse the next job at once (the supervisor retries it elsewhere)
            // rather than leave it a moment to send one that would find us gone.
            let _ = writer.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
    Ok(())
}

/// The bundle directory that came with this `Prepare` or `Init`, kept in
/// `bundle` for the rest of the process. From here on the reader takes no more
/// descriptors: one bundle per worker.
fn take_bundle<'a>(
    reader: &mut std::io::BufReader<SocketReader>,
    bundle: &'a mut Option<OwnedFd>,
) -> Result<&'a OwnedFd, String> {
    let dir = reader.get_mut().take_fd();
    reader.get_mut().refuse_fds();
    match (dir, bundle.is_some()) {
        (Some(dir), false) => Ok(bundle.insert(dir)),
        (_, true) => Err("the worker already has a bundle".into()),
        (None, false) => Err("the supervisor sent no bundle directory with the message".into()),
    }
}

/// Runs a runtime call, turning a panic into an error message for the answer and
/// setting `poisoned`: whatever the runtime was doing was cut short, so the worker
/// serves nothing more. The panic itself was printed to stderr by the hook.
fn guarded<T>(poisoned: &mut bool, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        *poisoned = true;
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        error!("the runtime panicked: {what}; answering with an error and exiting");
        format!("the runtime failed inside the handler's call ({what}); the worker is replaced")
    })
}

/// Holds an answer to what the supervisor reads it against
/// (`Limits::max_answer_frame_len`, `MAX_SMALL_FRAME_LEN`): a body or logs over
/// `max_output`, or headers over [`MAX_HEADERS_LEN`], become `ResponseTooLarge`;
/// messages are cut at [`MAX_MESSAGE_LEN`]. One place for every runtime, so no
/// runtime can send a frame the supervisor would refuse as a protocol error.
fn bounded(reply: FromWorker, max_output: u64) -> FromWorker {
    let max_output = usize::try_from(max_output).unwrap_or(usize::MAX);
    match reply {
        FromWorker::Response { id, response, logs, stats } => match oversized(&response, &logs, max_output) {
            Some(message) => FromWorker::Failure {
                id,
                kind: FailureKind::ResponseTooLarge,
                message,
                logs: cut_logs(logs, max_output),
            },
            None => FromWorker::Response { id, response, logs, stats },
        },
        FromWorker::Failure { id, kind, message, logs } => {
            FromWorker::Failure { id, kind, message: cut(message, MAX_MESSAGE_LEN), logs: cut_logs(logs, max_output) }
        }
        FromWorker::InitError { message } => FromWorker::InitError { message: cut(message, MAX_MESSAGE_LEN) },
        FromWorker::PrepareError { message } => FromWorker::PrepareError { message: cut(message, MAX_MESSAGE_LEN) },
        other => other,
    }
}

/// Why a response may not be sent as it is, if it may not.
fn oversized(response: &HttpResponse, logs: &Logs, max_output: usize) -> Option<String> {
    let header_bytes: usize = response.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if response.body.len() > max_output {
        Some(format!("the handler's response body is over {max_output} bytes"))
    } else if logs.text.len() > max_output {
        Some(format!("the handler logged more than {max_output} bytes"))
    } else if header_bytes > MAX_HEADERS_LEN {
        Some(format!("the handler set {header_bytes} bytes of headers; at most {MAX_HEADERS_LEN} are allowed"))
    } else {
        None
    }
}

fn cut_logs(logs: Logs, max: usize) -> Logs {
    let truncated = logs.truncated || logs.text.len() > max;
    Logs { text: cut(logs.text, max), truncated }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let at = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(at);
    }
    text
}

/// Applies the function half of the sandbox for the bundle `dir`, after making
/// it the working directory: runtimes open the bundle's files by paths relative
/// to `.` (a handler's `open("data.txt")` finds its own file). Returns the
/// bundle's absolute path as this worker reaches it, through its descriptor
/// (`/proc/self/fd/N`), for runtimes that want one (Python's `sys.path`).
fn confine(config: &SandboxConfig, dir: &OwnedFd, memory_mb: Option<u64>, blank: &Blank) -> Result<PathBuf, String> {
    // Entered before the sandbox, by descriptor (the worker has no path); the
    // working directory grants nothing Landlock does not allow anyway.
    nix::unistd::fchdir(dir).map_err(|e| format!("the worker could not enter the bundle directory: {e}"))?;
    let start_threads = || match blank.start_threads() {
        Ok(true) => Ok(Done::Applied("started after the function layer".into())),
        Ok(false) => Ok(Done::NotApplicable("this runtime starts none of its own")),
        Err(e) => Err(e.to_string()),
    };
    match sandbox::apply_for_function(config, dir.as_fd(), memory_mb, start_threads) {
        Ok(report) => {
            info!("sandbox: {report}");
            Ok(PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())))
        }
        Err(e) => {
            error!("sandbox: {e}; refusing to run the function");
            Err(format!("the worker could not sandbox the function: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyfaas_protocol::{Limits, MAX_SMALL_FRAME_LEN, Stats, frame};

    fn response(body: usize, headers: usize, logs: usize) -> FromWorker {
        FromWorker::Response {
            id: 1,
            response: HttpResponse {
                status: 200,
                headers: vec![("x-h".into(), "v".repeat(headers))],
                body: vec![1; body],
            },
            logs: Logs { text: "é".repeat(logs / 2), truncated: false },
            stats: Stats::default(),
        }
    }

    fn kind(reply: &FromWorker) -> Option<FailureKind> {
        match reply {
            FromWorker::Failure { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    #[test]
    fn answers_over_the_limits_become_response_too_large() {
        assert_eq!(kind(&bounded(response(1000, 10, 10), 1000)), None);
        assert_eq!(kind(&bounded(response(1001, 10, 10), 1000)), Some(FailureKind::ResponseTooLarge));
        assert_eq!(kind(&bounded(response(10, 10, 1002), 1000)), Some(FailureKind::ResponseTooLarge));
        assert_eq!(kind(&bounded(response(10, MAX_HEADERS_LEN, 10), 1000)), Some(FailureKind::ResponseTooLarge));
    }

    #[test]
    fn every_bounded_answer_fits_the_frame_the_supervisor_reads() {
        let max_output = 100_000u64;
        let limits = Limits { timeout_ms: 1, memory_mb: 1, max_output_bytes: max_output };
        let huge = "x".repeat(10 * MAX_MESSAGE_LEN);
        let answers = [
            response(100_000, 60_000, 100_000),
            response(5_000_000, 5_000_000, 5_000_000),
            FromWorker::Failure {
                id: 1,
                kind: FailureKind::HandlerError,
                message: huge.clone(),
                logs: Logs { text: huge.repeat(10), truncated: false },
            },
        ];
        for answer in answers {
            let bytes = frame::encode(&bounded(answer, max_output)).expect("encodes");
            assert!(bytes.len() <= limits.max_answer_frame_len(), "{} bytes", bytes.len());
        }
        for small in [FromWorker::InitError { message: huge.clone() }, FromWorker::PrepareError { message: huge }] {
            let bytes = frame::encode(&bounded(small, 0)).expect("encodes");
            assert!(bytes.len() <= MAX_SMALL_FRAME_LEN, "{} bytes", bytes.len());
        }
    }

    #[test]
    fn a_panic_is_an_error_and_poisons() {
        let mut poisoned = false;
        assert_eq!(guarded(&mut poisoned, || 7), Ok(7));
        assert!(!poisoned);
        let err = guarded(&mut poisoned, || -> u8 { panic!("boom") }).expect_err("caught");
        assert!(err.contains("boom"), "{err}");
        assert!(poisoned);
    }
}
