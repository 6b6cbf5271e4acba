//! Reading old snapshots (time travel): a snapshot opens read-only, materialised from the stores
//! or served through FUSE; the few most recently used stay open.

use std::path::Path;
use std::sync::Arc;

use openduck_layers::metadata::MetadataError;

use super::layered::storage_err;
use super::{Database, Databases};
use crate::error::{Result, ServerError};

/// How many snapshots stay open (and materialised) at once.
const OPEN_SNAPSHOTS: usize = 4;

impl Databases {
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

    /// Deletes a follower's or snapshot's materialised copy (never a FUSE-served file).
    pub(super) fn remove_materialised(&self, file: &Path) {
        if let Some(parent) =
            file.parent().filter(|p| p.starts_with(self.dir.join(".follow")) || p.starts_with(self.dir.join(".snapshots")))
        {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}
