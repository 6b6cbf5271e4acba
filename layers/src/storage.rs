//! An object store and a metadata store, opened together from URLs.
//!
//! | store URL | meaning |
//! |---|---|
//! | `file:///abs/path` or a plain path | [`LocalDirStore`] |
//! | `s3://bucket[/prefix]` | [`S3Store`]; endpoint, region and credentials from the usual `AWS_*` variables |
//!
//! | metadata URL | meaning |
//! |---|---|
//! | `sqlite:///abs/path` or `sqlite://rel/path` | [`SqliteMetadata`] |
//! | `postgres://…` / `postgresql://…` | [`PostgresMetadata`] |

use std::path::PathBuf;
use std::sync::Arc;

use crate::metadata::{Metadata, PostgresMetadata, SqliteMetadata};
use crate::object_store::s3::{S3Config, S3Store};
use crate::object_store::{LocalDirStore, ObjectStore};
use crate::LayerError;

/// Where layers and their metadata live.
#[derive(Clone)]
pub struct Storage {
    /// Layer and log objects.
    pub store: Arc<dyn ObjectStore>,
    /// Databases, snapshots, leases.
    pub meta: Arc<dyn Metadata>,
    /// The URLs it was opened from (credentials never appear in them).
    pub describe: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// Opens the object store named by `url`.
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, LayerError> {
    if url.starts_with("s3://") {
        let config =
            S3Config::from_url(url, |k| std::env::var(k).ok()).map_err(|e| LayerError::Config(format!("store URL '{url}': {e}")))?;
        return Ok(Arc::new(S3Store::new(config)));
    }
    let path = match url.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if url.contains("://") => {
            return Err(LayerError::Config(format!("store URL '{url}': use file:///path or s3://bucket/prefix")));
        }
        None => PathBuf::from(url),
    };
    Ok(Arc::new(LocalDirStore::new(&path).map_err(|e| LayerError::Config(format!("store '{}': {e}", path.display())))?))
}

/// Opens (creating and migrating) the metadata store named by `url`.
pub async fn open_metadata(url: &str) -> Result<Arc<dyn Metadata>, LayerError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresMetadata::connect(url).await?));
    }
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Err(LayerError::Config(format!("metadata URL '{}': use sqlite:///path or postgres://…", redact(url))));
    };
    let path = PathBuf::from(path);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| LayerError::Local { what: format!("creating {}", parent.display()), source })?;
    }
    Ok(Arc::new(SqliteMetadata::open(&path)?))
}

/// `url` without a password (`postgres://user:secret@host` → `postgres://user:***@host`).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) if auth.contains(':') => {
            let user = auth.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl Storage {
    /// Opens both stores.
    pub async fn open(store_url: &str, metadata_url: &str) -> Result<Self, LayerError> {
        let store = open_store(store_url)?;
        let meta = open_metadata(metadata_url).await?;
        Ok(Storage { store, meta, describe: format!("store {store_url}, metadata {}", redact(metadata_url)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls() {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("file://{}", dir.path().join("objects").display());
        let meta = format!("sqlite://{}", dir.path().join("m/meta.sqlite").display());
        let s = Storage::open(&store, &meta).await.unwrap();
        s.meta.create_database("db", 4096).await.unwrap();
        s.store.put_if_absent("k", "v".into()).await.unwrap();
        assert!(dir.path().join("objects/k").exists() && dir.path().join("m/meta.sqlite").exists());
        assert!(matches!(open_store("ftp://x"), Err(LayerError::Config(_))));
        assert!(matches!(open_metadata("mysql://x").await, Err(LayerError::Config(_))));
        assert_eq!(redact("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact("sqlite:///a"), "sqlite:///a");
    }
}
