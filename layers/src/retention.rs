//! Retention: how long old snapshots stay readable.
//!
//! Every seal and compaction adds a snapshot, and each keeps its layers alive. A [`Retention`]
//! says which old snapshots may go: those that are neither among the newest
//! [`Retention::keep_last`] nor younger than [`Retention::keep_for`]. The newest snapshot is never
//! pruned, and neither is a layer another snapshot or a clone still uses: pruning removes
//! metadata rows only. Garbage collection ([`crate::gc`]) then deletes the layers nothing refers
//! to any more, after its grace period, so a reader that opened a snapshot just before it was
//! pruned can finish.

use std::time::Duration;

use crate::metadata::Metadata;
use crate::LayerError;

/// Which old snapshots to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at least this many of the newest snapshots (the newest is always kept).
    pub keep_last: usize,
    /// Keep every snapshot younger than this.
    pub keep_for: Duration,
}

impl Retention {
    /// Prunes the snapshots of `database` this retention does not keep; returns their ids.
    pub async fn apply(&self, meta: &dyn Metadata, database: &str) -> Result<Vec<i64>, LayerError> {
        let pruned = meta.prune_snapshots(database, self.keep_last, self.keep_for).await?;
        if !pruned.is_empty() {
            tracing::info!(database, snapshots = ?pruned, "pruned old snapshots");
        }
        Ok(pruned)
    }
}
