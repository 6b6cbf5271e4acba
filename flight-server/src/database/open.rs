//! Opening one database, locked down, and what every database does: connections for clients
//! and for the server, reopening after DuckDB invalidated it, the size cap, closing.

use std::path::Path;
use std::sync::Mutex;

use super::{Database, Layered, LOCKDOWN};
use crate::blocking::Blocking;
use crate::config::DuckDbSettings;
use crate::duck::rows_function::RowsFunction;
use crate::duck::{Conn, RawDatabase};
use crate::error::{Result, ServerError};

impl Database {
    /// Opens (creating if needed) the database file at `path`, locked down.
    pub fn open(name: &str, path: &Path, settings: &DuckDbSettings) -> Result<Self> {
        Self::open_with(name, path, settings, None)
    }

    pub(super) fn open_with(name: &str, path: &Path, settings: &DuckDbSettings, layered: Option<Layered>) -> Result<Self> {
        Self::open_options(name, path, settings, layered, false)
    }

    pub(super) fn open_options(
        name: &str,
        path: &Path,
        settings: &DuckDbSettings,
        layered: Option<Layered>,
        read_only: bool,
    ) -> Result<Self> {
        Self::open_full(name, path, settings, layered, read_only, None)
    }

    pub(super) fn open_full(
        name: &str,
        path: &Path,
        settings: &DuckDbSettings,
        layered: Option<Layered>,
        read_only: bool,
        temp_dir: Option<&Path>,
    ) -> Result<Self> {
        let mut options: Vec<(&'static str, String)> = Vec::new();
        if let Some(t) = temp_dir {
            options.push(("temp_directory", t.display().to_string()));
        }
        if read_only {
            options.push(("access_mode", "READ_ONLY".to_string()));
        }
        if layered.is_some() {
            // Only the sealer checkpoints: a checkpoint changes the file and restarts the log.
            options.push(("checkpoint_threshold", "1000TB".to_string()));
        }
        if let Some(budget) = settings.memory_budget {
            // The registry divides the budget among the databases as they open
            // ([`Databases::share_memory`]); until then this one may use the databases' share.
            options.push(("memory_limit", format!("{}KiB", (budget as f64 * crate::config::DATABASES_SHARE) as u64 / 1024)));
        }
        if let Some(max) = settings.max_temp_bytes {
            options.push(("max_temp_directory_size", format!("{}KiB", max / 1024)));
        }
        if let Some(threads) = settings.threads {
            options.push(("threads", threads.to_string()));
        }
        // Persistent secrets are off; the default (under the home directory) would only show a
        // server path in duckdb_settings().
        options.push(("secret_directory", ".duckdb-secrets".to_string()));
        options.extend(LOCKDOWN.iter().map(|(k, v)| (*k, v.to_string())));
        let instance = Self::open_instance(path, &options, &[])?;
        Ok(Database {
            name: name.to_string(),
            path: path.to_path_buf(),
            max_bytes: settings.max_database_bytes,
            options,
            functions: Mutex::new(Vec::new()),
            instance: Mutex::new(Some(instance)),
            layered,
            follows: None,
        })
    }

    /// Opens a materialised snapshot file read-only.
    pub fn open_read_only(name: &str, path: &Path, settings: &DuckDbSettings) -> Result<Self> {
        Self::open_options(name, path, settings, None, true)
    }

    /// Opens the DuckDB instance, locked down, with the server's table functions.
    pub(super) fn open_instance(path: &Path, options: &[(&'static str, String)], functions: &[RowsFunction]) -> Result<RawDatabase> {
        let instance = RawDatabase::open(path, options)?;
        let conn = instance.connect()?;
        conn.lock_down()?;
        for f in functions {
            conn.register_rows_function(f.clone())?;
        }
        Ok(instance)
    }

    /// Adds a table function of the server's (e.g. `openduck_snapshots()`) to the database.
    pub(super) fn add_function(&self, function: RowsFunction) -> Result<()> {
        self.connect()?.register_rows_function(function.clone())?;
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).push(function);
        Ok(())
    }

    /// After a statement failed with `error`: if DuckDB invalidated the database (a fatal
    /// error; every later statement would fail until a restart), opens it again from its files,
    /// and on layered storage seals the result, so the database serves again without a restart.
    /// Returns whether it was reopened. Runs on a blocking thread.
    pub fn recover(&self, b: &Blocking, error: &ServerError) -> bool {
        let ServerError::DuckDb(e) = error else { return false };
        if !e.0.contains("database has been invalidated") {
            return false;
        }
        tracing::error!(database = %self.name, error = %e, "DuckDB invalidated the database; opening it again");
        let reopen = || -> Result<()> {
            let mut instance = self.instance.lock().map_err(|_| ServerError::Internal("database lock poisoned".into()))?;
            let Some(current) = instance.as_ref() else { return Err(ServerError::ShuttingDown) };
            // Another request may have reopened it already.
            if current.connect()?.execute_batch("SELECT 1").is_ok() {
                return Ok(());
            }
            let functions = self.functions.lock().unwrap_or_else(|p| p.into_inner()).clone();
            // Connections still open keep the old instance alive; it refuses everything.
            *instance = Some(Self::open_instance(&self.path, &self.options, &functions)?);
            drop(instance);
            if self.layered.is_some() {
                // The log replayed at open is folded into a new snapshot before more commits.
                self.connect()?.execute_batch("CHECKPOINT")?;
            }
            Ok(())
        };
        let r = if self.layered.is_some() { self.sealing(b, reopen).map(|_| ()) } else { reopen() };
        match r {
            Ok(()) => {
                tracing::info!(database = %self.name, "reopened the database after it was invalidated");
                true
            }
            Err(e) => {
                tracing::error!(database = %self.name, error = %e, "reopening the invalidated database failed");
                false
            }
        }
    }

    /// Refuses to grow a database that already takes its most bytes (file and log).
    pub fn check_size(&self) -> Result<()> {
        let Some(max) = self.max_bytes else { return Ok(()) };
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let wal = len(&openduck_layers::head::with_suffix(&self.path, ".wal"));
        // The file's length bounds the blocks in use: while it is under the limit, two stats
        // answer (this runs before every write), and DuckDB is asked only past it.
        if len(&self.path) + wal < max {
            return Ok(());
        }
        // Blocks in use, not the file's length: DuckDB reuses freed blocks but never shrinks
        // the file, so a database that dropped data can grow again.
        let batches = self.connect()?.query_all("SELECT used_blocks * block_size FROM pragma_database_size()")?;
        let blocks = batches
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.value(0)))
            .unwrap_or(0);
        let used = blocks.max(0) as u64 + wal;
        if used >= max {
            return Err(ServerError::LimitExceeded(format!(
                "database '{}' uses {used} bytes, at its limit of {max} (--max-database-size): delete or drop data first",
                self.name
            )));
        }
        Ok(())
    }

    /// The database's name, which is also its catalog name in SQL and in Flight SQL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection for a client's SQL: every plan it runs passes the remote-SQL guard
    /// ([`Conn::guard`]).
    pub fn client_connection(&self) -> Result<Conn> {
        let conn = self.connect()?;
        conn.guard()?;
        Ok(conn)
    }

    /// A new connection to this database for the server's own work (sealing, setup); never
    /// hand it to a client ([`Database::client_connection`] is theirs).
    pub fn connect(&self) -> Result<Conn> {
        let instance = self.instance.lock().map_err(|_| ServerError::Internal("database lock poisoned".into()))?;
        match instance.as_ref() {
            Some(db) => Ok(db.connect()?),
            None => Err(ServerError::ShuttingDown),
        }
    }

    /// Closes the server's handle to the database (checkpointing a plain one; seal a layered one
    /// first, [`Database::seal`]). Connections still held by running queries keep the instance
    /// alive until they end; new connections are refused.
    pub fn close(&self) -> Result<()> {
        let mut instance = self.instance.lock().map_err(|_| ServerError::Internal("database lock poisoned".into()))?;
        if let Some(db) = instance.take() {
            if self.layered.is_none() {
                db.connect()?.execute_batch("CHECKPOINT")?;
            }
        }
        Ok(())
    }
}
