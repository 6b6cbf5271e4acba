//! Snapshots as files through FUSE, without materialising them.
//!
//! The filesystem is read-only and has three levels:
//!
//! ```text
//! <mount>/<database>/<snapshot id>/<database>.duckdb
//! ```
//!
//! (the file keeps the database's name, so DuckDB names its catalog after the database). A read
//! fetches only the pages it touches from the object store, each verified against its checksum
//! (a corrupt page is an I/O error, never data); fetched 256 KiB chunks are kept in a bounded
//! in-memory cache shared by all snapshots. Snapshots are immutable, so the kernel may cache
//! attributes and data freely.
//!
//! Inodes: 1 is the root; a database directory is `2 + its position` in the first listing that
//! saw it; a snapshot directory is `SNAPSHOT_DIR | id` and its file `SNAPSHOT_FILE | id`.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, MountOption, OpenAccMode, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

use crate::layer_map::LayerMap;
use crate::metadata::SnapshotInfo;
use crate::snapshot::{open_map, read};
use crate::storage::Storage;

const SNAPSHOT_DIR: u64 = 1 << 48;
const SNAPSHOT_FILE: u64 = 2 << 48;
const ID_MASK: u64 = (1 << 48) - 1;
const CHUNK: u64 = 256 * 1024;
/// Immutable content: the kernel may keep what it learned for long.
const TTL: Duration = Duration::from_secs(3600);

/// A bounded cache of snapshot chunks (snapshot id, chunk number) → bytes, oldest out first.
struct ChunkCache {
    limit: usize,
    used: usize,
    chunks: HashMap<(i64, u64), Arc<Vec<u8>>>,
    order: VecDeque<(i64, u64)>,
}

impl ChunkCache {
    fn get(&self, key: &(i64, u64)) -> Option<Arc<Vec<u8>>> {
        self.chunks.get(key).cloned()
    }

    fn put(&mut self, key: (i64, u64), data: Arc<Vec<u8>>) {
        if data.len() > self.limit || self.chunks.contains_key(&key) {
            return;
        }
        self.used += data.len();
        self.chunks.insert(key, data);
        self.order.push_back(key);
        while self.used > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(d) = self.chunks.remove(&old) {
                self.used -= d.len();
            }
        }
    }
}

/// A snapshot the filesystem knows, with its layer map once loaded.
type KnownSnapshot = (SnapshotInfo, Option<Arc<LayerMap>>);

/// The read-only snapshot filesystem; see the module docs.
pub struct SnapshotFs {
    storage: Storage,
    rt: tokio::runtime::Handle,
    databases: Mutex<Vec<String>>,
    snapshots: Mutex<HashMap<i64, KnownSnapshot>>,
    cache: Mutex<ChunkCache>,
    fetched: Arc<AtomicU64>,
}

impl SnapshotFs {
    /// A filesystem over `storage`, caching up to `cache_bytes` of chunks; calls to the stores
    /// run on `rt` (FUSE calls arrive on the mount's own threads).
    pub fn new(storage: Storage, rt: tokio::runtime::Handle, cache_bytes: usize) -> Self {
        SnapshotFs {
            storage,
            rt,
            databases: Mutex::new(Vec::new()),
            snapshots: Mutex::new(HashMap::new()),
            cache: Mutex::new(ChunkCache { limit: cache_bytes, used: 0, chunks: HashMap::new(), order: VecDeque::new() }),
            fetched: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A counter of bytes read from the object store so far (it stays valid after mounting).
    pub fn fetched_bytes(&self) -> Arc<AtomicU64> {
        self.fetched.clone()
    }

    fn database_ino(&self, name: &str) -> u64 {
        let mut dbs = self.databases.lock().unwrap_or_else(|p| p.into_inner());
        match dbs.iter().position(|d| d == name) {
            Some(i) => 2 + i as u64,
            None => {
                dbs.push(name.to_string());
                1 + dbs.len() as u64
            }
        }
    }

    fn database_of(&self, ino: u64) -> Option<String> {
        let dbs = self.databases.lock().unwrap_or_else(|p| p.into_inner());
        ino.checked_sub(2).and_then(|i| dbs.get(i as usize).cloned())
    }

    fn snapshot(&self, id: i64) -> Result<SnapshotInfo, Errno> {
        if let Some((info, _)) = self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(info.clone());
        }
        let info = self.rt.block_on(self.storage.meta.snapshot(id)).map_err(|_| Errno::ENOENT)?;
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (info.clone(), None));
        Ok(info)
    }

    fn map(&self, id: i64) -> Result<Arc<LayerMap>, Errno> {
        let info = self.snapshot(id)?;
        if let Some((_, Some(map))) = self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(map.clone());
        }
        let map = self.rt.block_on(open_map(self.storage.store.as_ref(), &info)).map_err(|e| {
            tracing::error!(snapshot = id, error = %e, "cannot open snapshot");
            Errno::EIO
        })?;
        let map = Arc::new(map);
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (info, Some(map.clone())));
        Ok(map)
    }

    fn chunk(&self, id: i64, map: &LayerMap, chunk: u64) -> Result<Arc<Vec<u8>>, Errno> {
        if let Some(c) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&(id, chunk)) {
            return Ok(c);
        }
        let bytes = self.rt.block_on(read(self.storage.store.as_ref(), map, chunk * CHUNK, CHUNK)).map_err(|e| {
            tracing::error!(snapshot = id, chunk, error = %e, "read failed");
            Errno::EIO
        })?;
        self.fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let bytes = Arc::new(bytes);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).put((id, chunk), bytes.clone());
        Ok(bytes)
    }

    fn dir_attr(ino: u64) -> FileAttr {
        attr(ino, 0, FileType::Directory, 0o555)
    }

    fn file_attr(info: &SnapshotInfo) -> FileAttr {
        attr(SNAPSHOT_FILE | info.id as u64, info.file_len as u64, FileType::RegularFile, 0o444)
    }
}

/// Attributes of a file or directory owned by root, with fixed times.
pub(crate) fn attr(ino: u64, size: u64, kind: FileType, perm: u16) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for SnapshotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        let parent = parent.0;
        if parent == INodeNo::ROOT.0 {
            match self.rt.block_on(self.storage.meta.databases()) {
                Ok(dbs) if dbs.iter().any(|d| d == name) => {
                    reply.entry(&Duration::from_secs(1), &Self::dir_attr(self.database_ino(name)), fuser::Generation(0))
                }
                Ok(_) => reply.error(Errno::ENOENT),
                Err(_) => reply.error(Errno::EIO),
            }
        } else if parent & (SNAPSHOT_DIR | SNAPSHOT_FILE) == 0 {
            let (Some(db), Ok(id)) = (self.database_of(parent), name.parse::<i64>()) else {
                return reply.error(Errno::ENOENT);
            };
            match self.snapshot(id) {
                Ok(info) if info.database == db => reply.entry(&TTL, &Self::dir_attr(SNAPSHOT_DIR | id as u64), fuser::Generation(0)),
                _ => reply.error(Errno::ENOENT),
            }
        } else if parent & SNAPSHOT_DIR != 0 {
            let id = (parent & ID_MASK) as i64;
            match self.snapshot(id) {
                Ok(info) if name == format!("{}.duckdb", info.database) => reply.entry(&TTL, &Self::file_attr(&info), fuser::Generation(0)),
                _ => reply.error(Errno::ENOENT),
            }
        } else {
            reply.error(Errno::ENOTDIR)
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ino = ino.0;
        if ino & SNAPSHOT_FILE != 0 {
            match self.snapshot((ino & ID_MASK) as i64) {
                Ok(info) => reply.attr(&TTL, &Self::file_attr(&info)),
                Err(e) => reply.error(e),
            }
        } else if ino == INodeNo::ROOT.0 || ino & SNAPSHOT_DIR != 0 || self.database_of(ino).is_some() {
            reply.attr(&Duration::from_secs(1), &Self::dir_attr(ino))
        } else {
            reply.error(Errno::ENOENT)
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 & SNAPSHOT_FILE == 0 {
            return reply.error(Errno::EISDIR);
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.map((ino.0 & ID_MASK) as i64) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let id = (ino.0 & ID_MASK) as i64;
        let map = match self.map(id) {
            Ok(m) => m,
            Err(e) => return reply.error(e),
        };
        let end = (offset + u64::from(size)).min(map.file_len());
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let chunk = match self.chunk(id, &map, at / CHUNK) {
                Ok(c) => c,
                Err(e) => return reply.error(e),
            };
            let from = (at % CHUNK) as usize;
            let to = ((end - (at - at % CHUNK)).min(CHUNK) as usize).min(chunk.len());
            if from >= to {
                break;
            }
            out.extend_from_slice(&chunk[from..to]);
            at += (to - from) as u64;
        }
        reply.data(&out)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let ino = ino.0;
        let mut entries: Vec<(u64, FileType, String)> =
            vec![(ino, FileType::Directory, ".".into()), (INodeNo::ROOT.0, FileType::Directory, "..".into())];
        if ino == INodeNo::ROOT.0 {
            match self.rt.block_on(self.storage.meta.databases()) {
                Ok(dbs) => entries.extend(dbs.into_iter().map(|d| (self.database_ino(&d), FileType::Directory, d))),
                Err(_) => return reply.error(Errno::EIO),
            }
        } else if ino & SNAPSHOT_DIR != 0 {
            match self.snapshot((ino & ID_MASK) as i64) {
                Ok(info) => entries.push((SNAPSHOT_FILE | info.id as u64, FileType::RegularFile, format!("{}.duckdb", info.database))),
                Err(e) => return reply.error(e),
            }
        } else if let Some(db) = self.database_of(ino) {
            match self.rt.block_on(self.storage.meta.snapshots(&db)) {
                Ok(list) => entries.extend(list.into_iter().map(|s| (SNAPSHOT_DIR | s.id as u64, FileType::Directory, s.id.to_string()))),
                Err(_) => return reply.error(Errno::EIO),
            }
        } else {
            return reply.error(Errno::ENOENT);
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

/// A filesystem this process mounted, named for [`crate::fuse_watchdog`]; unmounted when dropped.
pub(crate) struct Session {
    session: Option<fuser::BackgroundSession>,
    path: PathBuf,
}

impl Session {
    /// Mounts `fs` at `path` as `<kind>-<pid>` with `access` (RO or RW), on 4 threads. The
    /// directory is created if missing; a stale mount left by a killed process is cleared first.
    /// Needs `/dev/fuse` and the right to mount (root).
    pub(crate) fn spawn<F: Filesystem + Send + 'static>(fs: F, path: &Path, kind: &str, access: MountOption) -> std::io::Result<Self> {
        // A process killed while mounted leaves "Transport endpoint is not connected" behind.
        if std::fs::metadata(path).is_err() {
            let _ = std::process::Command::new("umount").arg("-l").arg(path).output();
        }
        std::fs::create_dir_all(path)?;
        let mut config = Config::default();
        config.mount_options =
            vec![MountOption::FSName(crate::fuse_watchdog::source_name(kind, std::process::id())), access, MountOption::NoAtime];
        config.n_threads = Some(4);
        let session = fuser::spawn_mount(fs, path, &config)?;
        Ok(Session { session: Some(session), path: path.to_path_buf() })
    }

    /// Where it is mounted.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(e) = session.umount_and_join() {
                tracing::warn!(path = %self.path.display(), error = %e, "unmounting a FUSE filesystem failed");
            }
        }
    }
}

/// A mounted snapshot filesystem; unmounted when dropped.
pub struct Mount {
    session: Session,
    fetched: Arc<AtomicU64>,
}

impl Mount {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.session.path()
    }

    /// The file of snapshot `id` of `database`.
    pub fn snapshot_file(&self, database: &str, id: i64) -> PathBuf {
        self.path().join(database).join(id.to_string()).join(format!("{database}.duckdb"))
    }

    /// Bytes read from the object store so far.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount").field("path", &self.path()).finish()
    }
}

/// Mounts the snapshot filesystem of `storage` at `path` (see [`Session::spawn`]).
pub fn mount(storage: Storage, path: &Path, cache_bytes: usize, rt: tokio::runtime::Handle) -> std::io::Result<Mount> {
    let fs = SnapshotFs::new(storage, rt, cache_bytes);
    let fetched = fs.fetched_bytes();
    let session = Session::spawn(fs, path, "openduck-snapshots", MountOption::RO)?;
    Ok(Mount { session, fetched })
}
