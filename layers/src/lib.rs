//! Differential storage for OpenDuck databases.
//!
//! A database file is kept as a stack of immutable **layers**: each layer holds the pages of the
//! file written since the previous seal, with an index, and is stored as one object. A
//! **snapshot** is the ordered list of layers that makes up the file at a commit point; the
//! [`layer_map::LayerMap`] resolves any byte range of a snapshot to the newest layer holding each
//! page.
//!
//! What is here: the layer format ([`delta_layer`]), the
//! layer map ([`layer_map`]), object stores with conditional puts and range reads
//! ([`object_store`]: local directory and S3, with retries), reading and
//! materialising snapshots ([`snapshot`]), how objects are named ([`keys`]), and the metadata store with leases, fencing, clones and
//! GC queries ([`metadata`]: SQLite and PostgreSQL, same behaviour checks), and garbage
//! collection of unreferenced layers and crash orphans ([`gc`]), compaction of deep snapshots
//! ([`compaction`]), snapshot retention ([`retention`]),
//! opening a store and metadata pair from URLs ([`storage`]), and the writable head of a
//! database kept as a local file whose write-ahead log is shipped on every commit and whose
//! checkpoints are sealed as layers ([`head`]), FUSE filesystems serving snapshots read-only
//! ([`fuse`]) and the writable head page by page ([`head_fs`]).

#![warn(missing_docs)]

pub mod compaction;
pub mod delta_layer;
#[cfg(target_os = "linux")]
pub mod fuse;
#[cfg(target_os = "linux")]
pub mod fuse_watchdog;
pub mod gc;
pub mod head;
#[cfg(target_os = "linux")]
pub mod head_fs;
pub mod keys;
pub mod layer_map;
pub mod metadata;
pub mod object_store;
pub mod retention;
pub mod snapshot;
pub mod storage;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A layer's bytes are not a valid layer (bad magic, version, sizes).
    #[error("layer {key}: not a valid layer: {reason}")]
    Malformed {
        /// The layer's object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A checksum did not match: the layer is corrupt and is never served.
    #[error("layer {key}: checksum mismatch in {what}")]
    Corrupt {
        /// The layer's object key.
        key: String,
        /// Which part failed (index, page N).
        what: String,
    },
    /// An object store operation failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::StoreError),
    /// A metadata store operation failed.
    #[error("metadata: {0}")]
    Metadata(#[from] metadata::MetadataError),
    /// A storage URL or setting is not usable.
    #[error("{0}")]
    Config(String),
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Local {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Writes cannot be made durable until the head is sealed again (the reason says why).
    #[error("not durable: {0}")]
    NotDurable(String),
    /// A page longer than its layer's page size was written into a layer.
    #[error("page {page} has {len} bytes, more than the page size {page_size}")]
    PageTooLong {
        /// The page number.
        page: u64,
        /// Its length.
        len: usize,
        /// The layer's page size.
        page_size: u32,
    },
    /// The layers of one snapshot disagree on the page size.
    #[error("layer {key} has page size {page_size}, its snapshot {expected}")]
    PageSizeMismatch {
        /// The layer's object key.
        key: String,
        /// Its page size.
        page_size: u32,
        /// The page size of the snapshot's first layer.
        expected: u32,
    },
    /// A file about to be sealed is not a DuckDB database; nothing of it is stored.
    #[error("{path} is not a DuckDB database ({reason}); it was not sealed")]
    NotADatabase {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}
