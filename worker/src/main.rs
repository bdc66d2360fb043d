//! `polyfaas-worker`: one process that runs user code for the supervisor.
//!
//! Started by the supervisor with the socket it talks on as an inherited file
//! descriptor (`--fd N`) and the runtime it hosts (`--language L`). It loads that
//! runtime while blank, says `Hello`, then serves messages until `Shutdown` or the
//! end of the socket (see [`serve`]). It has no other inputs: its environment is not
//! read, and its stdout/stderr carry only its own diagnostics.

mod runtimes;
mod sandbox;
mod serve;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};
use polyfaas_protocol::Language;

struct Args {
    fd: RawFd,
    language: Language,
}

fn parse_args() -> Result<Args> {
    let mut fd = None;
    let mut language = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--fd" => fd = Some(value.parse::<RawFd>().context("--fd must be a number")?),
            "--language" => language = Some(runtimes::parse_language(&value)?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        fd: fd.context("--fd is required")?,
        language: language.context("--language is required")?,
    })
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_target(false)
        .init();
    let args = parse_args()?;
    sandbox::apply_early().context("sandbox setup failed; refusing to serve")?;
    // SAFETY: the supervisor passes the child's end of a socketpair as `--fd`, dup'd
    // to that number just before exec; nothing else in this process knows the number,
    // so this `OwnedFd` is its only owner. A wrong number fails at the first read.
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(args.fd) });
    let blank = runtimes::Blank::load(args.language).context("loading the runtime")?;
    serve::run(socket, blank)
}
