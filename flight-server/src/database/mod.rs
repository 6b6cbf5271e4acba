//! The named DuckDB databases a server owns.
//!
//! Each database is one DuckDB file `<data-dir>/<name>.duckdb`, opened once as its own DuckDB
//! instance (so one database's SQL can never see another's), locked down so that remote SQL can
//! neither touch server files nor load extensions nor change those settings back. Every request
//! gets its own connection to the instance.
//!
//! With layered storage (the default), that file is the database's writable head
//! ([`openduck_layers::head::Head`]): the server holds the database's write lease, makes every
//! commit durable in the object and metadata stores before acknowledging it
//! ([`Database::make_durable`]), and seals checkpoints as snapshots ([`Database::seal`]) — on a
//! timer, when the log grows, when a client runs `CHECKPOINT`, and at shutdown. DuckDB's own
//! automatic checkpoints are turned off so that only the sealer changes the file. After a seal,
//! a snapshot grown too deep is compacted and old snapshots are pruned
//! ([`LayeredStorage::compaction`], [`LayeredStorage::retention`]); a background job collects the
//! garbage ([`LayeredStorage::gc_interval`], [`crate::maintenance`]).
//!
//! One file per idea: [`open`] (opening a database locked down, connections, recovery after a
//! fatal error, the size cap), [`layered`] (durability, sealing, leases), [`follower`] (serving
//! another server's database read-only, and taking it over), [`snapshots`] (time travel),
//! [`mounts`] (the FUSE filesystems), [`registry`] (the open databases by name).

mod follower;
mod layered;
mod mounts;
mod open;
mod registry;
mod snapshots;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use openduck_layers::compaction::CompactionPolicy;
use openduck_layers::fuse::Mount;
use openduck_layers::head::Head;
use openduck_layers::head_fs::HeadMount;
use openduck_layers::retention::Retention;

use crate::config::{DuckDbSettings, LayeredStorage};
use crate::duck::rows_function::RowsFunction;
use crate::duck::RawDatabase;

/// Settings every database is opened with; `lock_configuration` must come last in spirit: once
/// set, SQL cannot change any of them.
const LOCKDOWN: &[(&str, &str)] = &[
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("allow_unsigned_extensions", "false"),
    ("allow_persistent_secrets", "false"),
    ("lock_configuration", "true"),
];

/// Whether `name` is a valid database name: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 characters.
/// Names become file names, so nothing else is accepted.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// The layered side of one database.
struct Layered {
    head: tokio::sync::Mutex<Head>,
    last_seal: Mutex<Instant>,
    compaction: CompactionPolicy,
    retention: Retention,
}

/// One open DuckDB database.
pub struct Database {
    name: String,
    path: PathBuf,
    /// Most bytes the database may take ([`DuckDbSettings::max_database_bytes`]).
    max_bytes: Option<u64>,
    /// The DuckDB options it was opened with, and the table functions the server added: what
    /// [`Database::recover`] needs to open it again.
    options: Vec<(&'static str, String)>,
    functions: Mutex<Vec<RowsFunction>>,
    /// The DuckDB instance; `None` once closed.
    instance: Mutex<Option<RawDatabase>>,
    layered: Option<Layered>,
    /// Set when this server only follows the database (another server writes it).
    follows: Option<Follow>,
}

/// A database this server serves read-only, at the newest snapshot another server sealed.
#[derive(Debug, Clone)]
struct Follow {
    snapshot: openduck_layers::metadata::SnapshotInfo,
    /// Why this server does not write it (names the lease holder).
    reason: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("name", &self.name).field("path", &self.path).finish()
    }
}

/// All databases of a server, by name.
#[derive(Debug)]
pub struct Databases {
    dir: PathBuf,
    default: String,
    settings: DuckDbSettings,
    layers: Option<LayeredStorage>,
    open: RwLock<BTreeMap<String, Arc<Database>>>,
    /// Held while a database is being opened: opens run one at a time, without holding `open`,
    /// so requests to open databases (and `/health`) never wait on an open in progress.
    opening: Mutex<()>,
    /// Databases this server does not serve, with why (another server holds the write lease).
    refused: RwLock<BTreeMap<String, String>>,
    /// Snapshots opened read-only, by id, newest use last (a few are kept open).
    snapshots: tokio::sync::Mutex<Vec<(i64, Arc<Database>)>>,
    /// The FUSE mount serving snapshot files, when available.
    fuse: Option<Mount>,
    /// The FUSE mount serving the heads this server writes, when available.
    heads: Option<HeadMount>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServerError;
    use std::path::Path;

    #[test]
    fn names() {
        assert!(valid_name("mydb") && valid_name("_x1"));
        assert!(!valid_name("") && !valid_name("1a") && !valid_name("../etc") && !valid_name("a-b"));
    }

    #[tokio::test]
    async fn lockdown_refuses_file_access_and_setting_changes() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = Arc::new(Databases::open_dir(dir.path(), "main_db", DuckDbSettings::default()).unwrap());
        let conn = dbs.get(None).unwrap().connect().unwrap();
        conn.execute_batch("CREATE TABLE t AS SELECT 1 AS a").unwrap();
        for sql in [
            "SELECT * FROM read_csv('/etc/passwd')",
            "COPY t TO '/tmp/openduck-should-not-exist.csv'",
            "ATTACH '/tmp/other.duckdb'",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
        ] {
            assert!(conn.execute_batch(sql).is_err(), "{sql} should be refused");
        }
        assert!(!Path::new("/tmp/openduck-should-not-exist.csv").exists());
        assert!(matches!(dbs.get(Some("nope")), Err(ServerError::UnknownDatabase(_))));
        let closing = dbs.clone();
        crate::blocking::run(move |b| closing.close_all(b)).await.unwrap();
        assert!(matches!(dbs.get(None).unwrap().connect(), Err(ServerError::ShuttingDown)));
    }
}
