//! The registry of a server's databases by name: opening them at start (one that fails does not
//! stop the others), creating and discovering them, sharing the memory budget, closing them all.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::layered::storage_err;
use super::mounts::{mount_heads, mount_snapshots};
use super::{valid_name, Database, Databases};
use crate::blocking::Blocking;
use crate::config::{DuckDbSettings, LayeredStorage};
use crate::error::{Result, ServerError};

impl Databases {
    /// Opens the default database (creating it) and every `*.duckdb` file already in `dir`.
    pub fn open_dir(dir: &Path, default: &str, settings: DuckDbSettings) -> Result<Self> {
        let dbs = Self::new(dir, default, settings, None)?;
        for name in dbs.local_names()? {
            // One database that cannot open does not keep the others from being served.
            if let Err(e) = dbs.open_with(&name, |path| Database::open(&name, path, &dbs.settings)) {
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
        crate::blocking::run(move |b| {
            for name in names {
                match opener.create(b, &name) {
                    Ok(_) => {}
                    // Another server writes it: not ours to serve.
                    Err(ServerError::LeaseHeld(msg)) => {
                        if let Err(e) = opener.follow(b, &name, msg.clone()) {
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
        .await??;
        Arc::try_unwrap(dbs).map_err(|_| ServerError::Internal("database registry still shared".into()))
    }

    pub(super) fn new(dir: &Path, default: &str, settings: DuckDbSettings, layers: Option<LayeredStorage>) -> Result<Self> {
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
    pub(super) fn local_names(&self) -> Result<Vec<String>> {
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

    /// Opens databases created in the metadata store since the server started (by `openduck db
    /// create` or `clone`, or another server); returns their names.
    pub fn open_new(&self, b: &Blocking) -> Result<Vec<String>> {
        let Some(layers) = &self.layers else {
            return Ok(Vec::new());
        };
        let known = b.wait(layers.storage.meta.databases()).map_err(|e| storage_err(e.into()))?;
        let open = self.names();
        let mut opened = Vec::new();
        for name in known.into_iter().filter(|n| valid_name(n) && !open.contains(n)) {
            match self.create(b, &name) {
                Ok(_) => {
                    if let Ok(mut refused) = self.refused.write() {
                        refused.remove(&name);
                    }
                    opened.push(name)
                }
                Err(ServerError::LeaseHeld(msg)) if self.follow(b, &name, msg.clone()).is_ok() => {
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

    /// The layered storage, if the server uses it.
    pub fn layers(&self) -> Option<&LayeredStorage> {
        self.layers.as_ref()
    }

    /// The default database's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Opens or creates the database `name`.
    pub fn create(&self, b: &Blocking, name: &str) -> Result<Arc<Database>> {
        self.open_with(name, |path| match &self.layers {
            Some(layers) => Database::open_layered(name, path, &self.settings, layers, b, self.heads.as_ref()),
            None => Database::open(name, path, &self.settings),
        })
    }

    /// Opens `name` with `open` (given its file's path) unless it is open already, one open at a
    /// time, and registers it.
    fn open_with(&self, name: &str, open: impl FnOnce(&Path) -> Result<Database>) -> Result<Arc<Database>> {
        if !valid_name(name) {
            return Err(ServerError::InvalidArgument(format!("invalid database name '{name}'")));
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let poisoned = || ServerError::Internal("registry lock poisoned".into());
        if let Some(db) = self.open.read().map_err(|_| poisoned())?.get(name) {
            return Ok(db.clone());
        }
        let path = self.dir.join(format!("{name}.duckdb"));
        let db = Arc::new(open(&path)?);
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
    pub(super) fn unavailable_because(&self, name: &str, error: &ServerError) {
        tracing::error!(database = %name, error = %error, "cannot serve database; serving the others");
        if let Ok(mut refused) = self.refused.write() {
            refused.insert(name.to_string(), error.to_string());
        }
    }

    /// Divides the memory budget ([`DuckDbSettings::memory_budget`]) equally among the open
    /// databases and snapshots (`snapshots`, or the open ones when `None`); called whenever one
    /// opens. A database using more than its new share keeps its old limit until it frees memory.
    pub(super) fn share_memory(&self, snapshots: Option<&[(i64, Arc<Database>)]>) {
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
    pub fn close_all(&self, b: &Blocking) {
        let dbs: Vec<_> = self.open.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for db in dbs {
            if db.is_layered() {
                match db.seal(b) {
                    Ok(snapshot) => tracing::info!(database = db.name(), snapshot, "sealed at shutdown"),
                    Err(e) => tracing::error!(database = db.name(), error = %e, "sealing at shutdown failed"),
                }
            }
            match db.close() {
                Ok(()) => tracing::info!(database = db.name(), "checkpointed and closed database"),
                Err(e) => {
                    tracing::error!(database = db.name(), error = %e, "closing database failed")
                }
            }
        }
    }
}
