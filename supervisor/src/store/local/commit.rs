//! Writing versions into the local store: a staged upload committed as a
//! version (renamed into place, then the index, then the served map), and
//! versions removed (the index first). Both hold the store's writer lock, so
//! version numbers and the index never race.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::disk::{fsync_dir, seal_tree};
use super::{FunctionIndex, FunctionState, LocalStore, write_index};
use crate::store::bundle;
use crate::store::integrity::{self, ArtifactRecord, disk_usage};
use crate::store::{BundleStore, Deployed, FunctionName, Staged, StoreError, VersionRecord};

impl LocalStore {
    /// Commits `staged` with `record` if given (the shared store numbers versions,
    /// and a follower installs another node's), else as the next version, made
    /// now. The version becomes current if `make_current`, or if the function has
    /// none here yet.
    pub fn commit_as(
        &self,
        staged: Staged,
        record: Option<VersionRecord>,
        make_current: bool,
    ) -> Result<Arc<Deployed>, StoreError> {
        let _writer = self.lock_writer();
        let checked = self.check_function_count(&staged.name).and_then(|()| {
            seal_tree(&staged.dir)?;
            integrity::check_unchanged(&staged)?;
            let bytes = disk_usage(&staged.dir);
            self.check_bytes(bytes).map(|()| bytes)
        });
        let bytes = match checked {
            Ok(bytes) => bytes,
            Err(e) => {
                self.discard(staged);
                return Err(e);
            }
        };
        let fn_dir = self.functions_dir.join(staged.name.as_str());
        fs::create_dir_all(&fn_dir)?;
        let existing =
            self.read_functions().get(&staged.name).map(|state| (state.index.clone(), state.current.clone()));
        let (mut index, previous) = match existing {
            Some((index, current)) => (index, Some(current)),
            None => (FunctionIndex { current: 0, versions: Vec::new(), artifacts: Vec::new() }, None),
        };
        let record = record.unwrap_or_else(|| {
            let next = index.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
            staged.record(next, SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
        });
        let version = record.version;
        if index.versions.iter().any(|v| v.version == version) {
            let message = format!("version {version} of {} is already stored", staged.name);
            self.discard(staged);
            return Err(StoreError::Index(message));
        }
        let version_dir = fn_dir.join(version.to_string());
        // Leftover from a crash between rename and index write: never indexed, so
        // never served; replace it.
        if version_dir.exists() {
            fs::remove_dir_all(&version_dir)?;
        }
        fs::rename(&staged.dir, &version_dir)?;
        fsync_dir(&fn_dir)?;
        self.usage.fetch_add(bytes, Ordering::Relaxed);

        let metadata = bundle::read_metadata(&version_dir)?;
        index.versions.push(record.clone());
        index.versions.sort_by_key(|v| v.version);
        index.artifacts.extend(staged.artifacts.iter().map(|a| ArtifactRecord { version, ..a.clone() }));
        let make_current = make_current || previous.is_none();
        if make_current {
            index.current = version;
        }
        write_index(&fn_dir, &index)?;
        fsync_dir(&self.functions_dir)?;

        self.verify(&staged.name, version, &version_dir, &index.artifacts);
        let deployed = Arc::new(self.deployed(&staged.name, record, version_dir, &metadata)?);
        let current = match previous {
            Some(previous) if !make_current => previous,
            _ => deployed.clone(),
        };
        self.write_functions().insert(staged.name, FunctionState { index, current });
        Ok(deployed)
    }

    /// Deletes the given versions of `name` (never its current one).
    pub fn remove_versions(&self, name: &FunctionName, versions: &[u64]) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        let Some(mut index) = self.read_functions().get(name).map(|s| s.index.clone()) else {
            return Err(StoreError::NotFound(name.to_string()));
        };
        let removed: Vec<u64> =
            index.versions.iter().map(|r| r.version).filter(|v| versions.contains(v) && *v != index.current).collect();
        if removed.is_empty() {
            return Ok(());
        }
        index.versions.retain(|r| !removed.contains(&r.version));
        index.artifacts.retain(|a| !removed.contains(&a.version));
        let fn_dir = self.functions_dir.join(name.as_str());
        // The index first: a crash after it leaves unindexed directories, which a
        // later commit of that number replaces; never an index naming a missing one.
        write_index(&fn_dir, &index)?;
        if let Some(state) = self.write_functions().get_mut(name) {
            state.index = index;
        }
        for v in &removed {
            let dir = fn_dir.join(v.to_string());
            self.usage.fetch_sub(disk_usage(&dir).min(self.usage.load(Ordering::Relaxed)), Ordering::Relaxed);
            self.refusals.set(name.as_str(), *v, Ok(()));
            if let Err(e) = fs::remove_dir_all(dir) {
                warn!(function = %name, version = v, "cannot remove a pruned version: {e}");
            }
        }
        Ok(())
    }
}
