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

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use polyfaas_protocol::Language;

/// How the worker was started.
enum Mode {
    /// Serve the supervisor on a socket (the normal case).
    Serve {
        fd: RawFd,
        language: Language,
        ruby_module: Option<PathBuf>,
        parent_pid: Option<u32>,
        sandbox: sandbox::SandboxConfig,
    },
    /// Compile a runtime module once into a cache directory and print its path;
    /// run by the supervisor at startup, never on user code.
    Precompile { wasm: PathBuf, cache_dir: PathBuf },
}

fn parse_args() -> Result<Mode> {
    let (mut fd, mut language, mut ruby_module, mut parent_pid) = (None, None, None, None);
    let mut sandbox = sandbox::SandboxConfig::default();
    let (mut precompile, mut cache_dir) = (None, None);
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let value = args.next().with_context(|| format!("{arg} needs a value"))?;
        let text = || value.to_str().map(str::to_string).with_context(|| format!("{arg} must be UTF-8"));
        match arg.as_str() {
            "--fd" => fd = Some(text()?.parse::<RawFd>().context("--fd must be a number")?),
            "--language" => language = Some(runtimes::parse_language(&text()?)?),
            "--ruby-module" => ruby_module = Some(PathBuf::from(&value)),
            "--parent-pid" => parent_pid = Some(text()?.parse::<u32>().context("--parent-pid must be a number")?),
            "--sandbox" => sandbox = sandbox::SandboxConfig::from_json(&text()?).context("--sandbox")?,
            "--precompile" => precompile = Some(PathBuf::from(&value)),
            "--cache-dir" => cache_dir = Some(PathBuf::from(&value)),
            other => bail!("unknown argument {other}"),
        }
    }
    if let Some(wasm) = precompile {
        return Ok(Mode::Precompile { wasm, cache_dir: cache_dir.context("--precompile needs --cache-dir")? });
    }
    Ok(Mode::Serve {
        fd: fd.context("--fd is required")?,
        language: language.context("--language is required")?,
        ruby_module,
        parent_pid,
        sandbox,
    })
}

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
    let (fd, language, ruby_module, parent_pid, sandbox_config) = match parse_args()? {
        Mode::Precompile { wasm, cache_dir } => {
            println!("{}", runtimes::ruby::precompile(&wasm, &cache_dir)?.display());
            return Ok(());
        }
        Mode::Serve { fd, language, ruby_module, parent_pid, sandbox } => {
            (fd, language, ruby_module, parent_pid, sandbox)
        }
    };
    // Opened before the sandbox: after it, the worker may read only the store.
    let ruby_module = ruby_module
        .map(|path| std::fs::File::open(&path).with_context(|| format!("opening {}", path.display())))
        .transpose()?;
    let inherited = sandbox::Inherited {
        socket_fd: fd,
        parent_pid,
        runtime_fd: ruby_module.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
    };
    let report =
        sandbox::apply_early(&sandbox_config, &inherited).context("sandbox setup failed; refusing to serve")?;
    tracing::info!(language = language.as_str(), "sandbox: {report}");
    // SAFETY: the supervisor passes the child's end of a socketpair as `--fd`, dup'd
    // to that number just before exec; nothing else in this process knows the number,
    // so this `OwnedFd` is its only owner. A wrong number fails at the first read.
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let files = runtimes::RuntimeFiles { ruby_module };
    let blank = runtimes::Blank::load(language, files).context("loading the runtime")?;
    serve::run(socket, blank, &sandbox_config)
}
