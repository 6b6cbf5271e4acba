//! The writable head through FUSE: DuckDB's file served from the newest snapshot plus the pages
//! written since, with no copy of the database made up front.
//!
//! ```text
//! <mount>/<database>/<database>.duckdb     the head: snapshot pages, fetched on first touch,
//!                                          overlaid by every page written since it was opened
//! <mount>/<database>/<anything else>       DuckDB's write-ahead log and its other files, kept as
//!                                          plain files in <local>/<database>/
//! ```
//!
//! A page of the head is *local* once it is in the overlay file (`<local>/.overlay/<database>`):
//! fetched from the snapshot (a 256 KiB run at a time, checksummed) or written by DuckDB. Every
//! page written since the last seal is *dirty*; a seal turns exactly the dirty pages into the next
//! layer, so sealing costs the change, never a scan of the file (compare [`crate::head`]'s local
//! path, which hashes every page).
//!
//! The plain files are opened with FUSE passthrough where the kernel offers it (Linux 6.9+, as
//! root): their reads and writes go from the kernel to the local file and never reach this
//! process; only metadata calls (attributes, fsync) do. Elsewhere they are served here.
//!
//! Nothing here is durable on its own and nothing needs to be: acknowledged commits are durable
//! as shipped log pieces, and opening a head always starts again from the newest snapshot and
//! those pieces ([`crate::head::Head::open_fuse`]). So `fsync` on this filesystem returns at once.
//!
//! Invariants of a [`HeadFile`]: the overlay file is exactly `len` bytes long; a local page's
//! bytes in the overlay are the file's bytes; a page that is not local lies inside the base
//! snapshot and reads as the base; when the file shrinks below the base length, the cut-off pages
//! become local (zeros), so growing again never resurrects the base's old bytes; every page whose
//! bytes differ from the last sealed state is dirty (growing marks the new pages dirty, shrinking
//! marks the cut page dirty).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::delta_layer::LayerWriter;
use crate::fuse::{attr, Session};
use crate::layer_map::LayerMap;
use crate::object_store::ObjectStore;
use crate::snapshot::read;

/// Pages missing locally are fetched in aligned runs of this size.
const FETCH: u64 = 256 * 1024;
/// The probe file at the root (see [`mount_heads`]).
const PROBE: u64 = 2;
const PROBE_NAME: &str = ".openduck-heads";
/// Directory inodes are `DIR | n`, file inodes `FILE | n`.
const DIR: u64 = 1 << 40;
const FILE: u64 = 2 << 40;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A set of page numbers.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u64) {
        let w = (i / 64) as usize;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }
}

struct FileState {
    /// Whether the file exists (a new database's file appears when DuckDB creates it).
    exists: bool,
    len: u64,
    /// The length at the last seal (or at opening).
    sealed_len: u64,
    /// The snapshot the file started from.
    base: Option<Arc<LayerMap>>,
    present: Bits,
    dirty: BTreeSet<u64>,
    overlay: File,
}

/// One database's head file; see the module docs for its invariants.
pub struct HeadFile {
    page_size: u64,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    state: Mutex<FileState>,
    fetched: AtomicU64,
}

/// The dirty pages of a head, taken for sealing; hand back with [`HeadFile::seal_failed`] if the
/// seal does not commit.
pub(crate) struct SealBatch {
    /// The file's length.
    pub len: u64,
    /// Whether anything changed since the last seal.
    pub changed: bool,
    /// The dirty pages.
    pub pages: Vec<u64>,
    /// The layer holding them.
    pub layer: LayerWriter,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl HeadFile {
    /// A head file starting from `base` (or empty, not yet existing, when `None`), keeping its
    /// local pages in `overlay` (created afresh).
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
        page_size: u32,
        base: Option<Arc<LayerMap>>,
        overlay: &Path,
    ) -> io::Result<Self> {
        if let Some(parent) = overlay.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(overlay)?;
        let len = base.as_ref().map_or(0, |b| b.file_len());
        file.set_len(len)?;
        let state = FileState {
            exists: base.is_some(),
            len,
            sealed_len: len,
            base,
            present: Bits::default(),
            dirty: BTreeSet::new(),
            overlay: file,
        };
        Ok(HeadFile { page_size: u64::from(page_size), store, rt, state: Mutex::new(state), fetched: AtomicU64::new(0) })
    }

    /// Takes the bytes of an ordinary database file as the head's content (every page dirty):
    /// how a plain DuckDB file becomes a layered database.
    pub(crate) fn import(&self, path: &Path) -> io::Result<()> {
        let bytes = std::fs::read(path)?;
        let mut st = lock(&self.state);
        st.overlay.set_len(0)?;
        st.overlay.write_all_at(&bytes, 0)?;
        st.len = bytes.len() as u64;
        st.exists = true;
        for p in 0..st.len.div_ceil(self.page_size) {
            st.present.set(p);
            st.dirty.insert(p);
        }
        Ok(())
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        lock(&self.state).len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pages written since the last seal.
    pub fn dirty_pages(&self) -> usize {
        lock(&self.state).dirty.len()
    }

    /// Bytes fetched from the object store so far.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    fn is_local(&self, st: &FileState, page: u64) -> bool {
        st.present.get(page) || page * self.page_size >= st.base.as_ref().map_or(0, |b| b.file_len())
    }

    /// Makes pages `first..=last` local, fetching missing ones from the base in aligned runs.
    fn ensure_local(&self, st: &mut FileState, first: u64, last: u64) -> io::Result<()> {
        let ps = self.page_size;
        let mut p = first;
        while p <= last {
            if self.is_local(st, p) {
                p += 1;
                continue;
            }
            let Some(base) = st.base.clone() else { break };
            let start = p * ps / FETCH * FETCH;
            let end = (start + FETCH).min(base.file_len());
            let bytes = self.rt.block_on(read(self.store.as_ref(), &base, start, end - start)).map_err(other)?;
            self.fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let mut q = start / ps;
            while q * ps < end.min(start + bytes.len() as u64) {
                if !self.is_local(st, q) {
                    let from = (q * ps - start) as usize;
                    let to = (((q + 1) * ps).min(end) - start) as usize;
                    // Never past the file's end: the overlay stays exactly `len` long.
                    let keep = ((st.len.saturating_sub(q * ps)) as usize).min(to - from);
                    st.overlay.write_all_at(&bytes[from..from + keep], q * ps)?;
                    st.present.set(q);
                }
                q += 1;
            }
            p = end.div_ceil(ps).max(p + 1);
        }
        Ok(())
    }

    /// Reads up to `size` bytes at `offset` (fewer at the end of the file).
    pub fn read_at(&self, offset: u64, size: u64) -> io::Result<Vec<u8>> {
        let mut st = lock(&self.state);
        let end = offset.saturating_add(size).min(st.len);
        if offset >= end {
            return Ok(Vec::new());
        }
        let ps = self.page_size;
        self.ensure_local(&mut st, offset / ps, (end - 1) / ps)?;
        let mut buf = vec![0u8; (end - offset) as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = st.overlay.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(buf)
    }

    /// Grows the file to `new_len`; the new pages are zeros, local and dirty.
    fn grow(&self, st: &mut FileState, new_len: u64) -> io::Result<()> {
        let ps = self.page_size;
        if st.len % ps != 0 {
            // The old last page keeps its bytes: they must be here before the file grows.
            let last = st.len / ps;
            self.ensure_local(st, last, last)?;
        }
        st.overlay.set_len(new_len)?;
        for p in st.len / ps..new_len.div_ceil(ps) {
            st.present.set(p);
            st.dirty.insert(p);
        }
        st.len = new_len;
        Ok(())
    }

    /// Writes `data` at `offset`, growing the file if needed.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut st = lock(&self.state);
        let ps = self.page_size;
        let end = offset + data.len() as u64;
        let (first, last) = (offset / ps, (end - 1) / ps);
        // Partly written pages keep their other bytes.
        if offset % ps != 0 && offset < st.len {
            self.ensure_local(&mut st, first, first)?;
        }
        if end % ps != 0 && end < st.len {
            self.ensure_local(&mut st, last, last)?;
        }
        if end > st.len {
            self.grow(&mut st, end)?;
        }
        st.overlay.write_all_at(data, offset)?;
        for p in first..=last {
            st.present.set(p);
            st.dirty.insert(p);
        }
        st.exists = true;
        Ok(())
    }

    /// Sets the file's length.
    pub fn truncate(&self, new_len: u64) -> io::Result<()> {
        let mut st = lock(&self.state);
        let ps = self.page_size;
        if new_len > st.len {
            return self.grow(&mut st, new_len);
        }
        if new_len == st.len {
            return Ok(());
        }
        if new_len % ps != 0 {
            let cut = new_len / ps;
            self.ensure_local(&mut st, cut, cut)?;
            st.dirty.insert(cut);
        }
        st.overlay.set_len(new_len)?;
        let base_len = st.base.as_ref().map_or(0, |b| b.file_len());
        for p in new_len.div_ceil(ps)..st.len.max(base_len).div_ceil(ps) {
            st.present.set(p);
        }
        let keep = new_len.div_ceil(ps);
        st.dirty.retain(|&p| p < keep);
        st.len = new_len;
        Ok(())
    }

    /// Takes the dirty pages as a layer (clearing them: pages written meanwhile are dirty again).
    pub(crate) fn take_dirty(&self) -> io::Result<SealBatch> {
        let mut st = lock(&self.state);
        let ps = self.page_size;
        let pages: Vec<u64> = std::mem::take(&mut st.dirty).into_iter().collect();
        let mut layer = LayerWriter::new(ps as u32, st.len);
        let mut page = vec![0u8; ps as usize];
        for &p in &pages {
            page.fill(0);
            let n = ((st.len - p * ps).min(ps)) as usize;
            st.overlay.read_exact_at(&mut page[..n], p * ps)?;
            layer.put_page(p, &page).map_err(other)?;
        }
        let changed = !pages.is_empty() || st.len != st.sealed_len;
        Ok(SealBatch { len: st.len, changed, pages, layer })
    }

    /// Takes `map` as the base from now on: a snapshot with the same content as the last sealed
    /// state (its compaction), so that pages not yet local are fetched from its layers and the
    /// old ones can be pruned. Pages that were local because they lay past the old base's end
    /// are marked local, so the longer base never shows through them.
    pub(crate) fn rebase(&self, map: Arc<LayerMap>) {
        let mut st = lock(&self.state);
        let ps = self.page_size;
        let old_len = st.base.as_ref().map_or(0, |b| b.file_len());
        for p in old_len.div_ceil(ps)..map.file_len().div_ceil(ps) {
            st.present.set(p);
        }
        st.base = Some(map);
    }

    /// The batch was committed as a snapshot.
    pub(crate) fn sealed(&self, len: u64) {
        lock(&self.state).sealed_len = len;
    }

    /// The batch's seal failed: its pages are dirty again.
    pub(crate) fn seal_failed(&self, pages: &[u64]) {
        let mut st = lock(&self.state);
        let keep = st.len.div_ceil(self.page_size);
        st.dirty.extend(pages.iter().copied().filter(|&p| p < keep));
    }
}

/// What the filesystem shares with the heads registered in it.
struct Shared {
    local: PathBuf,
    heads: Mutex<HashMap<String, Arc<HeadFile>>>,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// Whether the kernel hands reads and writes of the plain files (the log) straight to the
    /// local file (FUSE passthrough), so they never wait on this process.
    passthrough: AtomicBool,
    /// The passthrough backing of each open plain file, and how many handles use it (the kernel
    /// wants one backing per inode while any handle is open).
    backing: Mutex<HashMap<u64, (Arc<BackingId>, usize)>>,
}

#[derive(Default)]
struct Inodes {
    dirs: Vec<String>,
    files: HashMap<u64, (String, String)>,
    by_name: HashMap<(String, String), u64>,
    next: u64,
}

impl Inodes {
    fn dir(&mut self, db: &str) -> u64 {
        match self.dirs.iter().position(|d| d == db) {
            Some(i) => DIR | i as u64,
            None => {
                self.dirs.push(db.to_string());
                DIR | (self.dirs.len() as u64 - 1)
            }
        }
    }

    fn file(&mut self, db: &str, name: &str) -> u64 {
        let key = (db.to_string(), name.to_string());
        if let Some(&ino) = self.by_name.get(&key) {
            return ino;
        }
        self.next += 1;
        let ino = FILE | self.next;
        self.by_name.insert(key.clone(), ino);
        self.files.insert(ino, key);
        ino
    }

    fn forget(&mut self, db: &str, name: &str) {
        if let Some(ino) = self.by_name.remove(&(db.to_string(), name.to_string())) {
            self.files.remove(&ino);
        }
    }
}

enum Handle {
    Head(Arc<HeadFile>),
    Local(File),
    /// A plain file opened with passthrough (its inode, for the backing's count).
    Passthrough(u64, File),
}

impl Shared {
    fn head_name(db: &str) -> String {
        format!("{db}.duckdb")
    }

    fn head(&self, db: &str, name: &str) -> Option<Arc<HeadFile>> {
        (name == Self::head_name(db)).then(|| lock(&self.heads).get(db).cloned()).flatten()
    }

    fn local_path(&self, db: &str, name: &str) -> PathBuf {
        self.local.join(db).join(name)
    }

    fn file_attr(&self, ino: u64, db: &str, name: &str) -> Result<FileAttr, Errno> {
        if let Some(head) = self.head(db, name) {
            let st = lock(&head.state);
            if !st.exists {
                return Err(Errno::ENOENT);
            }
            return Ok(attr(ino, st.len, FileType::RegularFile, 0o644));
        }
        let m = std::fs::metadata(self.local_path(db, name)).map_err(io_errno)?;
        if !m.is_file() {
            return Err(Errno::ENOENT);
        }
        let mut a = attr(ino, m.len(), FileType::RegularFile, (m.mode() & 0o7777) as u16);
        a.mtime = UNIX_EPOCH + Duration::from_secs(m.mtime().max(0) as u64);
        a.ctime = a.mtime;
        Ok(a)
    }

    fn resolve(&self, ino: u64) -> Option<(String, String)> {
        lock(&self.inodes).files.get(&ino).cloned()
    }

    fn db_of_dir(&self, ino: u64) -> Option<String> {
        if ino & DIR == 0 {
            return None;
        }
        let db = lock(&self.inodes).dirs.get((ino & !DIR) as usize).cloned()?;
        lock(&self.heads).contains_key(&db).then_some(db)
    }

    /// The passthrough backing for `file` (inode `ino`), registering it when it is the inode's
    /// first open handle; `None` when passthrough is off or the kernel refused it (then the file
    /// is served through this process, as without passthrough).
    fn backing_for(&self, ino: u64, file: &File, register: impl FnOnce(&File) -> io::Result<BackingId>) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let mut backing = lock(&self.backing);
        if let Some((id, users)) = backing.get_mut(&ino) {
            *users += 1;
            return Some(id.clone());
        }
        match register(file) {
            Ok(id) => {
                let id = Arc::new(id);
                backing.insert(ino, (id.clone(), 1));
                Some(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "FUSE passthrough refused; the log is served through the filesystem");
                self.passthrough.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    fn open_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.handles).insert(fh, h);
        fh
    }
}

fn io_errno(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(code) => Errno::from_i32(code),
        None if e.kind() == io::ErrorKind::NotFound => Errno::ENOENT,
        None => Errno::EIO,
    }
}

/// Files change under the kernel only through this filesystem, but heads are replaced when a
/// database is reopened: attributes are never cached.
const NO_CACHE: Duration = Duration::ZERO;
const DIR_TTL: Duration = Duration::from_secs(1);

/// The filesystem of writable heads; see the module docs.
struct HeadFs(Arc<Shared>);

impl Filesystem for HeadFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Passthrough (Linux 6.9+, root): the log's reads and writes go from the kernel to the
        // local file directly. Without it they are served here, which is correct but slower.
        let on = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok();
        self.0.passthrough.store(on, Ordering::Relaxed);
        tracing::debug!(passthrough = on, "head filesystem initialised");
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = &self.0;
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        if parent == INodeNo::ROOT {
            if name == PROBE_NAME {
                return reply.entry(&DIR_TTL, &attr(PROBE, 0, FileType::RegularFile, 0o444), fuser::Generation(0));
            }
            if !lock(&s.heads).contains_key(name) {
                return reply.error(Errno::ENOENT);
            }
            let ino = lock(&s.inodes).dir(name);
            return reply.entry(&DIR_TTL, &attr(ino, 0, FileType::Directory, 0o755), fuser::Generation(0));
        }
        let Some(db) = s.db_of_dir(parent.0) else {
            return reply.error(Errno::ENOENT);
        };
        let ino = lock(&s.inodes).file(&db, name);
        match s.file_attr(ino, &db, name) {
            Ok(a) => reply.entry(&NO_CACHE, &a, fuser::Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = &self.0;
        if ino == INodeNo::ROOT || s.db_of_dir(ino.0).is_some() {
            return reply.attr(&DIR_TTL, &attr(ino.0, 0, FileType::Directory, 0o755));
        }
        if ino.0 == PROBE {
            return reply.attr(&DIR_TTL, &attr(PROBE, 0, FileType::RegularFile, 0o444));
        }
        match s.resolve(ino.0) {
            Some((db, name)) => match s.file_attr(ino.0, &db, &name) {
                Ok(a) => reply.attr(&NO_CACHE, &a),
                Err(e) => reply.error(e),
            },
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let s = &self.0;
        let Some((db, name)) = s.resolve(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(size) = size {
            let result = match s.head(&db, &name) {
                Some(head) => head.truncate(size),
                None => std::fs::OpenOptions::new().write(true).open(s.local_path(&db, &name)).and_then(|f| f.set_len(size)),
            };
            if let Err(e) = result {
                tracing::error!(database = %db, file = %name, error = %e, "truncate failed");
                return reply.error(io_errno(e));
            }
        }
        match s.file_attr(ino.0, &db, &name) {
            Ok(a) => reply.attr(&NO_CACHE, &a),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.0;
        if ino.0 == PROBE {
            return reply.opened(FileHandle(0), FopenFlags::empty());
        }
        let Some((db, name)) = s.resolve(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let handle = match s.head(&db, &name) {
            Some(head) if lock(&head.state).exists => Handle::Head(head),
            Some(_) => return reply.error(Errno::ENOENT),
            None => {
                let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
                let f = match std::fs::OpenOptions::new().read(true).write(write).open(s.local_path(&db, &name)) {
                    Ok(f) => f,
                    Err(e) => return reply.error(io_errno(e)),
                };
                if let Some(id) = s.backing_for(ino.0, &f, |f| reply.open_backing(f)) {
                    let fh = s.open_handle(Handle::Passthrough(ino.0, f));
                    return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
                }
                Handle::Local(f)
            }
        };
        reply.opened(FileHandle(s.open_handle(handle)), FopenFlags::empty())
    }

    fn create(&self, _req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, flags: i32, reply: ReplyCreate) {
        let s = &self.0;
        let (Some(db), Some(name)) = (s.db_of_dir(parent.0), name.to_str()) else {
            return reply.error(Errno::ENOENT);
        };
        let (excl, trunc) = (flags & libc::O_EXCL != 0, flags & libc::O_TRUNC != 0);
        let handle = match s.head(&db, name) {
            Some(head) => {
                {
                    let mut st = lock(&head.state);
                    if st.exists && excl {
                        return reply.error(Errno::EEXIST);
                    }
                    st.exists = true;
                }
                if trunc {
                    if let Err(e) = head.truncate(0) {
                        return reply.error(io_errno(e));
                    }
                }
                Handle::Head(head)
            }
            None => {
                let mut o = std::fs::OpenOptions::new();
                o.read(true).write(true).truncate(trunc);
                if excl {
                    o.create_new(true)
                } else {
                    o.create(true)
                };
                match o.open(s.local_path(&db, name)) {
                    Ok(f) => Handle::Local(f),
                    Err(e) => return reply.error(io_errno(e)),
                }
            }
        };
        let ino = lock(&s.inodes).file(&db, name);
        let a = match s.file_attr(ino, &db, name) {
            Ok(a) => a,
            Err(e) => return reply.error(e),
        };
        if let Handle::Local(f) = handle {
            if let Some(id) = s.backing_for(ino, &f, |f| reply.open_backing(f)) {
                let fh = s.open_handle(Handle::Passthrough(ino, f));
                return reply.created_passthrough(&NO_CACHE, &a, fuser::Generation(0), FileHandle(fh), FopenFlags::empty(), &id);
            }
            return reply.created(&NO_CACHE, &a, fuser::Generation(0), FileHandle(s.open_handle(Handle::Local(f))), FopenFlags::empty());
        }
        reply.created(&NO_CACHE, &a, fuser::Generation(0), FileHandle(s.open_handle(handle)), FopenFlags::empty())
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let handles = lock(&self.0.handles);
        let result = match handles.get(&fh.0) {
            Some(Handle::Head(head)) => {
                let head = head.clone();
                drop(handles);
                head.read_at(offset, u64::from(size))
            }
            Some(Handle::Local(f) | Handle::Passthrough(_, f)) => {
                let mut buf = vec![0u8; size as usize];
                let mut done = 0;
                loop {
                    match f.read_at(&mut buf[done..], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) => return reply.error(io_errno(e)),
                    }
                    if done == buf.len() {
                        break;
                    }
                }
                buf.truncate(done);
                Ok(buf)
            }
            None => return reply.error(Errno::EBADF),
        };
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => {
                tracing::error!(error = %e, offset, size, "reading a head failed");
                reply.error(io_errno(e))
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let handles = lock(&self.0.handles);
        let result = match handles.get(&fh.0) {
            Some(Handle::Head(head)) => {
                let head = head.clone();
                drop(handles);
                head.write_at(offset, data)
            }
            Some(Handle::Local(f) | Handle::Passthrough(_, f)) => f.write_all_at(data, offset),
            None => return reply.error(Errno::EBADF),
        };
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => {
                tracing::error!(error = %e, offset, "writing a head failed");
                reply.error(io_errno(e))
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = lock(&self.0.handles).remove(&fh.0);
        if let Some(Handle::Passthrough(ino, _)) = handle {
            let mut backing = lock(&self.0.backing);
            if let Some((_, users)) = backing.get_mut(&ino) {
                *users -= 1;
                if *users == 0 {
                    backing.remove(&ino);
                }
            }
        }
        reply.ok()
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Durability comes from the shipped log (see the module docs).
        reply.ok()
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let s = &self.0;
        let (Some(db), Some(name)) = (s.db_of_dir(parent.0), name.to_str()) else {
            return reply.error(Errno::ENOENT);
        };
        if s.head(&db, name).is_some() {
            return reply.error(Errno::EPERM);
        }
        match std::fs::remove_file(s.local_path(&db, name)) {
            Ok(()) => {
                lock(&s.inodes).forget(&db, name);
                reply.ok()
            }
            Err(e) => reply.error(io_errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let s = &self.0;
        let (Some(db), Some(to_db), Some(name), Some(newname)) =
            (s.db_of_dir(parent.0), s.db_of_dir(newparent.0), name.to_str(), newname.to_str())
        else {
            return reply.error(Errno::ENOENT);
        };
        if db != to_db {
            return reply.error(Errno::EXDEV);
        }
        if s.head(&db, name).is_some() || s.head(&db, newname).is_some() {
            return reply.error(Errno::EPERM);
        }
        match std::fs::rename(s.local_path(&db, name), s.local_path(&db, newname)) {
            Ok(()) => {
                let mut inodes = lock(&s.inodes);
                inodes.forget(&db, newname);
                if let Some(ino) = inodes.by_name.remove(&(db.clone(), name.to_string())) {
                    inodes.by_name.insert((db.clone(), newname.to_string()), ino);
                    inodes.files.insert(ino, (db, newname.to_string()));
                }
                reply.ok()
            }
            Err(e) => reply.error(io_errno(e)),
        }
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        // Only plain preallocation; DuckDB's hole punching of free blocks is optional to it.
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let s = &self.0;
        let Some((db, name)) = s.resolve(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let end = offset + length;
        let result = match s.head(&db, &name) {
            Some(head) if head.len() < end => head.truncate(end),
            Some(_) => Ok(()),
            None => std::fs::OpenOptions::new().write(true).open(s.local_path(&db, &name)).and_then(|f| {
                if f.metadata()?.len() < end {
                    f.set_len(end)?;
                }
                Ok(())
            }),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(io_errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = &self.0;
        let mut entries: Vec<(u64, FileType, String)> =
            vec![(ino.0, FileType::Directory, ".".into()), (INodeNo::ROOT.0, FileType::Directory, "..".into())];
        if ino == INodeNo::ROOT {
            let mut names: Vec<String> = lock(&s.heads).keys().cloned().collect();
            names.sort();
            let mut inodes = lock(&s.inodes);
            entries.extend(names.into_iter().map(|n| (inodes.dir(&n), FileType::Directory, n)));
        } else if let Some(db) = s.db_of_dir(ino.0) {
            let mut names = Vec::new();
            if s.head(&db, &Shared::head_name(&db)).is_some_and(|h| lock(&h.state).exists) {
                names.push(Shared::head_name(&db));
            }
            if let Ok(dir) = std::fs::read_dir(s.local.join(&db)) {
                names.extend(
                    dir.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).filter_map(|e| e.file_name().into_string().ok()),
                );
            }
            let mut inodes = lock(&s.inodes);
            entries.extend(names.into_iter().map(|n| (inodes.file(&db, &n), FileType::RegularFile, n)));
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

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The local directory's space: DuckDB checks it before writing.
        let Ok(path) = std::ffi::CString::new(self.0.local.as_os_str().as_encoded_bytes()) else {
            return reply.error(Errno::EIO);
        };
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `st` a writable statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(Errno::EIO);
        }
        reply.statfs(st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, st.f_bsize as u32, 255, st.f_frsize as u32)
    }
}

/// A mounted head filesystem; unmounted when dropped.
pub struct HeadMount {
    session: Session,
    shared: Arc<Shared>,
}

/// A head file registered in a [`HeadMount`]; unregistered when dropped.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    database: String,
    /// The head file.
    pub file: Arc<HeadFile>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut heads = lock(&self.shared.heads);
        if heads.get(&self.database).is_some_and(|f| Arc::ptr_eq(f, &self.file)) {
            heads.remove(&self.database);
        }
    }
}

impl HeadMount {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.session.path()
    }

    /// The head file of `database`, as DuckDB opens it.
    pub fn file_path(&self, database: &str) -> PathBuf {
        self.path().join(database).join(Shared::head_name(database))
    }

    /// The local directory holding `database`'s other files (its write-ahead log).
    pub fn local_dir(&self, database: &str) -> PathBuf {
        self.shared.local.join(database)
    }

    /// A local directory for `database`'s spill files (kept off the head filesystem, and not
    /// wiped when the head restarts).
    pub fn temp_dir(&self, database: &str) -> PathBuf {
        self.shared.local.join(".tmp").join(database)
    }

    /// Starts `database`'s head afresh: its local files are removed and `base` (if any) becomes
    /// the file's content. Replaces any head registered for it.
    pub(crate) fn register(
        &self,
        database: &str,
        store: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
        page_size: u32,
        base: Option<Arc<LayerMap>>,
    ) -> io::Result<Registration> {
        let dir = self.local_dir(database);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let file = Arc::new(HeadFile::new(store, rt, page_size, base, &self.shared.local.join(".overlay").join(database))?);
        {
            let mut inodes = lock(&self.shared.inodes);
            // Fresh inodes: nothing the kernel remembers of an earlier head applies.
            let names: Vec<String> = inodes.by_name.keys().filter(|(d, _)| d == database).map(|(_, n)| n.clone()).collect();
            for n in names {
                inodes.forget(database, &n);
            }
        }
        lock(&self.shared.heads).insert(database.to_string(), file.clone());
        Ok(Registration { shared: self.shared.clone(), database: database.to_string(), file })
    }
}

impl std::fmt::Debug for HeadMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadMount").field("path", &self.path()).finish()
    }
}

/// Why there is no `flush` and a probe file: the server is both this filesystem's daemon and a
/// client of it. When it is killed, the kernel closes its files while exiting and sends a FLUSH
/// for each — to the daemon threads that already died, so the exit would wait forever. A
/// filesystem that once answers FLUSH with "not implemented" is never sent one again, so the
/// mount opens and closes the probe file right away.
///
/// Mounts the head filesystem at `path`, keeping local files under `local` (both created if
/// missing; a stale mount left by a killed process is cleared first). Needs `/dev/fuse` and the
/// right to mount (root). Heads are added by [`crate::head::Head::open_fuse`].
pub fn mount_heads(path: &Path, local: &Path) -> io::Result<HeadMount> {
    std::fs::create_dir_all(local)?;
    let shared = Arc::new(Shared {
        passthrough: AtomicBool::new(false),
        backing: Mutex::new(HashMap::new()),
        local: local.to_path_buf(),
        heads: Mutex::new(HashMap::new()),
        inodes: Mutex::new(Inodes::default()),
        handles: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(0),
    });
    let session = Session::spawn(HeadFs(shared.clone()), path, "openduck-heads", MountOption::RW)?;
    drop(File::open(path.join(PROBE_NAME))?);
    Ok(HeadMount { session, shared })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta_layer::LayerIndex;
    use crate::object_store::LocalDirStore;

    /// A head file over a base made of `content`, with its layer in a local store.
    async fn file_over(dir: &Path, content: &[u8], page_size: u32) -> HeadFile {
        let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.join("objects")).unwrap());
        let mut w = LayerWriter::new(page_size, content.len() as u64);
        for (i, page) in content.chunks(page_size as usize).enumerate() {
            w.put_page(i as u64, page).unwrap();
        }
        let bytes = w.finish();
        store.put_if_absent("base", bytes.clone().into()).await.unwrap();
        let map = LayerMap::new(vec![Arc::new(LayerIndex::parse("base", &bytes).unwrap())]).unwrap();
        HeadFile::new(store, tokio::runtime::Handle::current(), page_size, Some(Arc::new(map)), &dir.join("overlay")).unwrap()
    }

    /// Applies the same operations to the head and to a plain vector, then compares.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_writes_and_truncates_match_a_plain_file_and_seals_carry_only_dirty_pages() {
        let dir = tempfile::tempdir().unwrap();
        let base: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
        let head = file_over(dir.path(), &base, 1024).await;
        tokio::task::spawn_blocking(move || {
            let mut model = base.clone();
            let check = |head: &HeadFile, model: &Vec<u8>| {
                assert_eq!(head.len(), model.len() as u64);
                assert_eq!(&head.read_at(0, model.len() as u64 + 10).unwrap(), model);
            };
            assert_eq!(head.read_at(10_000, 100).unwrap(), &model[10_000..10_100]);
            assert!(head.fetched_bytes() >= 1024 && head.fetched_bytes() <= FETCH, "fetched {}", head.fetched_bytes());
            // Unaligned write inside the base.
            head.write_at(3_000, b"hello").unwrap();
            model[3_000..3_005].copy_from_slice(b"hello");
            assert_eq!(head.dirty_pages(), 1);
            // Shrink below the base, then grow: the cut-off bytes read as zeros, not the base.
            head.truncate(20_500).unwrap();
            model.truncate(20_500);
            head.truncate(30_000).unwrap();
            model.resize(30_000, 0);
            check(&head, &model);
            // A write past the end leaves a zero gap.
            head.write_at(40_000, &[7u8; 3000]).unwrap();
            model.resize(40_000, 0);
            model.extend_from_slice(&[7u8; 3000]);
            check(&head, &model);

            let batch = head.take_dirty().unwrap();
            assert!(batch.changed);
            assert_eq!(batch.len, 43_000);
            // Page 2 (the write), 20 (the cut page) and the pages grown after the cut.
            assert_eq!(batch.pages.first(), Some(&2));
            assert!(batch.pages.contains(&20) && !batch.pages.contains(&5), "{:?}", batch.pages);
            // Applying the layer on top of the base gives the model.
            let layer_bytes = batch.layer.finish();
            let base_bytes = {
                let mut w = LayerWriter::new(1024, base.len() as u64);
                for (i, page) in base.chunks(1024).enumerate() {
                    w.put_page(i as u64, page).unwrap();
                }
                w.finish()
            };
            let base_layer = LayerIndex::parse("base", &base_bytes).unwrap();
            let map = LayerMap::new(vec![Arc::new(base_layer), Arc::new(LayerIndex::parse("top", &layer_bytes).unwrap())]).unwrap();
            assert_eq!(map.file_len(), 43_000);
            for piece in map.plan_read(20_480, 22_520) {
                let loc = piece.location.expect("every page past the cut is in the new layer or zeros");
                assert_eq!(loc.layer, 1, "page read from the old base after a shrink");
            }
            // Byte for byte, the base with the layer on top reads as the model.
            let objects = tempfile::tempdir().unwrap();
            let store = crate::object_store::LocalDirStore::new(objects.path()).unwrap();
            store.put_sync("base", &base_bytes).unwrap();
            store.put_sync("top", &layer_bytes).unwrap();
            let read = tokio::runtime::Handle::current().block_on(crate::snapshot::read(&store, &map, 0, map.file_len())).unwrap();
            assert!(read == model, "the sealed layer over the base does not read as the model");
            assert_eq!(head.dirty_pages(), 0);
            head.sealed(batch.len);
            assert!(!head.take_dirty().unwrap().changed);
            // A failed seal gives the pages back.
            head.write_at(0, b"x").unwrap();
            let b = head.take_dirty().unwrap();
            head.seal_failed(&b.pages);
            assert_eq!(head.dirty_pages(), 1);
        })
        .await
        .unwrap();
    }
}
