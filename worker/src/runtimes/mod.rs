//! The language runtimes a worker can host, behind one trait.
//!
//! A worker loads one runtime while it is blank ([`Blank`]: engines and
//! interpreters ready, no user code), prepares bundles for upload without running
//! them, and is specialized to exactly one function version by `Init`, which
//! yields a [`Runtime`] that serves that function's invocations.

mod ambient;
mod deadline;
pub mod js;
pub mod python;
pub mod ruby;
pub mod script;
pub mod wasm;

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use polyfaas_protocol::{Artifact, FailureKind, HttpRequest, HttpResponse, Init, Language, Logs, Prepare, Stats};

/// One function version, loaded and ready to be invoked.
pub trait Runtime {
    /// Runs the function once.
    ///
    /// # Errors
    /// A [`Failure`] for anything the handler did wrong; the worker stays usable.
    fn invoke(&mut self, request: HttpRequest, deadline: Duration) -> Result<Completed, Failure>;
}

/// A successful invocation.
pub struct Completed {
    pub response: HttpResponse,
    pub logs: Logs,
    pub stats: Stats,
}

/// A failed invocation, with whatever the handler logged before it failed.
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub logs: Logs,
}

/// A loaded but unspecialized runtime.
pub enum Blank {
    Wasm(wasm::WasmBlank),
    Js(js::JsBlank),
    Python(Box<python::PythonBlank>),
    Ruby(Box<ruby::RubyBlank>),
}

/// What a blank worker's runtime needs beyond the binary, opened before the sandbox.
pub struct RuntimeFiles {
    /// The precompiled Ruby module (`--ruby-module`).
    pub ruby_module: Option<std::fs::File>,
}

impl Blank {
    pub fn load(language: Language, files: RuntimeFiles) -> Result<Self> {
        if matches!(language, Language::Wasm | Language::Ruby) {
            // Before anything calls into wasmtime-wasi, which would otherwise start
            // threads of its own (see `ambient`).
            ambient::enter_blank()?;
        }
        match language {
            Language::Wasm => Ok(Blank::Wasm(wasm::WasmBlank::new()?)),
            Language::Js => Ok(Blank::Js(js::JsBlank)),
            Language::Python => Ok(Blank::Python(Box::new(python::PythonBlank::new()?))),
            Language::Ruby => match files.ruby_module {
                Some(file) => Ok(Blank::Ruby(Box::new(ruby::RubyBlank::new(file)?))),
                None => bail!("a ruby worker needs --ruby-module"),
            },
        }
    }

    /// Starts the runtime's own threads, if it has any: wasmtime-wasi's tokio
    /// runtime for wasm and Ruby (see `ambient`). The sandbox calls it once the
    /// function's Landlock layer is on, so that they carry it.
    ///
    /// # Returns
    /// Whether threads were started.
    pub fn start_threads(&self) -> std::io::Result<bool> {
        match self {
            Blank::Wasm(_) | Blank::Ruby(_) => ambient::start_threads().map(|()| true),
            Blank::Js(_) | Blank::Python(_) => Ok(false),
        }
    }

    /// Compiles and checks an uploaded bundle; runs none of its code. `bundle` is
    /// the bundle's directory as the worker reaches it (also its working directory).
    ///
    /// # Errors
    /// A message for the uploader that says what is wrong with the bundle.
    pub fn prepare(&mut self, prepare: &Prepare, bundle: &Path) -> Result<Vec<Artifact>, String> {
        match self {
            Blank::Wasm(w) => w.prepare(prepare, bundle),
            // Scripts have nothing to precompile: preparing is a dry-run of `Init`.
            Blank::Js(j) => j.prepare(prepare).map(|()| Vec::new()),
            Blank::Python(p) => p.prepare(prepare, bundle).map(|()| Vec::new()),
            Blank::Ruby(r) => r.prepare(prepare).map(|()| Vec::new()),
        }
    }

    /// Loads one function version into this worker, which is then this
    /// function's for the rest of its life. `bundle` as for [`Blank::prepare`].
    pub fn init(self, init: &Init, bundle: &Path) -> Result<Box<dyn Runtime>, String> {
        match self {
            Blank::Wasm(w) => Ok(Box::new(w.init(init, bundle)?)),
            Blank::Js(j) => Ok(Box::new(j.init(init)?)),
            Blank::Python(p) => Ok(Box::new(p.init(init, bundle)?)),
            Blank::Ruby(r) => Ok(Box::new(r.init(init)?)),
        }
    }
}
