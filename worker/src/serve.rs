//! The worker's message loop: a blank worker is specialized once by `Init`, then
//! answers `Invoke`s one at a time until `Shutdown` or the end of the socket.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use polyfaas_protocol::blocking::{read_frame, write_frame};
use polyfaas_protocol::{FailureKind, FromWorker, PROTOCOL_VERSION, ToWorker};
use tracing::{error, info, warn};

use crate::runtimes::{Blank, Runtime};
use crate::sandbox::{self, SandboxConfig};

/// Serves the supervisor on `socket` until it says `Shutdown` or hangs up.
///
/// The function half of the sandbox is applied on the first `Prepare` or `Init`,
/// before the runtime reads the bundle: both evaluate user code. A worker that
/// cannot confine itself answers with an error and exits.
pub fn run(socket: UnixStream, blank: Blank, sandbox_config: &SandboxConfig) -> Result<()> {
    let mut reader = socket.try_clone().context("cloning the socket")?;
    let mut writer = socket;
    write_frame(&mut writer, &FromWorker::Hello { pid: std::process::id(), protocol_version: PROTOCOL_VERSION })?;

    // Consumed by `Init`: a worker serves one function version for its whole life.
    let mut blank = Some(blank);
    let mut runtime: Option<Box<dyn Runtime>> = None;
    while let Some(msg) = read_frame::<ToWorker>(&mut reader)? {
        let reply = match msg {
            ToWorker::Prepare(prepare) => {
                let prepared = confine(sandbox_config, &prepare.bundle_dir, None).and_then(|()| match blank.as_mut() {
                    Some(b) => b.prepare(&prepare),
                    None => Err("worker is already specialized".into()),
                });
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
                if let Err(message) = confine(sandbox_config, &init.bundle_dir, Some(init.limits.memory_mb)) {
                    write_frame(&mut writer, &FromWorker::InitError { message })?;
                    break;
                }
                match fresh.init(&init) {
                    Ok(rt) => {
                        runtime = Some(rt);
                        FromWorker::InitOk
                    }
                    Err(message) => FromWorker::InitError { message },
                }
            }
            ToWorker::Invoke(invoke) => {
                let id = invoke.id;
                match runtime.as_mut() {
                    Some(rt) => match rt.invoke(invoke.request, Duration::from_millis(invoke.deadline_ms)) {
                        Ok(done) => {
                            FromWorker::Response { id, response: done.response, logs: done.logs, stats: done.stats }
                        }
                        Err(f) => FromWorker::Failure { id, kind: f.kind, message: f.message, logs: f.logs },
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
        write_frame(&mut writer, &reply)?;
    }
    Ok(())
}

/// Applies the function half of the sandbox for `bundle_dir`.
fn confine(config: &SandboxConfig, bundle_dir: &str, memory_mb: Option<u64>) -> Result<(), String> {
    match sandbox::apply_for_function(config, Path::new(bundle_dir), memory_mb) {
        Ok(report) => {
            info!("sandbox: {report}");
            Ok(())
        }
        Err(e) => {
            error!("sandbox: {e}; refusing to run the function");
            Err(format!("the worker could not sandbox the function: {e}"))
        }
    }
}
