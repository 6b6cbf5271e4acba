//! Compaction: merging a snapshot's newest layers into one, so reads stay shallow.
//!
//! Every seal stacks one layer on the newest snapshot, so a database sealed often would soon be
//! read through hundreds of layers. Once a snapshot has more than
//! [`CompactionPolicy::max_layers`], [`plan`] picks the longest run of its newest layers whose
//! bytes fit [`CompactionPolicy::max_bytes`] (all of them when the whole file fits: a full
//! compaction), if it is long enough to be worth it, and [`compact`] writes one layer holding the
//! newest version of every page of that run (one read per input layer, every page checked against
//! its checksum). It is recorded by [`Metadata::commit_compaction`] as a new snapshot with the
//! same content. The merge holds at most `max_bytes` of input and its output in memory, so the
//! bound is what keeps it cheap on a large database: big old layers stay where they are and small
//! new ones are folded together.
//!
//! Older snapshots keep their layers (time travel) until they are pruned
//! ([`crate::retention`]); garbage collection ([`crate::gc`]) then deletes what nothing uses.

use std::collections::BTreeMap;

use crate::delta_layer::LayerWriter;
use crate::metadata::{Lease, Metadata, SnapshotInfo};
use crate::object_store::ObjectStore;
use crate::snapshot::open_map;
use crate::LayerError;

/// When and how much to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Compact a snapshot once it has more layers than this (0: never).
    pub max_layers: usize,
    /// The most layer bytes merged at once.
    pub max_bytes: u64,
}

/// How many of the newest layers to merge, given every layer's size in bytes (oldest first):
/// `None` when the snapshot is shallow enough, or when the newest layers that fit the budget are
/// fewer than half of `max_layers` (at least two): merging fewer would leave the snapshot deep
/// and compact again at almost every seal, rewriting the same bytes each time. Such a snapshot
/// grows a little deeper until enough new small layers have piled up.
pub fn plan(sizes: &[u64], policy: &CompactionPolicy) -> Option<usize> {
    if policy.max_layers == 0 || sizes.len() <= policy.max_layers {
        return None;
    }
    let mut total = 0u64;
    let mut run = 0;
    for &size in sizes.iter().rev() {
        total = total.saturating_add(size);
        if total > policy.max_bytes {
            break;
        }
        run += 1;
    }
    (run >= (policy.max_layers / 2).max(2)).then_some(run)
}

/// Compacts snapshot `base` (the lease's database's newest) as `policy` says, writing the merged
/// layer under `key`. Returns the new snapshot, or `None` when [`plan`] finds nothing to merge.
pub async fn compact(
    meta: &dyn Metadata,
    store: &dyn ObjectStore,
    lease: &Lease,
    base: &SnapshotInfo,
    key: &str,
    policy: &CompactionPolicy,
) -> Result<Option<SnapshotInfo>, LayerError> {
    let map = open_map(store, base).await?;
    let layers = map.layers();
    let sizes: Vec<u64> = layers.iter().map(|l| l.object_len()).collect();
    let Some(run) = plan(&sizes, policy) else {
        return Ok(None);
    };
    let first = layers.len() - run;
    let page_size = layers[first].page_size;
    let pages_in_file = map.file_len().div_ceil(u64::from(page_size));
    // Newest version of each page of the run: (layer, slot), later layers overwriting earlier.
    let mut newest: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate().skip(first) {
        if layer.page_size != page_size {
            return Err(LayerError::Malformed {
                key: layer.key.clone(),
                reason: format!("page size {} in a {page_size}-byte snapshot", layer.page_size),
            });
        }
        for (slot, &(page_no, _)) in layer.entries.iter().enumerate() {
            if page_no < pages_in_file {
                newest.insert(page_no, (i, slot));
            }
        }
    }
    // Each layer of the run that still holds a newest page is read once, whole.
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); layers.len()];
    let needed: std::collections::BTreeSet<usize> = newest.values().map(|&(layer, _)| layer).collect();
    for i in needed {
        data[i] = store.get_range(&layers[i].key, layers[i].pages_range()).await?;
    }
    let mut writer = LayerWriter::new(page_size, map.file_len());
    let ps = page_size as usize;
    for (&page_no, &(i, slot)) in &newest {
        let page = data[i].get(slot * ps..(slot + 1) * ps).unwrap_or(&[]);
        layers[i].verify(slot, page)?;
        writer.put_page(page_no, page)?;
    }
    drop(data);
    let bytes = writer.finish();
    let size = bytes.len() as i64;
    store.put_if_absent(key, bytes.into()).await?;
    let snapshot = meta.commit_compaction(lease, key, size, base.id, run).await?;
    tracing::info!(
        database = %lease.database, base = base.id, snapshot = snapshot.id, merged = run, layers = snapshot.layers.len(),
        bytes = size, "compacted"
    );
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SqliteMetadata;
    use crate::object_store::LocalDirStore;
    use crate::snapshot::diff;
    use std::time::Duration;

    #[test]
    fn plans_the_longest_newest_run_that_fits() {
        let p = CompactionPolicy { max_layers: 3, max_bytes: 100 };
        assert_eq!(plan(&[10, 10, 10], &p), None, "shallow enough");
        assert_eq!(plan(&[10, 10, 10, 10], &p), Some(4), "everything fits: a full compaction");
        assert_eq!(plan(&[500, 30, 30, 30], &p), Some(3), "a big base stays");
        assert_eq!(plan(&[500, 95, 5, 5], &p), Some(2));
        assert_eq!(plan(&[500, 5, 5, 200], &p), None, "the newest alone is over budget");
        assert_eq!(plan(&[1; 50], &CompactionPolicy { max_layers: 0, max_bytes: 100 }), None, "off");
        // Big layers that never fit: merging just the newest few would repeat at every seal.
        let eight = CompactionPolicy { max_layers: 8, max_bytes: 100 };
        assert_eq!(plan(&[500, 500, 500, 500, 500, 500, 5, 5, 5], &eight), None);
        assert_eq!(plan(&[500, 500, 500, 500, 500, 500, 5, 5, 5, 5], &eight), Some(4));
    }

    #[tokio::test]
    async fn compacted_snapshots_read_the_same_with_fewer_layers() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("objects")).unwrap();
        let meta = SqliteMetadata::open(&dir.path().join("meta.sqlite")).unwrap();
        meta.create_database("db", 4096).await.unwrap();
        let lease = meta.acquire_lease("db", "w", Duration::from_secs(30)).await.unwrap();
        // A big first version, then five small changes, overlapping each other, and a shrink.
        let mut content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut previous: Option<std::path::PathBuf> = None;
        for v in 0..6usize {
            if v > 0 {
                content[v * 3000..v * 3000 + 6000].fill(v as u8);
            }
            if v == 5 {
                content.truncate(150_000);
            }
            let path = dir.path().join(format!("v{v}.db"));
            std::fs::write(&path, &content).unwrap();
            let layer = diff(previous.as_deref(), &path, 4096).unwrap().unwrap();
            let key = format!("layers/{v}");
            let size = layer.len() as i64;
            store.put_if_absent(&key, layer.into()).await.unwrap();
            meta.commit(&lease, &key, size, content.len() as i64).await.unwrap();
            previous = Some(path);
        }
        let check = |s: SnapshotInfo| {
            let out = dir.path().join(format!("out{}.db", s.id));
            let (store, content) = (&store, &content);
            async move {
                crate::snapshot::restore_to(store, &s, &out).await.unwrap();
                assert_eq!(&std::fs::read(&out).unwrap(), content, "snapshot {}", s.id);
            }
        };
        let before = meta.snapshots("db").await.unwrap().pop().unwrap();
        assert_eq!(before.layers.len(), 6);
        // The big first layer does not fit the budget: the five small ones are merged above it.
        let policy = CompactionPolicy { max_layers: 4, max_bytes: 100_000 };
        let merged = compact(&meta, &store, &lease, &before, "layers/m1", &policy).await.unwrap().unwrap();
        assert_eq!(merged.layers, vec!["layers/0", "layers/m1"]);
        check(merged.clone()).await;
        assert!(compact(&meta, &store, &lease, &merged, "layers/m2", &policy).await.unwrap().is_none(), "shallow now");
        // A full compaction, and the old snapshot still reads as it did.
        let all = CompactionPolicy { max_layers: 1, max_bytes: u64::MAX };
        let full = compact(&meta, &store, &lease, &merged, "layers/full", &all).await.unwrap().unwrap();
        assert_eq!(full.layers, vec!["layers/full"]);
        check(full.clone()).await;
        check(before.clone()).await;
        // A copy of an older snapshot's file moves to a compaction by writing the merged layer
        // only (how followers move on).
        let copy = dir.path().join("copy.db");
        crate::snapshot::restore_to(&store, &before, &copy).await.unwrap();
        assert!(crate::snapshot::advance(&store, &before, &full, &copy).await.unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), content);
        // Not when the older file has pages the newer snapshot's layers do not rewrite.
        let (mut older, mut sibling) = (before.clone(), before.clone());
        older.layers = vec!["layers/0".into(), "layers/1".into()];
        sibling.layers = vec!["layers/0".into(), "layers/2".into()];
        assert!(!crate::snapshot::advance(&store, &older, &sibling, &copy).await.unwrap());
        // A stale base is refused (the database moved on).
        let err = compact(&meta, &store, &lease, &merged, "layers/late", &all).await.unwrap_err();
        assert!(err.to_string().contains("changed during compaction"), "{err}");
    }
}
