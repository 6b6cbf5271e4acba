//! Databases this server follows: another server holds the write lease, so this one serves the
//! newest snapshot read-only (advancing by applying only new layers), and takes over writing once
//! the writer's lease lapses.

use std::sync::Arc;

use openduck_layers::LayerError;

use super::layered::{snapshots_function, storage_err};
use super::{Database, Databases, Follow};
use crate::blocking::Blocking;
use crate::error::{Result, ServerError};

impl Database {
    /// Opens `name` as a follower: the newest snapshot, read-only, materialised under
    /// `<data-dir>/.follow/<name>/<id>/` — from `previous` (the follower it replaces) by applying
    /// only the newer layers when possible.
    pub(super) fn open_follower(
        dbs: &Databases,
        name: &str,
        b: &Blocking,
        reason: String,
        previous: Option<&Database>,
    ) -> Result<Option<Self>> {
        let (dir, settings, fuse) = (&dbs.dir, &dbs.settings, dbs.fuse.as_ref());
        let Some(layers) = &dbs.layers else { return Ok(None) };
        let storage = layers.storage.clone();
        let Some(newest) = b.wait(storage.meta.snapshots(name)).map_err(|e| storage_err(e.into()))?.pop() else {
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
                b.wait(async {
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
        db.add_function(snapshots_function(name, &storage, b.runtime().clone()))?;
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
}

impl Databases {
    /// Serves `name` read-only as a follower of its writer (see [`Database::follower_reason`]).
    pub(super) fn follow(&self, b: &Blocking, name: &str, reason: String) -> Result<()> {
        if self.layers.is_none() {
            return Ok(());
        }
        let previous = self.open.read().ok().and_then(|m| m.get(name).cloned());
        let Some(db) = Database::open_follower(self, name, b, reason, previous.as_deref())? else {
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
    /// snapshot they started on.
    pub fn refresh_followers(&self, b: &Blocking) {
        let followed: Vec<Arc<Database>> = self.all().into_iter().filter(|db| db.follows.is_some()).collect();
        for db in followed {
            let name = db.name().to_string();
            let Some(layers) = &self.layers else { return };
            let path = self.dir.join(format!("{name}.duckdb"));
            match Database::open_layered(&name, &path, &self.settings, layers, b, self.heads.as_ref()) {
                Ok(writer) => {
                    tracing::info!(database = %name, "took over writing: the previous writer's lease lapsed");
                    if let Ok(mut open) = self.open.write() {
                        open.insert(name.clone(), Arc::new(writer));
                    }
                    let _ = db.close();
                    self.remove_materialised(&db.path);
                }
                Err(ServerError::LeaseHeld(msg)) => {
                    if let Err(e) = self.follow(b, &name, msg) {
                        tracing::warn!(database = %name, error = %e, "following a newer snapshot failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(database = %name, error = %e, "taking over the database failed")
                }
            }
        }
    }
}
