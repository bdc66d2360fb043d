//! Loads a bundle's modules into boa: ES modules, CommonJS modules and JSON,
//! resolved by [`Resolver`] (Node's rules, inside the bundle only).
//!
//! Owns: the ES module cache (one `Module` per real path), the bridge from
//! `import` to a CommonJS module (a synthetic module whose `default` is
//! `module.exports` and whose named exports are its keys), and the natives the
//! CommonJS runtime (`modules.js`) calls: `resolve`, `read`, `compile`,
//! `requireModule`.
//! Must never: read a file the resolver did not return, or run a module's code
//! twice (both caches are keyed by the real bundle-relative path).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use boa_engine::builtins::promise::PromiseState;
use boa_engine::module::{ModuleLoader, ModuleRequest, Referrer, SyntheticModuleInitializer};
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::{JsArray, JsFunction};
use boa_engine::{
    Context, JsError, JsNativeError, JsObject, JsResult, JsString, JsValue, Module, NativeFunction, Source, js_string,
};
use boa_gc::{Finalize, Trace};

use super::resolve::{Format, Kind, ResolveError, Resolver};

const MODULES: &str = include_str!("modules.js");

pub struct BundleLoader {
    resolver: Resolver,
    modules: RefCell<HashMap<PathBuf, Module>>,
    /// The CommonJS runtime `modules.js` builds (`load`, `esmView`, `makeRequire`).
    cjs: RefCell<Option<JsObject>>,
}

/// A native's handle on the loader. The loader holds only rooted boa handles
/// (`Module`, `JsObject`), which keep themselves alive; the GC never needs to
/// trace through it.
#[derive(Clone, Trace, Finalize)]
struct LoaderRef(#[unsafe_ignore_trace] Rc<BundleLoader>);

impl BundleLoader {
    /// A loader over the working directory, which is the bundle.
    pub fn new() -> Self {
        Self::with_root(".")
    }

    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { resolver: Resolver::new(root), modules: RefCell::default(), cjs: RefCell::default() }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Builds the CommonJS runtime in `context`; must run before any user code.
    pub fn install(self: &Rc<Self>, context: &mut Context) -> JsResult<()> {
        let factory = context
            .eval(Source::from_bytes(MODULES))?
            .as_function()
            .ok_or_else(|| JsNativeError::typ().with_message("modules.js did not load"))?;
        let me = LoaderRef(self.clone());
        let natives = ObjectInitializer::new(context)
            .function(
                NativeFunction::from_copy_closure_with_captures(native_resolve, me.clone()),
                js_string!("resolve"),
                2,
            )
            .function(NativeFunction::from_copy_closure_with_captures(native_read, me.clone()), js_string!("read"), 1)
            .function(
                NativeFunction::from_copy_closure_with_captures(native_compile, me.clone()),
                js_string!("compile"),
                1,
            )
            .function(
                NativeFunction::from_copy_closure_with_captures(native_require_esm, me),
                js_string!("requireModule"),
                1,
            )
            .build();
        let runtime = factory
            .call(&JsValue::undefined(), &[natives.into()], context)?
            .as_object()
            .ok_or_else(|| JsNativeError::typ().with_message("modules.js returned no runtime"))?;
        *self.cjs.borrow_mut() = Some(runtime);
        Ok(())
    }

    fn runtime_fn(&self, name: JsString, context: &mut Context) -> JsResult<JsFunction> {
        let runtime =
            self.cjs.borrow().clone().ok_or_else(|| JsNativeError::typ().with_message("no CommonJS runtime"))?;
        runtime
            .get(name, context)?
            .as_function()
            .ok_or_else(|| JsNativeError::typ().with_message("bad CommonJS runtime").into())
    }

    /// Runs (once) the CommonJS module or JSON file at `path`; its `module.exports`.
    pub fn require(&self, path: &Path, format: Format, context: &mut Context) -> JsResult<JsValue> {
        let load = self.runtime_fn(js_string!("load"), context)?;
        let args = [path_value(path), JsString::from(format.name()).into()];
        load.call(&JsValue::undefined(), &args, context)
    }

    /// A `require` function that resolves relative to `path` (a script entry's own).
    pub fn make_require(&self, path: &Path, context: &mut Context) -> JsResult<JsValue> {
        let make = self.runtime_fn(js_string!("makeRequire"), context)?;
        make.call(&JsValue::undefined(), &[path_value(path)], context)
    }

    /// The module at a resolved path, parsed (or, for CommonJS, run) once.
    pub fn module_at(&self, path: &Path, format: Format, context: &mut Context) -> JsResult<Module> {
        if let Some(module) = self.modules.borrow().get(path) {
            return Ok(module.clone());
        }
        let shown = path.display().to_string();
        let module = match format {
            Format::Esm => {
                let code = self.resolver.read(path).map_err(|e| io_error(&shown, &e))?;
                Module::parse(Source::from_bytes(code.as_bytes()).with_path(path), None, context)
                    .map_err(|e| JsNativeError::syntax().with_message(format!("{shown}: {e}")))?
            }
            Format::Json => {
                let code = self.resolver.read(path).map_err(|e| io_error(&shown, &e))?;
                Module::parse_json(JsString::from(code.as_str()), context)?
            }
            Format::CommonJs => self.commonjs_facade(path, context)?,
        };
        self.modules.borrow_mut().insert(path.to_path_buf(), module.clone());
        Ok(module)
    }

    /// `import` of a CommonJS module: Node's interop. The module runs now (when
    /// it is linked), `default` is its `module.exports`, and each own enumerable
    /// key of `module.exports` is also a named export.
    fn commonjs_facade(&self, path: &Path, context: &mut Context) -> JsResult<Module> {
        let view = self.runtime_fn(js_string!("esmView"), context)?;
        let pair = view.call(&JsValue::undefined(), &[path_value(path)], context)?;
        let pair = pair.as_object().ok_or_else(|| JsNativeError::typ().with_message("bad esmView"))?;
        let exports = pair.get(0, context)?;
        let keys = pair.get(1, context)?;
        let keys = keys.as_object().ok_or_else(|| JsNativeError::typ().with_message("bad esmView"))?;
        let mut names = vec![js_string!("default")];
        for i in 0..keys.get(js_string!("length"), context)?.to_length(context)? {
            if let Some(s) = keys.get(i, context)?.as_string() {
                names.push(s.clone());
            }
        }
        let init = SyntheticModuleInitializer::from_copy_closure_with_captures(
            |module, (exports, names): &(JsValue, Vec<JsString>), context| {
                module.set_export(&js_string!("default"), exports.clone())?;
                if let Some(object) = exports.as_object() {
                    for name in names.iter().skip(1) {
                        module.set_export(name, object.get(name.clone(), context)?)?;
                    }
                }
                Ok(())
            },
            (exports, names.clone()),
        );
        Ok(Module::synthetic(&names, init, Some(path.to_path_buf()), None, context))
    }

    fn load(&self, referrer: &Referrer, request: &ModuleRequest, context: &mut Context) -> JsResult<Module> {
        let specifier = request.specifier().to_std_string_escaped();
        for attribute in request.attributes() {
            let json = attribute.key() == &js_string!("type") && attribute.value() == &js_string!("json");
            if !json {
                return Err(JsNativeError::typ()
                    .with_message(format!("unsupported import attribute on `{specifier}`"))
                    .into());
            }
        }
        let from = referrer.path().unwrap_or(Path::new(""));
        let (path, format) = self.resolver.resolve(&specifier, from, Kind::Import).map_err(resolve_error)?;
        self.module_at(&path, format, context)
    }
}

fn path_value(path: &Path) -> JsValue {
    JsString::from(path.to_string_lossy().as_ref()).into()
}

fn io_error(path: &str, e: &std::io::Error) -> JsError {
    JsNativeError::error().with_message(format!("cannot read {path}: {e}")).into()
}

fn resolve_error(e: ResolveError) -> JsError {
    JsNativeError::error().with_message(e.to_string()).into()
}

fn string_arg(args: &[JsValue], i: usize, context: &mut Context) -> JsResult<String> {
    Ok(args.get(i).cloned().unwrap_or_default().to_string(context)?.to_std_string_escaped())
}

/// `resolve(specifier, fromPath)` → `[path, format]`, with `require`'s conditions.
fn native_resolve(_: &JsValue, args: &[JsValue], me: &LoaderRef, context: &mut Context) -> JsResult<JsValue> {
    let spec = string_arg(args, 0, context)?;
    let from = string_arg(args, 1, context)?;
    let (path, format) = me.0.resolver.resolve(&spec, Path::new(&from), Kind::Require).map_err(resolve_error)?;
    let pair = [path_value(&path), JsString::from(format.name()).into()];
    Ok(JsArray::from_iter(pair, context).into())
}

/// `read(path)`: a resolved file's text (JSON modules).
fn native_read(_: &JsValue, args: &[JsValue], me: &LoaderRef, context: &mut Context) -> JsResult<JsValue> {
    let path = string_arg(args, 0, context)?;
    let text = me.0.resolver.read(Path::new(&path)).map_err(|e| io_error(&path, &e))?;
    Ok(JsString::from(text.as_str()).into())
}

/// `compile(path)`: the CommonJS module wrapped in Node's function
/// `(exports, require, module, __filename, __dirname)`, on the first line so
/// error positions keep their line numbers.
fn native_compile(_: &JsValue, args: &[JsValue], me: &LoaderRef, context: &mut Context) -> JsResult<JsValue> {
    let path = string_arg(args, 0, context)?;
    let mut code = me.0.resolver.read(Path::new(&path)).map_err(|e| io_error(&path, &e))?;
    if code.starts_with("#!") {
        code.replace_range(0..2, "//");
    }
    let wrapped = format!("(function (exports, require, module, __filename, __dirname) {{{code}\n}})");
    context.eval(Source::from_bytes(wrapped.as_bytes()).with_path(Path::new(&path)))
}

/// `requireModule(path)`: `require()` of an ES module, as Node 22 does it:
/// synchronously, its namespace, refused if it awaits at the top level.
fn native_require_esm(_: &JsValue, args: &[JsValue], me: &LoaderRef, context: &mut Context) -> JsResult<JsValue> {
    let path = string_arg(args, 0, context)?;
    let module = me.0.module_at(Path::new(&path), Format::Esm, context)?;
    let promise = module.load_link_evaluate(context);
    context.run_jobs()?;
    match promise.state() {
        PromiseState::Fulfilled(_) => Ok(module.namespace(context).into()),
        PromiseState::Rejected(e) => Err(JsError::from_opaque(e)),
        PromiseState::Pending => Err(JsNativeError::error()
            .with_message(format!("require() of `{path}`, an ES module with a top-level await; use import()"))
            .into()),
    }
}

impl ModuleLoader for BundleLoader {
    fn load_imported_module(
        self: Rc<Self>,
        referrer: Referrer,
        request: ModuleRequest,
        context: &RefCell<&mut Context>,
    ) -> impl Future<Output = JsResult<Module>> {
        let result = {
            let mut context = context.borrow_mut();
            self.load(&referrer, &request, &mut context)
        };
        async { result }
    }
}
