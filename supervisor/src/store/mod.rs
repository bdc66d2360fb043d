//! The bundle store: every function's versions, and which one is current.
//!
//! [`BundleStore`] is the seam for other backends; [`local::LocalStore`] (bundles
//! unpacked under the data dir) is the embedded default. An upload is *staged*
//! (unpacked and checked in a private directory), may be given artifacts (the
//! precompiled module), and is then *committed*: only a committed version is ever
//! visible, and a staged one that is discarded leaves no trace.
//!
//! No user code runs here: the store reads zips and JSON, never executes them.
//! It holds the store's quotas (functions, bytes), and trusts no file a worker
//! made unless its name and recorded sha256 say it is the module it stored
//! ([`integrity`]).

pub mod archive;
pub mod bundle;
#[cfg(test)]
mod fuzz;
pub mod integrity;
pub mod local;
pub mod name;
pub mod shared;

use std::path::PathBuf;
use std::sync::Arc;

use polyfaas_protocol::{Language, WasmOptions};
use serde::{Deserialize, Serialize};

pub use self::bundle::{BundleError, UnpackLimits};
pub use self::integrity::{ArtifactRecord, Refusals};
pub use self::name::FunctionName;

/// One committed function version, as the API and the pool need it.
#[derive(Debug)]
pub struct Deployed {
    pub name: FunctionName,
    pub version: u64,
    pub language: Language,
    /// Entrypoint path, relative to `bundle_dir`.
    pub entrypoint: String,
    /// Where the unpacked bundle lives (read-only once committed).
    pub bundle_dir: PathBuf,
    pub limits: FunctionLimits,
    /// The function's own environment, from `metadata.json`.
    pub env: Vec<(String, String)>,
    /// Whether its responses carry `Content-Security-Policy: sandbox` (the
    /// default; `"sandboxResponses": false` in `metadata.json` turns it off).
    pub sandbox_responses: bool,
    /// How a WASM module is started and its output read (defaults for scripts).
    pub wasm: WasmOptions,
    pub record: VersionRecord,
}

/// The limits a function runs under: its own from `metadata.json`, else the
/// server's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionLimits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    pub concurrency: u32,
}

/// The server's defaults and maxima for [`FunctionLimits`].
#[derive(Debug, Clone, Copy)]
pub struct LimitsPolicy {
    pub default: FunctionLimits,
    pub max: FunctionLimits,
}

/// What the store remembers of each version (persisted in the function's index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub language: String,
    pub created_unix: u64,
}

/// An upload unpacked and checked, not yet visible.
#[derive(Debug)]
pub struct Staged {
    pub name: FunctionName,
    pub dir: PathBuf,
    pub language: Language,
    pub entrypoint: String,
    /// The function's own environment: its dry run sees what `Init` will give it.
    pub env: Vec<(String, String)>,
    sha256: String,
    size: u64,
    /// sha256 of `metadata.json` as validated: the version commits only with it.
    metadata_sha256: String,
    /// The precompiled modules written into `dir`, with their hashes.
    artifacts: Vec<ArtifactRecord>,
    /// The zip itself, for a store that keeps it (the shared store).
    bundle: Option<Vec<u8>>,
}

impl Staged {
    /// The record this upload gets as version `version`, made at `created_unix`.
    pub fn record(&self, version: u64, created_unix: u64) -> VersionRecord {
        VersionRecord {
            version,
            sha256: self.sha256.clone(),
            size: self.size,
            language: self.language.as_str().to_string(),
            created_unix,
        }
    }
}

/// How much the store holds at most.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    pub max_functions: usize,
    /// Every stored version's files (bundles and precompiled modules) together.
    pub max_store_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Limit(String),
    #[error("artifact name {0:?} is not the name of a precompiled module, or names a file of the bundle")]
    BadArtifact(String),
    /// The bundle itself is not acceptable (e.g. it brings its own `.cwasm`).
    #[error("{0}")]
    Rejected(String),
    /// Storing it would pass `max-store-bytes`.
    #[error("{0}")]
    Quota(String),
    /// A new function past `max-functions`.
    #[error("{0}")]
    TooManyFunctions(String),
    /// What was validated is not what is about to be committed.
    #[error("{0}")]
    Tampered(String),
    #[error("store i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("store index error: {0}")]
    Index(String),
    #[error("function {0} not found")]
    NotFound(String),
    #[error("{0}")]
    NoSuchVersion(String),
    /// An import would overwrite what the store already holds.
    #[error("{0}")]
    Exists(String),
    /// The shared store's database cannot be reached: nothing was changed.
    #[error("{0}")]
    Unavailable(String),
}

/// Where bundles live. Implementations are shared between request handlers, and
/// every method may block on I/O: call them from a blocking task.
pub trait BundleStore: Send + Sync + 'static {
    /// Unpacks and checks an upload of `name` in a private staging area.
    fn stage(&self, name: &FunctionName, zip: &[u8]) -> Result<Staged, StoreError>;

    /// Adds a file made from the bundle (a precompiled module) to a staged upload.
    /// Only a precompiled module's name is accepted, never over a bundle file;
    /// its sha256 is recorded at commit.
    fn add_artifact(&self, staged: &mut Staged, file_name: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// Makes a staged upload the function's new current version.
    fn commit(&self, staged: Staged) -> Result<Arc<Deployed>, StoreError>;

    /// Stores a staged upload as version `version` of its function, made at
    /// `created_unix` (an import from an archive); it becomes current if
    /// `make_current` or the function is new. `Exists` if that version is stored.
    fn import(
        &self,
        staged: Staged,
        version: u64,
        created_unix: u64,
        make_current: bool,
    ) -> Result<Arc<Deployed>, StoreError>;

    /// One stored version's bundle as a zip: the upload itself where the store
    /// keeps it (the shared store), else its files packed again, the same bytes
    /// every time (the local store).
    fn bundle_zip(&self, name: &FunctionName, version: u64) -> Result<Vec<u8>, StoreError>;

    /// Drops a staged upload.
    fn discard(&self, staged: Staged);

    /// The current version of `name`.
    fn current(&self, name: &FunctionName) -> Option<Arc<Deployed>>;

    /// The current version of `name` and the record of every stored version.
    fn versions(&self, name: &FunctionName) -> Option<(Arc<Deployed>, Vec<VersionRecord>)>;

    /// The current version of every function, by name.
    fn list(&self) -> Vec<Arc<Deployed>>;

    /// Makes an older version current again: `to`, or else the newest one older
    /// than the current. Returns the new current version.
    fn rollback(&self, name: &FunctionName, to: Option<u64>) -> Result<Arc<Deployed>, StoreError>;

    /// Deletes all but the newest `keep` versions (never the current one).
    /// Returns the versions removed.
    fn prune(&self, name: &FunctionName, keep: usize) -> Result<Vec<u64>, StoreError>;

    /// Removes `name` and all its versions. Returns whether it existed.
    fn delete(&self, name: &FunctionName) -> Result<bool, StoreError>;

    /// The versions that failed their integrity check, shared with the pool.
    fn refusals(&self) -> Refusals;
}
