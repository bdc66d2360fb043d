//! One CRuby VM (the WASI build of `@ruby/3.4-wasm-wasi`) in one wasmtime store
//! that lives as long as it is usable, and the old wit-bindgen calling convention
//! of its exports (`rb-abi-guest`): strings go in as (ptr, len) in guest memory
//! (NUL-terminated, for the exports that read C strings), results come back
//! through a return pointer, and every result handle is dropped after use (but
//! the receiver of a bound [`Method`], kept for the VM's life). Source is parsed
//! only for the prelude's own setup calls; an invocation is a bound method called
//! through `rb-funcallv-protect`, its input on the VM's stdin (`feed.rs`).
//!
//! The VM's one host directory is the WASI preopen `/app`, read-only. A blank VM
//! boots before its bundle is known, so the preopen starts on the worker's working
//! directory at boot, and [`RubyVm::mount_app`] points it at the bundle (the
//! working directory once the worker is confined) before any bundle code runs.
//! It must never point anywhere else while user code can run.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use wasmtime::{Engine, Instance, Linker, Memory, Module, ResourceLimiter, Store, TypedFunc};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder, WasiView};

use super::capture::Capture;
use super::feed::Feed;

const EX_INIT: &str = "ruby-init: func(args: list<string>) -> ()";
const EX_EVAL: &str = "rb-eval-string-protect: func(str: string) -> tuple<handle<rb-abi-value>, s32>";
const EX_RSTRING: &str = "rstring-ptr: func(value: handle<rb-abi-value>) -> string";
const EX_RSTRING_POST: &str = "cabi_post_rstring-ptr";
const EX_DROP: &str = "canonical_abi_drop_rb-abi-value";
const EX_CLEAR_ERRINFO: &str = "rb-clear-errinfo: func() -> ()";
const EX_FUNCALL: &str = "rb-funcallv-protect: func(recv: handle<rb-abi-value>, mid: u32, args: list<handle<rb-abi-value>>) -> tuple<handle<rb-abi-value>, s32>";
const EX_INTERN: &str = "rb-intern: func(name: string) -> u32";

/// `--disable-gems`: RubyGems, did_you_mean and error_highlight are not needed by
/// handlers and cost ~150 ms of `ruby-init`; the stdlib (`require "json"`) stays.
/// `-e_=0`: without a script argument Ruby would read one from stdin.
/// `--disable-gems` also keeps the bundled gems (`csv`, …) off `$LOAD_PATH`:
/// the prelude adds their `lib` directories itself.
const RUBY_ARGS: [&str; 4] = ["ruby.wasm", "-EUTF-8", "--disable-gems", "-e_=0"];

/// Where the bundle appears in the guest.
pub const APP_DIR: &str = "/app";

pub struct RubyState {
    wasi: WasiP1Ctx,
    limiter: MemoryCap,
    /// (device, inode) of the directory `/app` was last pointed at.
    app: (u64, u64),
}

/// Caps the VM's linear memory (which only grows) and remembers being hit.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.hit |= desired > self.max_bytes;
        Ok(desired <= self.max_bytes)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The linker Ruby instances use: WASI preview 1, identity handles for the one
/// resource the guest creates, and traps for the JS-interop imports (reached only
/// through `require "js"`, which is not on the load path).
pub fn linker(engine: &Engine, module: &Module) -> Result<Linker<RubyState>> {
    let mut linker = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |s: &mut RubyState| &mut s.wasi)?;
    linker.func_wrap("canonical_abi", "resource_new_rb-abi-value", |v: i32| v)?;
    linker.func_wrap("canonical_abi", "resource_get_rb-abi-value", |h: i32| h)?;
    linker.define_unknown_imports_as_traps(module)?;
    Ok(linker)
}

pub struct RubyVm {
    pub store: Store<RubyState>,
    memory: Memory,
    realloc: TypedFunc<(i32, i32, i32, i32), i32>,
    eval: TypedFunc<(i32, i32), i32>,
    rstring: TypedFunc<i32, i32>,
    rstring_post: TypedFunc<i32, ()>,
    drop_value: TypedFunc<i32, ()>,
    clear_errinfo: TypedFunc<(), ()>,
    funcall: TypedFunc<(i32, i32, i32, i32), i32>,
    intern: TypedFunc<(i32, i32), i32>,
    /// One reusable buffer in guest memory for strings passed in: the guest has
    /// no `free` export, so allocating per call would leak.
    scratch: (i32, i32),
}

/// A method bound by [`RubyVm::method`]: its receiver's handle and its name's ID.
#[derive(Clone, Copy)]
pub struct Method {
    recv: i32,
    mid: i32,
}

/// How an eval ended.
pub enum Eval {
    /// The code's value, a Ruby String.
    Value(Vec<u8>),
    /// A Ruby exception escaped the code; its full message.
    Raised(String),
}

impl RubyVm {
    /// Instantiates Ruby and boots the VM (`_initialize`, then `ruby-init`).
    pub fn boot(
        engine: &Engine,
        linker: &Linker<RubyState>,
        module: &Module,
        stdin: &Feed,
        stdout: &Capture,
        stderr: &Capture,
        max_memory: usize,
    ) -> Result<Self> {
        // Opened O_PATH by wasmtime-wasi, which Landlock does not check; what the
        // guest opens beneath it is checked, against the bundle once confined.
        let app = identity(&std::fs::metadata(".").context("the working directory")?);
        let wasi = WasiCtxBuilder::new()
            .stdin(stdin.clone())
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .preopened_dir(".", APP_DIR, FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .context("preopening /app")?
            .build_p1();
        let limiter = MemoryCap { max_bytes: max_memory, hit: false };
        let mut store = Store::new(engine, RubyState { wasi, limiter, app });
        store.limiter(|s| &mut s.limiter);
        // Boot runs without a deadline; invocations set theirs.
        store.set_epoch_deadline(u64::MAX / 2);
        store.epoch_deadline_trap();
        let instance =
            linker.instantiate(&mut store, module).map_err(anyhow::Error::from).context("instantiating ruby")?;
        // Runs the C constructors and mounts the stdlib embedded in the module.
        instance.get_typed_func::<(), ()>(&mut store, "_initialize")?.call(&mut store, ())?;
        let memory = instance.get_memory(&mut store, "memory").context("ruby exports no memory")?;
        let realloc = instance.get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "cabi_realloc")?;
        let mut vm = Self {
            memory,
            realloc,
            eval: func(&instance, &mut store, EX_EVAL)?,
            rstring: func(&instance, &mut store, EX_RSTRING)?,
            rstring_post: func(&instance, &mut store, EX_RSTRING_POST)?,
            drop_value: func(&instance, &mut store, EX_DROP)?,
            clear_errinfo: func(&instance, &mut store, EX_CLEAR_ERRINFO)?,
            funcall: func(&instance, &mut store, EX_FUNCALL)?,
            intern: func(&instance, &mut store, EX_INTERN)?,
            scratch: (0, 0),
            store,
        };
        vm.ruby_init(&instance)?;
        Ok(vm)
    }

    fn ruby_init(&mut self, instance: &Instance) -> Result<()> {
        // list<string>: n records of {ptr, len}; Ruby keeps argv, so never freed.
        let records = self.realloc.call(&mut self.store, (0, 0, 4, (RUBY_ARGS.len() * 8) as i32))?;
        for (i, arg) in RUBY_ARGS.iter().enumerate() {
            let ptr = self.realloc.call(&mut self.store, (0, 0, 1, arg.len() as i32 + 1))?;
            self.write(ptr, arg.as_bytes())?;
            self.write(ptr + arg.len() as i32, &[0])?;
            let mut record = [0u8; 8];
            record[..4].copy_from_slice(&ptr.to_le_bytes());
            record[4..].copy_from_slice(&(arg.len() as i32).to_le_bytes());
            self.write(records + (i * 8) as i32, &record)?;
        }
        let init = instance.get_typed_func::<(i32, i32), ()>(&mut self.store, EX_INIT)?;
        init.call(&mut self.store, (records, RUBY_ARGS.len() as i32))?;
        Ok(())
    }

    /// Evaluates `code`, whose value must be a String.
    ///
    /// # Errors
    /// A wasm trap (deadline, memory limit, a crash inside the VM): the VM is then
    /// in an unknown state and must not be used again.
    pub fn eval_string(&mut self, code: &[u8]) -> Result<Eval> {
        let (handle, state) = self.eval_raw(code)?;
        self.ending(handle, state)
    }

    /// A method of the object `eval_string(receiver)` evaluates to, to call
    /// again and again with no arguments and no Ruby source to parse.
    ///
    /// # Errors
    /// If evaluating `receiver` raised or trapped.
    pub fn method(&mut self, receiver: &[u8], name: &str) -> Result<Method> {
        let (recv, state) = self.eval_raw(receiver)?;
        ensure!(state == 0, "evaluating {:?} failed", String::from_utf8_lossy(receiver));
        // The handle stays lent (never dropped), so the object is never collected.
        let (ptr, _) = self.put(name.as_bytes())?;
        let mid = self.intern.call(&mut self.store, (ptr, i32::try_from(name.len())?))?;
        Ok(Method { recv, mid })
    }

    /// Calls `method`, whose value must be a String; as [`Self::eval_string`].
    ///
    /// # Errors
    /// As [`Self::eval_string`].
    pub fn call(&mut self, method: Method) -> Result<Eval> {
        let ret = self.funcall.call(&mut self.store, (method.recv, method.mid, 0, 0))?;
        let (handle, state) = (self.read_i32(ret)?, self.read_i32(ret + 4)?);
        self.ending(handle, state)
    }

    /// The value of an eval or a call (`state` 0), or the exception that escaped it.
    fn ending(&mut self, handle: i32, state: i32) -> Result<Eval> {
        if state == 0 {
            let bytes = self.rstring(handle);
            self.drop_value.call(&mut self.store, handle)?;
            return Ok(Eval::Value(bytes?));
        }
        // A failed protect does not lend its handle; `$!` holds the exception.
        let (h, s) = self.eval_raw(b"$!.nil? ? 'unknown error' : $!.full_message(highlight: false)")?;
        let message = if s == 0 {
            let m = self.rstring(h);
            self.drop_value.call(&mut self.store, h)?;
            String::from_utf8_lossy(&m?).into_owned()
        } else {
            format!("ruby error (tag {})", state & 0xf)
        };
        // Else the next exception would carry this one as its cause.
        self.clear_errinfo.call(&mut self.store, ())?;
        Ok(Eval::Raised(message))
    }

    fn eval_raw(&mut self, code: &[u8]) -> Result<(i32, i32)> {
        let (ptr, len) = self.put(code)?;
        let ret = self.eval.call(&mut self.store, (ptr, len))?;
        Ok((self.read_i32(ret)?, self.read_i32(ret + 4)?))
    }

    fn rstring(&mut self, handle: i32) -> Result<Vec<u8>> {
        let ret = self.rstring.call(&mut self.store, handle)?;
        let (ptr, len) = (self.read_i32(ret)?, self.read_i32(ret + 4)?);
        let data = self.memory.data(&self.store);
        let bytes = usize::try_from(ptr)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(p, n)| data.get(p..p.checked_add(n)?))
            .map(<[u8]>::to_vec)
            .context("rstring-ptr returned a range outside memory")?;
        self.rstring_post.call(&mut self.store, ret)?;
        Ok(bytes)
    }

    /// Copies `bytes` (plus a NUL) into the scratch buffer, growing it if needed.
    fn put(&mut self, bytes: &[u8]) -> Result<(i32, i32)> {
        let len = i32::try_from(bytes.len()).context("string too large for wasm32")?;
        let need = len.checked_add(1).context("string too large for wasm32")?;
        if need > self.scratch.1 {
            let cap = (need as u32).max(4096).checked_next_power_of_two().context("string too large")? as i32;
            let ptr = self.realloc.call(&mut self.store, (self.scratch.0, self.scratch.1, 1, cap))?;
            self.scratch = (ptr, cap);
        }
        self.write(self.scratch.0, bytes)?;
        self.write(self.scratch.0 + len, &[0])?;
        Ok((self.scratch.0, len))
    }

    fn write(&mut self, at: i32, bytes: &[u8]) -> Result<()> {
        let at = usize::try_from(at).context("negative guest pointer")?;
        self.memory.write(&mut self.store, at, bytes).context("guest memory write out of bounds")
    }

    fn read_i32(&self, at: i32) -> Result<i32> {
        let at = usize::try_from(at).context("negative guest pointer")?;
        let mut word = [0u8; 4];
        self.memory.read(&self.store, at, &mut word).context("guest memory read out of bounds")?;
        Ok(i32::from_le_bytes(word))
    }

    /// Points `/app` at the worker's working directory: the bundle, once the worker
    /// is confined. Called before the bundle's code is loaded; the preopen's host
    /// descriptor is replaced in place (the guest's libc keeps its descriptor
    /// number and its path), so nothing is opened per invocation.
    ///
    /// # Errors
    /// If `.` cannot be opened, or the preopen is not found.
    pub fn mount_app(&mut self) -> Result<()> {
        // O_PATH, as wasmtime-wasi opens preopens: every open beneath it is a
        // fresh openat that Landlock checks against the bundle.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(".")
            .context("opening the bundle directory")?;
        let new = identity(&dir.metadata().context("the bundle directory")?);
        let dir = Arc::new(dir);
        let state = self.store.data_mut();
        let old = state.app;
        let mut mounted = 0;
        for (_, entry) in state.wasi.ctx().table.iter_mut() {
            if let Some(Descriptor::Dir(d)) = entry.downcast_mut::<Descriptor>()
                && d.dir.metadata().is_ok_and(|m| identity(&m) == old)
            {
                d.dir = Arc::clone(&dir);
                mounted += 1;
            }
        }
        ensure!(mounted > 0, "the VM has no /app directory to mount the bundle on");
        state.app = new;
        Ok(())
    }

    pub fn set_memory_limit(&mut self, max_bytes: usize) {
        self.store.data_mut().limiter.max_bytes = max_bytes;
    }

    pub fn memory_limit_hit(&self) -> bool {
        self.store.data().limiter.hit
    }
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    instance: &Instance,
    store: &mut Store<RubyState>,
    name: &str,
) -> Result<TypedFunc<P, R>> {
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("ruby export {name:?}"))
}

/// Checks that `module` looks like the Ruby build this code speaks to.
pub fn check_module(module: &Module) -> Result<()> {
    for name in [
        EX_INIT,
        EX_EVAL,
        EX_RSTRING,
        EX_RSTRING_POST,
        EX_DROP,
        EX_CLEAR_ERRINFO,
        EX_FUNCALL,
        EX_INTERN,
        "cabi_realloc",
        "_initialize",
    ] {
        if module.get_export(name).is_none() {
            bail!("the ruby module does not export {name:?}; use @ruby/3.4-wasm-wasi 2.x");
        }
    }
    Ok(())
}
