//! The writable head of a database, kept as an ordinary local file (the path that needs no FUSE).
//!
//! DuckDB reads and writes `<name>.duckdb` and its write-ahead log `<name>.duckdb.wal` as usual.
//! Around it, the head keeps three promises:
//!
//! - **Durability of acknowledged writes.** After each commit, and before the client hears of it,
//!   [`Head::sync_wal`] ships the log bytes not yet durable as one object and records it in the
//!   metadata ([`Metadata::append_wal`]). Concurrent commits that wait for one shipment are carried
//!   by it (group commit: whoever ships next finds their bytes already durable).
//! - **Snapshots at checkpoints.** The caller runs DuckDB's `CHECKPOINT` (which folds the log into
//!   the file) and then [`Head::seal`]: the pages that differ from the newest snapshot — found by
//!   comparing page hashes, so no second copy of the file is kept — become one layer, committed as
//!   the next snapshot. Bytes uploaded follow the change, not the database.
//! - **Recovery anywhere.** [`Head::open`] trusts the local file only if it descends from the
//!   newest snapshot (its page-hash file names that snapshot); otherwise (disk lost, another host
//!   wrote since) it materialises the newest snapshot and rebuilds the log from its durable
//!   pieces, which DuckDB replays when it opens the file.
//!
//! Invariants: the log pieces recorded for snapshot `S` are exactly the log DuckDB wrote on top of
//! the file of `S`, contiguous from offset 0; the page-hash file always describes the file of the
//! snapshot it names; once the local log and the shipped pieces might disagree (a failed shipment,
//! a checkpoint not made by the sealer) nothing more is shipped until a seal succeeds.

use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::delta_layer::LayerWriter;
use crate::metadata::{Lease, SnapshotInfo};
use crate::snapshot::restore_to;
use crate::storage::Storage;
use crate::LayerError;

/// Page size of new databases' layers.
pub const DEFAULT_PAGE_SIZE: u32 = 4096;

fn local(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LayerError {
    let what = what.into();
    move |source| LayerError::Local { what, source }
}

/// The file's path with `suffix` appended (`a.duckdb` → `a.duckdb.wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A 128-bit hash of one page: two independent SipHash runs.
fn page_hash(data: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x6f70_656e_6475_636bu64.hash(&mut b);
    data.hash(&mut a);
    data.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// The page hashes of the file one snapshot holds.
///
/// File format: `"ODPAGES1"`, snapshot id i64, page size u32, file length u64, page count u64,
/// the hashes (16 bytes each), then the crc32 of everything before it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageHashes {
    snapshot: i64,
    page_size: u32,
    file_len: u64,
    hashes: Vec<u128>,
}

const HASHES_MAGIC: &[u8; 8] = b"ODPAGES1";

impl PageHashes {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + self.hashes.len() * 16);
        out.extend_from_slice(HASHES_MAGIC);
        out.extend_from_slice(&self.snapshot.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.file_len.to_le_bytes());
        out.extend_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        for h in &self.hashes {
            out.extend_from_slice(&h.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the file; `None` when it is missing, torn or from another format.
    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 40 || &bytes[..8] != HASHES_MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let snapshot = i64::from_le_bytes(body[8..16].try_into().ok()?);
        let page_size = u32::from_le_bytes(body[16..20].try_into().ok()?);
        let file_len = u64::from_le_bytes(body[20..28].try_into().ok()?);
        let count = u64::from_le_bytes(body[28..36].try_into().ok()?) as usize;
        let rest = &body[36..];
        if rest.len() != count.checked_mul(16)? {
            return None;
        }
        let hashes = rest.chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16]))).collect();
        Some(PageHashes { snapshot, page_size, file_len, hashes })
    }

    fn load(path: &Path) -> Option<Self> {
        Self::decode(&std::fs::read(path).ok()?)
    }

    /// Writes the file atomically (temp file, fsync, rename).
    fn store(&self, path: &Path) -> Result<(), LayerError> {
        let tmp = with_suffix(path, ".tmp");
        let mut f = std::fs::File::create(&tmp).map_err(local(format!("writing {}", tmp.display())))?;
        f.write_all(&self.encode()).and_then(|_| f.sync_all()).map_err(local(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(local(format!("renaming {}", tmp.display())))?;
        Ok(())
    }
}

/// Reads `file` page by page: its length, its page hashes, and (when `base` is given) a layer of
/// the pages that differ from `base` — `None` when nothing differs.
fn scan(file: &Path, page_size: u32, base: Option<&PageHashes>) -> Result<(u64, Vec<u128>, Option<LayerWriter>), LayerError> {
    let what = || format!("reading {}", file.display());
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file).map_err(local(what()))?);
    let len = f.get_ref().metadata().map_err(local(what()))?.len();
    let mut writer = LayerWriter::new(page_size, len);
    let mut hashes = Vec::with_capacity(len.div_ceil(u64::from(page_size)) as usize);
    let mut page = vec![0u8; page_size as usize];
    for page_no in 0..len.div_ceil(u64::from(page_size)) {
        let n = ((len - page_no * u64::from(page_size)).min(u64::from(page_size))) as usize;
        page[n..].fill(0);
        f.read_exact(&mut page[..n]).map_err(local(what()))?;
        let h = page_hash(&page);
        if base.is_none_or(|b| b.hashes.get(page_no as usize) != Some(&h)) {
            writer.put_page(page_no, &page)?;
        }
        hashes.push(h);
    }
    let changed = base.is_none_or(|b| writer.page_count() > 0 || b.file_len != len);
    Ok((len, hashes, changed.then_some(writer)))
}

/// The writable head of one database: see the module docs.
pub struct Head {
    storage: Storage,
    /// The file DuckDB opens.
    path: PathBuf,
    /// Its write-ahead log (read here directly, also when DuckDB writes it through FUSE).
    wal_path: PathBuf,
    lease: Lease,
    page_size: u32,
    /// The newest snapshot (`None` before the first seal).
    newest: Option<i64>,
    /// The page hashes of the newest snapshot's file (local path only).
    base: Option<PageHashes>,
    /// The head file when DuckDB reaches it through the head filesystem.
    #[cfg(target_os = "linux")]
    fuse: Option<crate::head_fs::Registration>,
    /// The head file must take the newest snapshot as its base: set by a compaction, so that
    /// untouched pages are read from the compacted layer and the old ones can go; kept when that
    /// failed, to be retried.
    #[cfg(target_os = "linux")]
    fuse_rebase: bool,
    /// Log bytes already durable for `base`, and how many pieces hold them.
    shipped: u64,
    pieces: usize,
    /// The log file's inode when bytes were last shipped, to notice a log replaced behind us.
    wal_inode: Option<u64>,
    /// Bytes of the shipped log: its start and the end of what was shipped, checked before each
    /// shipment, so a log replaced in place (same inode, e.g. truncated and rewritten by a
    /// checkpoint) is noticed by its content.
    wal_fingerprint: WalFingerprint,
    /// Why nothing may be shipped until the next seal.
    needs_seal: Option<String>,
}

/// The state of a head's log, for deciding when to seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Length of the local write-ahead log.
    pub log_bytes: u64,
    /// Bytes of it not yet durable.
    pub unshipped: u64,
    /// Shipping stopped until the next seal.
    pub must_seal: bool,
}

/// What [`Head::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The database has no snapshot yet: the local file (if any) is taken as it is.
    New,
    /// The local file descends from the newest snapshot and is used as it is.
    Local,
    /// The newest snapshot was materialised and `wal_bytes` of durable log written beside it.
    Restored {
        /// The snapshot.
        snapshot: i64,
        /// Log bytes rebuilt from durable pieces.
        wal_bytes: u64,
    },
}

/// Bytes of a shipped log that must still be there, unchanged, when more of it is shipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct WalFingerprint {
    /// The first bytes of the log (up to [`FINGERPRINT_BYTES`]).
    head: Vec<u8>,
    /// The bytes just before the shipped length (up to [`FINGERPRINT_BYTES`]).
    tail: Vec<u8>,
}

/// How many bytes of each end of the shipped log [`WalFingerprint`] keeps.
const FINGERPRINT_BYTES: u64 = 4096;

impl WalFingerprint {
    /// Reads the fingerprint of the first `shipped` bytes of `file`.
    fn read(file: &mut std::fs::File, shipped: u64) -> std::io::Result<Self> {
        let mut head = vec![0u8; shipped.min(FINGERPRINT_BYTES) as usize];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut head)?;
        let tail_len = shipped.min(FINGERPRINT_BYTES);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(shipped - tail_len))?;
        file.read_exact(&mut tail)?;
        Ok(WalFingerprint { head, tail })
    }
}

/// Checks that `path` starts like a DuckDB database file: the main header's magic bytes
/// `DUCK` at offset 8, and room for the main header and both database headers (4 KiB each).
pub fn check_duckdb_file(path: &Path) -> Result<(), LayerError> {
    let not_db = |reason: String| LayerError::NotADatabase { path: path.display().to_string(), reason };
    let mut f = std::fs::File::open(path).map_err(local(format!("opening {}", path.display())))?;
    let len = f.metadata().map_err(local(format!("reading {}", path.display())))?.len();
    if len < 3 * 4096 {
        return Err(not_db(format!("{len} bytes, shorter than DuckDB's headers")));
    }
    let mut magic = [0u8; 12];
    f.read_exact(&mut magic).map_err(local(format!("reading {}", path.display())))?;
    if &magic[8..12] != b"DUCK" {
        return Err(not_db("no DUCK magic bytes in its header".into()));
    }
    Ok(())
}

fn inode(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| m.ino())
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| 0)
    }
}

impl Head {
    /// Takes the write lease of `database` as `holder` and makes `path` hold its newest state
    /// (see [`Recovery`]). DuckDB may then open the file; the caller must run `CHECKPOINT` and
    /// [`Head::seal`] before the first [`Head::sync_wal`].
    pub async fn open(
        storage: Storage,
        database: &str,
        path: &Path,
        holder: &str,
        lease_ttl: Duration,
    ) -> Result<(Head, Recovery), LayerError> {
        let lease = storage.meta.acquire_lease(database, holder, lease_ttl).await?;
        let newest = storage.meta.snapshots(database).await?.pop();
        let hashes_path = with_suffix(path, ".pages");
        let local = PageHashes::load(&hashes_path).filter(|_| path.exists());
        let page_size = local.as_ref().map_or(DEFAULT_PAGE_SIZE, |h| h.page_size);
        let mut head = Head::new(storage, path.to_path_buf(), with_suffix(path, ".wal"), lease, page_size);
        let recovery = match newest {
            None => Recovery::New,
            Some(s) if local.as_ref().is_some_and(|h| h.snapshot == s.id) => {
                head.newest = Some(s.id);
                head.base = local;
                head.pieces = head.storage.meta.wal_segments(database, s.id).await?.len();
                Recovery::Local
            }
            Some(s) => {
                let wal_bytes = head.restore(&s).await?;
                Recovery::Restored { snapshot: s.id, wal_bytes }
            }
        };
        tracing::info!(database, lease_epoch = head.lease.epoch, ?recovery, "opened head");
        Ok((head, recovery))
    }

    fn new(storage: Storage, path: PathBuf, wal_path: PathBuf, lease: Lease, page_size: u32) -> Self {
        Head {
            storage,
            path,
            wal_path,
            lease,
            page_size,
            newest: None,
            base: None,
            #[cfg(target_os = "linux")]
            fuse: None,
            #[cfg(target_os = "linux")]
            fuse_rebase: false,
            shipped: 0,
            pieces: 0,
            wal_inode: None,
            wal_fingerprint: WalFingerprint::default(),
            needs_seal: Some("the database was just opened".into()),
        }
    }

    /// Like [`Head::open`], but DuckDB reaches the file through the head filesystem `heads`
    /// ([`crate::head_fs`]): nothing is materialised, pages are fetched when DuckDB first touches
    /// them, and a seal uploads exactly the pages written since the last one. Local state is
    /// never trusted: the head always starts from the newest snapshot and its durable log (a
    /// cheap step here). A database without snapshots starts empty, or from the ordinary
    /// DuckDB file `import` (and its log) when given and present.
    #[cfg(target_os = "linux")]
    pub async fn open_fuse(
        storage: Storage,
        database: &str,
        heads: &crate::head_fs::HeadMount,
        holder: &str,
        lease_ttl: Duration,
        import: Option<&Path>,
    ) -> Result<(Head, Recovery), LayerError> {
        let lease = storage.meta.acquire_lease(database, holder, lease_ttl).await?;
        let newest = storage.meta.snapshots(database).await?.pop();
        let (map, page_size) = match &newest {
            Some(s) => {
                let map = crate::snapshot::open_map(storage.store.as_ref(), s).await?;
                let page_size = map.layers().first().map_or(DEFAULT_PAGE_SIZE, |l| l.page_size);
                (Some(std::sync::Arc::new(map)), page_size)
            }
            None => (None, DEFAULT_PAGE_SIZE),
        };
        let dir = heads.local_dir(database);
        let registration = heads
            .register(database, storage.store.clone(), tokio::runtime::Handle::current(), page_size, map)
            .map_err(local(format!("starting the head of {database} in {}", dir.display())))?;
        let wal_path = dir.join(format!("{database}.duckdb.wal"));
        let mut head = Head::new(storage, heads.file_path(database), wal_path, lease, page_size);
        let recovery = match newest {
            None => {
                if let Some(file) = import.filter(|p| p.exists()) {
                    registration.file.import(file).map_err(local(format!("importing {}", file.display())))?;
                    let wal = with_suffix(file, ".wal");
                    if wal.exists() {
                        std::fs::copy(&wal, &head.wal_path).map_err(local(format!("importing {}", wal.display())))?;
                    }
                    tracing::info!(database, file = %file.display(), "importing a DuckDB file");
                }
                Recovery::New
            }
            Some(s) => {
                let wal_bytes = head.rebuild_wal(&s).await?;
                head.newest = Some(s.id);
                Recovery::Restored { snapshot: s.id, wal_bytes }
            }
        };
        head.fuse = Some(registration);
        tracing::info!(database, lease_epoch = head.lease.epoch, ?recovery, "opened head through FUSE");
        Ok((head, recovery))
    }

    /// Replaces the local file and log with snapshot `s` and its durable log.
    async fn restore(&mut self, s: &SnapshotInfo) -> Result<u64, LayerError> {
        let store = self.storage.store.clone();
        // The old log belongs to another file: gone before the restored file appears.
        for suffix in [".wal", ".wal.checkpoint", ".wal.recovery"] {
            let p = with_suffix(&self.path, suffix);
            if p.exists() {
                std::fs::remove_file(&p).map_err(local(format!("removing {}", p.display())))?;
            }
        }
        let map = restore_to(store.as_ref(), s, &self.path).await?;
        let wal_bytes = self.rebuild_wal(s).await?;
        let page_size = map.layers().first().map_or(DEFAULT_PAGE_SIZE, |l| l.page_size);
        let (file_len, hashes, _) = scan(&self.path, page_size, None)?;
        let base = PageHashes { snapshot: s.id, page_size, file_len, hashes };
        base.store(&with_suffix(&self.path, ".pages"))?;
        self.page_size = page_size;
        self.base = Some(base);
        self.newest = Some(s.id);
        Ok(wal_bytes)
    }

    /// Writes the durable log of snapshot `s` as the local log; returns its length.
    async fn rebuild_wal(&mut self, s: &SnapshotInfo) -> Result<u64, LayerError> {
        let store = self.storage.store.clone();
        let pieces = self.storage.meta.wal_segments(&s.database, s.id).await?;
        let mut wal_bytes = 0u64;
        if !pieces.is_empty() {
            let wal_path = self.wal_path.clone();
            let mut wal = std::fs::File::create(&wal_path).map_err(local(format!("writing {}", wal_path.display())))?;
            for piece in &pieces {
                if piece.offset as u64 != wal_bytes {
                    return Err(LayerError::Malformed {
                        key: piece.key.clone(),
                        reason: format!("log piece starts at {} but the log so far ends at {wal_bytes}", piece.offset),
                    });
                }
                let bytes = store.get_range(&piece.key, 0..piece.size as u64).await?;
                if bytes.len() as i64 != piece.size {
                    return Err(LayerError::Malformed {
                        key: piece.key.clone(),
                        reason: format!("{} bytes, expected {}", bytes.len(), piece.size),
                    });
                }
                wal.write_all(&bytes).map_err(local(format!("writing {}", wal_path.display())))?;
                wal_bytes += bytes.len() as u64;
            }
            wal.sync_all().map_err(local(format!("writing {}", wal_path.display())))?;
        }
        self.pieces = pieces.len();
        Ok(wal_bytes)
    }

    /// The file DuckDB must open (the head filesystem's file when the head was opened through
    /// FUSE).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.lease.database
    }

    /// The lease this head writes under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The newest snapshot (the one the log extends).
    pub fn snapshot(&self) -> Option<i64> {
        self.newest
    }

    /// The local log's length, how much of it is not yet durable, and whether a seal is required
    /// before anything more can be shipped.
    pub fn pending(&self) -> Pending {
        let log_bytes = std::fs::metadata(&self.wal_path).map_or(0, |m| m.len());
        Pending { log_bytes, unshipped: log_bytes.saturating_sub(self.shipped), must_seal: self.needs_seal.is_some() }
    }

    /// Renews the lease; fails if this head was fenced (another writer took the database).
    pub async fn renew(&mut self, ttl: Duration) -> Result<(), LayerError> {
        let lease = self.storage.meta.acquire_lease(&self.lease.database, &self.lease.holder, ttl).await?;
        if lease.epoch != self.lease.epoch {
            let msg =
                format!("lease epoch changed from {} to {}: another writer held the database meanwhile", self.lease.epoch, lease.epoch);
            self.needs_seal = Some(msg.clone());
            return Err(LayerError::NotDurable(msg));
        }
        Ok(())
    }

    /// Stops shipping the log until the next successful seal, for `reason` (e.g. the file
    /// failed a check before sealing): commits then fail as not durable instead of extending a
    /// state that will not be sealed.
    pub fn refuse_shipping(&mut self, reason: &str) {
        self.needs_seal = Some(reason.to_string());
    }

    /// Makes every log byte DuckDB has written durable (one object and one metadata row), and
    /// returns how many bytes were shipped (0 when an earlier call already carried them).
    pub async fn sync_wal(&mut self) -> Result<u64, LayerError> {
        if let Some(reason) = &self.needs_seal {
            return Err(LayerError::NotDurable(reason.clone()));
        }
        let Some(base) = self.newest else {
            return Err(LayerError::NotDurable("the database has no snapshot yet".into()));
        };
        let wal_path = self.wal_path.clone();
        let (len, ino) = match std::fs::metadata(&wal_path) {
            Ok(m) => (m.len(), inode(&wal_path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
            Err(e) => return Err(LayerError::Local { what: format!("reading {}", wal_path.display()), source: e }),
        };
        let replaced = len < self.shipped || (self.shipped > 0 && (ino != self.wal_inode || !self.wal_unchanged(&wal_path)?));
        if replaced {
            let msg = format!("{} was replaced outside the sealer (a checkpoint not made by the server)", wal_path.display());
            self.needs_seal = Some(msg.clone());
            return Err(LayerError::NotDurable(msg));
        }
        if len == self.shipped {
            return Ok(0);
        }
        let result = self.ship(&wal_path, base, len).await;
        match result {
            Ok((n, fingerprint)) => {
                self.shipped = len;
                self.pieces += 1;
                self.wal_inode = ino;
                self.wal_fingerprint = fingerprint;
                Ok(n)
            }
            Err(e) => {
                // Whether the metadata row landed is unknown: only a seal makes the state certain.
                self.needs_seal = Some(format!("shipping the log failed: {e}"));
                Err(e)
            }
        }
    }

    /// Whether the log still holds the bytes shipped so far (checked by [`WalFingerprint`]).
    fn wal_unchanged(&self, wal_path: &Path) -> Result<bool, LayerError> {
        let what = || format!("reading {}", wal_path.display());
        let mut f = std::fs::File::open(wal_path).map_err(local(what()))?;
        Ok(WalFingerprint::read(&mut f, self.shipped).map_err(local(what()))? == self.wal_fingerprint)
    }

    /// Ships the log's bytes from `self.shipped` to `len`; returns how many, and the
    /// fingerprint of the log up to `len`.
    async fn ship(&self, wal_path: &Path, base: i64, len: u64) -> Result<(u64, WalFingerprint), LayerError> {
        let what = || format!("reading {}", wal_path.display());
        let mut f = std::fs::File::open(wal_path).map_err(local(what()))?;
        f.seek(SeekFrom::Start(self.shipped)).map_err(local(what()))?;
        let mut bytes = vec![0u8; (len - self.shipped) as usize];
        f.read_exact(&mut bytes).map_err(local(what()))?;
        let fingerprint = WalFingerprint::read(&mut f, len).map_err(local(what()))?;
        let key = crate::keys::wal_piece(&self.lease.database, base, self.shipped);
        let n = bytes.len() as u64;
        self.storage.store.put_if_absent(&key, bytes.into()).await?;
        self.storage.meta.append_wal(&self.lease, base, self.shipped as i64, &key, n as i64).await?;
        Ok((n, fingerprint))
    }

    /// Seals the file as the next snapshot. Call right after DuckDB's `CHECKPOINT`, with no
    /// [`Head::sync_wal`] in between. Returns the new snapshot, or `None` when the file equals the
    /// newest snapshot and no log extends it.
    pub async fn seal(&mut self) -> Result<Option<SnapshotInfo>, LayerError> {
        let result = self.seal_inner().await;
        if let Err(e) = &result {
            self.needs_seal = Some(format!("sealing failed: {e}"));
        }
        result
    }

    async fn seal_inner(&mut self) -> Result<Option<SnapshotInfo>, LayerError> {
        let started = std::time::Instant::now();
        #[cfg(target_os = "linux")]
        if let Some(file) = self.fuse.as_ref().map(|r| r.file.clone()) {
            let batch = file.take_dirty().map_err(local("reading the head's changed pages"))?;
            if !batch.changed && self.newest.is_some() && self.pieces == 0 && self.shipped == 0 {
                self.after_seal(None);
                return Ok(None);
            }
            return match self.commit_layer(batch.layer, batch.len, started).await {
                Ok(snapshot) => {
                    file.sealed(batch.len);
                    self.newest = Some(snapshot.id);
                    self.after_seal(None);
                    Ok(Some(snapshot))
                }
                Err(e) => {
                    file.seal_failed(&batch.pages);
                    Err(e)
                }
            };
        }
        let (file_len, hashes, layer) = scan(&self.path, self.page_size, self.base.as_ref())?;
        // A log was shipped for the base: its pieces must be folded into a new snapshot even if
        // the checkpoint changed nothing, so the next log starts clean.
        let layer = match layer {
            Some(l) => l,
            None if self.pieces > 0 || self.shipped > 0 => LayerWriter::new(self.page_size, file_len),
            None => {
                self.after_seal(None);
                return Ok(None);
            }
        };
        let snapshot = self.commit_layer(layer, file_len, started).await?;
        let base = PageHashes { snapshot: snapshot.id, page_size: self.page_size, file_len, hashes };
        base.store(&with_suffix(&self.path, ".pages"))?;
        self.newest = Some(snapshot.id);
        self.after_seal(Some(base));
        Ok(Some(snapshot))
    }

    /// Compacts `newest` (the snapshot [`Head::seal`] just returned) when `policy` finds it too
    /// deep ([`crate::compaction`]); the head then extends the compacted snapshot, which has the
    /// same content (and the same log). Returns the new snapshot, or `None` when there was nothing
    /// to merge.
    pub async fn compact(
        &mut self,
        policy: &crate::compaction::CompactionPolicy,
        newest: &SnapshotInfo,
    ) -> Result<Option<SnapshotInfo>, LayerError> {
        if self.newest != Some(newest.id) {
            return Ok(None);
        }
        #[cfg(target_os = "linux")]
        self.move_fuse_base(newest).await?;
        if policy.max_layers == 0 || newest.layers.len() <= policy.max_layers {
            return Ok(None);
        }
        let key = self.layer_key();
        let store = self.storage.store.as_ref();
        let Some(compacted) = crate::compaction::compact(self.storage.meta.as_ref(), store, &self.lease, newest, &key, policy).await?
        else {
            return Ok(None);
        };
        self.newest = Some(compacted.id);
        if let Some(base) = &mut self.base {
            base.snapshot = compacted.id;
            base.store(&with_suffix(&self.path, ".pages"))?;
        }
        #[cfg(target_os = "linux")]
        {
            self.fuse_rebase = self.fuse.is_some();
            self.move_fuse_base(&compacted).await?;
        }
        Ok(Some(compacted))
    }

    /// Points the head file's untouched pages at `newest`'s layers, when a compaction asked for
    /// it. Any snapshot since the compaction will do: each has the content of the head's sealed
    /// state.
    #[cfg(target_os = "linux")]
    async fn move_fuse_base(&mut self, newest: &SnapshotInfo) -> Result<(), LayerError> {
        let (Some(registration), true) = (&self.fuse, self.fuse_rebase) else {
            return Ok(());
        };
        let map = crate::snapshot::open_map(self.storage.store.as_ref(), newest).await?;
        registration.file.rebase(std::sync::Arc::new(map));
        self.fuse_rebase = false;
        Ok(())
    }

    /// The metadata store this head commits to.
    pub fn metadata(&self) -> &dyn crate::metadata::Metadata {
        self.storage.meta.as_ref()
    }

    fn layer_key(&self) -> String {
        crate::keys::layer(&self.lease.database, self.lease.epoch)
    }

    /// Uploads `layer` and commits it as the next snapshot of a `file_len`-byte file (logging
    /// the time since the seal `started`, finding the pages included).
    async fn commit_layer(&self, layer: LayerWriter, file_len: u64, started: std::time::Instant) -> Result<SnapshotInfo, LayerError> {
        let pages = layer.page_count();
        let bytes = layer.finish();
        let size = bytes.len() as i64;
        let key = self.layer_key();
        self.storage.store.put_if_absent(&key, bytes.into()).await?;
        let snapshot = self.storage.meta.commit(&self.lease, &key, size, file_len as i64).await?;
        tracing::info!(
            database = %self.lease.database, snapshot = snapshot.id, pages, bytes = size, file_len,
            elapsed_ms = started.elapsed().as_millis() as u64, "sealed snapshot"
        );
        Ok(snapshot)
    }

    fn after_seal(&mut self, base: Option<PageHashes>) {
        if base.is_some() {
            self.base = base;
        }
        // Whatever log exists now was written after the checkpoint: it extends the new base.
        self.shipped = 0;
        self.pieces = 0;
        self.wal_inode = inode(&self.wal_path);
        self.wal_fingerprint = WalFingerprint::default();
        self.needs_seal = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::LocalDirStore;
    use std::sync::Arc;

    async fn storage(dir: &Path) -> Storage {
        let meta = crate::storage::open_metadata(&format!("sqlite://{}", dir.join("meta.sqlite").display())).await.unwrap();
        Storage { store: Arc::new(LocalDirStore::new(dir.join("objects")).unwrap()), meta, describe: "test".into() }
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn page_hash_file_round_trips_and_rejects_torn_files() {
        let h = PageHashes { snapshot: 7, page_size: 4096, file_len: 10_000, hashes: vec![1, 2, 3] };
        let bytes = h.encode();
        assert_eq!(PageHashes::decode(&bytes), Some(h));
        assert_eq!(PageHashes::decode(&bytes[..bytes.len() - 1]), None);
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(PageHashes::decode(&flipped), None);
    }

    /// The file stands in for DuckDB's: the head works on bytes, whatever writes them.
    #[tokio::test]
    async fn seal_ship_and_restore_after_losing_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path()).await;
        s.meta.create_database("db", DEFAULT_PAGE_SIZE).await.unwrap();
        let disk = dir.path().join("disk");
        std::fs::create_dir(&disk).unwrap();
        let path = disk.join("db.duckdb");
        let mut content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();

        let (mut head, recovery) = Head::open(s.clone(), "db", &path, "host-a", Duration::from_secs(60)).await.unwrap();
        assert_eq!(recovery, Recovery::New);
        assert!(matches!(head.sync_wal().await, Err(LayerError::NotDurable(_))), "no shipping before the first seal");
        let first = head.seal().await.unwrap().unwrap();
        assert_eq!(first.file_len, 300_000);
        assert!(head.seal().await.unwrap().is_none(), "nothing changed");

        // A small change: only its pages are uploaded.
        content[100_000..101_000].fill(1);
        std::fs::write(&path, &content).unwrap();
        let second = head.seal().await.unwrap().unwrap();
        assert!(second.size - first.size < 3 * 4096 + 200, "uploaded {} bytes for a 1000-byte change", second.size - first.size);

        // Commits after the checkpoint: the log is shipped piece by piece.
        let wal = with_suffix(&path, ".wal");
        append(&wal, b"commit-1;");
        assert_eq!(head.sync_wal().await.unwrap(), 9);
        assert_eq!(head.sync_wal().await.unwrap(), 0, "already durable");
        append(&wal, b"commit-2;commit-3;");
        assert_eq!(head.sync_wal().await.unwrap(), 18);
        assert_eq!(s.meta.wal_segments("db", second.id).await.unwrap().len(), 2);
        drop(head);

        // The disk is lost; a new host restores the snapshot and the durable log.
        std::fs::remove_dir_all(&disk).unwrap();
        std::fs::create_dir(&disk).unwrap();
        // (the old host's lease is still valid: a second writer is refused, naming it)
        let err = Head::open(s.clone(), "db", &path, "host-b", Duration::from_secs(60)).await.err().unwrap();
        assert!(err.to_string().contains("host-a"), "{err}");
        let (mut head, recovery) = Head::open(s.clone(), "db", &path, "host-a", Duration::from_secs(60)).await.unwrap();
        assert_eq!(recovery, Recovery::Restored { snapshot: second.id, wal_bytes: 27 });
        assert_eq!(std::fs::read(&path).unwrap(), content);
        assert_eq!(std::fs::read(&wal).unwrap(), b"commit-1;commit-2;commit-3;");

        // "Checkpoint": the log is folded into the file; the seal makes a new snapshot and drops
        // the log pieces, and the next log starts at offset 0.
        content.extend_from_slice(b"commit-1;commit-2;commit-3;");
        std::fs::write(&path, &content).unwrap();
        std::fs::remove_file(&wal).unwrap();
        let third = head.seal().await.unwrap().unwrap();
        assert!(s.meta.wal_segments("db", third.id).await.unwrap().is_empty());
        append(&wal, b"commit-4;");
        assert_eq!(head.sync_wal().await.unwrap(), 9);
        drop(head);

        // Restarting on the same disk keeps the local file.
        let (head, recovery) = Head::open(s.clone(), "db", &path, "host-a", Duration::from_secs(60)).await.unwrap();
        assert_eq!(recovery, Recovery::Local);
        assert_eq!(head.snapshot(), Some(third.id));
    }

    /// A head over a 10,000-byte stand-in file, sealed once; returns it with the file's and the
    /// log's paths.
    async fn sealed_head(dir: &Path) -> (Head, PathBuf, PathBuf) {
        let s = storage(dir).await;
        s.meta.create_database("db", DEFAULT_PAGE_SIZE).await.unwrap();
        let path = dir.join("db.duckdb");
        std::fs::write(&path, vec![5u8; 10_000]).unwrap();
        let (mut head, _) = Head::open(s, "db", &path, "h", Duration::from_secs(60)).await.unwrap();
        head.seal().await.unwrap();
        let wal = with_suffix(&path, ".wal");
        (head, path, wal)
    }

    #[tokio::test]
    async fn a_log_replaced_behind_the_sealer_stops_shipping_until_the_next_seal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut head, path, wal) = sealed_head(dir.path()).await;
        append(&wal, b"0123456789");
        head.sync_wal().await.unwrap();
        // Someone checkpointed: the log is gone and a shorter one started.
        std::fs::remove_file(&wal).unwrap();
        append(&wal, b"ab");
        let err = head.sync_wal().await.unwrap_err();
        assert!(err.to_string().contains("outside the sealer"), "{err}");
        assert!(head.pending().must_seal);
        std::fs::write(&path, vec![6u8; 10_000]).unwrap();
        std::fs::remove_file(&wal).unwrap();
        head.seal().await.unwrap().unwrap();
        append(&wal, b"x");
        assert_eq!(head.sync_wal().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_log_rewritten_in_place_is_noticed_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (mut head, _, wal) = sealed_head(dir.path()).await;
        let first: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        append(&wal, &first);
        assert_eq!(head.sync_wal().await.unwrap(), 10_000);
        // Same file (same inode), truncated and rewritten longer: the first bytes differ.
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&wal).unwrap();
        f.write_all(&vec![9u8; 12_000]).unwrap();
        drop(f);
        let err = head.sync_wal().await.unwrap_err();
        assert!(err.to_string().contains("outside the sealer"), "{err}");
        assert!(head.pending().must_seal);
        head.seal().await.unwrap();
        // Only the middle rewritten, same length plus more: the end of what was shipped differs.
        std::fs::remove_file(&wal).unwrap();
        append(&wal, &first);
        assert_eq!(head.sync_wal().await.unwrap(), 10_000);
        let mut changed = first.clone();
        changed[9_999] ^= 0xff;
        changed.extend_from_slice(b"more");
        let mut f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        f.write_all(&changed).unwrap();
        drop(f);
        assert!(head.sync_wal().await.unwrap_err().to_string().contains("outside the sealer"));
        // An honest append is shipped.
        head.seal().await.unwrap();
        std::fs::remove_file(&wal).unwrap();
        append(&wal, &first);
        head.sync_wal().await.unwrap();
        append(&wal, b"next");
        assert_eq!(head.sync_wal().await.unwrap(), 4);
    }

    #[test]
    fn only_duckdb_files_pass_the_seal_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.duckdb");
        std::fs::write(&path, b"x\n").unwrap();
        assert!(matches!(check_duckdb_file(&path), Err(LayerError::NotADatabase { .. })));
        let mut bytes = vec![0u8; 3 * 4096];
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(check_duckdb_file(&path), Err(LayerError::NotADatabase { .. })));
        bytes[8..12].copy_from_slice(b"DUCK");
        std::fs::write(&path, &bytes).unwrap();
        check_duckdb_file(&path).unwrap();
    }

    #[tokio::test]
    async fn a_fenced_head_cannot_seal_or_ship() {
        let dir = tempfile::tempdir().unwrap();
        let s = storage(dir.path()).await;
        s.meta.create_database("db", DEFAULT_PAGE_SIZE).await.unwrap();
        let path = dir.path().join("db.duckdb");
        std::fs::write(&path, vec![5u8; 10_000]).unwrap();
        let (mut head, _) = Head::open(s.clone(), "db", &path, "old", Duration::from_millis(200)).await.unwrap();
        head.seal().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let other = dir.path().join("other.duckdb");
        let (_new, recovery) = Head::open(s.clone(), "db", &other, "new", Duration::from_secs(60)).await.unwrap();
        assert!(matches!(recovery, Recovery::Restored { .. }));
        append(&with_suffix(&path, ".wal"), b"late");
        assert!(head.sync_wal().await.is_err(), "the old writer was fenced");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let err = head.seal().await.unwrap_err();
        assert!(err.to_string().contains("fenced"), "{err}");
        assert!(head.renew(Duration::from_secs(1)).await.is_err());
    }
}
