//! The behaviour every metadata store must show; each backend's tests run it against a real
//! instance (SQLite file, PostgreSQL server).

use std::time::Duration;

use super::{Metadata, MetadataError};

/// Exercises databases, commits, leases and fencing, clones and GC queries; panics on any
/// deviation. Expects an empty store.
pub async fn check_behaviour(m: &dyn Metadata) {
    // Databases and commits.
    m.create_database("db", 4096).await.unwrap();
    assert!(matches!(m.create_database("db", 4096).await, Err(MetadataError::DatabaseExists(_))));
    let lease = m.acquire_lease("db", "writer-a", Duration::from_millis(300)).await.unwrap();
    assert_eq!(lease.epoch, 1);
    let s1 = m.commit(&lease, "db/1", 100, 4096).await.unwrap();
    let s2 = m.commit(&lease, "db/2", 50, 8192).await.unwrap();
    assert_eq!(s1.layers, vec!["db/1"]);
    assert_eq!(s2.parent, Some(s1.id));
    assert_eq!(s2.layers, vec!["db/1".to_string(), "db/2".to_string()]);
    assert_eq!((s2.size, s2.file_len), (150, 8192));
    assert_eq!(m.snapshots("db").await.unwrap().len(), 2);
    assert_eq!(m.snapshot(s1.id).await.unwrap(), s1);
    assert!(matches!(m.snapshots("nope").await, Err(MetadataError::UnknownDatabase(_))));
    assert!(matches!(m.snapshot(999_999).await, Err(MetadataError::UnknownSnapshot(_))));

    // One writer: a second is refused with the holder's name; after expiry it takes over with a
    // higher epoch and the old writer is fenced.
    let err = m.acquire_lease("db", "writer-b", Duration::from_secs(30)).await.unwrap_err();
    assert!(err.to_string().contains("being written by 'writer-a'"), "{err}");
    assert_eq!(m.acquire_lease("db", "writer-a", Duration::from_millis(300)).await.unwrap().epoch, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = m.acquire_lease("db", "writer-b", Duration::from_secs(30)).await.unwrap();
    assert_eq!(b.epoch, 2);
    let err = m.commit(&lease, "db/stale", 1, 1).await.unwrap_err();
    assert!(matches!(err, MetadataError::Fenced { epoch: 1, current: 2, .. }), "{err}");
    assert_eq!(m.snapshots("db").await.unwrap().len(), 2);
    let s3 = m.commit(&b, "db/3", 10, 8192).await.unwrap();
    assert_eq!(s3.layers.len(), 3);

    // The write-ahead log: pieces extend the newest snapshot, in order; a fenced writer or a
    // stale base is refused; they are live objects until a commit folds them in.
    m.append_wal(&b, s3.id, 0, "db/wal/a", 100).await.unwrap();
    m.append_wal(&b, s3.id, 100, "db/wal/b", 20).await.unwrap();
    assert!(matches!(m.append_wal(&lease, s3.id, 120, "db/wal/x", 1).await, Err(MetadataError::Fenced { .. })));
    assert!(m.append_wal(&b, s2.id, 0, "db/wal/y", 1).await.is_err(), "only the newest snapshot can be extended");
    assert!(m.append_wal(&b, s3.id, 100, "db/wal/z", 1).await.is_err(), "a piece is never replaced");
    let wal = m.wal_segments("db", s3.id).await.unwrap();
    assert_eq!(
        wal.iter().map(|w| (w.offset, w.key.as_str(), w.size)).collect::<Vec<_>>(),
        vec![(0, "db/wal/a", 100), (100, "db/wal/b", 20)]
    );
    assert!(m.layer_keys().await.unwrap().contains(&"db/wal/a".to_string()));

    // Compaction: a new snapshot with one layer; the next commit stacks on it; a stale base races.
    // Compacting the newest two layers keeps the oldest one below the merged layer.
    let partial = m.commit_compaction(&b, "db/p", 20, s3.id, 2).await.unwrap();
    assert_eq!(
        (partial.layers.clone(), partial.parent, partial.file_len),
        (vec!["db/1".to_string(), "db/p".to_string()], Some(s3.id), 8192)
    );
    assert_eq!(m.wal_segments("db", partial.id).await.unwrap().len(), 2, "the log moves to the compacted snapshot");
    let s3 = partial;
    let compacted = m.commit_compaction(&b, "db/c", 30, s3.id, usize::MAX).await.unwrap();
    assert_eq!((compacted.layers.clone(), compacted.parent, compacted.file_len), (vec!["db/c".to_string()], Some(s3.id), 8192));
    assert_eq!(m.wal_segments("db", compacted.id).await.unwrap().len(), 2, "the log moves to the compacted snapshot");
    assert!(matches!(m.commit_compaction(&b, "db/c2", 1, s3.id, 2).await, Err(MetadataError::CompactionRaced { .. })));
    assert!(matches!(m.commit_compaction(&lease, "db/c3", 1, compacted.id, 2).await, Err(MetadataError::Fenced { .. })));
    let s4 = m.commit(&b, "db/4", 5, 8192).await.unwrap();
    assert_eq!(s4.layers, vec!["db/c".to_string(), "db/4".to_string()]);
    assert!(m.wal_segments("db", compacted.id).await.unwrap().is_empty(), "a commit folds the log in");
    assert!(!m.layer_keys().await.unwrap().contains(&"db/wal/a".to_string()));

    // Clones share layers; dropping the source leaves only its own layers unreferenced.
    let clone = m.clone_database("db", "copy", Some(s1.id)).await.unwrap();
    assert_eq!(clone.layers, vec!["db/1"]);
    assert!(matches!(m.clone_database("db", "copy", None).await, Err(MetadataError::DatabaseExists(_))));
    assert!(matches!(m.clone_database("nope", "x", None).await, Err(MetadataError::UnknownDatabase(_))));
    assert_eq!(m.databases().await.unwrap(), vec!["copy", "db"]);
    // Retention: the newest snapshots and young ones stay; pruned ones free the layers no other
    // snapshot (of this database or a clone) uses, once the grace since their release has passed.
    let all: Vec<i64> = m.snapshots("db").await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(all.len(), 6);
    assert!(m.prune_snapshots("db", 2, Duration::from_secs(3600)).await.unwrap().is_empty(), "all are young");
    assert!(m.unreferenced_layers(Duration::ZERO).await.unwrap().is_empty());
    assert!(matches!(m.prune_snapshots("nope", 1, Duration::ZERO).await, Err(MetadataError::UnknownDatabase(_))));
    assert_eq!(m.prune_snapshots("db", 3, Duration::ZERO).await.unwrap(), all[..3].to_vec());
    assert!(m.prune_snapshots("db", 3, Duration::ZERO).await.unwrap().is_empty());
    assert!(matches!(m.snapshot(all[1]).await, Err(MetadataError::UnknownSnapshot(_))));
    let left: Vec<i64> = m.snapshots("db").await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(left, all[3..].to_vec());
    assert!(m.unreferenced_layers(Duration::from_secs(3600)).await.unwrap().is_empty(), "released just now");
    assert_eq!(m.unreferenced_layers(Duration::ZERO).await.unwrap(), vec!["db/2", "db/3"], "db/1 is still the clone's");
    m.forget_layers(&["db/2".to_string(), "db/3".to_string()]).await.unwrap();
    assert_eq!(m.prune_snapshots("db", 0, Duration::ZERO).await.unwrap(), all[3..5].to_vec(), "the newest always stays");

    m.drop_database("db").await.unwrap();
    assert!(matches!(m.drop_database("db").await, Err(MetadataError::UnknownDatabase(_))));
    assert_eq!(m.unreferenced_layers(Duration::ZERO).await.unwrap(), vec!["db/4", "db/c", "db/p"]);
    assert_eq!(m.layer_keys().await.unwrap(), vec!["db/1", "db/4", "db/c", "db/p"]);
    let dropped: Vec<String> = ["db/4", "db/c", "db/p", "db/1"].iter().map(|s| s.to_string()).collect();
    m.forget_layers(&dropped).await.unwrap();
    assert!(m.unreferenced_layers(Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(m.snapshot(clone.id).await.unwrap().layers, vec!["db/1"]);
    assert_eq!(m.databases().await.unwrap(), vec!["copy"]);
}
