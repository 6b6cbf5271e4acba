//! Reading a snapshot from an object store: loading its layers' indexes into a [`LayerMap`],
//! reading byte ranges through it, materialising it into a local file, and advancing a local copy
//! to a newer snapshot by applying only the newer layers. (Sealing a head's changes into a new
//! layer is the head's job: [`crate::head`].)

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::delta_layer::{LayerIndex, HEADER_LEN};
use crate::layer_map::LayerMap;
use crate::metadata::SnapshotInfo;
use crate::object_store::ObjectStore;
use crate::LayerError;

/// Loads a layer's index from the store with three small range reads (footer, header, index).
pub async fn load_index(store: &dyn ObjectStore, key: &str) -> Result<Arc<LayerIndex>, LayerError> {
    let total = store.size(key).await?;
    let footer = store.get_range(key, LayerIndex::footer_range(total)).await?;
    if footer.len() < 8 {
        return Err(LayerError::Malformed { key: key.to_string(), reason: "too short".into() });
    }
    let index_offset = u64::from_le_bytes(footer[..8].try_into().unwrap_or([0; 8])).min(total);
    let header = store.get_range(key, 0..HEADER_LEN).await?;
    let tail = store.get_range(key, index_offset..total).await?;
    Ok(Arc::new(LayerIndex::parse_parts(key, &header, &tail, total)?))
}

/// The layer map of a snapshot, loading each layer's index.
pub async fn open_map(store: &dyn ObjectStore, snapshot: &SnapshotInfo) -> Result<LayerMap, LayerError> {
    let mut indexes = Vec::with_capacity(snapshot.layers.len());
    for key in &snapshot.layers {
        indexes.push(load_index(store, key).await?);
    }
    let map = LayerMap::new(indexes)?;
    if map.file_len() != snapshot.file_len as u64 {
        return Err(LayerError::Malformed {
            key: format!("snapshot {}", snapshot.id),
            reason: format!("its layers describe a {}-byte file, the metadata says {}", map.file_len(), snapshot.file_len),
        });
    }
    Ok(map)
}

/// Reads `len` bytes at `offset` of a snapshot, fetching only the pages involved (adjacent pages
/// of one layer in one request) and verifying each against its checksum.
pub async fn read(store: &dyn ObjectStore, map: &LayerMap, offset: u64, len: u64) -> Result<Vec<u8>, LayerError> {
    let pieces = map.plan_read(offset, len);
    let mut out = Vec::with_capacity(len as usize);
    let mut i = 0;
    while i < pieces.len() {
        let Some(first) = pieces[i].location else {
            out.resize(out.len() + pieces[i].within.len(), 0);
            i += 1;
            continue;
        };
        // The run of pieces stored back to back in the same layer.
        let mut end = i + 1;
        while end < pieces.len() {
            match pieces[end].location {
                Some(loc) if loc.layer == first.layer && loc.slot == first.slot + (end - i) => end += 1,
                _ => break,
            }
        }
        let layer = &map.layers()[first.layer];
        let start = layer.page_range(first.slot).start;
        let bytes = store.get_range(&layer.key, start..layer.page_range(first.slot + (end - i - 1)).end).await?;
        let page_size = layer.page_size as usize;
        for (n, piece) in pieces[i..end].iter().enumerate() {
            let page = bytes.get(n * page_size..(n + 1) * page_size).unwrap_or(&[]);
            layer.verify(first.slot + n, page)?;
            out.extend_from_slice(&page[piece.within.clone()]);
        }
        i = end;
    }
    Ok(out)
}

/// Writes the whole file of a snapshot to `path`.
pub async fn materialize(store: &dyn ObjectStore, map: &LayerMap, path: &Path) -> Result<(), LayerError> {
    let io = |source| LayerError::Store(crate::object_store::StoreError::Io { op: "materialize", key: path.display().to_string(), source });
    let mut file = std::fs::File::create(path).map_err(io)?;
    let chunk = 256 * u64::from(map.layers().first().map_or(4096, |l| l.page_size));
    let mut at = 0;
    while at < map.file_len() {
        let bytes = read(store, map, at, chunk).await?;
        file.write_all(&bytes).map_err(io)?;
        at += bytes.len() as u64;
    }
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Writes snapshot `snapshot` as a standalone file at `path`, atomically (a `.part` file renamed
/// into place), and returns its layer map.
pub async fn restore_to(store: &dyn ObjectStore, snapshot: &SnapshotInfo, path: &Path) -> Result<LayerMap, LayerError> {
    let map = open_map(store, snapshot).await?;
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".part");
    let tmp = std::path::PathBuf::from(tmp);
    materialize(store, &map, &tmp).await?;
    std::fs::rename(&tmp, path).map_err(|source| {
        LayerError::Store(crate::object_store::StoreError::Io { op: "restore", key: path.display().to_string(), source })
    })?;
    Ok(map)
}

/// Turns the file of snapshot `from` (at `path`) into the file of snapshot `to` in place, by
/// writing only the pages of `to`'s layers after the layers both share. That is correct when
/// every page `from`'s remaining layers wrote is rewritten by `to`'s: always for a later commit
/// (nothing remains), and for a compaction (the merged layer holds every page of the layers it
/// replaced). Returns `false` (and changes nothing) otherwise; the caller then materialises `to`
/// from scratch.
pub async fn advance(store: &dyn ObjectStore, from: &SnapshotInfo, to: &SnapshotInfo, path: &Path) -> Result<bool, LayerError> {
    let shared = from.layers.iter().zip(&to.layers).take_while(|(a, b)| a == b).count();
    let mut added = Vec::with_capacity(to.layers.len() - shared);
    for key in &to.layers[shared..] {
        added.push(load_index(store, key).await?);
    }
    if shared < from.layers.len() {
        let rewritten: std::collections::BTreeSet<u64> = added.iter().flat_map(|i| i.entries.iter().map(|&(page_no, _)| page_no)).collect();
        for key in &from.layers[shared..] {
            let index = load_index(store, key).await?;
            let pages_in_to = (to.file_len as u64).div_ceil(u64::from(index.page_size.max(1)));
            if index.entries.iter().any(|&(page_no, _)| page_no < pages_in_to && !rewritten.contains(&page_no)) {
                return Ok(false);
            }
        }
    }
    let io = |source| LayerError::Store(crate::object_store::StoreError::Io { op: "advance", key: path.display().to_string(), source });
    let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
    for index in &added {
        let page_size = u64::from(index.page_size);
        if index.entries.is_empty() {
            continue;
        }
        let bytes = store.get_range(&index.key, index.pages_range()).await?;
        for (slot, &(page_no, _)) in index.entries.iter().enumerate() {
            let page = bytes.get(slot * page_size as usize..(slot + 1) * page_size as usize).unwrap_or(&[]);
            index.verify(slot, page)?;
            let at = page_no * page_size;
            let keep = (to.file_len as u64).saturating_sub(at).min(page_size) as usize;
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            file.write_all(&page[..keep]).map_err(io)?;
        }
    }
    file.set_len(to.file_len as u64).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(true)
}

/// The layer of pages where `new` differs from `old` (files; `old` may be missing for the first
/// layer), or `None` when nothing changed. Tests build layers with it; the server's heads find
/// their changed pages themselves.
#[cfg(test)]
pub(crate) fn diff(old: Option<&Path>, new: &Path, page_size: u32) -> std::io::Result<Option<Vec<u8>>> {
    let new_len = std::fs::metadata(new)?.len();
    let old_len = match old {
        Some(p) => std::fs::metadata(p)?.len(),
        None => 0,
    };
    let mut new_file = std::io::BufReader::new(std::fs::File::open(new)?);
    let mut old_file = match old {
        Some(p) => Some(std::io::BufReader::new(std::fs::File::open(p)?)),
        None => None,
    };
    let mut writer = crate::delta_layer::LayerWriter::new(page_size, new_len);
    let (mut a, mut b) = (vec![0u8; page_size as usize], vec![0u8; page_size as usize]);
    let pages = new_len.div_ceil(u64::from(page_size));
    for page_no in 0..pages {
        let n = read_full(&mut new_file, &mut a)?;
        let same = match old_file.as_mut() {
            Some(f) if page_no * u64::from(page_size) < old_len => {
                let m = read_full(f, &mut b)?;
                m == n && a[..n] == b[..m]
            }
            _ => false,
        };
        if !same {
            writer.put_page(page_no, &a[..n]).map_err(std::io::Error::other)?;
        }
    }
    if writer.page_count() == 0 && new_len == old_len {
        return Ok(None);
    }
    Ok(Some(writer.finish()))
}

#[cfg(test)]
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::LocalDirStore;

    #[tokio::test]
    async fn seal_changes_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path().join("store")).unwrap();
        let v1 = dir.path().join("v1.db");
        let mut content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&v1, &content).unwrap();
        let first = diff(None, &v1, 4096).unwrap().unwrap();
        store.put_if_absent("db/layers/1", first.into()).await.unwrap();

        // Change ~5 KB in the middle and append: only the touched pages go into layer 2.
        content[50_000..55_000].fill(7);
        content.extend_from_slice(&[9u8; 3000]);
        let v2 = dir.path().join("v2.db");
        std::fs::write(&v2, &content).unwrap();
        let second = diff(Some(&v1), &v2, 4096).unwrap().unwrap();
        let second_index = LayerIndex::parse("db/layers/2", &second).unwrap();
        assert_eq!(second_index.entries.iter().map(|e| e.0).collect::<Vec<_>>(), vec![12, 13, 24, 25]);
        assert!(second.len() < 5 * 4096 + 200, "bytes uploaded follow the change: {}", second.len());
        store.put_if_absent("db/layers/2", second.clone().into()).await.unwrap();
        assert!(diff(Some(&v2), &v2, 4096).unwrap().is_none());

        let map = LayerMap::new(vec![load_index(&store, "db/layers/1").await.unwrap(), load_index(&store, "db/layers/2").await.unwrap()])
            .unwrap();
        assert_eq!(read(&store, &map, 49_990, 20).await.unwrap(), content[49_990..50_010].to_vec());
        let out = dir.path().join("out.db");
        materialize(&store, &map, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), content);
        // A copy of snapshot 1's file advances to snapshot 2 by applying layer 2 only.
        let info = |id: i64, layers: &[&str], file_len: usize| SnapshotInfo {
            id,
            database: "db".into(),
            parent: None,
            created_ms: 0,
            file_len: file_len as i64,
            size: 0,
            layers: layers.iter().map(|s| s.to_string()).collect(),
        };
        let copy = dir.path().join("copy.db");
        std::fs::copy(&v1, &copy).unwrap();
        let (s1, s2) = (info(1, &["db/layers/1"], 100_000), info(2, &["db/layers/1", "db/layers/2"], content.len()));
        assert!(advance(&store, &s1, &s2, &copy).await.unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), content);
        let sibling = info(3, &["db/layers/2"], content.len());
        assert!(!advance(&store, &s2, &sibling, &copy).await.unwrap(), "layer 1's pages are not all rewritten");
        // The older snapshot still reads as it was.
        let old_map = LayerMap::new(vec![load_index(&store, "db/layers/1").await.unwrap()]).unwrap();
        materialize(&store, &old_map, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&v1).unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_page_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).unwrap();
        let f = dir.path().join("f.db");
        std::fs::write(&f, vec![1u8; 10_000]).unwrap();
        let mut layer = diff(None, &f, 4096).unwrap().unwrap();
        layer[HEADER_LEN as usize + 10] ^= 0xff; // flip a byte of page 0
        store.put_if_absent("bad", layer.into()).await.unwrap();
        let map = LayerMap::new(vec![load_index(&store, "bad").await.unwrap()]).unwrap();
        assert!(matches!(read(&store, &map, 0, 100).await, Err(LayerError::Corrupt { .. })));
        assert_eq!(read(&store, &map, 5000, 10).await.unwrap(), vec![1u8; 10]);
    }
}
