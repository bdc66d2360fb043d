//! Ruby: CRuby 3.4's WASI build (`@ruby/3.4-wasm-wasi`) on the worker's wasmtime.
//!
//! The module is compiled once (`polyfaas-worker --precompile`, run by the
//! supervisor at startup into its runtime cache) and deserialized by each blank
//! worker, which boots the VM (`ruby-init`, ~50 ms) and loads `prelude.rb` before
//! any function is known. `Init` mounts the bundle read-only at `/app` (the VM's
//! only host directory, see `vm.rs`; the worker is confined to the bundle by
//! then) and evaluates the entrypoint from there. An invocation is one call of
//! `Polyfaas.invoke`, bound once (`RubyVm::method`), so no Ruby source is parsed
//! per call: the request goes in on the VM's stdin (`feed.rs`) as four lines of
//! JSON and the body's bytes (`input.rs`), each line parsed by the prelude only
//! when the handler reads from it; the answer comes back packed (`answer.rs`). The
//! store lives on, so Ruby state persists between invocations of the function,
//! like a warm Lambda.
//! Deadlines interrupt through the engine's epoch; a trap (deadline, memory
//! limit) leaves the VM unusable, so it is booted again and the function reloaded.

mod answer;
mod capture;
mod feed;
mod input;
mod vm;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use polyfaas_protocol::{FailureKind, HttpRequest, Init, Logs, Prepare, Stats};
use wasmtime::{Engine, Linker, Module, Trap};

use self::capture::Capture;
use self::feed::Feed;
use self::input::request_input;
use self::vm::{Eval, Method, RubyState, RubyVm};
use super::deadline::DeadlineClock;
use super::script::env_json;
use super::{Completed, Failure, Runtime};

const PRELUDE: &str = include_str!("prelude.rb");

/// Compiles the Ruby module for this worker's engine into `cache_dir` (once: an
/// existing file is reused) and returns the precompiled file's path. Run by the
/// supervisor before any Ruby worker starts; the input is the runtime shipped
/// with polyfaas, never user code.
pub fn precompile(wasm: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let engine = super::wasm::new_engine()?;
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let digest = {
        use std::hash::{DefaultHasher, Hasher};
        let mut h = DefaultHasher::new();
        h.write(&bytes);
        h.finish()
    };
    let out = cache_dir.join(format!("ruby-{digest:016x}-{}", super::wasm::artifact_name(&engine)));
    if out.is_file() {
        return Ok(out);
    }
    let module = Module::new(&engine, &bytes).map_err(anyhow::Error::from).context("compiling the ruby module")?;
    vm::check_module(&module)?;
    std::fs::create_dir_all(cache_dir)?;
    let tmp = cache_dir.join(format!(".ruby-{}.tmp", std::process::id()));
    std::fs::write(&tmp, module.serialize()?)?;
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// A blank Ruby worker: the VM booted, the prelude loaded.
pub struct RubyBlank {
    engine: Engine,
    module: Module,
    linker: Linker<RubyState>,
    stdin: Feed,
    stdout: Capture,
    stderr: Capture,
    vm: Booted,
}

/// A VM with the prelude loaded, and its `Polyfaas.invoke`.
struct Booted {
    vm: RubyVm,
    invoke: Method,
}

impl RubyBlank {
    pub fn new(precompiled: std::fs::File) -> Result<Self> {
        let engine = super::wasm::new_engine()?;
        // SAFETY: `deserialize_open_file` trusts its input to be wasmtime's own
        // output. This file is: `precompile` above wrote it with `Module::serialize`,
        // from the Ruby runtime shipped with polyfaas, into the supervisor's runtime
        // cache, under a name carrying this engine's compatibility hash (the
        // supervisor passes the path `precompile` printed).
        let module = unsafe { Module::deserialize_open_file(&engine, precompiled) }
            .map_err(anyhow::Error::from)
            .context("loading the precompiled ruby module")?;
        vm::check_module(&module)?;
        let linker = vm::linker(&engine, &module)?;
        // Caps are set per function at Init; until then, generous ones.
        let (stdout, stderr) = (Capture::new(1 << 20), Capture::new(1 << 20));
        let stdin = Feed::default();
        let vm = boot(&engine, &linker, &module, &stdin, &stdout, &stderr, 4 << 30)?;
        Ok(Self { engine, module, linker, stdin, stdout, stderr, vm })
    }

    /// Loads the bundle as `Init` would, to reject one whose code does not load.
    pub fn prepare(&mut self, prepare: &Prepare) -> Result<(), String> {
        load(&mut self.vm.vm, &self.stdin, &prepare.entrypoint)
    }

    pub fn init(mut self, init: &Init) -> Result<RubyFunction, String> {
        let max_output = usize::try_from(init.limits.max_output_bytes).unwrap_or(usize::MAX);
        let max_memory = usize::try_from(init.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        self.stdout.set_cap(max_output);
        self.stderr.set_cap(max_output);
        self.vm.vm.set_memory_limit(max_memory);
        set_env(&mut self.vm.vm, &self.stdin, &init.function, &init.env)?;
        load(&mut self.vm.vm, &self.stdin, &init.entrypoint)?;
        let engine = self.engine.clone();
        Ok(RubyFunction {
            clock: DeadlineClock::start(move || engine.increment_epoch()),
            blank: self,
            entrypoint: init.entrypoint.clone(),
            env: init.env.clone(),
            function: init.function.clone(),
            max_memory,
            cold: true,
            broken: None,
        })
    }
}

fn boot(
    engine: &Engine,
    linker: &Linker<RubyState>,
    module: &Module,
    stdin: &Feed,
    stdout: &Capture,
    stderr: &Capture,
    max_memory: usize,
) -> Result<Booted> {
    let mut vm = RubyVm::boot(engine, linker, module, stdin, stdout, stderr, max_memory)?;
    match vm.eval_string(PRELUDE.as_bytes())? {
        Eval::Value(v) if v == b"ok" => {}
        Eval::Value(v) => anyhow::bail!("the ruby prelude answered {:?}", String::from_utf8_lossy(&v)),
        Eval::Raised(e) => anyhow::bail!("the ruby prelude failed: {e}"),
    }
    let invoke = vm.method(b"Polyfaas", "invoke")?;
    Ok(Booted { vm, invoke })
}

/// Evaluates `code` (one of the prelude's own calls) with `input` on stdin.
fn eval_with(vm: &mut RubyVm, stdin: &Feed, code: &str, input: Vec<u8>) -> Result<Eval> {
    stdin.set(input);
    let result = vm.eval_string(code.as_bytes());
    stdin.clear();
    result
}

/// Gives the VM the function's name and its own environment (metadata.json
/// `env`), and nothing else.
fn set_env(vm: &mut RubyVm, stdin: &Feed, function: &str, env: &[(String, String)]) -> Result<(), String> {
    let input = format!(r#"{{"function":{},"env":{}}}"#, serde_json::Value::from(function), env_json(env));
    match eval_with(vm, stdin, "Polyfaas.env", input.into_bytes()) {
        Ok(Eval::Value(v)) if v == b"ok" => Ok(()),
        _ => Err("cannot set the function's environment".into()),
    }
}

/// Mounts the bundle at `/app` and evaluates the entrypoint there.
fn load(vm: &mut RubyVm, stdin: &Feed, entrypoint: &str) -> Result<(), String> {
    vm.mount_app().map_err(|e| format!("mounting the bundle: {e:#}"))?;
    match eval_with(vm, stdin, "Polyfaas.load", entrypoint.as_bytes().to_vec()) {
        Ok(Eval::Value(v)) if v == b"ok" => Ok(()),
        Ok(Eval::Value(v)) => {
            let text = String::from_utf8_lossy(&v);
            let answer = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
            let error = first_line(answer["error"].as_str().unwrap_or(&text));
            // Where in the bundle, if the message does not say.
            let frame = answer["trace"].as_str().and_then(|t| {
                t.split_whitespace().find(|w| w.starts_with("/app/")).map(|w| w.trim_end_matches(":in").to_string())
            });
            let message = match frame {
                Some(frame) if !error.contains("/app/") => format!("{error} (at {frame})"),
                _ => error,
            };
            Err(message.replace("/app/", ""))
        }
        Ok(Eval::Raised(e)) => Err(first_line(&e).replace("/app/", "")),
        Err(trap) => Err(format!("{entrypoint}: loading it crashed the Ruby VM: {trap:#}")),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("error").to_string()
}

pub struct RubyFunction {
    blank: RubyBlank,
    clock: DeadlineClock,
    entrypoint: String,
    env: Vec<(String, String)>,
    function: String,
    max_memory: usize,
    cold: bool,
    /// Set when the VM trapped and could not be booted again.
    broken: Option<String>,
}

impl RubyFunction {
    /// After a trap: a fresh VM with the function loaded again.
    fn reboot(&mut self) {
        let b = &mut self.blank;
        let rebooted = boot(&b.engine, &b.linker, &b.module, &b.stdin, &b.stdout, &b.stderr, self.max_memory)
            .map_err(|e| format!("{e:#}"))
            .and_then(|mut booted| {
                set_env(&mut booted.vm, &b.stdin, &self.function, &self.env)?;
                load(&mut booted.vm, &b.stdin, &self.entrypoint).map(|()| booted)
            });
        match rebooted {
            Ok(vm) => b.vm = vm,
            Err(e) => self.broken = Some(e),
        }
    }
}

impl Runtime for RubyFunction {
    fn invoke(&mut self, request: HttpRequest, deadline: Duration) -> Result<Completed, Failure> {
        if let Some(why) = &self.broken {
            return Err(Failure {
                kind: FailureKind::HandlerError,
                message: format!("the Ruby VM is unusable: {why}"),
                logs: Logs::default(),
            });
        }
        let started = Instant::now();
        let input = request_input(&self.function, &request).map_err(|e| Failure {
            kind: FailureKind::HandlerError,
            message: format!("encoding the request for the prelude: {e}"),
            logs: Logs::default(),
        })?;
        drop(request);
        let b = &mut self.blank;
        b.stdin.set(input);
        let _ = (b.stdout.take(), b.stderr.take());
        b.vm.vm.store.set_epoch_deadline(1);
        self.clock.arm(deadline);
        let result = b.vm.vm.call(b.vm.invoke);
        self.clock.disarm();
        b.stdin.clear();
        let memory_hit = b.vm.vm.memory_limit_hit();
        let logs = {
            let (mut out, over_out) = b.stdout.take();
            let (err, over_err) = b.stderr.take();
            out.extend_from_slice(&err);
            Logs { text: String::from_utf8_lossy(&out).into_owned(), truncated: over_out || over_err }
        };
        let cold = std::mem::replace(&mut self.cold, false);
        let stats = Stats { duration_us: started.elapsed().as_micros() as u64, cold };
        match result {
            Ok(Eval::Value(bytes)) => match answer::outcome(&bytes) {
                Ok(outcome) => outcome.finish(logs, false, stats),
                Err(why) => Err(Failure {
                    kind: FailureKind::HandlerError,
                    message: format!("malformed answer from the prelude: {why}"),
                    logs,
                }),
            },
            Ok(Eval::Raised(message)) => {
                Err(Failure { kind: FailureKind::HandlerError, message: first_line(&message), logs })
            }
            Err(trap) => {
                let kind = match trap.downcast_ref::<Trap>() {
                    Some(Trap::Interrupt) => FailureKind::Timeout,
                    _ if memory_hit => FailureKind::MemoryLimit,
                    _ => FailureKind::HandlerError,
                };
                let mut logs = logs;
                logs.text.push_str(&format!("{trap:?}\n"));
                self.reboot();
                Err(Failure {
                    kind,
                    message: format!("the Ruby VM stopped: {}", first_line(&format!("{trap:#}"))),
                    logs,
                })
            }
        }
    }
}
