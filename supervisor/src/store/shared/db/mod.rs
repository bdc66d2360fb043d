//! The shared store's tables in PostgreSQL: the one place that speaks SQL.
//!
//! Owns the connection used for writes and lookups (reconnected on demand), the
//! schema's migrations (refinery, embedded from `supervisor/migrations/`, run
//! under an advisory lock so nodes starting together migrate once), and one
//! method per question or change the store asks of it. Every call has a
//! deadline: a database that hangs is one that is down.
//!
//! It must never be on the invocation path, and never hold the connection's
//! lock across anything but its own queries. The cluster's invocation logs
//! have their own file ([`logs`]).

pub mod logs;

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls};

use crate::store::VersionRecord;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The channel every node listens on; the payload is a function's name.
pub const CHANNEL: &str = "polyfaas_store";

/// Any single statement (or transaction) longer than this fails as unavailable.
const DEADLINE: Duration = Duration::from_secs(10);

/// Why the database could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the shared store (PostgreSQL) is unavailable: {0}")]
pub struct Unavailable(pub String);

impl From<tokio_postgres::Error> for Unavailable {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message, where there is one ("db error" alone says nothing).
        match e.as_db_error() {
            Some(db) => Unavailable(format!("{}: {}", db.code().code(), db.message())),
            None => Unavailable(e.to_string()),
        }
    }
}

/// A function as the database knows it.
#[derive(Debug, Clone)]
pub struct RemoteFunction {
    pub current: u64,
    pub versions: Vec<VersionRecord>,
}

/// A new version to record, with its bundle's bytes.
pub struct NewVersion<'a> {
    pub sha256: &'a str,
    pub size: u64,
    pub language: &'a str,
    pub created_unix: u64,
    pub bundle: &'a [u8],
}

/// What [`Db::rollback`] found.
pub enum RollbackTo {
    Done(u64),
    NotFound,
    NoSuchVersion,
}

/// What [`Db::import_version`] did.
pub enum Imported {
    /// Stored; `current` says whether it became the current version.
    Done { current: bool },
    /// That version was already stored: nothing changed.
    Exists,
}

/// A node as its heartbeat row tells.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    pub address: String,
    pub started_unix: u64,
    /// Milliseconds since its last heartbeat.
    pub seen_ms_ago: u64,
}

pub struct Db {
    config: Config,
    /// This node's name, written into the history and the nodes table; set
    /// once the server knows its address.
    node: OnceLock<String>,
    client: Mutex<Option<Client>>,
}

impl Db {
    /// Parses `url` (a `postgres://` URL or a key=value string).
    pub fn new(url: &str) -> Result<Self, Unavailable> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| Unavailable(e.to_string()))?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("polyfaas");
        Ok(Self { config, node: OnceLock::new(), client: Mutex::new(None) })
    }

    /// Names this node (once; later calls change nothing).
    pub fn set_node(&self, name: String) {
        let _ = self.node.set(name);
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        self.node.get().map_or("unnamed", String::as_str)
    }

    /// Writes this node's heartbeat, and forgets nodes gone for a day.
    pub async fn heartbeat(&self, address: &str, started_unix: u64) -> Result<(), Unavailable> {
        let (node, started) = (self.node(), started_unix as f64);
        self.with(async |c| {
            c.execute(
                "INSERT INTO nodes (node, address, started_at, seen_at) VALUES ($1, $2, to_timestamp($3), now()) \
                 ON CONFLICT (node) DO UPDATE SET address = EXCLUDED.address, started_at = EXCLUDED.started_at, \
                 seen_at = now()",
                &[&node, &address, &started],
            )
            .await?;
            c.execute("DELETE FROM nodes WHERE seen_at < now() - interval '1 day'", &[]).await?;
            Ok(())
        })
        .await
    }

    /// Every node's heartbeat row, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, Unavailable> {
        self.with(async |c| {
            let rows = c
                .query(
                    "SELECT node, address, extract(epoch FROM started_at)::bigint, \
                     (extract(epoch FROM now() - seen_at) * 1000)::bigint FROM nodes ORDER BY node",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| NodeRow {
                    node: r.get(0),
                    address: r.get(1),
                    started_unix: r.get::<_, i64>(2).max(0) as u64,
                    seen_ms_ago: r.get::<_, i64>(3).max(0) as u64,
                })
                .collect())
        })
        .await
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Opens a new connection, driven by its own task; it ends with the client.
    pub async fn connect(
        config: &Config,
    ) -> Result<
        (Client, tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>),
        Unavailable,
    > {
        Ok(config.connect(NoTls).await?)
    }

    /// The shared connection, opened again if it was lost.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, Unavailable> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = Self::connect(&self.config).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("shared store connection lost: {e}");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    /// Runs `f` on the shared connection within [`DEADLINE`].
    async fn with<T>(
        &self,
        f: impl for<'c> AsyncFnOnce(&'c mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Unavailable> {
        let work = async {
            let mut guard = self.client().await?;
            let client = guard.as_mut().ok_or_else(|| Unavailable("no connection".into()))?;
            let result = f(client).await;
            if result.is_err() && client.is_closed() {
                *guard = None;
            }
            Ok::<_, Unavailable>(result?)
        };
        tokio::time::timeout(DEADLINE, work).await.map_err(|_| Unavailable("no answer within 10 s".into()))?
    }

    /// Brings the schema up to date. Nodes starting together take turns.
    pub async fn migrate(&self) -> Result<(), Unavailable> {
        let (mut client, connection) = Self::connect(&self.config).await?;
        let driver = tokio::spawn(connection);
        client.batch_execute("SELECT pg_advisory_lock(7401733)").await?;
        let report = embedded::migrations::runner().run_async(&mut client).await;
        // The lock ends with the session whatever happened.
        drop(client);
        let _ = driver.await;
        let report = report.map_err(|e| Unavailable(format!("migrating the schema: {e}")))?;
        for m in report.applied_migrations() {
            tracing::info!(migration = %m, "shared store schema migrated");
        }
        Ok(())
    }

    /// Every function's name.
    pub async fn names(&self) -> Result<Vec<String>, Unavailable> {
        self.with(async |c| {
            let rows = c.query("SELECT name FROM functions ORDER BY name", &[]).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }

    /// One function's current version and version records (no bundle bytes).
    pub async fn function(&self, name: &str) -> Result<Option<RemoteFunction>, Unavailable> {
        self.with(async |c| {
            let Some(row) = c.query_opt("SELECT current_version FROM functions WHERE name = $1", &[&name]).await?
            else {
                return Ok(None);
            };
            let current: i64 = row.get(0);
            let rows = c
                .query(
                    "SELECT version, sha256, size, language, created_unix FROM versions WHERE name = $1 \
                     ORDER BY version",
                    &[&name],
                )
                .await?;
            let versions = rows
                .iter()
                .map(|r| VersionRecord {
                    version: r.get::<_, i64>(0) as u64,
                    sha256: r.get(1),
                    size: r.get::<_, i64>(2) as u64,
                    language: r.get(3),
                    created_unix: r.get::<_, i64>(4) as u64,
                })
                .collect();
            Ok(Some(RemoteFunction { current: current as u64, versions }))
        })
        .await
    }

    /// One version's bundle bytes.
    pub async fn bundle(&self, name: &str, version: u64) -> Result<Option<Vec<u8>>, Unavailable> {
        let v = version as i64;
        self.with(async |c| {
            let row = c.query_opt("SELECT bundle FROM versions WHERE name = $1 AND version = $2", &[&name, &v]).await?;
            Ok(row.map(|r| r.get(0)))
        })
        .await
    }

    /// Records a new version of `name` and makes it current, in one transaction
    /// that takes the function's row lock: its number is the next one, whatever
    /// other nodes do at the same time. Returns the number.
    pub async fn add_version(&self, name: &str, new: &NewVersion<'_>) -> Result<u64, Unavailable> {
        let node = self.node();
        self.with(async |c| {
            let t = c.transaction().await?;
            t.execute(
                "INSERT INTO functions (name, current_version, next_version) VALUES ($1, 0, 1) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name],
            )
            .await?;
            let row = t.query_one("SELECT next_version FROM functions WHERE name = $1 FOR UPDATE", &[&name]).await?;
            let version: i64 = row.get(0);
            insert_version(&t, name, version, new).await?;
            t.execute(
                "UPDATE functions SET current_version = $2::bigint, next_version = $2::bigint + 1 WHERE name = $1",
                &[&name, &version],
            )
            .await?;
            record(&t, name, "deploy", Some(version), node).await?;
            t.commit().await?;
            Ok(version as u64)
        })
        .await
    }

    /// Records version `version` of `name` as an import gives it (its number
    /// kept; later deploys number after it), current if `make_current` or the
    /// function is new.
    pub async fn import_version(
        &self,
        name: &str,
        version: u64,
        new: &NewVersion<'_>,
        make_current: bool,
    ) -> Result<Imported, Unavailable> {
        let node = self.node();
        let v = version as i64;
        self.with(async |c| {
            let t = c.transaction().await?;
            let created = t
                .execute(
                    "INSERT INTO functions (name, current_version, next_version) VALUES ($1, $2::bigint, $2::bigint + 1) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &v],
                )
                .await?
                > 0;
            t.execute("SELECT 1 FROM functions WHERE name = $1 FOR UPDATE", &[&name]).await?;
            if t.query_opt("SELECT 1 FROM versions WHERE name = $1 AND version = $2", &[&name, &v]).await?.is_some() {
                // Dropped uncommitted: rolled back.
                return Ok(Imported::Exists);
            }
            insert_version(&t, name, v, new).await?;
            let current = make_current || created;
            t.execute(
                "UPDATE functions SET next_version = greatest(next_version, $2::bigint + 1), \
                 current_version = CASE WHEN $3 THEN $2::bigint ELSE current_version END WHERE name = $1",
                &[&name, &v, &current],
            )
            .await?;
            record(&t, name, "import", Some(v), node).await?;
            t.commit().await?;
            Ok(Imported::Done { current })
        })
        .await
    }

    /// Makes `to` (or the newest version older than the current) current.
    pub async fn rollback(&self, name: &str, to: Option<u64>) -> Result<RollbackTo, Unavailable> {
        let node = self.node();
        let to = to.map(|v| v as i64);
        self.with(async |c| {
            let t = c.transaction().await?;
            let Some(row) =
                t.query_opt("SELECT current_version FROM functions WHERE name = $1 FOR UPDATE", &[&name]).await?
            else {
                return Ok(RollbackTo::NotFound);
            };
            let current: i64 = row.get(0);
            let target = match to {
                Some(v) => {
                    t.query_opt("SELECT version FROM versions WHERE name = $1 AND version = $2", &[&name, &v]).await?
                }
                None => {
                    t.query_opt(
                        "SELECT version FROM versions WHERE name = $1 AND version < $2 ORDER BY version DESC LIMIT 1",
                        &[&name, &current],
                    )
                    .await?
                }
            };
            let Some(target) = target.map(|r| r.get::<_, i64>(0)) else {
                return Ok(RollbackTo::NoSuchVersion);
            };
            t.execute("UPDATE functions SET current_version = $2 WHERE name = $1", &[&name, &target]).await?;
            record(&t, name, "rollback", Some(target), node).await?;
            t.commit().await?;
            Ok(RollbackTo::Done(target as u64))
        })
        .await
    }

    /// Deletes the given versions (never the current one). Returns those removed.
    pub async fn remove_versions(&self, name: &str, versions: &[u64]) -> Result<Vec<u64>, Unavailable> {
        let node = self.node();
        let versions: Vec<i64> = versions.iter().map(|v| *v as i64).collect();
        self.with(async |c| {
            let t = c.transaction().await?;
            let rows = t
                .query(
                    "DELETE FROM versions v USING functions f WHERE v.name = $1 AND f.name = v.name \
                     AND v.version = ANY($2) AND v.version <> f.current_version RETURNING v.version",
                    &[&name, &versions],
                )
                .await?;
            let removed: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
            if !removed.is_empty() {
                record(&t, name, "prune", None, node).await?;
            }
            t.commit().await?;
            Ok(removed)
        })
        .await
    }

    /// Deletes `name`, all its versions and its logs. Returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, Unavailable> {
        let node = self.node();
        self.with(async |c| {
            let t = c.transaction().await?;
            let deleted = t.execute("DELETE FROM functions WHERE name = $1", &[&name]).await? > 0;
            t.execute("DELETE FROM invocation_logs WHERE function = $1", &[&name]).await?;
            if deleted {
                record(&t, name, "delete", None, node).await?;
            }
            t.commit().await?;
            Ok(deleted)
        })
        .await
    }
}

/// Stores one version's row, bundle bytes included.
async fn insert_version(
    t: &tokio_postgres::Transaction<'_>,
    name: &str,
    version: i64,
    new: &NewVersion<'_>,
) -> Result<(), tokio_postgres::Error> {
    t.execute(
        "INSERT INTO versions (name, version, sha256, size, language, created_unix, bundle) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&name, &version, &new.sha256, &(new.size as i64), &new.language, &(new.created_unix as i64), &new.bundle],
    )
    .await?;
    Ok(())
}

/// Writes a history row and tells every node (at commit) that `name` changed.
async fn record(
    t: &tokio_postgres::Transaction<'_>,
    name: &str,
    action: &str,
    version: Option<i64>,
    node: &str,
) -> Result<(), tokio_postgres::Error> {
    t.execute(
        "INSERT INTO history (name, action, version, node) VALUES ($1, $2, $3, $4)",
        &[&name, &action, &version, &node],
    )
    .await?;
    t.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &name]).await?;
    Ok(())
}
