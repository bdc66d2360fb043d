//! The worker's message loop: a blank worker is specialized once by `Init`, then
//! answers `Invoke`s one at a time until `Shutdown` or the end of the socket.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result};
use polyfaas_protocol::blocking::{read_frame, write_frame};
use polyfaas_protocol::{FromWorker, PROTOCOL_VERSION, ToWorker};
use tracing::{info, warn};

use crate::runtimes::{Blank, Runtime};

/// Serves the supervisor on `socket` until it says `Shutdown` or hangs up.
pub fn run(socket: UnixStream, blank: Blank) -> Result<()> {
    let mut reader = socket.try_clone().context("cloning the socket")?;
    let mut writer = socket;
    write_frame(&mut writer, &FromWorker::Hello { pid: std::process::id(), protocol_version: PROTOCOL_VERSION })?;

    let mut runtime: Option<Box<dyn Runtime>> = None;
    while let Some(msg) = read_frame::<ToWorker>(&mut reader)? {
        let reply = match msg {
            ToWorker::Prepare(prepare) => match blank.prepare(&prepare) {
                Ok(artifacts) => FromWorker::Prepared { artifacts },
                Err(message) => FromWorker::PrepareError { message },
            },
            ToWorker::Init(init) if runtime.is_none() => {
                info!(function = %init.function, version = init.version, "specializing");
                match blank.init(&init) {
                    Ok(rt) => {
                        runtime = Some(rt);
                        FromWorker::InitOk
                    }
                    Err(message) => FromWorker::InitError { message },
                }
            }
            // A worker serves one function version for its whole life.
            ToWorker::Init(_) => FromWorker::InitError { message: "worker is already specialized".into() },
            ToWorker::Invoke(invoke) => {
                let id = invoke.id;
                match runtime.as_mut() {
                    Some(rt) => match rt.invoke(invoke.request, Duration::from_millis(invoke.deadline_ms)) {
                        Ok(done) => FromWorker::Response { id, response: done.response, logs: done.logs, stats: done.stats },
                        Err(f) => FromWorker::Failure { id, kind: f.kind, message: f.message, logs: f.logs },
                    },
                    None => {
                        warn!("Invoke before Init");
                        FromWorker::Failure {
                            id,
                            kind: polyfaas_protocol::FailureKind::HandlerError,
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
