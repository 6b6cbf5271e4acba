//! The embedded metadata store: SQLite, one file, WAL mode, fsync on commit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{Lease, Metadata, MetadataError, SnapshotInfo, WalSegment};

impl From<rusqlite::Error> for MetadataError {
    fn from(e: rusqlite::Error) -> Self {
        MetadataError::Store(e.to_string())
    }
}

/// Migrations, applied in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE databases (name TEXT PRIMARY KEY, page_size INTEGER NOT NULL, created_ms INTEGER NOT NULL);
     CREATE TABLE leases (database TEXT PRIMARY KEY REFERENCES databases(name) ON DELETE CASCADE,
                          holder TEXT NOT NULL, epoch INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
     CREATE TABLE layers (key TEXT PRIMARY KEY, size INTEGER NOT NULL, created_ms INTEGER NOT NULL);
     CREATE TABLE snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT,
                             database TEXT NOT NULL REFERENCES databases(name) ON DELETE CASCADE,
                             parent INTEGER, epoch INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                             file_len INTEGER NOT NULL);
     CREATE TABLE snapshot_layers (snapshot INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
                                   position INTEGER NOT NULL, layer TEXT NOT NULL REFERENCES layers(key),
                                   PRIMARY KEY (snapshot, position));
     CREATE INDEX snapshots_by_database ON snapshots(database, id);
     CREATE INDEX snapshot_layers_by_layer ON snapshot_layers(layer);",
    "CREATE TABLE wal_segments (database TEXT NOT NULL REFERENCES databases(name) ON DELETE CASCADE,
                                base INTEGER NOT NULL, start_offset INTEGER NOT NULL, key TEXT NOT NULL UNIQUE,
                                size INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                                PRIMARY KEY (database, base, start_offset));",
    "ALTER TABLE layers ADD COLUMN released_ms INTEGER;",
];

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The embedded metadata store. Calls run on a blocking thread (SQLite waits for fsync).
#[derive(Clone)]
pub struct SqliteMetadata {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteMetadata {
    /// Opens (creating and migrating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;
        let store = SqliteMetadata { conn: Arc::new(Mutex::new(conn)) };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, MetadataError> {
        Ok(self.lock().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<(), MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version as usize > MIGRATIONS.len() {
            return Err(MetadataError::Store(format!(
                "metadata schema version {version} is newer than this build knows ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        }
        tx.commit()?;
        Ok(())
    }

    fn snapshot_in(conn: &Connection, id: i64) -> Result<SnapshotInfo, MetadataError> {
        let row = conn
            .query_row("SELECT id, database, parent, created_ms, file_len FROM snapshots WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?))
            })
            .optional()?
            .ok_or(MetadataError::UnknownSnapshot(id))?;
        let mut stmt = conn.prepare(
            "SELECT l.key, l.size FROM snapshot_layers s JOIN layers l ON l.key = s.layer WHERE s.snapshot = ?1 ORDER BY s.position",
        )?;
        let layers: Vec<(String, i64)> = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        Ok(SnapshotInfo {
            id: row.0,
            database: row.1,
            parent: row.2,
            created_ms: row.3,
            file_len: row.4,
            size: layers.iter().map(|l| l.1).sum(),
            layers: layers.into_iter().map(|l| l.0).collect(),
        })
    }

    fn exists(conn: &Connection, name: &str) -> Result<bool, MetadataError> {
        Ok(conn.query_row("SELECT count(*) FROM databases WHERE name = ?1", [name], |r| r.get::<_, i64>(0))? > 0)
    }

    /// Records a new layer and a snapshot row on top of `parent`; returns the snapshot id (its
    /// layer list is filled by the caller).
    fn insert_snapshot(
        conn: &Connection,
        lease: &Lease,
        layer_key: &str,
        layer_size: i64,
        parent: Option<i64>,
        file_len: i64,
    ) -> Result<i64, MetadataError> {
        let now = now_ms();
        conn.execute("INSERT INTO layers (key, size, created_ms) VALUES (?1, ?2, ?3)", params![layer_key, layer_size, now])?;
        conn.execute(
            "INSERT INTO snapshots (database, parent, epoch, created_ms, file_len) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease.database, parent, lease.epoch, now, file_len],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Fencing: fails unless `lease` is the database's current lease.
    fn check_lease(conn: &Connection, lease: &Lease) -> Result<(), MetadataError> {
        let current: Option<i64> =
            conn.query_row("SELECT epoch FROM leases WHERE database = ?1", [&lease.database], |r| r.get(0)).optional()?;
        match current {
            Some(epoch) if epoch == lease.epoch => Ok(()),
            Some(current) => Err(MetadataError::Fenced { database: lease.database.clone(), epoch: lease.epoch, current }),
            None => Err(MetadataError::UnknownDatabase(lease.database.clone())),
        }
    }

    fn newest(conn: &Connection, database: &str) -> Result<Option<i64>, MetadataError> {
        Ok(conn.query_row("SELECT max(id) FROM snapshots WHERE database = ?1", [database], |r| r.get(0))?)
    }
}

impl SqliteMetadata {
    fn create_database_sync(&self, name: &str, page_size: u32) -> Result<(), MetadataError> {
        let conn = self.lock();
        match conn.execute("INSERT INTO databases (name, page_size, created_ms) VALUES (?1, ?2, ?3)", params![name, page_size, now_ms()]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(MetadataError::DatabaseExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn databases_sync(&self) -> Result<Vec<String>, MetadataError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT name FROM databases ORDER BY name")?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(names)
    }

    fn drop_database_sync(&self, name: &str) -> Result<(), MetadataError> {
        let conn = self.lock();
        if conn.execute("DELETE FROM databases WHERE name = ?1", [name])? == 0 {
            return Err(MetadataError::UnknownDatabase(name.to_string()));
        }
        Ok(())
    }

    fn acquire_lease_sync(&self, database: &str, holder: &str, ttl: Duration) -> Result<Lease, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !Self::exists(&tx, database)? {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let now = now_ms();
        let current: Option<(String, i64, i64)> = tx
            .query_row("SELECT holder, epoch, expires_ms FROM leases WHERE database = ?1", [database], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let expires = now + ttl.as_millis() as i64;
        let epoch = match current {
            Some((h, epoch, _)) if h == holder => epoch,
            Some((h, epoch, until)) if until > now => {
                return Err(MetadataError::LeaseHeld {
                    database: database.to_string(),
                    holder: h,
                    epoch,
                    expires_in: Duration::from_millis((until - now) as u64),
                })
            }
            Some((_, epoch, _)) => epoch + 1,
            None => 1,
        };
        tx.execute(
            "INSERT INTO leases (database, holder, epoch, expires_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (database) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_ms = excluded.expires_ms",
            params![database, holder, epoch, expires],
        )?;
        tx.commit()?;
        Ok(Lease { database: database.to_string(), holder: holder.to_string(), epoch })
    }

    fn commit_sync(&self, lease: &Lease, layer_key: &str, layer_size: i64, file_len: i64) -> Result<SnapshotInfo, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::check_lease(&tx, lease)?;
        let parent = Self::newest(&tx, &lease.database)?;
        let id = Self::insert_snapshot(&tx, lease, layer_key, layer_size, parent, file_len)?;
        if let Some(parent) = parent {
            tx.execute(
                "INSERT INTO snapshot_layers (snapshot, position, layer) SELECT ?1, position, layer FROM snapshot_layers WHERE snapshot = ?2",
                params![id, parent],
            )?;
        }
        tx.execute(
            "INSERT INTO snapshot_layers (snapshot, position, layer)
             VALUES (?1, (SELECT count(*) FROM snapshot_layers WHERE snapshot = ?1), ?2)",
            params![id, layer_key],
        )?;
        // The log of older snapshots is folded into this one.
        tx.execute("DELETE FROM wal_segments WHERE database = ?1", [&lease.database])?;
        let info = Self::snapshot_in(&tx, id)?;
        tx.commit()?;
        Ok(info)
    }

    fn commit_compaction_sync(
        &self,
        lease: &Lease,
        layer_key: &str,
        layer_size: i64,
        base: i64,
        replaced: usize,
    ) -> Result<SnapshotInfo, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::check_lease(&tx, lease)?;
        let newest = Self::newest(&tx, &lease.database)?.ok_or(MetadataError::UnknownSnapshot(base))?;
        if newest != base {
            return Err(MetadataError::CompactionRaced { database: lease.database.clone(), base, newest });
        }
        let file_len: i64 = tx.query_row("SELECT file_len FROM snapshots WHERE id = ?1", [base], |r| r.get(0))?;
        let count: i64 = tx.query_row("SELECT count(*) FROM snapshot_layers WHERE snapshot = ?1", [base], |r| r.get(0))?;
        let kept = (count - replaced.min(count as usize) as i64).max(0);
        let id = Self::insert_snapshot(&tx, lease, layer_key, layer_size, Some(base), file_len)?;
        tx.execute(
            "INSERT INTO snapshot_layers (snapshot, position, layer) SELECT ?1, position, layer FROM snapshot_layers WHERE snapshot = ?2 AND position < ?3",
            params![id, base, kept],
        )?;
        tx.execute("INSERT INTO snapshot_layers (snapshot, position, layer) VALUES (?1, ?2, ?3)", params![id, kept, layer_key])?;
        // Same content: the log that extended the base now extends the compacted snapshot.
        tx.execute("UPDATE wal_segments SET base = ?1 WHERE database = ?2 AND base = ?3", params![id, lease.database, base])?;
        let info = Self::snapshot_in(&tx, id)?;
        tx.commit()?;
        Ok(info)
    }

    fn prune_snapshots_sync(&self, database: &str, keep_last: usize, keep_for: Duration) -> Result<Vec<i64>, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !Self::exists(&tx, database)? {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let cutoff = now_ms() - keep_for.as_millis().min(i64::MAX as u128) as i64;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM snapshots WHERE database = ?1 AND created_ms < ?2
                   AND id NOT IN (SELECT id FROM snapshots WHERE database = ?1 ORDER BY id DESC LIMIT ?3)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![database, cutoff, keep_last.max(1) as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for id in &ids {
            tx.execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(ids)
    }

    fn snapshots_sync(&self, database: &str) -> Result<Vec<SnapshotInfo>, MetadataError> {
        let conn = self.lock();
        if !Self::exists(&conn, database)? {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let mut stmt = conn.prepare("SELECT id FROM snapshots WHERE database = ?1 ORDER BY id")?;
        let ids: Vec<i64> = stmt.query_map([database], |r| r.get(0))?.collect::<Result<_, _>>()?;
        ids.into_iter().map(|id| Self::snapshot_in(&conn, id)).collect()
    }

    fn snapshot_sync(&self, id: i64) -> Result<SnapshotInfo, MetadataError> {
        Self::snapshot_in(&self.lock(), id)
    }

    fn clone_database_sync(&self, source: &str, target: &str, snapshot: Option<i64>) -> Result<SnapshotInfo, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let page_size: i64 = tx
            .query_row("SELECT page_size FROM databases WHERE name = ?1", [source], |r| r.get(0))
            .optional()?
            .ok_or_else(|| MetadataError::UnknownDatabase(source.to_string()))?;
        let from = match snapshot {
            Some(id) => {
                let info = Self::snapshot_in(&tx, id)?;
                if info.database != source {
                    return Err(MetadataError::UnknownSnapshot(id));
                }
                info
            }
            None => {
                let id = Self::newest(&tx, source)?.ok_or(MetadataError::Store(format!("database '{source}' has no snapshot to clone")))?;
                Self::snapshot_in(&tx, id)?
            }
        };
        if Self::exists(&tx, target)? {
            return Err(MetadataError::DatabaseExists(target.to_string()));
        }
        let now = now_ms();
        tx.execute("INSERT INTO databases (name, page_size, created_ms) VALUES (?1, ?2, ?3)", params![target, page_size, now])?;
        tx.execute(
            "INSERT INTO snapshots (database, parent, epoch, created_ms, file_len) VALUES (?1, NULL, 0, ?2, ?3)",
            params![target, now, from.file_len],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO snapshot_layers (snapshot, position, layer) SELECT ?1, position, layer FROM snapshot_layers WHERE snapshot = ?2",
            params![id, from.id],
        )?;
        let info = Self::snapshot_in(&tx, id)?;
        tx.commit()?;
        Ok(info)
    }

    fn append_wal_sync(&self, lease: &Lease, base: i64, offset: i64, key: &str, size: i64) -> Result<(), MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::check_lease(&tx, lease)?;
        let newest = Self::newest(&tx, &lease.database)?;
        if newest != Some(base) {
            return Err(MetadataError::Store(format!(
                "database '{}': log extends snapshot {base} but the newest is {}",
                lease.database,
                newest.map_or("none".to_string(), |n| n.to_string())
            )));
        }
        tx.execute(
            "INSERT INTO wal_segments (database, base, start_offset, key, size, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![lease.database, base, offset, key, size, now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn wal_segments_sync(&self, database: &str, base: i64) -> Result<Vec<WalSegment>, MetadataError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT start_offset, key, size FROM wal_segments WHERE database = ?1 AND base = ?2 ORDER BY start_offset")?;
        let segments = stmt
            .query_map(params![database, base], |r| Ok(WalSegment { offset: r.get(0)?, key: r.get(1)?, size: r.get(2)? }))?
            .collect::<Result<_, _>>()?;
        Ok(segments)
    }

    fn unreferenced_layers_sync(&self, grace: Duration) -> Result<Vec<String>, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM snapshot_layers s WHERE s.layer = layers.key)";
        tx.execute(&format!("UPDATE layers SET released_ms = ?1 WHERE released_ms IS NULL AND {UNREFERENCED}"), [now])?;
        // A layer referenced again (a clone raced a prune) starts over when next released.
        tx.execute(&format!("UPDATE layers SET released_ms = NULL WHERE released_ms IS NOT NULL AND NOT {UNREFERENCED}"), [])?;
        let cutoff = now - grace.as_millis().min(i64::MAX as u128) as i64;
        let keys = {
            let mut stmt = tx.prepare(&format!("SELECT key FROM layers WHERE {UNREFERENCED} AND released_ms <= ?1 ORDER BY key"))?;
            let rows = stmt.query_map([cutoff], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        tx.commit()?;
        Ok(keys)
    }

    fn layer_keys_sync(&self) -> Result<Vec<String>, MetadataError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT key FROM layers UNION SELECT key FROM wal_segments ORDER BY key")?;
        let keys = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(keys)
    }

    fn forget_layers_sync(&self, keys: &[String]) -> Result<(), MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for key in keys {
            tx.execute("DELETE FROM layers WHERE key = ?1 AND NOT EXISTS (SELECT 1 FROM snapshot_layers WHERE layer = ?1)", [key])?;
        }
        tx.commit()?;
        Ok(())
    }
}

macro_rules! blocking {
    ($self:ident, |$m:ident| $body:expr) => {{
        let $m = $self.clone();
        tokio::task::spawn_blocking(move || $body).await.map_err(|e| MetadataError::Store(format!("metadata thread failed: {e}")))?
    }};
}

#[async_trait::async_trait]
impl Metadata for SqliteMetadata {
    async fn create_database(&self, name: &str, page_size: u32) -> Result<(), MetadataError> {
        let name = name.to_string();
        blocking!(self, |m| m.create_database_sync(&name, page_size))
    }
    async fn databases(&self) -> Result<Vec<String>, MetadataError> {
        blocking!(self, |m| m.databases_sync())
    }
    async fn drop_database(&self, name: &str) -> Result<(), MetadataError> {
        let name = name.to_string();
        blocking!(self, |m| m.drop_database_sync(&name))
    }
    async fn acquire_lease(&self, database: &str, holder: &str, ttl: Duration) -> Result<Lease, MetadataError> {
        let (database, holder) = (database.to_string(), holder.to_string());
        blocking!(self, |m| m.acquire_lease_sync(&database, &holder, ttl))
    }
    async fn commit(&self, lease: &Lease, layer_key: &str, layer_size: i64, file_len: i64) -> Result<SnapshotInfo, MetadataError> {
        let (lease, key) = (lease.clone(), layer_key.to_string());
        blocking!(self, |m| m.commit_sync(&lease, &key, layer_size, file_len))
    }
    async fn commit_compaction(
        &self,
        lease: &Lease,
        layer_key: &str,
        layer_size: i64,
        base: i64,
        replaced: usize,
    ) -> Result<SnapshotInfo, MetadataError> {
        let (lease, key) = (lease.clone(), layer_key.to_string());
        blocking!(self, |m| m.commit_compaction_sync(&lease, &key, layer_size, base, replaced))
    }
    async fn prune_snapshots(&self, database: &str, keep_last: usize, keep_for: Duration) -> Result<Vec<i64>, MetadataError> {
        let database = database.to_string();
        blocking!(self, |m| m.prune_snapshots_sync(&database, keep_last, keep_for))
    }
    async fn snapshots(&self, database: &str) -> Result<Vec<SnapshotInfo>, MetadataError> {
        let database = database.to_string();
        blocking!(self, |m| m.snapshots_sync(&database))
    }
    async fn snapshot(&self, id: i64) -> Result<SnapshotInfo, MetadataError> {
        blocking!(self, |m| m.snapshot_sync(id))
    }
    async fn clone_database(&self, source: &str, target: &str, snapshot: Option<i64>) -> Result<SnapshotInfo, MetadataError> {
        let (source, target) = (source.to_string(), target.to_string());
        blocking!(self, |m| m.clone_database_sync(&source, &target, snapshot))
    }
    async fn append_wal(&self, lease: &Lease, base: i64, offset: i64, key: &str, size: i64) -> Result<(), MetadataError> {
        let (lease, key) = (lease.clone(), key.to_string());
        blocking!(self, |m| m.append_wal_sync(&lease, base, offset, &key, size))
    }
    async fn wal_segments(&self, database: &str, base: i64) -> Result<Vec<WalSegment>, MetadataError> {
        let database = database.to_string();
        blocking!(self, |m| m.wal_segments_sync(&database, base))
    }
    async fn unreferenced_layers(&self, grace: Duration) -> Result<Vec<String>, MetadataError> {
        blocking!(self, |m| m.unreferenced_layers_sync(grace))
    }
    async fn layer_keys(&self) -> Result<Vec<String>, MetadataError> {
        blocking!(self, |m| m.layer_keys_sync())
    }
    async fn forget_layers(&self, keys: &[String]) -> Result<(), MetadataError> {
        let keys = keys.to_vec();
        blocking!(self, |m| m.forget_layers_sync(&keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_like_a_metadata_store() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(&dir.path().join("meta.sqlite")).unwrap();
        super::super::check_behaviour(&m).await;
        assert_eq!(m.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn reopening_keeps_everything_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sqlite");
        {
            let m = SqliteMetadata::open(&path).unwrap();
            m.create_database("db", 4096).await.unwrap();
        }
        let m = SqliteMetadata::open(&path).unwrap();
        assert_eq!(m.databases().await.unwrap(), vec!["db"]);
        assert_eq!(m.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }
}
