//! The PostgreSQL metadata store, for several hosts sharing databases. Lease times use the
//! server's clock, so hosts' clocks need not agree. Commits and lease changes lock the
//! database's lease row (`FOR UPDATE`), so fencing holds under concurrency.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{Lease, Metadata, MetadataError, SnapshotInfo, WalSegment};

/// Migrations, applied in order; the version is recorded in `openduck_schema`.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE databases (name TEXT PRIMARY KEY, page_size INTEGER NOT NULL, created_ms BIGINT NOT NULL);
     CREATE TABLE leases (database TEXT PRIMARY KEY REFERENCES databases(name) ON DELETE CASCADE,
                          holder TEXT NOT NULL, epoch BIGINT NOT NULL, expires_ms BIGINT NOT NULL);
     CREATE TABLE layers (key TEXT PRIMARY KEY, size BIGINT NOT NULL, created_ms BIGINT NOT NULL);
     CREATE TABLE snapshots (id BIGSERIAL PRIMARY KEY,
                             database TEXT NOT NULL REFERENCES databases(name) ON DELETE CASCADE,
                             parent BIGINT, epoch BIGINT NOT NULL, created_ms BIGINT NOT NULL, file_len BIGINT NOT NULL);
     CREATE TABLE snapshot_layers (snapshot BIGINT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
                                   position INTEGER NOT NULL, layer TEXT NOT NULL REFERENCES layers(key),
                                   PRIMARY KEY (snapshot, position));
     CREATE INDEX snapshots_by_database ON snapshots(database, id);
     CREATE INDEX snapshot_layers_by_layer ON snapshot_layers(layer);",
    "CREATE TABLE wal_segments (database TEXT NOT NULL REFERENCES databases(name) ON DELETE CASCADE,
                                base BIGINT NOT NULL, start_offset BIGINT NOT NULL, key TEXT NOT NULL UNIQUE,
                                size BIGINT NOT NULL, created_ms BIGINT NOT NULL,
                                PRIMARY KEY (database, base, start_offset));",
    "ALTER TABLE layers ADD COLUMN released_ms BIGINT;",
];

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::BIGINT";

impl From<tokio_postgres::Error> for MetadataError {
    fn from(e: tokio_postgres::Error) -> Self {
        MetadataError::Store(match e.as_db_error() {
            Some(db) => format!("postgres: {}", db.message()),
            None => format!("postgres: {e}"),
        })
    }
}

impl From<deadpool_postgres::PoolError> for MetadataError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        MetadataError::Store(format!("postgres unavailable: {e}"))
    }
}

/// Metadata in PostgreSQL.
#[derive(Clone)]
pub struct PostgresMetadata {
    pool: Pool,
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

impl PostgresMetadata {
    /// Connects (`postgres://user:pass@host:port/db` or key=value form) and migrates.
    pub async fn connect(url: &str) -> Result<Self, MetadataError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| MetadataError::Store(format!("invalid postgres URL: {e}")))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(8)
            .wait_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| MetadataError::Store(format!("postgres pool: {e}")))?;
        let store = PostgresMetadata { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version in use.
    pub async fn schema_version(&self) -> Result<i64, MetadataError> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT coalesce(max(version), 0)::BIGINT FROM openduck_schema", &[]).await?.get(0))
    }

    async fn migrate(&self) -> Result<(), MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Serialize concurrent migrators.
        tx.execute("SELECT pg_advisory_xact_lock(7878001)", &[]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS openduck_schema (version INTEGER PRIMARY KEY)").await?;
        let version: i64 = tx.query_one("SELECT coalesce(max(version), 0)::BIGINT FROM openduck_schema", &[]).await?.get(0);
        if version as usize > MIGRATIONS.len() {
            return Err(MetadataError::Store(format!(
                "metadata schema version {version} is newer than this build knows ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO openduck_schema (version) VALUES ($1)", &[&((i + 1) as i32)]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Fencing: locks the lease row and fails unless `lease` is the current lease.
    async fn check_lease(tx: &deadpool_postgres::Transaction<'_>, lease: &Lease) -> Result<(), MetadataError> {
        let current = tx.query_opt("SELECT epoch FROM leases WHERE database = $1 FOR UPDATE", &[&lease.database]).await?;
        match current.map(|r| r.get::<_, i64>(0)) {
            Some(epoch) if epoch == lease.epoch => Ok(()),
            Some(current) => Err(MetadataError::Fenced { database: lease.database.clone(), epoch: lease.epoch, current }),
            None => Err(MetadataError::UnknownDatabase(lease.database.clone())),
        }
    }

    /// Records a new layer and a snapshot row on top of `parent`; returns the snapshot id (its
    /// layer list is filled by the caller).
    async fn insert_snapshot(
        tx: &deadpool_postgres::Transaction<'_>,
        lease: &Lease,
        layer_key: &str,
        layer_size: i64,
        parent: Option<i64>,
        file_len: i64,
    ) -> Result<i64, MetadataError> {
        tx.execute(format!("INSERT INTO layers (key, size, created_ms) VALUES ($1, $2, {NOW_MS})").as_str(), &[&layer_key, &layer_size])
            .await?;
        let row = tx
            .query_one(
                format!(
                    "INSERT INTO snapshots (database, parent, epoch, created_ms, file_len) VALUES ($1, $2, $3, {NOW_MS}, $4) RETURNING id"
                )
                .as_str(),
                &[&lease.database, &parent, &lease.epoch, &file_len],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn snapshot_in(client: &impl deadpool_postgres::GenericClient, id: i64) -> Result<SnapshotInfo, MetadataError> {
        let row = client
            .query_opt("SELECT id, database, parent, created_ms, file_len FROM snapshots WHERE id = $1", &[&id])
            .await?
            .ok_or(MetadataError::UnknownSnapshot(id))?;
        let layers = client
            .query(
                "SELECT l.key, l.size FROM snapshot_layers s JOIN layers l ON l.key = s.layer WHERE s.snapshot = $1 ORDER BY s.position",
                &[&id],
            )
            .await?;
        Ok(SnapshotInfo {
            id: row.get(0),
            database: row.get(1),
            parent: row.get(2),
            created_ms: row.get(3),
            file_len: row.get(4),
            size: layers.iter().map(|r| r.get::<_, i64>(1)).sum(),
            layers: layers.iter().map(|r| r.get(0)).collect(),
        })
    }
}

#[async_trait::async_trait]
impl Metadata for PostgresMetadata {
    async fn create_database(&self, name: &str, page_size: u32) -> Result<(), MetadataError> {
        let client = self.pool.get().await?;
        let sql = format!("INSERT INTO databases (name, page_size, created_ms) VALUES ($1, $2, {NOW_MS})");
        match client.execute(sql.as_str(), &[&name, &(page_size as i32)]).await {
            Ok(_) => Ok(()),
            Err(e) if unique_violation(&e) => Err(MetadataError::DatabaseExists(name.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn databases(&self) -> Result<Vec<String>, MetadataError> {
        let client = self.pool.get().await?;
        Ok(client.query("SELECT name FROM databases ORDER BY name", &[]).await?.iter().map(|r| r.get(0)).collect())
    }

    async fn drop_database(&self, name: &str) -> Result<(), MetadataError> {
        let client = self.pool.get().await?;
        if client.execute("DELETE FROM databases WHERE name = $1", &[&name]).await? == 0 {
            return Err(MetadataError::UnknownDatabase(name.to_string()));
        }
        Ok(())
    }

    async fn acquire_lease(&self, database: &str, holder: &str, ttl: Duration) -> Result<Lease, MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if tx.query_opt("SELECT 1 FROM databases WHERE name = $1 FOR UPDATE", &[&database]).await?.is_none() {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let now: i64 = tx.query_one(format!("SELECT {NOW_MS}").as_str(), &[]).await?.get(0);
        let current = tx.query_opt("SELECT holder, epoch, expires_ms FROM leases WHERE database = $1", &[&database]).await?;
        let epoch: i64 = match current {
            Some(r) if r.get::<_, String>(0) == holder => r.get(1),
            Some(r) if r.get::<_, i64>(2) > now => {
                return Err(MetadataError::LeaseHeld {
                    database: database.to_string(),
                    holder: r.get(0),
                    epoch: r.get(1),
                    expires_in: Duration::from_millis((r.get::<_, i64>(2) - now) as u64),
                })
            }
            Some(r) => r.get::<_, i64>(1) + 1,
            None => 1,
        };
        let expires = now + ttl.as_millis() as i64;
        tx.execute(
            "INSERT INTO leases (database, holder, epoch, expires_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (database) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_ms = excluded.expires_ms",
            &[&database, &holder, &epoch, &expires],
        )
        .await?;
        tx.commit().await?;
        Ok(Lease { database: database.to_string(), holder: holder.to_string(), epoch })
    }

    async fn commit(&self, lease: &Lease, layer_key: &str, layer_size: i64, file_len: i64) -> Result<SnapshotInfo, MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        Self::check_lease(&tx, lease).await?;
        let parent: Option<i64> = tx.query_one("SELECT max(id) FROM snapshots WHERE database = $1", &[&lease.database]).await?.get(0);
        let id = Self::insert_snapshot(&tx, lease, layer_key, layer_size, parent, file_len).await?;
        if let Some(parent) = parent {
            tx.execute(
                "INSERT INTO snapshot_layers (snapshot, position, layer) SELECT $1, position, layer FROM snapshot_layers WHERE snapshot = $2",
                &[&id, &parent],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO snapshot_layers (snapshot, position, layer)
             VALUES ($1, (SELECT count(*) FROM snapshot_layers WHERE snapshot = $1)::INTEGER, $2)",
            &[&id, &layer_key],
        )
        .await?;
        // The log of older snapshots is folded into this one.
        tx.execute("DELETE FROM wal_segments WHERE database = $1", &[&lease.database]).await?;
        let info = Self::snapshot_in(&tx, id).await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn commit_compaction(
        &self,
        lease: &Lease,
        layer_key: &str,
        layer_size: i64,
        base: i64,
        replaced: usize,
    ) -> Result<SnapshotInfo, MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        Self::check_lease(&tx, lease).await?;
        let newest: Option<i64> = tx.query_one("SELECT max(id) FROM snapshots WHERE database = $1", &[&lease.database]).await?.get(0);
        let newest = newest.ok_or(MetadataError::UnknownSnapshot(base))?;
        if newest != base {
            return Err(MetadataError::CompactionRaced { database: lease.database.clone(), base, newest });
        }
        let file_len: i64 = tx.query_one("SELECT file_len FROM snapshots WHERE id = $1", &[&base]).await?.get(0);
        let count: i64 = tx.query_one("SELECT count(*) FROM snapshot_layers WHERE snapshot = $1", &[&base]).await?.get(0);
        let kept = (count - replaced.min(count as usize) as i64).max(0) as i32;
        let id = Self::insert_snapshot(&tx, lease, layer_key, layer_size, Some(base), file_len).await?;
        tx.execute(
            "INSERT INTO snapshot_layers (snapshot, position, layer) SELECT $1, position, layer FROM snapshot_layers WHERE snapshot = $2 AND position < $3",
            &[&id, &base, &kept],
        )
        .await?;
        tx.execute("INSERT INTO snapshot_layers (snapshot, position, layer) VALUES ($1, $2, $3)", &[&id, &kept, &layer_key]).await?;
        // Same content: the log that extended the base now extends the compacted snapshot.
        tx.execute("UPDATE wal_segments SET base = $1 WHERE database = $2 AND base = $3", &[&id, &lease.database, &base]).await?;
        let info = Self::snapshot_in(&tx, id).await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn prune_snapshots(&self, database: &str, keep_last: usize, keep_for: Duration) -> Result<Vec<i64>, MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if tx.query_opt("SELECT 1 FROM databases WHERE name = $1 FOR UPDATE", &[&database]).await?.is_none() {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let keep_for_ms = keep_for.as_millis().min(i64::MAX as u128) as i64;
        let keep_last = keep_last.max(1) as i64;
        let ids: Vec<i64> = tx
            .query(
                format!(
                    "DELETE FROM snapshots WHERE database = $1 AND created_ms < {NOW_MS} - $2
                       AND id NOT IN (SELECT id FROM snapshots WHERE database = $1 ORDER BY id DESC LIMIT $3)
                     RETURNING id"
                )
                .as_str(),
                &[&database, &keep_for_ms, &keep_last],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await?;
        let mut ids = ids;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn snapshots(&self, database: &str) -> Result<Vec<SnapshotInfo>, MetadataError> {
        let client = self.pool.get().await?;
        if client.query_opt("SELECT 1 FROM databases WHERE name = $1", &[&database]).await?.is_none() {
            return Err(MetadataError::UnknownDatabase(database.to_string()));
        }
        let ids: Vec<i64> = client
            .query("SELECT id FROM snapshots WHERE database = $1 ORDER BY id", &[&database])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(Self::snapshot_in(&client, id).await?);
        }
        Ok(out)
    }

    async fn snapshot(&self, id: i64) -> Result<SnapshotInfo, MetadataError> {
        let client = self.pool.get().await?;
        Self::snapshot_in(&client, id).await
    }

    async fn clone_database(&self, source: &str, target: &str, snapshot: Option<i64>) -> Result<SnapshotInfo, MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // FOR SHARE: a prune of the source (which locks its row FOR UPDATE) cannot remove the
        // snapshot between reading it and copying its layer list.
        let page_size: i32 = tx
            .query_opt("SELECT page_size FROM databases WHERE name = $1 FOR SHARE", &[&source])
            .await?
            .ok_or_else(|| MetadataError::UnknownDatabase(source.to_string()))?
            .get(0);
        let from_id = match snapshot {
            Some(id) => id,
            None => tx
                .query_one("SELECT max(id) FROM snapshots WHERE database = $1", &[&source])
                .await?
                .get::<_, Option<i64>>(0)
                .ok_or(MetadataError::Store(format!("database '{source}' has no snapshot to clone")))?,
        };
        let from = Self::snapshot_in(&tx, from_id).await?;
        if from.database != source {
            return Err(MetadataError::UnknownSnapshot(from_id));
        }
        let created = tx
            .execute(
                format!("INSERT INTO databases (name, page_size, created_ms) VALUES ($1, $2, {NOW_MS})").as_str(),
                &[&target, &page_size],
            )
            .await;
        match created {
            Err(e) if unique_violation(&e) => return Err(MetadataError::DatabaseExists(target.to_string())),
            other => {
                other?;
            }
        }
        let id: i64 = tx
            .query_one(
                format!(
                    "INSERT INTO snapshots (database, parent, epoch, created_ms, file_len) VALUES ($1, NULL, 0, {NOW_MS}, $2) RETURNING id"
                )
                .as_str(),
                &[&target, &from.file_len],
            )
            .await?
            .get(0);
        let copied = tx
            .execute(
                "INSERT INTO snapshot_layers (snapshot, position, layer) SELECT $1, position, layer FROM snapshot_layers WHERE snapshot = $2",
                &[&id, &from.id],
            )
            .await?;
        if copied as usize != from.layers.len() {
            return Err(MetadataError::UnknownSnapshot(from.id));
        }
        let info = Self::snapshot_in(&tx, id).await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn append_wal(&self, lease: &Lease, base: i64, offset: i64, key: &str, size: i64) -> Result<(), MetadataError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        Self::check_lease(&tx, lease).await?;
        let newest: Option<i64> = tx.query_one("SELECT max(id) FROM snapshots WHERE database = $1", &[&lease.database]).await?.get(0);
        if newest != Some(base) {
            return Err(MetadataError::Store(format!(
                "database '{}': log extends snapshot {base} but the newest is {}",
                lease.database,
                newest.map_or("none".to_string(), |n| n.to_string())
            )));
        }
        tx.execute(
            format!("INSERT INTO wal_segments (database, base, start_offset, key, size, created_ms) VALUES ($1, $2, $3, $4, $5, {NOW_MS})")
                .as_str(),
            &[&lease.database, &base, &offset, &key, &size],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn wal_segments(&self, database: &str, base: i64) -> Result<Vec<WalSegment>, MetadataError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT start_offset, key, size FROM wal_segments WHERE database = $1 AND base = $2 ORDER BY start_offset",
                &[&database, &base],
            )
            .await?
            .iter()
            .map(|r| WalSegment { offset: r.get(0), key: r.get(1), size: r.get(2) })
            .collect())
    }

    async fn unreferenced_layers(&self, grace: Duration) -> Result<Vec<String>, MetadataError> {
        const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM snapshot_layers s WHERE s.layer = layers.key)";
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(format!("UPDATE layers SET released_ms = {NOW_MS} WHERE released_ms IS NULL AND {UNREFERENCED}").as_str(), &[]).await?;
        // A layer referenced again (a clone raced a prune) starts over when next released.
        tx.execute(format!("UPDATE layers SET released_ms = NULL WHERE released_ms IS NOT NULL AND NOT {UNREFERENCED}").as_str(), &[])
            .await?;
        let grace_ms = grace.as_millis().min(i64::MAX as u128) as i64;
        let keys = tx
            .query(
                format!("SELECT key FROM layers WHERE {UNREFERENCED} AND released_ms <= {NOW_MS} - $1 ORDER BY key").as_str(),
                &[&grace_ms],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await?;
        Ok(keys)
    }

    async fn layer_keys(&self) -> Result<Vec<String>, MetadataError> {
        let client = self.pool.get().await?;
        Ok(client
            .query("SELECT key FROM layers UNION SELECT key FROM wal_segments ORDER BY key", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn forget_layers(&self, keys: &[String]) -> Result<(), MetadataError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM layers WHERE key = ANY($1) AND NOT EXISTS (SELECT 1 FROM snapshot_layers s WHERE s.layer = layers.key)",
                &[&keys],
            )
            .await?;
        Ok(())
    }
}
