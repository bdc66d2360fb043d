//! Resolves ES module imports inside one bundle directory only: `..` above the
//! root, absolute paths elsewhere, symlinks that lead out, and anything but
//! `.js`/`.mjs` are refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use boa_engine::module::{ModuleLoader, ModuleRequest, Referrer, resolve_module_specifier};
use boa_engine::{Context, JsError, JsNativeError, JsResult, Module, Source};

pub struct RootedLoader {
    /// Canonical bundle directory.
    root: PathBuf,
    cache: RefCell<HashMap<PathBuf, Module>>,
}

impl RootedLoader {
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self { root: root.canonicalize()?, cache: RefCell::default() })
    }

    /// Registers the entry module under its canonical path, so imports relative to
    /// it resolve.
    pub fn insert(&self, canonical_path: PathBuf, module: Module) {
        self.cache.borrow_mut().insert(canonical_path, module);
    }

    fn load(&self, referrer: &Referrer, request: &ModuleRequest, context: &mut Context) -> JsResult<Module> {
        let specifier = request.specifier().to_std_string_escaped();
        let outside = || JsNativeError::typ().with_message(format!("module `{specifier}` is outside the bundle"));
        if !request.attributes().is_empty() {
            return Err(JsNativeError::typ()
                .with_message(format!("import attributes are not supported: `{specifier}`"))
                .into());
        }
        // Lexical resolution refuses `..` above the root and absolute paths outside it.
        let lexical =
            resolve_module_specifier(Some(self.root.as_path()), request.specifier(), referrer.path(), context)?;
        // The real path, so a symlink inside the bundle cannot point out of it.
        let real = lexical
            .canonicalize()
            .map_err(|_| JsNativeError::typ().with_message(format!("cannot find module `{specifier}`")))?;
        let is_js = matches!(real.extension().and_then(|e| e.to_str()), Some("js" | "mjs"));
        if !real.starts_with(&self.root) || !is_js {
            return Err(outside().into());
        }
        if let Some(module) = self.cache.borrow().get(&real) {
            return Ok(module.clone());
        }
        let source = Source::from_filepath(&real).map_err(JsError::from_rust)?;
        let relative = real.strip_prefix(&self.root).unwrap_or(&real).display().to_string();
        let module = Module::parse(source, None, context)
            .map_err(|e| JsNativeError::syntax().with_message(format!("{relative}: {e}")))?;
        self.cache.borrow_mut().insert(real, module.clone());
        Ok(module)
    }
}

impl ModuleLoader for RootedLoader {
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
