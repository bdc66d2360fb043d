//! Trust in the one kind of file a worker makes for the store: the precompiled
//! module (`module-<hash>.cwasm`), native code a wasm worker maps in and runs.
//!
//! The supervisor accepts such a file only from a worker that compiled WASM (which
//! runs no user code), only under the one name a precompiled module has, never
//! over a file of the bundle, and records its sha256 in the function's index. A
//! stored module is hashed again when the store loads a version (startup, commit,
//! rollback); one that does not match is refused, never handed to a worker.
//! Nothing here trusts what a worker that ran user code says.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use super::{Staged, StoreError};

/// A stored precompiled module, as the function's index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRecord {
    pub version: u64,
    pub file_name: String,
    pub sha256: String,
}

/// Whether `name` is the name a wasm worker gives a precompiled module:
/// `module-` and 16 lowercase hex digits (the engine's compatibility hash), `.cwasm`.
/// Derived here rather than taken from the worker, so no other name (not
/// `metadata.json`, not the entrypoint, nothing in a directory) is ever written.
pub fn is_artifact_name(name: &str) -> bool {
    name.strip_prefix("module-")
        .and_then(|rest| rest.strip_suffix(".cwasm"))
        .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Whether a bundle entry would pass for a precompiled module (any `.cwasm` at the
/// bundle's root): an upload may not bring its own native code.
pub fn is_reserved_bundle_name(name: &str) -> bool {
    !name.contains('/') && name.ends_with(".cwasm")
}

/// The sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks the precompiled modules of one stored version against `records` (this
/// version's). `Err` names why the version must not run. A `.cwasm` the index does
/// not record (a version stored before modules were recorded, or a file planted
/// beside it) is removed: the worker then compiles the module from its `.wasm`.
pub fn verify_version(version_dir: &Path, version: u64, records: &[ArtifactRecord]) -> Result<(), String> {
    let entries = fs::read_dir(version_dir).map_err(|e| format!("cannot read {}: {e}", version_dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", version_dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if !name.ends_with(".cwasm") {
            continue;
        }
        let path = entry.path();
        match records.iter().find(|r| r.version == version && r.file_name == name) {
            Some(record) => {
                let actual = sha256_file(&path).map_err(|e| format!("cannot hash {name}: {e}"))?;
                if actual != record.sha256 {
                    error!(file = %path.display(), expected = %record.sha256, %actual,
                        "precompiled module does not match its recorded sha256: refusing to run this version");
                    return Err(format!(
                        "the precompiled module of version {version} does not match the sha256 recorded when it \
                         was stored; it is refused (redeploy the function)"
                    ));
                }
            }
            None => {
                warn!(file = %path.display(), "removing a precompiled module the index does not record");
                fs::remove_file(&path).map_err(|e| format!("cannot remove an unrecorded {name}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Refuses a bundle that brings a file at its root a precompiled module could be
/// named like: native code only ever comes from the supervisor's own compile.
pub fn no_reserved_names(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if is_reserved_bundle_name(&name) {
            return Err(StoreError::Rejected(format!(
                "{name}: a bundle may not contain a .cwasm file at its root (the name is reserved for the \
                 module the server compiles)"
            )));
        }
    }
    Ok(())
}

/// What is committed is what was validated: `metadata.json` hashes as it did at
/// staging, and every precompiled module as it was written.
pub fn check_unchanged(staged: &Staged) -> Result<(), StoreError> {
    let metadata = sha256_file(&staged.dir.join(super::bundle::METADATA_FILE))?;
    if metadata != staged.metadata_sha256 {
        tracing::error!(function = %staged.name, "metadata.json changed between validation and commit");
        return Err(StoreError::Tampered("metadata.json changed after it was validated".into()));
    }
    for artifact in &staged.artifacts {
        if sha256_file(&staged.dir.join(&artifact.file_name))? != artifact.sha256 {
            tracing::error!(function = %staged.name, file = %artifact.file_name, "precompiled module changed before commit");
            return Err(StoreError::Tampered(format!("{} changed after it was written", artifact.file_name)));
        }
    }
    Ok(())
}

/// Versions the store refuses to hand to a worker, with the reason. Shared with
/// the pool, which asks before every `Init`.
#[derive(Clone, Default)]
pub struct Refusals(Arc<RwLock<HashMap<(String, u64), String>>>);

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refusals")
    }
}

impl Refusals {
    pub fn set(&self, function: &str, version: u64, verdict: Result<(), String>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        match verdict {
            Ok(()) => map.remove(&(function.to_string(), version)),
            Err(why) => map.insert((function.to_string(), version), why),
        };
    }

    /// Why `function` `version` may not run, if it may not.
    pub fn check(&self, function: &str, version: u64) -> Option<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(&(function.to_string(), version)).cloned()
    }

    pub fn forget(&self, function: &str) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).retain(|(f, _), _| f != function);
    }
}

/// Bytes of every file under `dir` (not following links; the store has none).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_precompiled_module_name_is_an_artifact_name() {
        assert!(is_artifact_name("module-0123456789abcdef.cwasm"));
        for bad in [
            "metadata.json",
            "module-0123456789ABCDEF.cwasm",
            "module-0123456789abcde.cwasm",
            "../module-0123456789abcdef.cwasm",
            "a/module-0123456789abcdef.cwasm",
            "module-0123456789abcdef.cwasm.x",
            "handler.wasm",
        ] {
            assert!(!is_artifact_name(bad), "{bad}");
        }
    }
}
