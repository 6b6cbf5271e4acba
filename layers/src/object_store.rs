//! Object stores holding layer objects.
//!
//! Objects are immutable: [`ObjectStore::put_if_absent`] never overwrites, so two writers can
//! never replace each other's objects (on S3 this is a conditional put with `If-None-Match: *`).
//! Reads can fetch byte ranges, so a reader fetches only the layer parts it needs.
//!
//! Two stores: [`LocalDirStore`] (a directory; the zero-configuration default) and
//! [`s3::S3Store`] (any S3-compatible service).

pub mod s3;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Errors of an object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object exists already (a conditional put lost).
    #[error("object {0} already exists")]
    AlreadyExists(String),
    /// No such object.
    #[error("object {0} not found")]
    NotFound(String),
    /// A key that is not a valid relative object name.
    #[error("invalid object key '{0}'")]
    InvalidKey(String),
    /// A remote store's failure (after retries).
    #[error("{op} {key}: {message}")]
    Remote {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// What the store said.
        message: String,
    },
    /// An I/O or transport failure.
    #[error("{op} {key}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// When it was written.
    pub modified: std::time::SystemTime,
}

/// Immutable objects by key.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `data` under `key` unless an object with that key exists.
    async fn put_if_absent(&self, key: &str, data: bytes::Bytes) -> Result<(), StoreError>;
    /// The bytes `range` of object `key` (clipped to its end).
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError>;
    /// The size of object `key`.
    async fn size(&self, key: &str) -> Result<u64, StoreError>;
    /// Objects whose keys start with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes `key` (no error if it is already gone).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Objects as files under a local directory: the zero-configuration default.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| StoreError::Io { op: "create", key: root.display().to_string(), source })?;
        Ok(LocalDirStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let valid = !key.is_empty()
            && !key.starts_with('/')
            && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
            && !key.contains('\0');
        if !valid {
            return Err(StoreError::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn io<'a>(op: &'static str, key: &'a str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound(key.to_string())
        } else {
            StoreError::Io { op, key: key.to_string(), source }
        }
    }
}

impl LocalDirStore {
    pub(crate) fn put_sync(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("create", key))?;
        }
        // Write a private temporary file, make it durable, then link it into place: the link
        // fails if the key exists, so the object appears whole or not at all, never overwritten.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = PathBuf::from(format!("{}.tmp-{}-{unique}", path.display(), std::process::id()));
        let mut file = std::fs::File::create(&tmp).map_err(io("write", key))?;
        file.write_all(data).and_then(|_| file.sync_all()).map_err(io("write", key))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(path.parent().unwrap_or(Path::new(".")));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists(key.to_string())),
            Err(e) => Err(io("write", key)(e)),
        }
    }

    fn get_range_sync(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError> {
        let mut file = std::fs::File::open(self.path(key)?).map_err(io("read", key))?;
        let len = file.metadata().map_err(io("read", key))?.len();
        let (start, end) = (range.start.min(len), range.end.min(len));
        let mut out = vec![0; (end.saturating_sub(start)) as usize];
        file.seek(SeekFrom::Start(start)).and_then(|_| file.read_exact(&mut out)).map_err(io("read", key))?;
        Ok(out)
    }

    fn size_sync(&self, key: &str) -> Result<u64, StoreError> {
        Ok(std::fs::metadata(self.path(key)?).map_err(io("stat", key))?.len())
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("list", prefix)(e)),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) && !key.contains(".tmp-") {
                        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                        out.push(ObjectInfo { key, modified });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete_sync(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", key)(e)),
        }
    }
}

/// Runs local file work on a blocking thread (writes wait for fsync).
async fn on_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Remote {
        op: "local store",
        key: String::new(),
        message: format!("worker failed: {e}"),
    })?
}

#[async_trait::async_trait]
impl ObjectStore for LocalDirStore {
    async fn put_if_absent(&self, key: &str, data: bytes::Bytes) -> Result<(), StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        on_thread(move || s.put_sync(&k, &data)).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        on_thread(move || s.get_range_sync(&k, range)).await
    }
    async fn size(&self, key: &str) -> Result<u64, StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        on_thread(move || s.size_sync(&k)).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let (s, p) = (self.clone(), prefix.to_string());
        on_thread(move || s.list_sync(&p)).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        on_thread(move || s.delete_sync(&k)).await
    }
}

/// The behaviour every object store must show; each store's tests run it against a real
/// instance. Panics on any deviation. Expects no objects under `db1/` and `db2/`.
pub async fn check_store(store: &dyn ObjectStore) {
    store.put_if_absent("db1/layers/000001", "hello world".into()).await.unwrap();
    assert!(matches!(store.put_if_absent("db1/layers/000001", "other".into()).await, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.get_range("db1/layers/000001", 6..11).await.unwrap(), b"world");
    assert_eq!(store.get_range("db1/layers/000001", 6..100).await.unwrap(), b"world");
    assert_eq!(store.size("db1/layers/000001").await.unwrap(), 11);
    store.put_if_absent("db1/layers/000002", "x".into()).await.unwrap();
    store.put_if_absent("db2/layers/000001", "y".into()).await.unwrap();
    let keys: Vec<String> = store.list("db1/").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, vec!["db1/layers/000001", "db1/layers/000002"]);
    store.delete("db1/layers/000002").await.unwrap();
    store.delete("db1/layers/000002").await.unwrap();
    assert!(matches!(store.get_range("db1/layers/000002", 0..1).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.size("db1/layers/000002").await, Err(StoreError::NotFound(_))));
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_behaves() {
        let dir = tempfile::tempdir().unwrap();
        super::check_store(&LocalDirStore::new(dir.path()).unwrap()).await;
    }

    #[test]
    fn conditional_put_ranges_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).unwrap();
        for bad in ["", "/abs", "a/../b", "a//b"] {
            assert!(matches!(store.put_sync(bad, b""), Err(StoreError::InvalidKey(_))), "{bad}");
        }
    }

    #[test]
    fn concurrent_writers_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalDirStore::new(dir.path()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = store.clone();
                std::thread::spawn(move || (i, s.put_sync("race", format!("writer {i}").as_bytes()).is_ok()))
            })
            .collect();
        let winners: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).filter(|&(_, ok)| ok).map(|(i, _)| i).collect();
        assert_eq!(winners.len(), 1);
        // The object holds exactly what the one writer told it won wrote (all writes have the same
        // length: only the content tells them apart).
        let content = String::from_utf8(store.get_range_sync("race", 0..100).unwrap()).unwrap();
        assert_eq!(content, format!("writer {}", winners[0]));
        assert_eq!(store.list_sync("").unwrap().into_iter().map(|o| o.key).collect::<Vec<_>>(), vec!["race"]);
    }
}
