//! `polyfaas-worker`: one process that runs user code for the supervisor.
//!
//! Started by the supervisor with the socket it talks on as an inherited file
//! descriptor (`--fd N`), the runtime it hosts (`--language L`) and where that
//! runtime's files are (`--ruby-module`). It loads the runtime while blank, says
//! `Hello`, then serves messages until `Shutdown` or the end of the socket (see
//! [`serve`]). It has no other inputs: its environment is not read, and its
//! stdout/stderr carry only its own diagnostics. `--precompile` is a one-shot
//! mode the supervisor uses to compile the Ruby runtime once.

mod runtimes;
mod sandbox;
mod serve;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};
use polyfaas_protocol::launch::{LaunchMode, SOCKET_FD, WorkerLaunch};

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // wasmtime-wasi puts an INFO span (its arguments formatted) on every WASI
        // call a guest makes: a cost on the hot path, never printed.
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,wasmtime_wasi=warn,wiggle=warn"))
        .with_ansi(false)
        .with_target(false)
        // The supervisor logs each of these lines as its own event, with its time.
        .without_time()
        .init();
    let launch = match LaunchMode::parse(std::env::args_os().skip(1))? {
        LaunchMode::Precompile { wasm, cache_dir } => {
            println!("{}", runtimes::ruby::precompile(&wasm, &cache_dir)?.display());
            return Ok(());
        }
        LaunchMode::Serve(launch) => launch,
    };
    let WorkerLaunch { fd, language, ruby_module, parent_pid, sandbox: sandbox_config } = *launch;
    // Below 3 is stdio, never a socket the supervisor handed over.
    anyhow::ensure!(fd >= SOCKET_FD, "--fd {fd} is a standard stream, not the supervisor's socket");
    // SAFETY: the supervisor passes the child's end of a socketpair as `--fd`, made
    // inheritable for this one start; nothing else in this process knows the number,
    // so this `OwnedFd` is its only owner. A wrong number fails at the first read.
    let inherited_socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // First, before anything opens a file: every worker keeps its socket on
    // SOCKET_FD, the lowest descriptor above stdio (`try_clone` duplicates to the
    // lowest free one from 3, and only 0-2 and the socket are open here).
    let socket = if fd == SOCKET_FD {
        inherited_socket
    } else {
        let moved = inherited_socket.try_clone()?;
        drop(inherited_socket);
        moved
    };
    anyhow::ensure!(socket.as_raw_fd() == SOCKET_FD, "descriptor {SOCKET_FD} is taken: cannot move the socket there");
    // Opened before the sandbox, while still privileged: the runtime cache may lie
    // where the uid the worker drops to cannot go.
    let ruby_module = ruby_module
        .map(|path| std::fs::File::open(&path).with_context(|| format!("opening {}", path.display())))
        .transpose()?;
    let inherited = sandbox::Inherited {
        socket_fd: SOCKET_FD,
        parent_pid,
        runtime_fd: ruby_module.as_ref().map(AsRawFd::as_raw_fd),
    };
    let report =
        sandbox::apply_early(&sandbox_config, &inherited).context("sandbox setup failed; refusing to serve")?;
    tracing::info!(language = language.as_str(), "sandbox: {report}");
    let socket = UnixStream::from(socket);
    let files = runtimes::RuntimeFiles { ruby_module };
    let blank = runtimes::Blank::load(language, files).context("loading the runtime")?;
    serve::run(socket, blank, &sandbox_config)
}
