//! What the worker's sandbox does, as the supervisor asks for it: one switch per
//! layer, the limits, and who to become. No path: what a worker may read is the
//! one bundle directory that `Prepare` or `Init` hands it as a descriptor. The
//! supervisor builds a [`SandboxConfig`]; it crosses the exec as one JSON object
//! (`--sandbox`, kebab-case keys, see [`crate::launch`]); the worker parses it
//! strictly. Any key may be left out, and an unknown key is an error.
//! The limits every side shares are constants here, written once.

/// The largest `memoryMb` a function may have: all of wasm32's address space.
pub const MAX_FUNCTION_MEMORY_MB: u64 = 4096;
/// Memory a worker needs beyond its function's `memoryMb`: the runtime itself,
/// thread stacks, compiled code while it is written, message buffers.
pub const RUNTIME_OVERHEAD_MB: u64 = 256;

use serde::{Deserialize, Serialize};

/// The defaults are the strict sandbox. A worker started without `--sandbox` gets
/// every layer, and refuses to serve if one cannot be applied.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SandboxConfig {
    /// Which steps run. Turning one off is for debugging, or for a kernel that lacks a
    /// feature. Each step turned off is logged as a warning when the worker starts.
    pub layers: Layers,
    /// Serve even when a step fails (logged at error level, listed as degraded in the
    /// report). Off by default: the worker fails closed.
    pub allow_degraded: bool,
    pub limits: Limits,
    /// Who user code runs as when the worker starts as root. Ignored otherwise.
    pub run_as: RunAs,
}

impl SandboxConfig {
    /// Parses `--sandbox`.
    ///
    /// # Errors
    /// Malformed JSON, a value of the wrong type, or an unknown key.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        // A struct of plain fields with string keys always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One switch per step of the worker's sandbox (its `apply_early` and
/// `apply_for_function`; `landlock` covers both Landlock layers, `rlimits` covers the
/// function memory bound).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layers {
    pub parent_death: bool,
    /// Was `new-session` (a session of its own) before the worker kept the
    /// supervisor's session; that name still switches this step off.
    #[serde(alias = "new-session")]
    pub process_group: bool,
    pub close_fds: bool,
    pub no_new_privs: bool,
    pub rlimits: bool,
    pub netns: bool,
    pub drop_privileges: bool,
    pub not_dumpable: bool,
    pub landlock: bool,
    pub seccomp: bool,
}

/// A layer name `switch_off` does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown sandbox layer {0:?} (known: {known})", known = Layers::NAMES.join(", "))]
pub struct UnknownLayer(pub String);

impl Layers {
    /// The layer names, as `--sandbox-disable` and the JSON spell them.
    pub const NAMES: [&'static str; 10] = [
        "parent-death",
        "process-group",
        "close-fds",
        "no-new-privs",
        "rlimits",
        "netns",
        "drop-privileges",
        "not-dumpable",
        "landlock",
        "seccomp",
    ];

    /// Switches the named layer off.
    ///
    /// # Errors
    /// The name is not one of [`Layers::NAMES`].
    pub fn switch_off(&mut self, name: &str) -> Result<(), UnknownLayer> {
        let switch = match name {
            "parent-death" => &mut self.parent_death,
            "process-group" | "new-session" => &mut self.process_group,
            "close-fds" => &mut self.close_fds,
            "no-new-privs" => &mut self.no_new_privs,
            "rlimits" => &mut self.rlimits,
            "netns" => &mut self.netns,
            "drop-privileges" => &mut self.drop_privileges,
            "not-dumpable" => &mut self.not_dumpable,
            "landlock" => &mut self.landlock,
            "seccomp" => &mut self.seccomp,
            other => return Err(UnknownLayer(other.to_string())),
        };
        *switch = false;
        Ok(())
    }
}

impl Default for Layers {
    fn default() -> Self {
        Self {
            parent_death: true,
            process_group: true,
            close_fds: true,
            no_new_privs: true,
            rlimits: true,
            netns: true,
            drop_privileges: true,
            not_dumpable: true,
            landlock: true,
            seccomp: true,
        }
    }
}

/// The resource limits. Each is a backstop for something another layer or the
/// runtime already bounds. Each is set with soft = hard, so user code cannot raise it
/// back (CPU excepted: hard is one second higher, see `cpu_seconds`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// RLIMIT_NOFILE. The worker holds a handful: stdio, the socket, a module file,
    /// and tokio's epoll and eventfd (wasmtime-wasi's runtime).
    pub open_files: u64,
    /// RLIMIT_NPROC. Unset by default: it counts every task (threads too) of the
    /// real uid across the whole system. Under the shipped systemd unit, that uid is
    /// the supervisor's. With `nobody`, it is every daemon that runs as nobody. It only
    /// means something with a dedicated uid per worker. What stops fork is seccomp
    /// (`clone` only with `CLONE_THREAD`).
    pub processes: Option<u64>,
    /// RLIMIT_FSIZE, 0: the worker writes no file. It also keeps a memfd empty, so
    /// memfd pages, which RLIMIT_DATA does not count, cannot hold memory. SIGXFSZ is
    /// ignored, so an over-limit write fails with EFBIG instead of killing the worker.
    /// That includes the worker's own stderr when the supervisor's stderr is a regular
    /// file, which is why the supervisor reads workers' stderr through a pipe.
    pub file_size_bytes: u64,
    /// RLIMIT_CPU, in seconds of CPU over the worker's whole life, not per invocation.
    /// It kills a warm worker that has used this much in total. The supervisor sees a
    /// crash and starts a new worker. The per-invocation deadline is the deadline
    /// clock plus the supervisor's kill. `None` leaves the limit unset.
    pub cpu_seconds: Option<u64>,
    /// Which rlimit bounds memory.
    pub memory: MemoryRlimit,
    /// The memory bound from start until a function is known (blank worker, Prepare),
    /// in MiB. The supervisor passes its largest `memoryMb` plus `memory_overhead_mb`.
    pub memory_mb: Option<u64>,
    /// Added to a function's `memoryMb` when the bound is lowered on Init. It covers the
    /// runtime itself, thread stacks (private writable mappings count as data),
    /// compiled code while it is being written, and the message buffers.
    pub memory_overhead_mb: u64,
    /// Added to the nice value the worker inherited from the supervisor (at most
    /// 19 in all). A worker has a core only when the supervisor does not want it:
    /// under load the supervisor then hands out the next request and forwards the
    /// last answer without waiting behind a handler, and no handler can starve the
    /// server. Not undone by user code: lowering it back needs a privilege the
    /// worker does not have, and seccomp refuses `setpriority`.
    pub nice: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            open_files: 64,
            processes: None,
            file_size_bytes: 0,
            cpu_seconds: Some(3600),
            memory: MemoryRlimit::Data,
            memory_mb: Some(MAX_FUNCTION_MEMORY_MB + RUNTIME_OVERHEAD_MB),
            nice: 5,
            memory_overhead_mb: RUNTIME_OVERHEAD_MB,
        }
    }
}

/// RLIMIT_DATA or RLIMIT_AS.
///
/// RLIMIT_DATA is the default, and the only choice for wasm and Ruby workers. Since
/// Linux 4.7 it counts private, writable, non-stack mappings: brk, and
/// `mmap(MAP_PRIVATE)` (anonymous or file) with PROT_WRITE. mprotect() that makes a
/// mapping writable is charged too, and fails with ENOMEM past the limit.
/// (`is_data_mapping()`: `(flags & (VM_WRITE|VM_SHARED|VM_STACK)) == VM_WRITE`.)
/// wasmtime's pooling allocator reserves each memory slot (4 GiB plus guards) with
/// PROT_NONE, which is not counted. Only the accessible part of a linear memory
/// counts, as it is mprotect'ed writable, and the store limiter already caps that at
/// `memoryMb`. The interpreters' heaps count in full. What RLIMIT_DATA does not see
/// is shared mappings. seccomp therefore refuses `mmap(MAP_SHARED)`, and
/// RLIMIT_FSIZE = 0 keeps memfds empty.
///
/// RLIMIT_AS counts every byte of address space, reservations included. The pool
/// alone reserves more than 8 GiB, so RLIMIT_AS would stop wasmtime from starting.
/// It is offered for JavaScript and Python workers that want the stricter count,
/// with room for thread stacks (2 MiB per Rust thread by default) and the binary's mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryRlimit {
    Data,
    AddressSpace,
}

/// A uid and gid the supervisor resolved from names (default `nobody`/`nogroup`).
/// The worker reads no user database.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl Default for RunAs {
    fn default() -> Self {
        // nobody/nogroup on Debian and most distributions. The supervisor resolves
        // the configured names and passes numbers, so this is only a fallback.
        Self { uid: 65534, gid: 65534 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_the_strict_default() {
        let config = SandboxConfig::from_json("{}").expect("the empty object is valid");
        assert!(config.layers.seccomp && config.layers.landlock && !config.allow_degraded);
        assert_eq!(config.limits.file_size_bytes, 0);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(SandboxConfig::from_json(r#"{"layers":{"seccom":false}}"#).is_err());
    }

    #[test]
    fn one_layer_can_be_switched_off() {
        let config = SandboxConfig::from_json(r#"{"layers":{"seccomp":false},"limits":{"memory":"address-space"}}"#)
            .expect("valid");
        assert!(!config.layers.seccomp && config.layers.landlock);
        assert_eq!(config.limits.memory, MemoryRlimit::AddressSpace);
    }

    #[test]
    fn every_layer_name_switches_one_layer_off_and_survives_the_json() {
        for name in Layers::NAMES {
            let mut config = SandboxConfig::default();
            config.layers.switch_off(name).expect("a known name");
            let back = SandboxConfig::from_json(&config.to_json()).expect("round trip");
            let off = serde_json::to_value(back.layers).expect("json");
            let off: Vec<&str> = off
                .as_object()
                .expect("object")
                .iter()
                .filter(|(_, v)| **v == false)
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(off, vec![name]);
        }
        assert!(Layers::default().switch_off("seccom").is_err());
    }

    #[test]
    fn the_old_name_of_the_process_group_step_still_switches_it_off() {
        let mut layers = Layers::default();
        layers.switch_off("new-session").expect("the old name");
        assert!(!layers.process_group);
        let config = SandboxConfig::from_json(r#"{"layers":{"new-session":false}}"#).expect("the old key");
        assert!(!config.layers.process_group && config.layers.parent_death);
    }
}
