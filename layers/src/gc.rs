//! Garbage collection of layer objects.
//!
//! Two kinds of garbage: layers no snapshot refers to any more (after a database is dropped or
//! old snapshots are pruned, see [`crate::retention`]), which the metadata store lists; and
//! orphans — objects the metadata store never recorded, left by a writer that crashed between
//! writing a layer and committing it, and log pieces folded into a snapshot. Both are kept for a
//! grace period: a commit may be on its way, or a reader may still be on a pruned snapshot.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::metadata::Metadata;
use crate::object_store::ObjectStore;
use crate::LayerError;

/// What one collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Layers no snapshot referred to.
    pub unreferenced: Vec<String>,
    /// Objects the metadata never recorded, older than the grace period.
    pub orphans: Vec<String>,
}

/// Deletes layers unreferenced for at least `grace`, and orphans (under `prefix`) older than it.
pub async fn collect_garbage(meta: &dyn Metadata, store: &dyn ObjectStore, prefix: &str, grace: Duration) -> Result<GcReport, LayerError> {
    let mut report = GcReport::default();
    for key in meta.unreferenced_layers(grace).await? {
        store.delete(&key).await?;
        report.unreferenced.push(key);
    }
    // Forget only after the objects are gone: a crash in between leaves layers GC retries.
    meta.forget_layers(&report.unreferenced).await?;

    let known: HashSet<String> = meta.layer_keys().await?.into_iter().collect();
    let now = SystemTime::now();
    for object in store.list(prefix).await? {
        let age = now.duration_since(object.modified).unwrap_or_default();
        if !known.contains(&object.key) && age >= grace {
            store.delete(&object.key).await?;
            report.orphans.push(object.key);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SqliteMetadata;
    use crate::object_store::LocalDirStore;

    #[tokio::test]
    async fn removes_unreferenced_layers_and_old_orphans_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("objects")).unwrap();
        let meta = SqliteMetadata::open(&dir.path().join("meta.sqlite")).unwrap();
        meta.create_database("a", 4096).await.unwrap();
        meta.create_database("b", 4096).await.unwrap();
        for (db, key) in [("a", "layers/a1"), ("b", "layers/b1")] {
            store.put_if_absent(key, "data".into()).await.unwrap();
            let lease = meta.acquire_lease(db, "w", Duration::from_secs(30)).await.unwrap();
            meta.commit(&lease, key, 4, 4).await.unwrap();
        }
        // A writer crashed after writing its layer, before committing it.
        store.put_if_absent("layers/crashed", "data".into()).await.unwrap();
        meta.drop_database("b").await.unwrap();

        // Young orphans and just-released layers are kept (a commit may be in flight, a reader
        // may still be on the dropped database).
        let report = collect_garbage(&meta, &store, "layers/", Duration::from_secs(3600)).await.unwrap();
        assert_eq!(report, GcReport::default());
        let report = collect_garbage(&meta, &store, "layers/", Duration::ZERO).await.unwrap();
        assert_eq!(report, GcReport { unreferenced: vec!["layers/b1".into()], orphans: vec!["layers/crashed".into()] });
        let left: Vec<String> = store.list("").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(left, vec!["layers/a1"]);
        assert_eq!(meta.layer_keys().await.unwrap(), vec!["layers/a1"]);
    }
}
