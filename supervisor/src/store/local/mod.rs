//! The embedded store: bundles unpacked on local disk under the data dir.
//!
//! ```text
//! <data>/staging/<unique>/          uploads being checked (emptied at startup)
//! <data>/functions/<name>/<version>/ one unpacked bundle (+ precompiled module)
//! <data>/functions/<name>/index.json the versions and which is current
//! ```
//! A version directory is fsynced and renamed into place before the index names
//! it, and the index is replaced atomically (temp file, fsync, rename, fsync the
//! directory), so a crash at any point leaves the old or the new version current.
//! The index also records the sha256 of each precompiled module, checked whenever
//! a version is loaded; the store's total size and function count are capped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use self::disk::{fsync_dir, seal_tree, write_atomically};
use super::bundle::{self, Metadata, UnpackLimits};
use super::integrity::{self, ArtifactRecord, Refusals, disk_usage, sha256_file};
use super::{
    BundleStore, Deployed, FunctionLimits, FunctionName, LimitsPolicy, Quotas, Staged, StoreError, VersionRecord,
};

mod commit;
mod disk;
mod pack;

const INDEX_FILE: &str = "index.json";

/// A function's persisted index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionIndex {
    current: u64,
    versions: Vec<VersionRecord>,
    /// The precompiled module of each version that has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    artifacts: Vec<ArtifactRecord>,
}

struct FunctionState {
    index: FunctionIndex,
    current: Arc<Deployed>,
}

pub struct LocalStore {
    functions_dir: PathBuf,
    staging_dir: PathBuf,
    policy: LimitsPolicy,
    unpack_limits: UnpackLimits,
    /// Read on every invocation, written only for the instant of a swap: no I/O
    /// is ever done while it is held.
    functions: RwLock<BTreeMap<FunctionName, FunctionState>>,
    /// Serializes commits and deletes, which do their I/O outside `functions`.
    writer: Mutex<()>,
    staging_counter: AtomicU64,
    quotas: Quotas,
    /// Bytes under `functions_dir`, kept up to date by commit, prune and delete.
    usage: AtomicU64,
    refusals: Refusals,
}

impl LocalStore {
    /// Opens (creating if needed) the store under `data_dir` and loads every
    /// function. A function whose files are damaged is skipped with a warning
    /// rather than keeping the server down.
    pub fn open(
        data_dir: &Path,
        policy: LimitsPolicy,
        unpack_limits: UnpackLimits,
        quotas: Quotas,
    ) -> Result<Self, StoreError> {
        let functions_dir = data_dir.join("functions");
        let staging_dir = data_dir.join("staging");
        fs::create_dir_all(&functions_dir)?;
        // Whatever is in staging was an upload cut short by a crash.
        if staging_dir.exists() {
            fs::remove_dir_all(&staging_dir)?;
        }
        fs::create_dir_all(&staging_dir)?;
        // The supervisor's alone. A worker is handed its bundle's directory as a
        // descriptor and needs no right on any directory above it; closed, they
        // also keep another uid from even `stat`ing what lies beneath (Landlock
        // checks opens, not path walks).
        for dir in [&functions_dir, &staging_dir] {
            fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        let store = Self {
            functions_dir,
            staging_dir,
            policy,
            unpack_limits,
            functions: RwLock::new(BTreeMap::new()),
            writer: Mutex::new(()),
            staging_counter: AtomicU64::new(0),
            quotas,
            usage: AtomicU64::new(0),
            refusals: Refusals::default(),
        };
        let mut loaded = BTreeMap::new();
        for entry in fs::read_dir(&store.functions_dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| FunctionName::parse(n).ok()) else {
                warn!(dir = ?entry.path(), "ignoring a directory that is not a function name");
                continue;
            };
            match store.load_function(&name) {
                Ok(state) => {
                    loaded.insert(name, state);
                }
                Err(e) => warn!(function = %name, "cannot load function, skipping it: {e}"),
            }
        }
        store.usage.store(disk_usage(&store.functions_dir), Ordering::Relaxed);
        info!(functions = loaded.len(), bytes = store.usage.load(Ordering::Relaxed), dir = ?data_dir, "store opened");
        *store.write_functions() = loaded;
        Ok(store)
    }

    fn load_function(&self, name: &FunctionName) -> Result<FunctionState, StoreError> {
        let dir = self.functions_dir.join(name.as_str());
        let text = fs::read_to_string(dir.join(INDEX_FILE))?;
        let index: FunctionIndex = serde_json::from_str(&text).map_err(|e| StoreError::Index(e.to_string()))?;
        let record = index
            .versions
            .iter()
            .find(|v| v.version == index.current)
            .cloned()
            .ok_or_else(|| StoreError::Index(format!("current version {} is not recorded", index.current)))?;
        let version_dir = dir.join(index.current.to_string());
        let metadata = bundle::read_metadata(&version_dir)?;
        self.verify(name, index.current, &version_dir, &index.artifacts);
        let current = Arc::new(self.deployed(name, record, version_dir, &metadata)?);
        Ok(FunctionState { index, current })
    }

    fn deployed(
        &self,
        name: &FunctionName,
        record: VersionRecord,
        bundle_dir: PathBuf,
        metadata: &Metadata,
    ) -> Result<Deployed, StoreError> {
        Ok(Deployed {
            name: name.clone(),
            version: record.version,
            language: metadata.language.into(),
            entrypoint: metadata.entrypoint_file.clone(),
            bundle_dir,
            limits: self.limits_for(metadata)?,
            env: metadata.env.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
            sandbox_responses: metadata.sandbox_responses.unwrap_or(true),
            wasm: metadata.wasm_options(),
            record,
        })
    }

    /// The function's limits: its own where given (each within the server's
    /// maximum), else the server's defaults.
    fn limits_for(&self, m: &Metadata) -> Result<FunctionLimits, StoreError> {
        let (d, max) = (self.policy.default, self.policy.max);
        let check = |what: &str, v: Option<u64>, default: u64, max: u64| match v {
            None => Ok(default),
            Some(v) if (1..=max).contains(&v) => Ok(v),
            Some(v) => Err(StoreError::Limit(format!("{what} {v} is out of range: it must be between 1 and {max}"))),
        };
        Ok(FunctionLimits {
            timeout_ms: check("timeoutMs", m.timeout_ms, d.timeout_ms, max.timeout_ms)?,
            memory_mb: check("memoryMb", m.memory_mb, d.memory_mb, max.memory_mb)?,
            concurrency: check(
                "concurrency",
                m.concurrency.map(u64::from),
                u64::from(d.concurrency),
                u64::from(max.concurrency),
            )? as u32,
        })
    }

    /// Hashes the version's precompiled module against its record, once each time
    /// a version is loaded (startup, commit, rollback); a mismatch is refused.
    fn verify(&self, name: &FunctionName, version: u64, version_dir: &Path, records: &[ArtifactRecord]) {
        self.refusals.set(name.as_str(), version, integrity::verify_version(version_dir, version, records));
    }

    /// Refuses a new function past `max-functions`.
    fn check_function_count(&self, name: &FunctionName) -> Result<(), StoreError> {
        let functions = self.read_functions();
        if !functions.contains_key(name) && functions.len() >= self.quotas.max_functions {
            return Err(StoreError::TooManyFunctions(format!(
                "the store holds {} functions, its maximum (max-functions); delete one first",
                functions.len()
            )));
        }
        Ok(())
    }

    /// Refuses `adding` more bytes past `max-store-bytes`.
    fn check_bytes(&self, adding: u64) -> Result<(), StoreError> {
        let used = self.usage.load(Ordering::Relaxed);
        if used.saturating_add(adding) > self.quotas.max_store_bytes {
            return Err(StoreError::Quota(format!(
                "storing this version ({adding} bytes unpacked) would take the store past its {} bytes \
                 (max-store-bytes; {used} in use): delete functions or keep fewer versions",
                self.quotas.max_store_bytes
            )));
        }
        Ok(())
    }

    fn read_functions(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<FunctionName, FunctionState>> {
        // A poisoned lock means a panic mid-swap; the map itself is always whole
        // (swaps are single inserts), so keep serving it.
        self.functions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_functions(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<FunctionName, FunctionState>> {
        self.functions.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn holds(&self, name: &FunctionName, version: u64) -> bool {
        self.versions(name).is_some_and(|(_, records)| records.iter().any(|r| r.version == version))
    }
}

impl BundleStore for LocalStore {
    fn stage(&self, name: &FunctionName, zip: &[u8]) -> Result<Staged, StoreError> {
        self.check_function_count(name)?;
        let n = self.staging_counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.staging_dir.join(format!("{name}-{}-{n}", std::process::id()));
        fs::create_dir(&dir)?;
        let checked = bundle::unpack(zip, &dir, self.unpack_limits)
            .map_err(StoreError::from)
            .and_then(|()| integrity::no_reserved_names(&dir))
            .and_then(|()| self.check_bytes(disk_usage(&dir)))
            // A preparing worker, maybe running as another user, reads it next.
            .and_then(|()| Ok(seal_tree(&dir)?))
            .and_then(|()| Ok(bundle::read_metadata(&dir)?))
            .and_then(|m| self.limits_for(&m).map(|_| m))
            .and_then(|m| Ok((m, sha256_file(&dir.join(bundle::METADATA_FILE))?)));
        match checked {
            Ok((metadata, metadata_sha256)) => Ok(Staged {
                name: name.clone(),
                dir,
                language: metadata.language.into(),
                env: metadata.env.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
                entrypoint: metadata.entrypoint_file,
                sha256: hex::encode(Sha256::digest(zip)),
                size: zip.len() as u64,
                metadata_sha256,
                artifacts: Vec::new(),
                bundle: None,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn add_artifact(&self, staged: &mut Staged, file_name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if !integrity::is_artifact_name(file_name) {
            return Err(StoreError::BadArtifact(file_name.chars().take(80).collect()));
        }
        // `create_new`: never over a file of the bundle (nor a second artifact).
        let mut f = match fs::OpenOptions::new().write(true).create_new(true).open(staged.dir.join(file_name)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::BadArtifact(file_name.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        f.write_all(bytes)?;
        staged.artifacts.push(ArtifactRecord {
            version: 0,
            file_name: file_name.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
        });
        Ok(())
    }

    fn commit(&self, staged: Staged) -> Result<Arc<Deployed>, StoreError> {
        self.commit_as(staged, None, true)
    }

    fn import(
        &self,
        staged: Staged,
        version: u64,
        created_unix: u64,
        make_current: bool,
    ) -> Result<Arc<Deployed>, StoreError> {
        if self.holds(&staged.name, version) {
            let message = format!("version {version} of {} is already stored", staged.name);
            self.discard(staged);
            return Err(StoreError::Exists(message));
        }
        let language = staged.language.as_str().to_string();
        let record =
            VersionRecord { version, sha256: staged.sha256.clone(), size: staged.size, language, created_unix };
        self.commit_as(staged, Some(record), make_current)
    }

    fn bundle_zip(&self, name: &FunctionName, version: u64) -> Result<Vec<u8>, StoreError> {
        if !self.holds(name, version) {
            return Err(StoreError::NoSuchVersion(format!("function {name} has no version {version}")));
        }
        Ok(pack::pack(&self.functions_dir.join(name.as_str()).join(version.to_string()))?)
    }

    fn discard(&self, staged: Staged) {
        if let Err(e) = fs::remove_dir_all(&staged.dir) {
            warn!(dir = ?staged.dir, "cannot remove a staged upload: {e}");
        }
    }

    fn current(&self, name: &FunctionName) -> Option<Arc<Deployed>> {
        self.read_functions().get(name).map(|s| s.current.clone())
    }

    fn versions(&self, name: &FunctionName) -> Option<(Arc<Deployed>, Vec<VersionRecord>)> {
        self.read_functions().get(name).map(|s| (s.current.clone(), s.index.versions.clone()))
    }

    fn list(&self) -> Vec<Arc<Deployed>> {
        self.read_functions().values().map(|s| s.current.clone()).collect()
    }

    fn rollback(&self, name: &FunctionName, to: Option<u64>) -> Result<Arc<Deployed>, StoreError> {
        let _writer = self.lock_writer();
        let mut index = match self.read_functions().get(name) {
            Some(state) => state.index.clone(),
            None => return Err(StoreError::NotFound(name.to_string())),
        };
        let target = match to {
            Some(v) if index.versions.iter().any(|r| r.version == v) => v,
            Some(v) => return Err(StoreError::NoSuchVersion(format!("function {name} has no version {v}"))),
            None => index.versions.iter().map(|r| r.version).filter(|v| *v < index.current).max().ok_or_else(|| {
                StoreError::NoSuchVersion(format!("function {name} has no version older than {}", index.current))
            })?,
        };
        let fn_dir = self.functions_dir.join(name.as_str());
        let version_dir = fn_dir.join(target.to_string());
        let metadata = bundle::read_metadata(&version_dir)?;
        self.verify(name, target, &version_dir, &index.artifacts);
        let record = index
            .versions
            .iter()
            .find(|r| r.version == target)
            .cloned()
            .ok_or_else(|| StoreError::Index("vanished".into()))?;
        index.current = target;
        write_index(&fn_dir, &index)?;
        let current = Arc::new(self.deployed(name, record, version_dir, &metadata)?);
        self.write_functions().insert(name.clone(), FunctionState { index, current: current.clone() });
        Ok(current)
    }

    fn prune(&self, name: &FunctionName, keep: usize) -> Result<Vec<u64>, StoreError> {
        let Some((current, records)) =
            self.read_functions().get(name).map(|s| (s.index.current, s.index.versions.clone()))
        else {
            return Err(StoreError::NotFound(name.to_string()));
        };
        let versions: Vec<u64> = records.iter().map(|r| r.version).collect();
        let removed = to_prune(&versions, current, keep);
        self.remove_versions(name, &removed)?;
        Ok(removed)
    }

    fn delete(&self, name: &FunctionName) -> Result<bool, StoreError> {
        let _writer = self.lock_writer();
        if self.write_functions().remove(name).is_none() {
            return Ok(false);
        }
        // Move the whole function out of `functions/` in one rename, so a crash
        // mid-delete cannot leave half a function; staging is emptied at startup.
        let n = self.staging_counter.fetch_add(1, Ordering::Relaxed);
        let graveyard = self.staging_dir.join(format!("deleted-{name}-{n}"));
        let fn_dir = self.functions_dir.join(name.as_str());
        let bytes = disk_usage(&fn_dir);
        fs::rename(&fn_dir, &graveyard)?;
        self.usage.fetch_sub(bytes.min(self.usage.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.refusals.forget(name.as_str());
        fsync_dir(&self.functions_dir)?;
        if let Err(e) = fs::remove_dir_all(&graveyard) {
            warn!(dir = ?graveyard, "cannot remove a deleted function's files: {e}");
        }
        Ok(true)
    }

    fn refusals(&self) -> Refusals {
        self.refusals.clone()
    }
}

/// Replaces a function's index whole (see [`write_atomically`]).
fn write_index(fn_dir: &Path, index: &FunctionIndex) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(index).map_err(|e| StoreError::Index(e.to_string()))?;
    Ok(write_atomically(fn_dir, INDEX_FILE, &bytes)?)
}

/// Which of `versions` a prune to the newest `keep` (at least one) removes:
/// all older ones but the current.
pub(super) fn to_prune(versions: &[u64], current: u64, keep: usize) -> Vec<u64> {
    let mut newest_first = versions.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.into_iter().skip(keep.max(1)).filter(|v| *v != current).collect()
}

#[cfg(test)]
mod tests;
