//! The metadata store: databases, layers, snapshots and the writer's lease.
//!
//! The metadata commit is the commit point: a layer object is written to the object store first,
//! then [`Metadata::commit`] records it in one transaction. A crash between the two leaves only
//! an unreferenced object, which garbage collection removes ([`Metadata::unreferenced_layers`]).
//!
//! One writer per database: [`Metadata::acquire_lease`] hands out a lease with a fencing epoch
//! that grows with every new holder; a commit carrying an older epoch (a writer that lost its
//! lease) is rejected, so a stale writer can never add a snapshot.
//!
//! The embedded default is SQLite ([`SqliteMetadata`]); the schema is versioned by migrations.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// No such database.
    #[error("unknown database '{0}'")]
    UnknownDatabase(String),
    /// The database exists already.
    #[error("database '{0}' already exists")]
    DatabaseExists(String),
    /// Another writer holds the lease.
    #[error("database '{database}' is being written by '{holder}' (lease epoch {epoch}, expires in {expires_in:?})")]
    LeaseHeld {
        /// The database.
        database: String,
        /// Who holds the lease.
        holder: String,
        /// Its epoch.
        epoch: i64,
        /// Time left on it.
        expires_in: Duration,
    },
    /// A commit or renewal from a writer whose lease was taken over.
    #[error("database '{database}': lease epoch {epoch} is stale (current epoch {current}); this writer was fenced")]
    Fenced {
        /// The database.
        database: String,
        /// The writer's epoch.
        epoch: i64,
        /// The current epoch.
        current: i64,
    },
    /// No such snapshot.
    #[error("unknown snapshot {0}")]
    UnknownSnapshot(i64),
    /// The store itself failed.
    #[error("metadata store: {0}")]
    Store(String),
}

impl From<rusqlite::Error> for MetadataError {
    fn from(e: rusqlite::Error) -> Self {
        MetadataError::Store(e.to_string())
    }
}

/// A snapshot of a database: the file at a commit point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id (grows with every commit, across databases).
    pub id: i64,
    /// The database.
    pub database: String,
    /// The previous snapshot of the database, if any.
    pub parent: Option<i64>,
    /// Commit time, milliseconds since the epoch.
    pub created_ms: i64,
    /// Length of the database file.
    pub file_len: i64,
    /// Total bytes of its layers.
    pub size: i64,
    /// Its layers' object keys, oldest first.
    pub layers: Vec<String>,
}

/// A lease on a database's write path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The database.
    pub database: String,
    /// The holder's name.
    pub holder: String,
    /// Fencing epoch: commits must carry it.
    pub epoch: i64,
}

/// What a metadata store does. Implementations behave identically (tested by the same tests).
pub trait Metadata: Send + Sync {
    /// Creates an empty database.
    fn create_database(&self, name: &str, page_size: u32) -> Result<(), MetadataError>;
    /// Names of all databases.
    fn databases(&self) -> Result<Vec<String>, MetadataError>;
    /// Drops a database's metadata (its layers become unreferenced unless shared by clones).
    fn drop_database(&self, name: &str) -> Result<(), MetadataError>;
    /// Takes the write lease for `ttl`, or renews it if `holder` has it; fails while another
    /// holder's lease is unexpired.
    fn acquire_lease(&self, database: &str, holder: &str, ttl: Duration) -> Result<Lease, MetadataError>;
    /// Records a sealed layer as the database's next snapshot, if `lease` is still current.
    fn commit(&self, lease: &Lease, layer_key: &str, layer_size: i64, file_len: i64) -> Result<SnapshotInfo, MetadataError>;
    /// The snapshots of a database, oldest first.
    fn snapshots(&self, database: &str) -> Result<Vec<SnapshotInfo>, MetadataError>;
    /// One snapshot.
    fn snapshot(&self, id: i64) -> Result<SnapshotInfo, MetadataError>;
    /// A new database starting at `snapshot` of `source` (the newest when `None`), sharing its
    /// layers: no data is copied.
    fn clone_database(&self, source: &str, target: &str, snapshot: Option<i64>) -> Result<SnapshotInfo, MetadataError>;
    /// Layers no snapshot refers to (safe to delete from the object store).
    fn unreferenced_layers(&self) -> Result<Vec<String>, MetadataError>;
    /// Forgets layers after they were deleted from the object store.
    fn forget_layers(&self, keys: &[String]) -> Result<(), MetadataError>;
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
];

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The embedded metadata store.
pub struct SqliteMetadata {
    conn: Mutex<Connection>,
}

impl SqliteMetadata {
    /// Opens (creating and migrating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;
        let store = SqliteMetadata { conn: Mutex::new(conn) };
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
            .query_row(
                "SELECT id, database, parent, created_ms, file_len FROM snapshots WHERE id = ?1",
                [id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?)),
            )
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

    fn newest(conn: &Connection, database: &str) -> Result<Option<i64>, MetadataError> {
        Ok(conn.query_row("SELECT max(id) FROM snapshots WHERE database = ?1", [database], |r| r.get(0))?)
    }
}

impl Metadata for SqliteMetadata {
    fn create_database(&self, name: &str, page_size: u32) -> Result<(), MetadataError> {
        let conn = self.lock();
        match conn.execute("INSERT INTO databases (name, page_size, created_ms) VALUES (?1, ?2, ?3)", params![name, page_size, now_ms()]) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(MetadataError::DatabaseExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn databases(&self) -> Result<Vec<String>, MetadataError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT name FROM databases ORDER BY name")?;
        let names = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(names)
    }

    fn drop_database(&self, name: &str) -> Result<(), MetadataError> {
        let conn = self.lock();
        if conn.execute("DELETE FROM databases WHERE name = ?1", [name])? == 0 {
            return Err(MetadataError::UnknownDatabase(name.to_string()));
        }
        Ok(())
    }

    fn acquire_lease(&self, database: &str, holder: &str, ttl: Duration) -> Result<Lease, MetadataError> {
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

    fn commit(&self, lease: &Lease, layer_key: &str, layer_size: i64, file_len: i64) -> Result<SnapshotInfo, MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<i64> =
            tx.query_row("SELECT epoch FROM leases WHERE database = ?1", [&lease.database], |r| r.get(0)).optional()?;
        match current {
            Some(epoch) if epoch == lease.epoch => {}
            Some(current) => return Err(MetadataError::Fenced { database: lease.database.clone(), epoch: lease.epoch, current }),
            None => return Err(MetadataError::UnknownDatabase(lease.database.clone())),
        }
        let parent = Self::newest(&tx, &lease.database)?;
        let now = now_ms();
        tx.execute("INSERT INTO layers (key, size, created_ms) VALUES (?1, ?2, ?3)", params![layer_key, layer_size, now])?;
        tx.execute(
            "INSERT INTO snapshots (database, parent, epoch, created_ms, file_len) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease.database, parent, lease.epoch, now, file_len],
        )?;
        let id = tx.last_insert_rowid();
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
        let info = Self::snapshot_in(&tx, id)?;
        tx.commit()?;
        Ok(info)
    }

    fn snapshots(&self, database: &str) -> Result<Vec<SnapshotInfo>, MetadataError> {
        let conn = self.lock();
        if !Self::exists(&conn, database)? {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let mut stmt = conn.prepare("SELECT id FROM snapshots WHERE database = ?1 ORDER BY id")?;
        let ids: Vec<i64> = stmt.query_map([database], |r| r.get(0))?.collect::<Result<_, _>>()?;
        ids.into_iter().map(|id| Self::snapshot_in(&conn, id)).collect()
    }

    fn snapshot(&self, id: i64) -> Result<SnapshotInfo, MetadataError> {
        Self::snapshot_in(&self.lock(), id)
    }

    fn clone_database(&self, source: &str, target: &str, snapshot: Option<i64>) -> Result<SnapshotInfo, MetadataError> {
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

    fn unreferenced_layers(&self) -> Result<Vec<String>, MetadataError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT key FROM layers WHERE NOT EXISTS (SELECT 1 FROM snapshot_layers s WHERE s.layer = layers.key) ORDER BY key",
        )?;
        let keys = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(keys)
    }

    fn forget_layers(&self, keys: &[String]) -> Result<(), MetadataError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for key in keys {
            tx.execute("DELETE FROM layers WHERE key = ?1 AND NOT EXISTS (SELECT 1 FROM snapshot_layers WHERE layer = ?1)", [key])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteMetadata) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteMetadata::open(&dir.path().join("meta.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn commits_build_snapshots_of_layer_stacks() {
        let (_d, m) = store();
        m.create_database("db", 4096).unwrap();
        assert!(matches!(m.create_database("db", 4096), Err(MetadataError::DatabaseExists(_))));
        let lease = m.acquire_lease("db", "writer-a", Duration::from_secs(30)).unwrap();
        assert_eq!(lease.epoch, 1);
        let s1 = m.commit(&lease, "db/1", 100, 4096).unwrap();
        let s2 = m.commit(&lease, "db/2", 50, 8192).unwrap();
        assert_eq!(s1.layers, vec!["db/1"]);
        assert_eq!((s2.parent, s2.layers.clone(), s2.size, s2.file_len), (Some(s1.id), vec!["db/1".to_string(), "db/2".to_string()], 150, 8192));
        assert_eq!(m.snapshots("db").unwrap().len(), 2);
        assert_eq!(m.snapshot(s1.id).unwrap(), s1);
        assert!(matches!(m.snapshots("nope"), Err(MetadataError::UnknownDatabase(_))));
        assert_eq!(m.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn second_writer_is_refused_and_a_stale_writer_fenced() {
        let (_d, m) = store();
        m.create_database("db", 4096).unwrap();
        let a = m.acquire_lease("db", "host-a", Duration::from_millis(50)).unwrap();
        let err = m.acquire_lease("db", "host-b", Duration::from_secs(30)).unwrap_err();
        assert!(err.to_string().contains("being written by 'host-a'"), "{err}");
        // Renewal by the holder keeps the epoch.
        assert_eq!(m.acquire_lease("db", "host-a", Duration::from_millis(50)).unwrap().epoch, a.epoch);
        std::thread::sleep(Duration::from_millis(80));
        let b = m.acquire_lease("db", "host-b", Duration::from_secs(30)).unwrap();
        assert_eq!(b.epoch, a.epoch + 1);
        let err = m.commit(&a, "db/stale", 1, 1).unwrap_err();
        assert!(matches!(err, MetadataError::Fenced { epoch: 1, current: 2, .. }), "{err}");
        assert!(m.snapshots("db").unwrap().is_empty());
        m.commit(&b, "db/1", 1, 1).unwrap();
    }

    #[test]
    fn clones_share_layers_and_gc_finds_orphans() {
        let (_d, m) = store();
        m.create_database("db", 4096).unwrap();
        let lease = m.acquire_lease("db", "w", Duration::from_secs(30)).unwrap();
        let s1 = m.commit(&lease, "db/1", 10, 10).unwrap();
        m.commit(&lease, "db/2", 10, 20).unwrap();
        let clone = m.clone_database("db", "copy", Some(s1.id)).unwrap();
        assert_eq!(clone.layers, vec!["db/1"]);
        assert!(matches!(m.clone_database("db", "copy", None), Err(MetadataError::DatabaseExists(_))));
        m.drop_database("db").unwrap();
        // db/2 was only in the dropped database; db/1 lives on in the clone.
        assert_eq!(m.unreferenced_layers().unwrap(), vec!["db/2"]);
        m.forget_layers(&["db/2".to_string(), "db/1".to_string()]).unwrap();
        assert!(m.unreferenced_layers().unwrap().is_empty());
        assert_eq!(m.snapshot(clone.id).unwrap().layers, vec!["db/1"]);
        assert_eq!(m.databases().unwrap(), vec!["copy"]);
    }

    #[test]
    fn reopening_keeps_everything_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sqlite");
        {
            let m = SqliteMetadata::open(&path).unwrap();
            m.create_database("db", 4096).unwrap();
        }
        let m = SqliteMetadata::open(&path).unwrap();
        assert_eq!(m.databases().unwrap(), vec!["db"]);
        assert_eq!(m.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }
}
