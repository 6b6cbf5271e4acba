//! The named DuckDB databases a server owns.
//!
//! Each database is one DuckDB file `<data-dir>/<name>.duckdb`, opened once as its own DuckDB
//! instance (so one database's SQL can never see another's), locked down so that remote SQL can
//! neither touch server files nor load extensions nor change those settings back. Every request
//! gets its own connection to the instance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::DuckDbSettings;
use crate::duck::{Conn, RawDatabase};
use crate::error::{Result, ServerError};

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

/// One open DuckDB database.
pub struct Database {
    name: String,
    path: PathBuf,
    /// The DuckDB instance; `None` once closed.
    instance: Mutex<Option<RawDatabase>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl Database {
    /// Opens (creating if needed) the database file at `path`, locked down.
    pub fn open(name: &str, path: &Path, settings: &DuckDbSettings) -> Result<Self> {
        let mut options: Vec<(&str, String)> = Vec::new();
        if let Some(limit) = &settings.memory_limit {
            options.push(("memory_limit", limit.clone()));
        }
        if let Some(threads) = settings.threads {
            options.push(("threads", threads.to_string()));
        }
        options.extend(LOCKDOWN.iter().map(|(k, v)| (*k, v.to_string())));
        let instance = RawDatabase::open(path, &options)?;
        Ok(Database { name: name.to_string(), path: path.to_path_buf(), instance: Mutex::new(Some(instance)) })
    }

    /// The database's name, which is also its catalog name in SQL and in Flight SQL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection to this database.
    pub fn connect(&self) -> Result<Conn> {
        let instance = self.instance.lock().map_err(|_| ServerError::Internal("database lock poisoned".into()))?;
        match instance.as_ref() {
            Some(db) => Ok(db.connect()?),
            None => Err(ServerError::ShuttingDown),
        }
    }

    /// Checkpoints the database and closes the server's handle to it. Connections still held by
    /// running queries keep the instance alive until they end; new connections are refused.
    pub fn close(&self) -> Result<()> {
        let mut instance = self.instance.lock().map_err(|_| ServerError::Internal("database lock poisoned".into()))?;
        if let Some(db) = instance.take() {
            db.connect()?.execute_batch("CHECKPOINT")?;
        }
        Ok(())
    }
}

/// All databases of a server, by name.
#[derive(Debug)]
pub struct Databases {
    dir: PathBuf,
    default: String,
    settings: DuckDbSettings,
    open: RwLock<BTreeMap<String, Arc<Database>>>,
}

impl Databases {
    /// Opens the default database (creating it) and every `*.duckdb` file already in `dir`.
    pub fn open_dir(dir: &Path, default: &str, settings: DuckDbSettings) -> Result<Self> {
        if !valid_name(default) {
            return Err(ServerError::InvalidArgument(format!(
                "invalid database name '{default}': use letters, digits and '_', starting with a letter"
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ServerError::Internal(format!("cannot create data directory {}: {e}", dir.display())))?;
        let dbs = Databases {
            dir: dir.to_path_buf(),
            default: default.to_string(),
            settings,
            open: RwLock::new(BTreeMap::new()),
        };
        let mut names = vec![default.to_string()];
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ServerError::Internal(format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if let Some(name) = file.strip_suffix(".duckdb") {
                if valid_name(name) && name != default {
                    names.push(name.to_string());
                }
            }
        }
        for name in names {
            dbs.create(&name)?;
        }
        Ok(dbs)
    }

    /// The default database's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Opens or creates the database `name`.
    pub fn create(&self, name: &str) -> Result<Arc<Database>> {
        if !valid_name(name) {
            return Err(ServerError::InvalidArgument(format!("invalid database name '{name}'")));
        }
        let mut open = self.open.write().map_err(|_| ServerError::Internal("registry lock poisoned".into()))?;
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        let path = self.dir.join(format!("{name}.duckdb"));
        let db = Arc::new(Database::open(name, &path, &self.settings)?);
        tracing::info!(database = name, path = %path.display(), "opened database");
        open.insert(name.to_string(), db.clone());
        Ok(db)
    }

    /// The database `name`, or the default one for `None`.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<Database>> {
        let name = name.unwrap_or(&self.default);
        let open = self.open.read().map_err(|_| ServerError::Internal("registry lock poisoned".into()))?;
        open.get(name).cloned().ok_or_else(|| ServerError::UnknownDatabase(name.to_string()))
    }

    /// Names of all databases.
    pub fn names(&self) -> Vec<String> {
        self.open.read().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Checkpoints and closes every database.
    pub fn close_all(&self) {
        let dbs: Vec<_> = self.open.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for db in dbs {
            match db.close() {
                Ok(()) => tracing::info!(database = db.name(), "checkpointed and closed database"),
                Err(e) => tracing::error!(database = db.name(), error = %e, "closing database failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("mydb") && valid_name("_x1"));
        assert!(!valid_name("") && !valid_name("1a") && !valid_name("../etc") && !valid_name("a-b"));
    }

    #[test]
    fn lockdown_refuses_file_access_and_setting_changes() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = Databases::open_dir(dir.path(), "main_db", DuckDbSettings::default()).unwrap();
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
        dbs.close_all();
        assert!(matches!(dbs.get(None).unwrap().connect(), Err(ServerError::ShuttingDown)));
    }
}
