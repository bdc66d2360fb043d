//! JavaScript on boa.
//!
//! The entrypoint is evaluated once, at `Init`. A file ending in `.mjs`, or one
//! with top-level `import`/`export` lines, is an ES module (its `default` export,
//! else its `handler` export, is the handler; it may import `.js`/`.mjs` files of
//! its own bundle and nothing else). Any other file is a script, the original
//! project's convention: the value of its last expression is the handler, else a
//! global `handler`. Each invocation calls the handler with a fresh `ctx` built by
//! `prelude.js`; `console.*` goes to the invocation's logs. Globals persist
//! between invocations of the same function in the same worker, as in a warm
//! Lambda; a worker never serves another function.

mod loader;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use boa_engine::builtins::promise::PromiseState;
use boa_engine::module::IdleModuleLoader;
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::JsFunction;
use boa_engine::property::Attribute;
use boa_engine::{
    Context, JsError, JsNativeError, JsResult, JsString, JsValue, Module, NativeFunction, Source, js_string,
};
use boa_gc::{Finalize, Trace};
use polyfaas_protocol::{FailureKind, HttpRequest, Init, Prepare, Stats};

use self::loader::RootedLoader;
use super::script::{LogBuffer, request_value, response_from_envelope};
use super::{Completed, Failure, Runtime};

const PRELUDE: &str = include_str!("prelude.js");

/// A blank JavaScript worker. Boa contexts are cheap (about a millisecond), and a
/// context cannot be re-rooted at a bundle once built, so the context is made at
/// `Init`; the blank state only holds what is function-independent.
pub struct JsBlank;

impl JsBlank {
    /// Loads the entrypoint as `Init` would, to reject a bundle whose code does
    /// not load (syntax error, no handler, a throwing top level) at upload.
    pub fn prepare(&self, prepare: &Prepare) -> Result<(), String> {
        load(Path::new(&prepare.bundle_dir), &prepare.entrypoint, "prepare", 1 << 20).map(|_| ())
    }

    pub fn init(&self, init: &Init) -> Result<JsFunctionRuntime, String> {
        let max_output = usize::try_from(init.limits.max_output_bytes).unwrap_or(usize::MAX);
        load(Path::new(&init.bundle_dir), &init.entrypoint, &init.function, max_output)
    }
}

/// The captured console output, shared with the native `console.*` functions.
#[derive(Clone, Trace, Finalize)]
struct Console(
    // SAFETY (for the GC, not memory): `LogBuffer` holds only Rust strings, no
    // boa GC pointers, so the collector has nothing to trace inside it.
    #[unsafe_ignore_trace] Rc<RefCell<LogBuffer>>,
    #[unsafe_ignore_trace] &'static str,
);

pub struct JsFunctionRuntime {
    context: Context,
    handler: JsFunction,
    invoke: JsFunction,
    logs: Rc<RefCell<LogBuffer>>,
    function: String,
    cold: bool,
}

fn load(bundle: &Path, entrypoint: &str, function: &str, max_output: usize) -> Result<JsFunctionRuntime, String> {
    let path = bundle.join(entrypoint);
    let code = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {entrypoint}: {e}"))?;
    let module_mode = entrypoint.ends_with(".mjs") || has_module_syntax(&code);
    let loader = Rc::new(RootedLoader::new(bundle).map_err(|e| format!("bundle directory: {e}"))?);
    let mut builder = Context::builder();
    builder = if module_mode {
        builder.module_loader(loader.clone())
    } else {
        builder.module_loader(Rc::new(IdleModuleLoader))
    };
    let mut context = builder.build().map_err(|e| format!("cannot start the JavaScript engine: {e}"))?;
    let logs = Rc::new(RefCell::new(LogBuffer::new(max_output)));
    install_console(&mut context, &logs).map_err(|e| format!("cannot install console: {e}"))?;

    let invoke = context
        .eval(Source::from_bytes(PRELUDE))
        .ok()
        .and_then(|v| v.as_function())
        .ok_or("the JavaScript prelude did not load")?;

    let handler = if module_mode {
        load_module(&mut context, &loader, &path, entrypoint)
    } else {
        load_script(&mut context, &code, &path, entrypoint)
    }?;
    // The top level's console output belongs to no invocation; keep it out of the first.
    logs.borrow_mut().take();
    Ok(JsFunctionRuntime { context, handler, invoke, logs, function: function.to_string(), cold: true })
}

/// Top-level `import`/`export` statements mean the file is a module.
fn has_module_syntax(code: &str) -> bool {
    code.lines().map(str::trim_start).any(|l| {
        (l.starts_with("import ") && !l.starts_with("import(")) || l.starts_with("import{") || l.starts_with("export ")
    })
}

fn load_script(context: &mut Context, code: &str, path: &Path, entrypoint: &str) -> Result<JsFunction, String> {
    let completion = context
        .eval(Source::from_bytes(code).with_path(path))
        .map_err(|e| describe_load_error(&e, entrypoint, context))?;
    if let Some(f) = completion.as_function() {
        return Ok(f);
    }
    // `const handler = …` lives in the global lexical scope, not on globalThis;
    // evaluating the name finds both.
    context
        .eval(Source::from_bytes("typeof handler === 'function' ? handler : undefined"))
        .ok()
        .and_then(|v| v.as_function())
        .ok_or_else(|| {
            format!("{entrypoint}: the script's last expression is not a function and it defines no function `handler`")
        })
}

fn load_module(
    context: &mut Context,
    loader: &RootedLoader,
    path: &Path,
    entrypoint: &str,
) -> Result<JsFunction, String> {
    let canonical: PathBuf = path.canonicalize().map_err(|e| format!("{entrypoint}: {e}"))?;
    let source = Source::from_filepath(&canonical).map_err(|e| format!("cannot read {entrypoint}: {e}"))?;
    let module = Module::parse(source, None, context).map_err(|e| describe_load_error(&e, entrypoint, context))?;
    loader.insert(canonical, module.clone());
    let promise = module.load_link_evaluate(context);
    context.run_jobs().map_err(|e| describe_load_error(&e, entrypoint, context))?;
    match promise.state() {
        PromiseState::Fulfilled(_) => {}
        PromiseState::Rejected(e) => return Err(describe_load_error(&JsError::from_opaque(e), entrypoint, context)),
        PromiseState::Pending => return Err(format!("{entrypoint}: the module's top-level await never settled")),
    }
    for name in [js_string!("default"), js_string!("handler")] {
        if let Some(f) = module.get_value(name, context).ok().and_then(|v| v.as_function()) {
            return Ok(f);
        }
    }
    Err(format!("{entrypoint}: the module exports neither a default function nor a function `handler`"))
}

/// A load error for the uploader: the file, and where in it.
fn describe_load_error(err: &JsError, entrypoint: &str, context: &mut Context) -> String {
    let text = match err.try_native(context) {
        Ok(native) => format!("{}: {}", native.kind(), native.message()),
        Err(_) => err.to_string(),
    };
    if text.contains(entrypoint) { text } else { format!("{entrypoint}: {text}") }
}

fn install_console(context: &mut Context, logs: &Rc<RefCell<LogBuffer>>) -> JsResult<()> {
    let mut console = ObjectInitializer::new(context);
    for level in ["log", "info", "warn", "error", "debug"] {
        console.function(
            NativeFunction::from_copy_closure_with_captures(
                |_, args, console: &Console, context| {
                    let mut line = String::new();
                    for (i, arg) in args.iter().enumerate() {
                        if i > 0 {
                            line.push(' ');
                        }
                        match arg.as_string() {
                            Some(s) => line.push_str(&s.to_std_string_lossy()),
                            None => line.push_str(&arg.display().to_string()),
                        }
                    }
                    let _ = context;
                    let mut buffer = console.0.borrow_mut();
                    if console.1 == "error" || console.1 == "warn" {
                        buffer.push(console.1);
                        buffer.push(": ");
                    }
                    buffer.push_line(&line);
                    Ok(JsValue::undefined())
                },
                Console(logs.clone(), level),
            ),
            JsString::from(level),
            0,
        );
    }
    let console = console.build();
    context.register_global_property(js_string!("console"), console, Attribute::WRITABLE | Attribute::CONFIGURABLE)
}

impl JsFunctionRuntime {
    /// Calls the handler through the prelude; returns the response envelope.
    fn call(&mut self, envelope: &serde_json::Value) -> JsResult<String> {
        let request = JsValue::from_json(envelope, &mut self.context)?;
        let args = [self.handler.clone().into(), request];
        let mut result = self.invoke.call(&JsValue::undefined(), &args, &mut self.context)?;
        // Microtasks queued by the handler run now; an async handler settles here.
        self.context.run_jobs()?;
        if let Some(promise) = result.as_promise() {
            result = match promise.state() {
                PromiseState::Fulfilled(v) => v,
                PromiseState::Rejected(e) => return Err(JsError::from_opaque(e)),
                PromiseState::Pending => {
                    return Err(JsNativeError::error().with_message("the handler's promise never settled").into());
                }
            };
        }
        result
            .as_string()
            .map(|s| s.to_std_string_lossy())
            .ok_or_else(|| JsNativeError::typ().with_message("the prelude returned no envelope").into())
    }
}

impl Runtime for JsFunctionRuntime {
    fn invoke(&mut self, request: HttpRequest, _deadline: Duration) -> Result<Completed, Failure> {
        // Boa cannot be interrupted: the supervisor's hard deadline kills this
        // worker if the handler runs past its timeout.
        let started = Instant::now();
        let envelope = request_value(&self.function, &request);
        drop(request);
        let outcome = self.call(&envelope);
        let cold = std::mem::replace(&mut self.cold, false);
        let overflowed = self.logs.borrow().overflowed();
        let mut logs = self.logs.borrow_mut().take();
        if overflowed {
            return Err(Failure {
                kind: FailureKind::ResponseTooLarge,
                message: "the handler logged more than the output cap".into(),
                logs,
            });
        }
        match outcome {
            Ok(text) => {
                let response = response_from_envelope(&text).map_err(|message| Failure {
                    kind: FailureKind::HandlerError,
                    message,
                    logs: Default::default(),
                })?;
                Ok(Completed {
                    response,
                    logs,
                    stats: Stats { duration_us: started.elapsed().as_micros() as u64, cold },
                })
            }
            Err(err) => {
                let message = match err.try_native(&mut self.context) {
                    Ok(native) => format!("{}: {}", native.kind(), native.message()),
                    Err(_) => err.to_string(),
                };
                logs.text.push_str(&format!("{err}\n"));
                Err(Failure { kind: FailureKind::HandlerError, message, logs })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_module_syntax;

    #[test]
    fn detects_module_syntax_only_at_statement_level() {
        assert!(has_module_syntax("import { a } from './a.js';\n"));
        assert!(has_module_syntax("  export default function h() {}"));
        assert!(!has_module_syntax("const x = await import('./a.js');"));
        assert!(!has_module_syntax("function handler(ctx) { /* import stuff */ }\nhandler"));
    }
}
