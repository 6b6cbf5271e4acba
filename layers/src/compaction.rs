//! Compaction: merging a snapshot's layers into one, so reads of later snapshots stay shallow.
//!
//! The compacted layer holds the newest version of every page of the snapshot; it is written as a
//! new object, then recorded by [`Metadata::commit_compaction`] as a snapshot with the same
//! content and that single layer. Older snapshots keep their layers (time travel); their layers
//! are collected once no snapshot needs them.

use crate::delta_layer::LayerWriter;
use crate::metadata::{Lease, Metadata, SnapshotInfo};
use crate::object_store::ObjectStore;
use crate::snapshot::open_map;
use crate::LayerError;

/// Compacts the newest snapshot of the lease's database into one layer stored under `key`.
/// Returns the new snapshot, or `None` when there is nothing to merge (one layer or none).
pub async fn compact(meta: &dyn Metadata, store: &dyn ObjectStore, lease: &Lease, key: &str) -> Result<Option<SnapshotInfo>, LayerError> {
    let Some(newest) = meta.snapshots(&lease.database).await?.pop() else { return Ok(None) };
    if newest.layers.len() < 2 {
        return Ok(None);
    }
    let map = open_map(store, &newest).await?;
    let page_size = map.layers()[0].page_size;
    let mut writer = LayerWriter::new(page_size, map.file_len());
    let pages = map.file_len().div_ceil(u64::from(page_size));
    for page_no in 0..pages {
        if let Some(loc) = map.locate(page_no) {
            let layer = &map.layers()[loc.layer];
            let page = store.get_range(&layer.key, layer.page_range(loc.slot)).await?;
            layer.verify(loc.slot, &page)?;
            writer.put_page(page_no, &page).map_err(|reason| LayerError::Malformed { key: key.to_string(), reason })?;
        }
    }
    let bytes = writer.finish();
    let size = bytes.len() as i64;
    store.put_if_absent(key, bytes.into()).await?;
    Ok(Some(meta.commit_compaction(lease, key, size, newest.id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SqliteMetadata;
    use crate::object_store::LocalDirStore;
    use crate::snapshot::diff;
    use std::time::Duration;

    #[tokio::test]
    async fn compacted_snapshot_reads_the_same_in_one_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("objects")).unwrap();
        let meta = SqliteMetadata::open(&dir.path().join("meta.sqlite")).unwrap();
        meta.create_database("db", 4096).await.unwrap();
        let lease = meta.acquire_lease("db", "w", Duration::from_secs(30)).await.unwrap();
        // Five versions of a file, each changing a different part.
        let mut content = vec![0u8; 50_000];
        let mut previous: Option<std::path::PathBuf> = None;
        for v in 0..5usize {
            content[v * 9000..v * 9000 + 5000].fill(v as u8 + 1);
            let path = dir.path().join(format!("v{v}.db"));
            std::fs::write(&path, &content).unwrap();
            let layer = diff(previous.as_deref(), &path, 4096).unwrap().unwrap();
            let key = format!("layers/{v}");
            let size = layer.len() as i64;
            store.put_if_absent(&key, layer.into()).await.unwrap();
            meta.commit(&lease, &key, size, content.len() as i64).await.unwrap();
            previous = Some(path);
        }
        let before = meta.snapshots("db").await.unwrap().pop().unwrap();
        assert_eq!(before.layers.len(), 5);
        let compacted = compact(&meta, &store, &lease, "layers/compacted-1").await.unwrap().unwrap();
        assert_eq!(compacted.layers, vec!["layers/compacted-1"]);
        // Same bytes as the five-layer snapshot.
        let out = dir.path().join("out.db");
        crate::snapshot::restore_to(&store, &compacted, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), content);
        // Nothing left to merge.
        assert!(compact(&meta, &store, &lease, "layers/compacted-2").await.unwrap().is_none());
    }
}
