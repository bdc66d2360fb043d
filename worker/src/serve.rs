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

    // Consumed by `Init`: a worker serves one function version for its whole life.
    let mut blank = Some(blank);
    let mut runtime: Option<Box<dyn Runtime>> = None;
    while let Some(msg) = read_frame::<ToWorker>(&mut reader)? {
        let reply = match msg {
            ToWorker::Prepare(prepare) => match blank.as_mut().map(|b| b.prepare(&prepare)) {
                Some(Ok(artifacts)) => FromWorker::Prepared { artifacts },
                Some(Err(message)) => FromWorker::PrepareError { message },
                None => FromWorker::PrepareError { message: "worker is already specialized".into() },
            },
            ToWorker::Init(init) if blank.is_some() => {
                info!(function = %init.function, version = init.version, "specializing");
                let Some(fresh) = blank.take() else { unreachable!("checked by the guard") };
                match fresh.init(&init) {
                    Ok(rt) => {
                        runtime = Some(rt);
                        FromWorker::InitOk
                    }
                    Err(message) => FromWorker::InitError { message },
                }
            }
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
