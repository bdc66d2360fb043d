//! WebAssembly (WASI preview 1) on wasmtime.
//!
//! The request body is the module's stdin, its stdout the response, its stderr the
//! logs, and the request line and headers are WAGI environment variables. Two
//! module shapes: a command exporting `_start`, or a library exporting `handler`
//! (called after `_initialize` if that is exported). Modules get no preopened
//! directories: WASI code sees no filesystem at all. `argv` is the function's name
//! and then its `metadata.json` `args`; `contentType` and `cgi` say how stdout
//! becomes the response ([`wagi::parse_output`]).
//!
//! Per worker: one engine, one linker. Per function: one `InstancePre`. Per
//! invocation: one fresh `Store`, dropped at the end, so no state leaks from one
//! request to the next.

mod engine;
mod environ;
mod wagi;

pub use self::engine::{artifact_name, new_engine};

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use polyfaas_protocol::{Artifact, FailureKind, HttpRequest, Init, Logs, Prepare, Stats, WasmOptions};
use wasmtime::{Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use self::environ::Environ;
use super::deadline::DeadlineClock;
use super::{Completed, Failure, Runtime};

/// A blank wasm worker: the engine and linker, ready before any function is known.
pub struct WasmBlank {
    engine: Engine,
    linker: Linker<InvocationState>,
}

impl WasmBlank {
    pub fn new() -> Result<Self> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        p1::add_to_linker_sync(&mut linker, |state: &mut InvocationState| &mut state.wasi)?;
        environ::shadow_in(&mut linker)?;
        Ok(Self { engine, linker })
    }

    /// Compiles the module, checks that it has a supported shape and only WASI
    /// imports, and returns it precompiled for this engine.
    pub fn prepare(&self, prepare: &Prepare, bundle: &Path) -> Result<Vec<Artifact>, String> {
        let path = bundle.join(&prepare.entrypoint);
        let module = Module::from_file(&self.engine, &path)
            .map_err(|e| format!("{} is not a valid WebAssembly module: {e}", prepare.entrypoint))?;
        Entry::of(&module)?;
        self.linker
            .instantiate_pre(&module)
            .map_err(|e| format!("{} imports something other than WASI preview 1: {e}", prepare.entrypoint))?;
        let bytes = module.serialize().map_err(|e| format!("cannot serialize the compiled module: {e}"))?;
        Ok(vec![Artifact { file_name: engine::artifact_name(&self.engine), bytes }])
    }

    pub fn init(&self, init: &Init, bundle: &Path) -> Result<WasmFunction, String> {
        let precompiled = bundle.join(engine::artifact_name(&self.engine));
        let module = if precompiled.is_file() {
            // SAFETY: `deserialize_file` trusts its input to be wasmtime's own output.
            // This file is: the supervisor writes it into the store (which only the
            // supervisor writes) from the `Prepared` answer of a fresh worker, which
            // made it with `Module::serialize` before running any user code; its
            // name carries this engine's compatibility hash, so it was made by an
            // engine configured exactly like this one.
            unsafe { Module::deserialize_file(&self.engine, &precompiled) }
                .map_err(|e| format!("cannot load the precompiled module: {e}"))?
        } else {
            // Stored by another wasmtime version or configuration: compile again.
            tracing::warn!(function = %init.function, "no precompiled module for this engine; compiling");
            Module::from_file(&self.engine, bundle.join(&init.entrypoint))
                .map_err(|e| format!("{} is not a valid WebAssembly module: {e}", init.entrypoint))?
        };
        let entry = Entry::of(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| format!("cannot link the module: {e}"))?;
        Ok(WasmFunction {
            function: init.function.clone(),
            pre,
            entry,
            env: {
                let mut env = Environ::default();
                for (name, value) in &init.env {
                    env.push(name, value);
                }
                env
            },
            argv: std::iter::once(init.function.clone()).chain(init.wasm.args.iter().cloned()).collect(),
            options: init.wasm.clone(),
            memory_bytes: usize::try_from(init.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            max_output: usize::try_from(init.limits.max_output_bytes).unwrap_or(usize::MAX),
            clock: {
                let engine = self.engine.clone();
                DeadlineClock::start(move || engine.increment_epoch())
            },
            cold: true,
        })
    }
}

/// How a module is started.
#[derive(Clone, Copy)]
enum Entry {
    /// A command: `_start`.
    Command,
    /// The original project's shape: `handler`, after `_initialize` if present.
    Handler { initialize: bool },
}

impl Entry {
    fn of(module: &Module) -> Result<Self, String> {
        let has_func = |name: &str| module.get_export(name).is_some_and(|e| e.func().is_some());
        let takes_nothing =
            |name: &str| module.get_export(name).and_then(|e| e.func().map(|f| f.params().len() == 0)).unwrap_or(false);
        if has_func("_start") {
            return Ok(Entry::Command);
        }
        if has_func("handler") {
            if !takes_nothing("handler") {
                return Err("the exported `handler` must take no parameters".into());
            }
            return Ok(Entry::Handler { initialize: has_func("_initialize") });
        }
        Err("the module exports neither `_start` nor `handler`".into())
    }
}

/// What one invocation's `Store` holds.
struct InvocationState {
    wasi: WasiP1Ctx,
    /// The module's environment: served by [`environ`], not by `wasi`.
    environ: Environ,
    memory: MemoryCap,
}

/// Enforces the function's `memoryMb` and remembers whether it was hit, so a
/// failed `memory.grow` that ends in a trap is reported as `memory_limit`.
struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far past any real module.
        Ok(desired <= 1_000_000)
    }
}

/// One function version, instantiated afresh for each invocation.
pub struct WasmFunction {
    function: String,
    pre: InstancePre<InvocationState>,
    entry: Entry,
    /// The function's own environment (`metadata.json` `env`), which each
    /// invocation's CGI variables follow.
    env: Environ,
    /// The function's name, then its `args`.
    argv: Vec<String>,
    options: WasmOptions,
    memory_bytes: usize,
    max_output: usize,
    clock: DeadlineClock,
    cold: bool,
}

impl Runtime for WasmFunction {
    fn invoke(&mut self, request: HttpRequest, deadline: Duration) -> Result<Completed, Failure> {
        let started = Instant::now();
        // One byte past the cap, so "more than the cap" is observable whether or not
        // the guest notices its writes failing.
        let stdout = MemoryOutputPipe::new(self.max_output.saturating_add(1));
        let stderr = MemoryOutputPipe::new(self.max_output.saturating_add(1));
        let mut environ = Environ::extending(&self.env, 512);
        wagi::request_env(&self.function, &request, &mut environ);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(request.body))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&self.argv)
            .build_p1();
        let state = InvocationState { wasi, environ, memory: MemoryCap { max_bytes: self.memory_bytes, hit: false } };
        let mut store = Store::new(self.pre.module().engine(), state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();

        self.clock.arm(deadline);
        let result = run(&mut store, &self.pre, self.entry);
        self.clock.disarm();

        let cold = std::mem::replace(&mut self.cold, false);
        let memory_hit = store.data().memory.hit;
        drop(store);
        let mut logs = to_logs(&stderr);
        let output_full = stdout.contents().len() > self.max_output || stderr.contents().len() > self.max_output;
        match result {
            Ok(()) if output_full => Err(Failure {
                kind: FailureKind::ResponseTooLarge,
                message: format!("the handler wrote more than {} bytes", self.max_output),
                logs,
            }),
            Ok(()) => Ok(Completed {
                response: wagi::parse_output(stdout.contents().to_vec(), &self.options),
                logs,
                stats: Stats { duration_us: started.elapsed().as_micros() as u64, cold },
            }),
            Err(err) => {
                let (kind, message) = classify(&err, memory_hit, output_full, self.max_output);
                // The full error (trap, wasm backtrace) goes to the function's logs;
                // the client gets the one-line message.
                logs.text.push_str(&format!("{err:?}\n"));
                Err(Failure { kind, message, logs })
            }
        }
    }
}

/// Instantiates and runs the module. `Ok` means it finished, or exited with 0.
fn run(store: &mut Store<InvocationState>, pre: &InstancePre<InvocationState>, entry: Entry) -> wasmtime::Result<()> {
    let instance = pre.instantiate(&mut *store)?;
    let outcome = match entry {
        Entry::Command => instance.get_typed_func::<(), ()>(&mut *store, "_start")?.call(&mut *store, ()),
        Entry::Handler { initialize } => {
            if initialize {
                instance.get_typed_func::<(), ()>(&mut *store, "_initialize")?.call(&mut *store, ())?;
            }
            // `handler` may return values (a cdylib's `fn handler() -> i32`, say);
            // they are ignored: the response is what it printed.
            let handler = instance
                .get_func(&mut *store, "handler")
                .ok_or_else(|| wasmtime::format_err!("`handler` is not exported"))?;
            let mut results = vec![wasmtime::Val::I32(0); handler.ty(&*store).results().len()];
            handler.call(&mut *store, &[], &mut results)
        }
    };
    match outcome {
        Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|exit| exit.0 == 0) => Ok(()),
        other => other,
    }
}

fn classify(err: &wasmtime::Error, memory_hit: bool, output_full: bool, max_output: usize) -> (FailureKind, String) {
    if let Some(I32Exit(code)) = err.downcast_ref::<I32Exit>() {
        return (FailureKind::HandlerError, format!("the module exited with code {code}"));
    }
    if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return (FailureKind::Timeout, "the handler ran past its deadline".into());
    }
    if output_full {
        return (FailureKind::ResponseTooLarge, format!("the handler wrote more than {max_output} bytes"));
    }
    if memory_hit {
        return (FailureKind::MemoryLimit, "the handler ran out of its memory limit".into());
    }
    let what = match err.downcast_ref::<Trap>() {
        Some(trap) => format!("the module trapped: {trap}"),
        // A host call's error (a bad pointer passed to WASI, say) sits under the
        // wasm backtrace's context: the cause is what the caller can act on.
        None => format!("the module failed: {}", err.root_cause()),
    };
    (FailureKind::HandlerError, what)
}

fn to_logs(stderr: &MemoryOutputPipe) -> Logs {
    Logs { text: String::from_utf8_lossy(&stderr.contents()).into_owned(), truncated: false }
}
