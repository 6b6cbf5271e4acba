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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openduck_layers::compaction::CompactionPolicy;
use openduck_layers::fuse::Mount;
use openduck_layers::head::Head;
use openduck_layers::head_fs::HeadMount;
use openduck_layers::metadata::MetadataError;
use openduck_layers::retention::Retention;
use openduck_layers::storage::Storage;
use openduck_layers::LayerError;

use crate::config::{DuckDbSettings, FuseMode, LayeredStorage};
use crate::duck::rows_function::{RowsColumn, RowsFunction};
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

/// The layered side of one database.
struct Layered {
    head: tokio::sync::Mutex<Head>,
    rt: tokio::runtime::Handle,
    last_seal: Mutex<Instant>,
    compaction: CompactionPolicy,
    retention: Retention,
}

fn storage_err(e: LayerError) -> ServerError {
    match e {
        LayerError::Metadata(MetadataError::UnknownDatabase(name)) => ServerError::UnknownDatabase(name),
        LayerError::NotDurable(msg) => ServerError::NotDurable(msg),
        LayerError::Metadata(held @ MetadataError::LeaseHeld { .. }) => ServerError::LeaseHeld(held.to_string()),
        other => ServerError::Storage(other.to_string()),
    }
}

/// Runs `mount` as `mode` asks: `None` when FUSE is off, or unavailable under `auto` (then
/// `fallback` says what happens instead); an error under `on`. `what` names the filesystem.
fn fuse_mount<M>(mode: FuseMode, what: &str, fallback: &str, mount: impl FnOnce() -> std::io::Result<M>) -> Result<Option<M>> {
    if mode == FuseMode::Off {
        return Ok(None);
    }
    match mount() {
        Ok(m) => {
            tracing::info!("serving {what} through FUSE");
            Ok(Some(m))
        }
        Err(e) if mode == FuseMode::Auto => {
            tracing::info!(error = %e, "FUSE is not available; {fallback}");
            Ok(None)
        }
        Err(e) => Err(ServerError::Storage(format!("cannot mount the FUSE filesystem for {what} (--fuse on): {e}"))),
    }
}

/// Mounts the FUSE snapshot filesystem at `<data-dir>/.fuse` as `layers.fuse` asks; `None` when
/// snapshots are materialised instead.
fn mount_snapshots(dir: &Path, layers: &LayeredStorage) -> Result<Option<Mount>> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| ServerError::Internal("no runtime".into()))?;
    let storage = layers.storage.clone();
    fuse_mount(layers.fuse, "snapshot files", "snapshots are materialised into the data directory", || {
        openduck_layers::fuse::mount(storage, &dir.join(".fuse"), 256 << 20, rt)
    })
}

/// Mounts the FUSE head filesystem at `<data-dir>/.heads` (local files under
/// `<data-dir>/.heads-local`) when `--fuse-heads` asks; `None` when heads are local files.
fn mount_heads(dir: &Path, layers: &LayeredStorage) -> Result<Option<HeadMount>> {
    let mode = if layers.fuse_heads { layers.fuse } else { FuseMode::Off };
    fuse_mount(mode, "database heads", "heads are local files, diffed at each seal", || {
        openduck_layers::head_fs::mount_heads(&dir.join(".heads"), &dir.join(".heads-local"))
    })
}

/// `openduck_snapshots()`: the database's snapshots as SQL rows, newest last.
fn snapshots_function(name: &str, storage: &Storage, rt: tokio::runtime::Handle) -> RowsFunction {
    let (meta, name) = (storage.meta.clone(), name.to_string());
    let column = |n: &str, kind| (n.to_string(), kind);
    RowsFunction {
        name: "openduck_snapshots".into(),
        columns: vec![
            column("snapshot_id", RowsColumn::BigInt),
            column("created_at", RowsColumn::Timestamp),
            column("file_bytes", RowsColumn::BigInt),
            column("stored_bytes", RowsColumn::BigInt),
            column("layers", RowsColumn::BigInt),
            column("parent_id", RowsColumn::BigInt),
        ],
        rows: Arc::new(move || {
            let snapshots = rt.block_on(meta.snapshots(&name)).map_err(|e| format!("IO Error: listing snapshots: {e}"))?;
            Ok(snapshots
                .into_iter()
                .map(|s| vec![Some(s.id), Some(s.created_ms * 1000), Some(s.file_len), Some(s.size), Some(s.layers.len() as i64), s.parent])
                .collect())
        }),
    }
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

impl Database {
    /// Opens (creating if needed) the database file at `path`, locked down.
    pub fn open(name: &str, path: &Path, settings: &DuckDbSettings) -> Result<Self> {
        Self::open_with(name, path, settings, None)
    }

    fn open_with(name: &str, path: &Path, settings: &DuckDbSettings, layered: Option<Layered>) -> Result<Self> {
        Self::open_options(name, path, settings, layered, false)
    }

    fn open_options(name: &str, path: &Path, settings: &DuckDbSettings, layered: Option<Layered>, read_only: bool) -> Result<Self> {
        Self::open_full(name, path, settings, layered, read_only, None)
    }

    fn open_full(
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

    /// Opens a database on layered storage: takes its write lease, recovers the file (see
    /// [`openduck_layers::head::Recovery`]), opens it (DuckDB replays the recovered log) and seals it, so that every
    /// later commit extends a snapshot. Runs on a blocking thread.
    ///
    /// With `heads`, DuckDB reaches the file through the FUSE head filesystem, and `path` (an
    /// ordinary DuckDB file) is only imported when the database has no snapshot yet.
    fn open_layered(
        name: &str,
        path: &Path,
        settings: &DuckDbSettings,
        layers: &LayeredStorage,
        rt: tokio::runtime::Handle,
        heads: Option<&HeadMount>,
    ) -> Result<Self> {
        let storage = layers.storage.clone();
        let (head, recovery) = rt
            .block_on(async {
                match storage.meta.create_database(name, openduck_layers::head::DEFAULT_PAGE_SIZE).await {
                    Ok(()) | Err(MetadataError::DatabaseExists(_)) => {}
                    Err(e) => return Err(LayerError::from(e)),
                }
                match heads {
                    Some(heads) => Head::open_fuse(storage, name, heads, &layers.holder, layers.lease_ttl, Some(path)).await,
                    None => Head::open(storage, name, path, &layers.holder, layers.lease_ttl).await,
                }
            })
            .map_err(storage_err)?;
        let file = head.path().to_path_buf();
        // Spill files stay off the head filesystem.
        let temp = heads.map(|h| h.temp_dir(name));
        let layered = Layered {
            head: tokio::sync::Mutex::new(head),
            rt: rt.clone(),
            last_seal: Mutex::new(Instant::now()),
            compaction: layers.compaction,
            retention: layers.retention,
        };
        let db = Self::open_full(name, &file, settings, Some(layered), false, temp.as_deref())?;
        db.add_function(snapshots_function(name, &layers.storage, rt))?;
        let snapshot = db.seal()?;
        tracing::info!(database = name, ?recovery, snapshot, "opened layered database");
        Ok(db)
    }

    /// Opens a materialised snapshot file read-only.
    pub fn open_read_only(name: &str, path: &Path, settings: &DuckDbSettings) -> Result<Self> {
        Self::open_options(name, path, settings, None, true)
    }

    /// Opens `name` as a follower: the newest snapshot, read-only, materialised under
    /// `<data-dir>/.follow/<name>/<id>/` — from `previous` (the follower it replaces) by applying
    /// only the newer layers when possible. Runs on a blocking thread.
    fn open_follower(
        dbs: &Databases,
        name: &str,
        rt: &tokio::runtime::Handle,
        reason: String,
        previous: Option<&Database>,
    ) -> Result<Option<Self>> {
        let (dir, settings, fuse) = (&dbs.dir, &dbs.settings, dbs.fuse.as_ref());
        let Some(layers) = &dbs.layers else { return Ok(None) };
        let storage = layers.storage.clone();
        let Some(newest) = rt.block_on(storage.meta.snapshots(name)).map_err(|e| storage_err(e.into()))?.pop() else {
            return Ok(None);
        };
        let prev = previous.and_then(|p| p.follows.as_ref().map(|f| (f.snapshot.clone(), p.path.clone())));
        if prev.as_ref().is_some_and(|(s, _)| s.id == newest.id) {
            return Ok(None);
        }
        let path = match fuse {
            // Served page by page through FUSE: nothing to materialise.
            Some(fuse) => fuse.snapshot_file(name, newest.id),
            None => {
                let target_dir = dir.join(".follow").join(name).join(newest.id.to_string());
                std::fs::create_dir_all(&target_dir)
                    .map_err(|e| ServerError::Internal(format!("cannot create {}: {e}", target_dir.display())))?;
                let path = target_dir.join(format!("{name}.duckdb"));
                let tmp = target_dir.join(format!("{name}.duckdb.advance"));
                rt.block_on(async {
                    let store = storage.store.as_ref();
                    if let Some((prev_snapshot, prev_path)) = &prev {
                        if std::fs::copy(prev_path, &tmp).is_ok()
                            && openduck_layers::snapshot::advance(store, prev_snapshot, &newest, &tmp).await?
                        {
                            return std::fs::rename(&tmp, &path)
                                .map_err(|source| LayerError::Local { what: format!("renaming {}", tmp.display()), source });
                        }
                    }
                    openduck_layers::snapshot::restore_to(store, &newest, &path).await.map(|_| ())
                })
                .map_err(storage_err)?;
                path
            }
        };
        let mut db = Self::open_options(name, &path, settings, None, true)?;
        db.add_function(snapshots_function(name, &storage, rt.clone()))?;
        tracing::info!(database = name, snapshot = newest.id, fuse = fuse.is_some(), "following the newest snapshot read-only");
        db.follows = Some(Follow { snapshot: newest, reason });
        Ok(Some(db))
    }

    /// Why writes are refused here, for a database this server only follows.
    pub fn follower_reason(&self) -> Option<String> {
        self.follows
            .as_ref()
            .map(|f| format!("database '{}' is read-only on this server (snapshot {}): {}", self.name, f.snapshot.id, f.reason))
    }

    /// Whether the database lives on layered storage.
    pub fn is_layered(&self) -> bool {
        self.layered.is_some()
    }

    /// Makes every change committed so far durable (a no-op without layered storage). Call after
    /// a commit and before acknowledging it; runs on a blocking thread.
    pub fn make_durable(&self) -> Result<()> {
        let Some(l) = &self.layered else {
            return Ok(());
        };
        l.rt.block_on(async { l.head.lock().await.sync_wal().await }).map_err(|e| match e {
            LayerError::NotDurable(msg) => ServerError::NotDurable(msg),
            other => ServerError::NotDurable(other.to_string()),
        })?;
        Ok(())
    }

    /// Checkpoints the database and seals the result as its next snapshot; returns the snapshot
    /// id, or `None` when nothing changed (or without layered storage). Runs on a blocking thread.
    pub fn seal(&self) -> Result<Option<i64>> {
        let conn = self.connect()?;
        self.sealing(|| conn.execute_batch("CHECKPOINT").map_err(Into::into)).map(|(_, s)| s)
    }

    /// Runs `f` (a statement that may checkpoint) with shipping paused, then seals the file.
    /// Without layered storage it just runs `f`.
    pub fn sealing<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<(R, Option<i64>)> {
        let Some(l) = &self.layered else {
            return Ok((f()?, None));
        };
        let mut head = l.rt.block_on(l.head.lock());
        let r = f()?;
        // Whatever wrote the file, something that is not a DuckDB database never becomes a
        // snapshot (and the log stays unshipped until a seal succeeds).
        if let Err(e) = openduck_layers::head::check_duckdb_file(head.path()) {
            head.refuse_shipping(&e.to_string());
            return Err(storage_err(e));
        }
        let snapshot = l.rt.block_on(head.seal()).map_err(storage_err)?;
        *l.last_seal.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if let Some(sealed) = &snapshot {
            // Maintenance after a new snapshot; the seal stands whatever happens here. The head
            // stays locked: a compaction moves the log to the compacted snapshot.
            l.rt.block_on(async {
                if let Err(e) = head.compact(&l.compaction, sealed).await {
                    tracing::warn!(database = %self.name, error = %e, "compaction failed; retried after the next seal");
                }
                if let Err(e) = l.retention.apply(head.metadata(), &self.name).await {
                    tracing::warn!(database = %self.name, error = %e, "pruning old snapshots failed");
                }
            });
        }
        Ok((r, snapshot.map(|s| s.id)))
    }

    /// Whether a seal is due: the log reached `max_log` bytes, or it is non-empty and the last
    /// seal is older than `interval`, or shipping stopped until the next seal.
    pub fn seal_due(&self, interval: Duration, max_log: u64) -> bool {
        let Some(l) = &self.layered else { return false };
        let Ok(head) = l.head.try_lock() else {
            return false;
        };
        let pending = head.pending();
        let age = l.last_seal.lock().map(|t| t.elapsed()).unwrap_or_default();
        pending.must_seal || pending.log_bytes >= max_log || (pending.log_bytes > 0 && age >= interval)
    }

    /// Renews this server's write lease (a no-op without layered storage).
    pub async fn renew_lease(&self, ttl: Duration) -> Result<()> {
        let Some(l) = &self.layered else {
            return Ok(());
        };
        l.head.lock().await.renew(ttl).await.map_err(storage_err)
    }

    /// Opens the DuckDB instance, locked down, with the server's table functions.
    fn open_instance(path: &Path, options: &[(&'static str, String)], functions: &[RowsFunction]) -> Result<RawDatabase> {
        let instance = RawDatabase::open(path, options)?;
        let conn = instance.connect()?;
        conn.lock_down()?;
        for f in functions {
            conn.register_rows_function(f.clone())?;
        }
        Ok(instance)
    }

    /// Adds a table function of the server's (e.g. `openduck_snapshots()`) to the database.
    fn add_function(&self, function: RowsFunction) -> Result<()> {
        self.connect()?.register_rows_function(function.clone())?;
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).push(function);
        Ok(())
    }

    /// After a statement failed with `error`: if DuckDB invalidated the database (a fatal
    /// error; every later statement would fail until a restart), opens it again from its files,
    /// and on layered storage seals the result, so the database serves again without a restart.
    /// Returns whether it was reopened. Runs on a blocking thread.
    pub fn recover(&self, error: &ServerError) -> bool {
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
        let r = if self.layered.is_some() { self.sealing(reopen).map(|_| ()) } else { reopen() };
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
        // Blocks in use, not the file's length: DuckDB reuses freed blocks but never shrinks
        // the file, so a database that dropped data can grow again.
        let batches = self.connect()?.query_all("SELECT used_blocks * block_size FROM pragma_database_size()")?;
        let blocks = batches
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.value(0)))
            .unwrap_or(0);
        let wal = std::fs::metadata(openduck_layers::head::with_suffix(&self.path, ".wal")).map(|m| m.len()).unwrap_or(0);
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

    /// Checkpoints the database and closes the server's handle to it. Connections still held by
    /// running queries keep the instance alive until they end; new connections are refused.
    pub fn close(&self) -> Result<()> {
        if self.layered.is_some() && self.instance.lock().map(|i| i.is_some()).unwrap_or(false) {
            let snapshot = self.seal()?;
            tracing::info!(database = %self.name, snapshot, "sealed at shutdown");
        }
        let mut instance = self.instance.lock().map_err(|_| ServerError::Internal("database lock poisoned".into()))?;
        if let Some(db) = instance.take() {
            if self.layered.is_none() {
                db.connect()?.execute_batch("CHECKPOINT")?;
            }
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

/// How many snapshots stay open (and materialised) at once.
const OPEN_SNAPSHOTS: usize = 4;

impl Databases {
    /// Opens the default database (creating it) and every `*.duckdb` file already in `dir`.
    pub fn open_dir(dir: &Path, default: &str, settings: DuckDbSettings) -> Result<Self> {
        let dbs = Self::new(dir, default, settings, None)?;
        for name in dbs.local_names()? {
            // One database that cannot open does not keep the others from being served.
            if let Err(e) = dbs.create(&name) {
                dbs.unavailable_because(&name, &e);
            }
        }
        Ok(dbs)
    }

    /// Opens the default database (creating it), every database of the metadata store, and
    /// every `*.duckdb` file already in `dir` (imported as a new database), on layered storage.
    pub async fn open_layered(dir: &Path, default: &str, settings: DuckDbSettings, layers: LayeredStorage) -> Result<Self> {
        let known = layers.storage.meta.databases().await.map_err(|e| storage_err(e.into()))?;
        let mut registry = Self::new(dir, default, settings, Some(layers.clone()))?;
        registry.fuse = mount_snapshots(dir, &layers)?;
        registry.heads = mount_heads(dir, &layers)?;
        let dbs = Arc::new(registry);
        let mut names = dbs.local_names()?;
        names.extend(known.into_iter().filter(|n| valid_name(n)));
        names.sort();
        names.dedup();
        let opener = dbs.clone();
        tokio::task::spawn_blocking(move || {
            for name in names {
                match opener.create(&name) {
                    Ok(_) => {}
                    // Another server writes it: not ours to serve.
                    Err(ServerError::LeaseHeld(msg)) => {
                        if let Err(e) = opener.follow(&name, msg.clone()) {
                            tracing::warn!(database = %name, reason = %msg, error = %e, "not serving database");
                            if let Ok(mut refused) = opener.refused.write() {
                                refused.insert(name, msg);
                            }
                        }
                    }
                    // One database that cannot open does not keep the others from being served.
                    Err(e) => opener.unavailable_because(&name, &e),
                }
            }
            Ok::<_, ServerError>(())
        })
        .await
        .map_err(|e| ServerError::Internal(format!("opening databases: {e}")))??;
        Arc::try_unwrap(dbs).map_err(|_| ServerError::Internal("database registry still shared".into()))
    }

    fn new(dir: &Path, default: &str, settings: DuckDbSettings, layers: Option<LayeredStorage>) -> Result<Self> {
        // Snapshots materialised by an earlier run are rebuilt on demand.
        let _ = std::fs::remove_dir_all(dir.join(".snapshots"));
        let _ = std::fs::remove_dir_all(dir.join(".follow"));
        if !valid_name(default) {
            return Err(ServerError::InvalidArgument(format!(
                "invalid database name '{default}': use letters, digits and '_', starting with a letter"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| ServerError::Internal(format!("cannot create data directory {}: {e}", dir.display())))?;
        Ok(Databases {
            dir: dir.to_path_buf(),
            default: default.to_string(),
            settings,
            layers,
            open: RwLock::new(BTreeMap::new()),
            opening: Mutex::new(()),
            refused: Default::default(),
            snapshots: Default::default(),
            fuse: None,
            heads: None,
        })
    }

    /// The default database and the `*.duckdb` files in the data directory.
    fn local_names(&self) -> Result<Vec<String>> {
        let (dir, default) = (&self.dir, &self.default);
        let mut names = vec![default.to_string()];
        let entries = std::fs::read_dir(dir).map_err(|e| ServerError::Internal(format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if let Some(name) = file.strip_suffix(".duckdb") {
                if valid_name(name) && name != default {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// Deletes a follower's or snapshot's materialised copy (never a FUSE-served file).
    fn remove_materialised(&self, file: &Path) {
        if let Some(parent) =
            file.parent().filter(|p| p.starts_with(self.dir.join(".follow")) || p.starts_with(self.dir.join(".snapshots")))
        {
            let _ = std::fs::remove_dir_all(parent);
        }
    }

    /// Serves `name` read-only as a follower of its writer (see [`Database::follower_reason`]).
    fn follow(&self, name: &str, reason: String) -> Result<()> {
        if self.layers.is_none() {
            return Ok(());
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ServerError::Internal("no runtime".into()))?;
        let previous = self.open.read().ok().and_then(|m| m.get(name).cloned());
        let Some(db) = Database::open_follower(self, name, &rt, reason, previous.as_deref())? else {
            if previous.is_none() {
                return Err(ServerError::Storage(format!("database '{name}' has no snapshot to follow yet")));
            }
            return Ok(());
        };
        let old =
            self.open.write().map_err(|_| ServerError::Internal("registry lock poisoned".into()))?.insert(name.to_string(), Arc::new(db));
        if let Some(old) = old {
            // Queries still running keep it open; the file goes once they end.
            let _ = old.close();
            self.remove_materialised(&old.path);
        }
        self.share_memory(None);
        Ok(())
    }

    /// For databases this server follows: takes over writing when the writer's lease has lapsed,
    /// else moves to a newer snapshot if one was sealed. Queries already running finish on the
    /// snapshot they started on. Runs on a blocking thread.
    pub fn refresh_followers(&self) {
        let followed: Vec<Arc<Database>> = self.all().into_iter().filter(|db| db.follows.is_some()).collect();
        for db in followed {
            let name = db.name().to_string();
            let Some(layers) = &self.layers else { return };
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let path = self.dir.join(format!("{name}.duckdb"));
            match Database::open_layered(&name, &path, &self.settings, layers, rt, self.heads.as_ref()) {
                Ok(writer) => {
                    tracing::info!(database = %name, "took over writing: the previous writer's lease lapsed");
                    if let Ok(mut open) = self.open.write() {
                        open.insert(name.clone(), Arc::new(writer));
                    }
                    let _ = db.close();
                    self.remove_materialised(&db.path);
                }
                Err(ServerError::LeaseHeld(msg)) => {
                    if let Err(e) = self.follow(&name, msg) {
                        tracing::warn!(database = %name, error = %e, "following a newer snapshot failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(database = %name, error = %e, "taking over the database failed")
                }
            }
        }
    }

    /// Opens databases created in the metadata store since the server started (by `openduck db
    /// create` or `clone`, or another server); returns their names. Runs on a blocking thread.
    pub fn open_new(&self) -> Result<Vec<String>> {
        let Some(layers) = &self.layers else {
            return Ok(Vec::new());
        };
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ServerError::Internal("no runtime".into()))?;
        let known = rt.block_on(layers.storage.meta.databases()).map_err(|e| storage_err(e.into()))?;
        let open = self.names();
        let mut opened = Vec::new();
        for name in known.into_iter().filter(|n| valid_name(n) && !open.contains(n)) {
            match self.create(&name) {
                Ok(_) => {
                    if let Ok(mut refused) = self.refused.write() {
                        refused.remove(&name);
                    }
                    opened.push(name)
                }
                Err(ServerError::LeaseHeld(msg)) if self.follow(&name, msg.clone()).is_ok() => {
                    opened.push(name);
                }
                Err(e) => {
                    tracing::debug!(database = %name, error = %e, "not opening database");
                    if let Ok(mut refused) = self.refused.write() {
                        refused.insert(name, e.to_string());
                    }
                }
            }
        }
        Ok(opened)
    }

    /// Snapshot `id` of database `name`, read-only: materialised from the stores into
    /// `<data-dir>/.snapshots/<id>/<name>.duckdb` on first use (so its catalog keeps the
    /// database's name); the few most recently used stay open.
    pub async fn snapshot(&self, name: &str, id: i64) -> Result<Arc<Database>> {
        let Some(layers) = &self.layers else {
            return Err(ServerError::InvalidArgument("reading snapshots needs layered storage (the server runs with --plain)".into()));
        };
        let mut open = self.snapshots.lock().await;
        // Asked every time, also for an open snapshot: once pruned, a snapshot is not served
        // (garbage collection deletes its layers after the grace period).
        let info = match layers.storage.meta.snapshot(id).await {
            Ok(info) if info.database == name => info,
            Ok(_) | Err(MetadataError::UnknownSnapshot(_)) => {
                if let Some(pos) = open.iter().position(|(s, db)| *s == id && db.name() == name) {
                    let (_, old) = open.remove(pos);
                    let _ = old.close();
                    self.remove_materialised(&old.path);
                }
                return Err(ServerError::NotFound(format!("database '{name}' has no snapshot {id}")));
            }
            // The metadata store is down: an open snapshot is still served.
            Err(e) => match open.iter().find(|(s, db)| *s == id && db.name() == name) {
                Some((_, db)) => return Ok(db.clone()),
                None => return Err(storage_err(e.into())),
            },
        };
        if let Some(pos) = open.iter().position(|(s, db)| *s == id && db.name() == name) {
            let entry = open.remove(pos);
            let db = entry.1.clone();
            open.push(entry);
            return Ok(db);
        }
        let dir = self.dir.join(".snapshots").join(id.to_string());
        let path = match &self.fuse {
            Some(fuse) => fuse.snapshot_file(name, id),
            None => dir.join(format!("{name}.duckdb")),
        };
        if self.fuse.is_none() && !path.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| ServerError::Internal(format!("cannot create {}: {e}", dir.display())))?;
            openduck_layers::snapshot::restore_to(layers.storage.store.as_ref(), &info, &path).await.map_err(storage_err)?;
        }
        let (n, p, settings) = (name.to_string(), path.clone(), self.settings.clone());
        let db = tokio::task::spawn_blocking(move || Database::open_read_only(&n, &p, &settings))
            .await
            .map_err(|e| ServerError::Internal(format!("opening snapshot: {e}")))??;
        let db = Arc::new(db);
        tracing::info!(database = name, snapshot = id, "opened snapshot read-only");
        open.push((id, db.clone()));
        if open.len() > OPEN_SNAPSHOTS {
            let (_, old) = open.remove(0);
            let _ = old.close();
            self.remove_materialised(&old.path);
        }
        self.share_memory(Some(&open));
        Ok(db)
    }

    /// The layered storage, if the server uses it.
    pub fn layers(&self) -> Option<&LayeredStorage> {
        self.layers.as_ref()
    }

    /// The default database's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Opens or creates the database `name` (on layered storage: runs on a blocking thread).
    pub fn create(&self, name: &str) -> Result<Arc<Database>> {
        if !valid_name(name) {
            return Err(ServerError::InvalidArgument(format!("invalid database name '{name}'")));
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let poisoned = || ServerError::Internal("registry lock poisoned".into());
        if let Some(db) = self.open.read().map_err(|_| poisoned())?.get(name) {
            return Ok(db.clone());
        }
        let path = self.dir.join(format!("{name}.duckdb"));
        let db = Arc::new(match &self.layers {
            Some(layers) => {
                let rt = tokio::runtime::Handle::try_current()
                    .map_err(|_| ServerError::Internal("layered storage needs a Tokio runtime".into()))?;
                Database::open_layered(name, &path, &self.settings, layers, rt, self.heads.as_ref())?
            }
            None => Database::open(name, &path, &self.settings)?,
        });
        tracing::info!(database = name, path = %path.display(), "opened database");
        self.open.write().map_err(|_| poisoned())?.insert(name.to_string(), db.clone());
        self.share_memory(None);
        Ok(db)
    }

    /// The database `name`, or the default one for `None`.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<Database>> {
        let name = name.unwrap_or(&self.default);
        let open = self.open.read().map_err(|_| ServerError::Internal("registry lock poisoned".into()))?;
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        match self.refused.read().ok().and_then(|r| r.get(name).cloned()) {
            Some(reason) => Err(ServerError::Storage(format!("database '{name}' is not served by this server: {reason}"))),
            None => Err(ServerError::UnknownDatabase(name.to_string())),
        }
    }

    /// Records that `name` cannot be served because of `error`: its clients get the error, and
    /// `/health` reports it; discovery retries it.
    fn unavailable_because(&self, name: &str, error: &ServerError) {
        tracing::error!(database = %name, error = %error, "cannot serve database; serving the others");
        if let Ok(mut refused) = self.refused.write() {
            refused.insert(name.to_string(), error.to_string());
        }
    }

    /// Divides the memory budget ([`DuckDbSettings::memory_budget`]) equally among the open
    /// databases and snapshots (`snapshots`, or the open ones when `None`); called whenever one
    /// opens. A database using more than its new share keeps its old limit until it frees memory.
    fn share_memory(&self, snapshots: Option<&[(i64, Arc<Database>)]>) {
        let Some(budget) = self.settings.memory_budget else { return };
        let mut dbs = self.all();
        match snapshots {
            Some(s) => dbs.extend(s.iter().map(|(_, db)| db.clone())),
            None => {
                if let Ok(s) = self.snapshots.try_lock() {
                    dbs.extend(s.iter().map(|(_, db)| db.clone()));
                }
            }
        }
        let share = ((budget as f64 * crate::config::DATABASES_SHARE) as u64 / dbs.len().max(1) as u64).max(64 << 20);
        for db in dbs {
            if let Err(e) = db.connect().and_then(|c| Ok(c.set_memory_limit(share)?)) {
                tracing::warn!(database = db.name(), share, error = %e, "could not lower the memory limit yet");
            }
        }
    }

    /// Databases this server cannot serve, with why.
    pub fn unavailable(&self) -> Vec<(String, String)> {
        self.refused.read().map(|r| r.iter().map(|(n, why)| (n.clone(), why.clone())).collect()).unwrap_or_default()
    }

    /// Names of all databases.
    pub fn names(&self) -> Vec<String> {
        self.open.read().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Every open database.
    pub fn all(&self) -> Vec<Arc<Database>> {
        self.open.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Checkpoints (sealing, on layered storage) and closes every database.
    pub fn close_all(&self) {
        let dbs: Vec<_> = self.open.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for db in dbs {
            match db.close() {
                Ok(()) => tracing::info!(database = db.name(), "checkpointed and closed database"),
                Err(e) => {
                    tracing::error!(database = db.name(), error = %e, "closing database failed")
                }
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
