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
//! The embedded default is SQLite ([`SqliteMetadata`]); PostgreSQL ([`PostgresMetadata`]) is for
//! several hosts. Both version their schema with migrations.

mod conformance;
mod postgres;
mod sqlite;

use std::time::Duration;

pub use conformance::check_behaviour;
pub use postgres::PostgresMetadata;
pub use sqlite::SqliteMetadata;

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
    /// The database got a newer snapshot while a compaction of an older one ran.
    #[error("database '{database}' changed during compaction (compacted {base}, newest is {newest})")]
    CompactionRaced {
        /// The database.
        database: String,
        /// The snapshot that was compacted.
        base: i64,
        /// The newest snapshot now.
        newest: i64,
    },
    /// The store itself failed.
    #[error("metadata store: {0}")]
    Store(String),
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
    /// Bytes stored for it: the sizes of its layers' objects, added up (not the file's length).
    pub size: i64,
    /// Its layers' object keys, oldest first.
    pub layers: Vec<String>,
}

/// A durable piece of a database's write-ahead log: bytes `offset..offset + size` of the log that
/// extends one snapshot, stored as one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegment {
    /// Where the piece starts in the log.
    pub offset: i64,
    /// Its object key.
    pub key: String,
    /// Its length in bytes.
    pub size: i64,
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

/// What a metadata store does. Implementations behave identically ([`check_behaviour`] runs
/// against each).
#[async_trait::async_trait]
pub trait Metadata: Send + Sync {
    /// Creates an empty database.
    async fn create_database(&self, name: &str, page_size: u32) -> Result<(), MetadataError>;
    /// Names of all databases.
    async fn databases(&self) -> Result<Vec<String>, MetadataError>;
    /// Drops a database's metadata (its layers become unreferenced unless shared by clones).
    async fn drop_database(&self, name: &str) -> Result<(), MetadataError>;
    /// Takes the write lease for `ttl`, or renews it if `holder` has it; fails while another
    /// holder's lease is unexpired.
    async fn acquire_lease(&self, database: &str, holder: &str, ttl: Duration) -> Result<Lease, MetadataError>;
    /// Records a sealed layer as the database's next snapshot, if `lease` is still current.
    async fn commit(&self, lease: &Lease, layer_key: &str, layer_size: i64, file_len: i64) -> Result<SnapshotInfo, MetadataError>;
    /// Records a compacted layer as a new snapshot with the same content as snapshot `base` (the
    /// database's newest): the base's layers with its newest `replaced` ones (all of them when
    /// `replaced` is at least their number) swapped for the compacted layer, which holds the
    /// newest version of every page they held. Later reads stay shallow; older snapshots keep
    /// their layers (time travel) until they are pruned.
    async fn commit_compaction(
        &self,
        lease: &Lease,
        layer_key: &str,
        layer_size: i64,
        base: i64,
        replaced: usize,
    ) -> Result<SnapshotInfo, MetadataError>;
    /// Deletes the snapshots of `database` that are neither among its newest `keep_last` (at
    /// least one: the newest is always kept) nor younger than `keep_for` (by the store's clock);
    /// returns their ids, oldest first. Their layers stay until no snapshot refers to them
    /// ([`Metadata::unreferenced_layers`]).
    async fn prune_snapshots(&self, database: &str, keep_last: usize, keep_for: Duration) -> Result<Vec<i64>, MetadataError>;
    /// The snapshots of a database, oldest first.
    async fn snapshots(&self, database: &str) -> Result<Vec<SnapshotInfo>, MetadataError>;
    /// One snapshot.
    async fn snapshot(&self, id: i64) -> Result<SnapshotInfo, MetadataError>;
    /// A new database starting at `snapshot` of `source` (the newest when `None`), sharing its
    /// layers: no data is copied.
    async fn clone_database(&self, source: &str, target: &str, snapshot: Option<i64>) -> Result<SnapshotInfo, MetadataError>;
    /// Records a durable piece of the write-ahead log extending snapshot `base` (the database's
    /// newest), if `lease` is still current. A commit folds the log into a new snapshot and
    /// forgets the pieces of older ones (their objects then become orphans for GC).
    async fn append_wal(&self, lease: &Lease, base: i64, offset: i64, key: &str, size: i64) -> Result<(), MetadataError>;
    /// The log pieces extending snapshot `base` of `database`, in log order.
    async fn wal_segments(&self, database: &str, base: i64) -> Result<Vec<WalSegment>, MetadataError>;
    /// Layers no snapshot has referred to for at least `grace` (safe to delete from the object
    /// store: a reader that opened a pruned snapshot less than `grace` ago may still fetch from
    /// them). A layer's release time is recorded the first time a call finds it unreferenced, so
    /// with a non-zero grace it is returned by a later call, never the first.
    async fn unreferenced_layers(&self, grace: Duration) -> Result<Vec<String>, MetadataError>;
    /// Every object the store knows: layers (referenced or not) and live log pieces.
    async fn layer_keys(&self) -> Result<Vec<String>, MetadataError>;
    /// Forgets layers after they were deleted from the object store.
    async fn forget_layers(&self, keys: &[String]) -> Result<(), MetadataError>;
}
