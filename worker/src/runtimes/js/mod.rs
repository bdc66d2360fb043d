//! JavaScript on boa.
//!
//! Owns: building one boa context per function at `Init` (web globals, the
//! CommonJS runtime, the ctx prelude, then the entry), classifying the entry
//! file, and calling the handler per invocation with its jobs and timers run to
//! completion before the answer. Must never: read outside the bundle (module
//! resolution is loader.rs/resolve.rs), or let one invocation's console output
//! or request (request.rs) reach another's.
//!
//! The entry file is, in this order: an ES module if it ends in `.mjs`, if the
//! nearest `package.json` says `"type": "module"`, or if it has top-level
//! `import`/`export` statements (its `default` export, else its `handler`
//! export, is the handler); CommonJS if it ends in `.cjs` or mentions
//! `module.exports`/`exports.` (its `module.exports` if that is a function,
//! else `module.exports.handler`, else `module.exports.default`); otherwise a
//! script, the original project's convention: the value of its last expression
//! is the handler, else a global `handler` (a script can `require` too).
//! Globals persist between invocations of the same function in the same worker,
//! as in a warm Lambda; a worker never serves another function.

mod answer;
mod jobs;
mod json;
mod loader;
mod request;
mod resolve;
mod web;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use boa_engine::builtins::promise::PromiseState;
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::JsFunction;
use boa_engine::property::Attribute;
use boa_engine::{Context, JsError, JsNativeError, JsResult, JsString, JsValue, NativeFunction, Source, js_string};
use boa_gc::{Finalize, Trace};
use polyfaas_protocol::{FailureKind, HttpRequest, Init, Prepare, Stats};

use self::jobs::Jobs;
use self::loader::BundleLoader;
use self::request::{RequestParts, head};
use self::resolve::{Format, normalize};
use super::script::{LogBuffer, ResponseEnvelope, response_from};
use super::{Completed, Failure, Runtime};

const PRELUDE: &str = include_str!("prelude.js");
/// How long a bundle's top level may run at upload (its dry run has no limits).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);

/// A blank JavaScript worker. Boa contexts are cheap (about a millisecond), and a
/// context cannot be re-rooted at a bundle once built, so the context is made at
/// `Init`; the blank state only holds what is function-independent.
pub struct JsBlank;

impl JsBlank {
    /// Loads the entrypoint as `Init` would, to reject a bundle whose code does
    /// not load (syntax error, no handler, a throwing top level) at upload.
    pub fn prepare(&self, prepare: &Prepare) -> Result<(), String> {
        load(&prepare.entrypoint, "prepare", 1 << 20, PREPARE_TIMEOUT).map(|_| ())
    }

    pub fn init(&self, init: &Init) -> Result<JsFunctionRuntime, String> {
        let max_output = usize::try_from(init.limits.max_output_bytes).unwrap_or(usize::MAX);
        load(&init.entrypoint, &init.function, max_output, Duration::from_millis(init.limits.timeout_ms))
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
    /// The request's maps, for the prelude's `parts(seq)`.
    parts: RequestParts,
    parts_fn: JsFunction,
    jobs: Rc<Jobs>,
    logs: Rc<RefCell<LogBuffer>>,
    function: JsString,
    cold: bool,
}

/// How the entry file runs (see the module documentation).
#[derive(Debug, PartialEq, Eq)]
enum EntryKind {
    Script,
    CommonJs,
    Module,
}

fn classify(entry: &Path, code: &str, loader: &BundleLoader) -> EntryKind {
    match entry.extension().and_then(|e| e.to_str()) {
        Some("mjs") => EntryKind::Module,
        Some("cjs") => EntryKind::CommonJs,
        _ if loader.resolver().format_of(entry) == Format::Esm => EntryKind::Module,
        _ if looks_commonjs(code) => EntryKind::CommonJs,
        _ => EntryKind::Script,
    }
}

/// `module.exports`, or `exports.x`/`exports[…]` not preceded by a property access.
fn looks_commonjs(code: &str) -> bool {
    if code.contains("module.exports") {
        return true;
    }
    code.match_indices("exports").any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + "exports".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.')
            && matches!(after, Some('.' | '['))
    })
}

fn load(entrypoint: &str, function: &str, max_output: usize, timeout: Duration) -> Result<JsFunctionRuntime, String> {
    let entry: PathBuf = normalize(Path::new(entrypoint)).ok_or_else(|| format!("{entrypoint}: outside the bundle"))?;
    let loader = Rc::new(BundleLoader::new());
    let code = loader.resolver().read(&entry).map_err(|e| format!("cannot read {entrypoint}: {e}"))?;
    let jobs = Rc::new(Jobs::new());
    let mut context = Context::builder()
        .module_loader(loader.clone())
        .job_executor(jobs.clone())
        .build()
        .map_err(|e| format!("cannot start the JavaScript engine: {e}"))?;
    let logs = Rc::new(RefCell::new(LogBuffer::new(max_output)));
    install_console(&mut context, &logs).map_err(|e| format!("cannot install console: {e}"))?;
    web::install(&mut context).map_err(|e| format!("cannot install the web globals: {e}"))?;
    loader.install(&mut context).map_err(|e| format!("cannot install the CommonJS runtime: {e}"))?;
    let invoke = context
        .eval(Source::from_bytes(PRELUDE))
        .ok()
        .and_then(|v| v.as_function())
        .ok_or("the JavaScript prelude did not load")?;

    jobs.set_deadline(Instant::now() + timeout);
    let handler = match classify(&entry, &code, &loader) {
        EntryKind::Module => load_module(&mut context, &loader, &entry, entrypoint),
        EntryKind::CommonJs => load_commonjs(&mut context, &loader, &entry, entrypoint),
        EntryKind::Script => load_script(&mut context, &loader, &code, &entry, entrypoint),
    }?;
    // The top level's console output belongs to no invocation; keep it out of the first.
    logs.borrow_mut().take();
    let parts = RequestParts::default();
    let parts_fn = parts.function(&mut context);
    Ok(JsFunctionRuntime {
        context,
        handler,
        invoke,
        parts,
        parts_fn,
        jobs,
        logs,
        function: JsString::from(function),
        cold: true,
    })
}

fn load_script(
    context: &mut Context,
    loader: &BundleLoader,
    code: &str,
    entry: &Path,
    entrypoint: &str,
) -> Result<JsFunction, String> {
    let require = loader.make_require(entry, context).map_err(|e| describe_load_error(&e, entrypoint, context))?;
    context
        .register_global_property(js_string!("require"), require, Attribute::WRITABLE | Attribute::CONFIGURABLE)
        .map_err(|e| describe_load_error(&e, entrypoint, context))?;
    let completion = context
        .eval(Source::from_bytes(code).with_path(entry))
        .map_err(|e| describe_load_error(&e, entrypoint, context))?;
    context.run_jobs().map_err(|e| describe_load_error(&e, entrypoint, context))?;
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

fn load_commonjs(
    context: &mut Context,
    loader: &BundleLoader,
    entry: &Path,
    entrypoint: &str,
) -> Result<JsFunction, String> {
    let exports =
        loader.require(entry, Format::CommonJs, context).map_err(|e| describe_load_error(&e, entrypoint, context))?;
    context.run_jobs().map_err(|e| describe_load_error(&e, entrypoint, context))?;
    if let Some(f) = exports.as_function() {
        return Ok(f);
    }
    if let Some(object) = exports.as_object() {
        for name in [js_string!("handler"), js_string!("default")] {
            if let Some(f) = object.get(name, context).ok().and_then(|v| v.as_function()) {
                return Ok(f);
            }
        }
    }
    Err(format!(
        "{entrypoint}: module.exports is not a function and has no function `handler` or `default` (CommonJS entry)"
    ))
}

fn load_module(
    context: &mut Context,
    loader: &BundleLoader,
    entry: &Path,
    entrypoint: &str,
) -> Result<JsFunction, String> {
    let module =
        loader.module_at(entry, Format::Esm, context).map_err(|e| describe_load_error(&e, entrypoint, context))?;
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
    /// Calls the handler through the prelude; returns the response envelope,
    /// read off the prelude's object (answer.rs, no JSON in between).
    /// `Ok(None)`: the handler's promise had not settled when the jobs that
    /// could run before `deadline` were done.
    fn call(&mut self, request: HttpRequest, deadline: Instant) -> JsResult<Option<ResponseEnvelope>> {
        let request_head = head(&self.function, &request, &mut self.context);
        // The head holds the body now; the maps need only the query and headers.
        let mut request = request;
        request.body = Vec::new();
        let seq = self.parts.begin(request);
        let args =
            [self.handler.clone().into(), request_head.into(), self.parts_fn.clone().into(), JsValue::from(seq as f64)];
        let mut result = self.invoke.call(&JsValue::undefined(), &args, &mut self.context)?;
        // Microtasks and timers queued by the handler run now; an async handler settles here.
        self.jobs.set_deadline(deadline);
        self.context.run_jobs()?;
        if let Some(promise) = result.as_promise() {
            result = match promise.state() {
                PromiseState::Fulfilled(v) => v,
                PromiseState::Rejected(e) => return Err(JsError::from_opaque(e)),
                PromiseState::Pending => return Ok(None),
            };
        }
        match result.as_object() {
            Some(answer) => answer::read(&answer, &mut self.context).map(Some),
            None => Err(JsNativeError::typ().with_message("the prelude returned no envelope").into()),
        }
    }
}

impl Runtime for JsFunctionRuntime {
    fn invoke(&mut self, request: HttpRequest, deadline: Duration) -> Result<Completed, Failure> {
        // Boa cannot be interrupted: the supervisor's hard deadline kills this
        // worker if the handler's own code runs past its timeout. Timers stop at it.
        let started = Instant::now();
        let outcome = self.call(request, started + deadline);
        self.parts.end();
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
            Ok(None) if self.jobs.cut_short() || started.elapsed() >= deadline => Err(Failure {
                kind: FailureKind::Timeout,
                message: "the handler's promise had not settled by its deadline (its timers were due after it)".into(),
                logs,
            }),
            Ok(None) => Err(Failure {
                kind: FailureKind::HandlerError,
                message: "the handler's promise never settled (nothing left to run: no timer, no pending job)".into(),
                logs,
            }),
            Ok(Some(envelope)) => Ok(Completed {
                response: response_from(envelope),
                logs,
                stats: Stats { duration_us: started.elapsed().as_micros() as u64, cold },
            }),
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
    use super::looks_commonjs;
    use super::resolve::has_module_syntax;

    #[test]
    fn detects_module_syntax_only_at_statement_level() {
        assert!(has_module_syntax("import { a } from './a.js';\n"));
        assert!(has_module_syntax("  export default function h() {}"));
        assert!(has_module_syntax("import{a}from'./a.js';export{a}"));
        assert!(!has_module_syntax("const x = await import('./a.js');"));
        assert!(!has_module_syntax("function handler(ctx) { /* import stuff */ }\nhandler"));
    }

    #[test]
    fn commonjs_is_told_by_its_exports() {
        assert!(looks_commonjs("module.exports = function (ctx) {}"));
        assert!(looks_commonjs("exports.handler = async (ctx) => 1;"));
        assert!(looks_commonjs("exports['handler'] = h;"));
        assert!(!looks_commonjs("const m = require('marked');\nfunction handler(ctx) {}\nhandler"));
        assert!(!looks_commonjs("obj.exports.x = 1; myexports.y = 2;\nhandler"));
    }
}
