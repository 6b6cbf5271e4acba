//! A database on layered storage: opening it from its head, making commits durable, sealing
//! checkpoints as snapshots (with compaction and retention after each), renewing the lease.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openduck_layers::head::Head;
use openduck_layers::head_fs::HeadMount;
use openduck_layers::metadata::MetadataError;
use openduck_layers::storage::Storage;
use openduck_layers::LayerError;

use super::{Database, Layered};
use crate::blocking::Blocking;
use crate::config::{DuckDbSettings, LayeredStorage};
use crate::duck::rows_function::{RowsColumn, RowsFunction};
use crate::error::{Result, ServerError};

/// `openduck_snapshots()`: the database's snapshots as SQL rows, newest last.
pub(super) fn snapshots_function(name: &str, storage: &Storage, rt: tokio::runtime::Handle) -> RowsFunction {
    let (meta, name) = (storage.meta.clone(), name.to_string());
    let column = |n: &str, kind| (n.to_string(), kind);
    RowsFunction {
        name: "openduck_snapshots".into(),
        columns: vec![
            column("snapshot_id", RowsColumn::BigInt),
            column("created_at", RowsColumn::Timestamp),
            column("file_bytes", RowsColumn::BigInt),
            column("stored_bytes", RowsColumn::BigInt),
            column("layers", RowsColumn::BigInt),
            column("parent_id", RowsColumn::BigInt),
        ],
        // DuckDB calls this while binding, on the thread running the query: a blocking thread
        // (clients' SQL runs there, see crate::blocking) or one of DuckDB's own, never an async one.
        rows: Arc::new(move || {
            let snapshots = rt.block_on(meta.snapshots(&name)).map_err(|e| format!("IO Error: listing snapshots: {e}"))?;
            Ok(snapshots
                .into_iter()
                .map(|s| vec![Some(s.id), Some(s.created_ms * 1000), Some(s.file_len), Some(s.size), Some(s.layers.len() as i64), s.parent])
                .collect())
        }),
    }
}

pub(super) fn storage_err(e: LayerError) -> ServerError {
    match e {
        LayerError::Metadata(MetadataError::UnknownDatabase(name)) => ServerError::UnknownDatabase(name),
        LayerError::NotDurable(msg) => ServerError::NotDurable(msg),
        LayerError::Metadata(held @ MetadataError::LeaseHeld { .. }) => ServerError::LeaseHeld(held.to_string()),
        other => ServerError::Storage(other.to_string()),
    }
}

impl Database {
    /// Opens a database on layered storage: takes its write lease, recovers the file (see
    /// [`openduck_layers::head::Recovery`]), opens it (DuckDB replays the recovered log) and seals it, so that every
    /// later commit extends a snapshot.
    ///
    /// With `heads`, DuckDB reaches the file through the FUSE head filesystem, and `path` (an
    /// ordinary DuckDB file) is only imported when the database has no snapshot yet.
    pub(super) fn open_layered(
        name: &str,
        path: &Path,
        settings: &DuckDbSettings,
        layers: &LayeredStorage,
        b: &Blocking,
        heads: Option<&HeadMount>,
    ) -> Result<Self> {
        let storage = layers.storage.clone();
        let (head, recovery) = b
            .wait(async {
                match storage.meta.create_database(name, openduck_layers::head::DEFAULT_PAGE_SIZE).await {
                    Ok(()) | Err(MetadataError::DatabaseExists(_)) => {}
                    Err(e) => return Err(LayerError::from(e)),
                }
                match heads {
                    Some(heads) => Head::open_fuse(storage, name, heads, &layers.holder, layers.lease_ttl, Some(path)).await,
                    None => Head::open(storage, name, path, &layers.holder, layers.lease_ttl).await,
                }
            })
            .map_err(storage_err)?;
        let file = head.path().to_path_buf();
        // Spill files stay off the head filesystem.
        let temp = heads.map(|h| h.temp_dir(name));
        let layered = Layered {
            head: tokio::sync::Mutex::new(head),
            last_seal: Mutex::new(Instant::now()),
            compaction: layers.compaction,
            retention: layers.retention,
        };
        let db = Self::open_full(name, &file, settings, Some(layered), false, temp.as_deref())?;
        db.add_function(snapshots_function(name, &layers.storage, b.runtime().clone()))?;
        let snapshot = db.seal(b)?;
        tracing::info!(database = name, ?recovery, snapshot, "opened layered database");
        Ok(db)
    }

    /// Whether the database lives on layered storage.
    pub fn is_layered(&self) -> bool {
        self.layered.is_some()
    }

    /// Makes every change committed so far durable (a no-op without layered storage). Call after
    /// a commit and before acknowledging it.
    pub fn make_durable(&self, b: &Blocking) -> Result<()> {
        let Some(l) = &self.layered else {
            return Ok(());
        };
        b.wait(async { l.head.lock().await.sync_wal().await }).map_err(|e| match e {
            LayerError::NotDurable(msg) => ServerError::NotDurable(msg),
            other => ServerError::NotDurable(other.to_string()),
        })?;
        Ok(())
    }

    /// Checkpoints the database and seals the result as its next snapshot; returns the snapshot
    /// id, or `None` when nothing changed (or without layered storage).
    pub fn seal(&self, b: &Blocking) -> Result<Option<i64>> {
        let conn = self.connect()?;
        self.sealing(b, || conn.execute_batch("CHECKPOINT").map_err(Into::into)).map(|(_, s)| s)
    }

    /// Runs `f` (a statement that may checkpoint) with shipping paused, then seals the file.
    /// Without layered storage it just runs `f`.
    pub fn sealing<R>(&self, b: &Blocking, f: impl FnOnce() -> Result<R>) -> Result<(R, Option<i64>)> {
        let Some(l) = &self.layered else {
            return Ok((f()?, None));
        };
        let mut head = b.wait(l.head.lock());
        let r = f()?;
        // Whatever wrote the file, something that is not a DuckDB database never becomes a
        // snapshot (and the log stays unshipped until a seal succeeds).
        if let Err(e) = openduck_layers::head::check_duckdb_file(head.path()) {
            head.refuse_shipping(&e.to_string());
            return Err(storage_err(e));
        }
        let snapshot = b.wait(head.seal()).map_err(storage_err)?;
        *l.last_seal.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if let Some(sealed) = &snapshot {
            // Maintenance after a new snapshot; the seal stands whatever happens here. The head
            // stays locked: a compaction moves the log to the compacted snapshot.
            b.wait(async {
                if let Err(e) = head.compact(&l.compaction, sealed).await {
                    tracing::warn!(database = %self.name, error = %e, "compaction failed; retried after the next seal");
                }
                if let Err(e) = l.retention.apply(head.metadata(), &self.name).await {
                    tracing::warn!(database = %self.name, error = %e, "pruning old snapshots failed");
                }
            });
        }
        Ok((r, snapshot.map(|s| s.id)))
    }

    /// Whether a seal is due: the log reached `max_log` bytes, or it is non-empty and the last
    /// seal is older than `interval`, or shipping stopped until the next seal.
    pub fn seal_due(&self, interval: Duration, max_log: u64) -> bool {
        let Some(l) = &self.layered else { return false };
        let Ok(head) = l.head.try_lock() else {
            return false;
        };
        let pending = head.pending();
        let age = l.last_seal.lock().map(|t| t.elapsed()).unwrap_or_default();
        pending.must_seal || pending.log_bytes >= max_log || (pending.log_bytes > 0 && age >= interval)
    }

    /// Renews this server's write lease (a no-op without layered storage).
    pub async fn renew_lease(&self, ttl: Duration) -> Result<()> {
        let Some(l) = &self.layered else {
            return Ok(());
        };
        l.head.lock().await.renew(ttl).await.map_err(storage_err)
    }
}
