//! The shared store: functions kept in PostgreSQL, so that every node of a
//! cluster serves the same versions.
//!
//! The database is the truth: version numbers, the current pointer, the bundle
//! bytes (with their sha256) and the history. Each node keeps its own unpacked
//! copy of every version in a [`LocalStore`] under its data dir, with its own
//! compiled modules, and serves invocations from it alone, so the database is
//! never on the invocation path and an outage only stops changes.
//!
//! A change made here is written to the database first (one transaction, which
//! also notifies every node) and then to this node's copy, so this node serves
//! it at once; the other nodes follow ([`crate::cluster`]). This module owns the
//! order of those two writes. It must never run user code nor ask the pool for
//! anything: installing a version another node made is the follower's job.

pub mod db;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::runtime::Handle;

use self::db::{Db, Imported, NewVersion, RollbackTo, Unavailable};
use super::local::LocalStore;
use super::{BundleStore, Deployed, FunctionName, Refusals, Staged, StoreError, VersionRecord};

pub struct SharedStore {
    local: Arc<LocalStore>,
    db: Arc<Db>,
    /// The server's runtime: the store's methods run on blocking threads and
    /// wait there for the database.
    runtime: Handle,
}

impl SharedStore {
    pub fn new(local: Arc<LocalStore>, db: Arc<Db>, runtime: Handle) -> Self {
        Self { local, db, runtime }
    }

    fn wait<T>(&self, f: impl Future<Output = Result<T, Unavailable>>) -> Result<T, StoreError> {
        self.runtime.block_on(f).map_err(|e| StoreError::Unavailable(e.0))
    }
}

impl BundleStore for SharedStore {
    fn stage(&self, name: &FunctionName, zip: &[u8]) -> Result<Staged, StoreError> {
        let mut staged = self.local.stage(name, zip)?;
        staged.bundle = Some(zip.to_vec());
        Ok(staged)
    }

    fn add_artifact(&self, staged: &mut Staged, file_name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.local.add_artifact(staged, file_name, bytes)
    }

    fn commit(&self, mut staged: Staged) -> Result<Arc<Deployed>, StoreError> {
        let Some(bundle) = staged.bundle.take() else {
            self.local.discard(staged);
            return Err(StoreError::Index("a staged upload without its bundle".into()));
        };
        let created_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let language = staged.language.as_str();
        let new = NewVersion { sha256: &staged.sha256, size: staged.size, language, created_unix, bundle: &bundle };
        let version = match self.wait(self.db.add_version(staged.name.as_str(), &new)) {
            Ok(version) => version,
            Err(e) => {
                self.local.discard(staged);
                return Err(e);
            }
        };
        drop(bundle);
        let record = staged.record(version, created_unix);
        // Committed for the cluster; if this copy fails, the follower installs it
        // from the database like any other node's.
        self.local.commit_as(staged, Some(record), true)
    }

    fn import(
        &self,
        mut staged: Staged,
        version: u64,
        created_unix: u64,
        make_current: bool,
    ) -> Result<Arc<Deployed>, StoreError> {
        let Some(bundle) = staged.bundle.take() else {
            self.local.discard(staged);
            return Err(StoreError::Index("a staged upload without its bundle".into()));
        };
        let language = staged.language.as_str();
        let new = NewVersion { sha256: &staged.sha256, size: staged.size, language, created_unix, bundle: &bundle };
        let stored = self.wait(self.db.import_version(staged.name.as_str(), version, &new, make_current));
        let error = match stored {
            Ok(Imported::Done { current }) => {
                let record = staged.record(version, created_unix);
                return self.local.commit_as(staged, Some(record), current);
            }
            Ok(Imported::Exists) => {
                StoreError::Exists(format!("version {version} of {} is already in the shared store", staged.name))
            }
            Err(e) => e,
        };
        self.local.discard(staged);
        Err(error)
    }

    fn bundle_zip(&self, name: &FunctionName, version: u64) -> Result<Vec<u8>, StoreError> {
        self.wait(self.db.bundle(name.as_str(), version))?
            .ok_or_else(|| StoreError::NoSuchVersion(format!("function {name} has no version {version}")))
    }

    fn discard(&self, staged: Staged) {
        self.local.discard(staged);
    }

    fn current(&self, name: &FunctionName) -> Option<Arc<Deployed>> {
        self.local.current(name)
    }

    fn versions(&self, name: &FunctionName) -> Option<(Arc<Deployed>, Vec<VersionRecord>)> {
        self.local.versions(name)
    }

    fn list(&self) -> Vec<Arc<Deployed>> {
        self.local.list()
    }

    fn rollback(&self, name: &FunctionName, to: Option<u64>) -> Result<Arc<Deployed>, StoreError> {
        // The target is decided by the database; this copy must hold it before
        // the database is changed, so the answer is never "done elsewhere, not here".
        let remote =
            self.wait(self.db.function(name.as_str()))?.ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let target = match to {
            Some(v) if remote.versions.iter().any(|r| r.version == v) => v,
            Some(v) => return Err(StoreError::NoSuchVersion(format!("function {name} has no version {v}"))),
            None => {
                remote.versions.iter().map(|r| r.version).filter(|v| *v < remote.current).max().ok_or_else(|| {
                    StoreError::NoSuchVersion(format!("function {name} has no version older than {}", remote.current))
                })?
            }
        };
        let held = self.local.versions(name).is_some_and(|(_, records)| records.iter().any(|r| r.version == target));
        if !held {
            return Err(StoreError::Unavailable(format!(
                "version {target} of {name} is not on this node yet (it is catching up with the shared store); try again"
            )));
        }
        match self.wait(self.db.rollback(name.as_str(), Some(target)))? {
            RollbackTo::Done(v) => self.local.rollback(name, Some(v)),
            RollbackTo::NotFound => Err(StoreError::NotFound(name.to_string())),
            RollbackTo::NoSuchVersion => {
                Err(StoreError::NoSuchVersion(format!("function {name} has no version {target}")))
            }
        }
    }

    fn prune(&self, name: &FunctionName, keep: usize) -> Result<Vec<u64>, StoreError> {
        let remote =
            self.wait(self.db.function(name.as_str()))?.ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let records: Vec<u64> = remote.versions.iter().map(|r| r.version).collect();
        let doomed = super::local::to_prune(&records, remote.current, keep);
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let removed = self.wait(self.db.remove_versions(name.as_str(), &doomed))?;
        self.local.remove_versions(name, &removed)?;
        Ok(removed)
    }

    fn delete(&self, name: &FunctionName) -> Result<bool, StoreError> {
        let existed = self.wait(self.db.delete(name.as_str()))?;
        let here = self.local.delete(name)?;
        Ok(existed || here)
    }

    fn refusals(&self) -> Refusals {
        self.local.refusals()
    }
}
