//! Resolving reads of a snapshot: which layer holds each page.
//!
//! A snapshot is an ordered list of layers, oldest first. The newest layer that holds a page
//! wins; a page no layer holds reads as zeros (DuckDB never reads such pages within the file
//! length, but a sparse file would). Reads past the snapshot's file length return nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::delta_layer::LayerIndex;
use crate::LayerError;

/// Where a page of a snapshot lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLocation {
    /// Position of the layer in the snapshot (0 = oldest).
    pub layer: usize,
    /// Slot of the page in that layer.
    pub slot: usize,
}

/// One piece of a read: a byte range of a page, or zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPiece {
    /// The page, or `None` for a page no layer holds (zeros).
    pub location: Option<PageLocation>,
    /// Byte range within the page.
    pub within: std::ops::Range<usize>,
}

/// The page → layer map of one snapshot.
#[derive(Debug, Clone)]
pub struct LayerMap {
    layers: Vec<Arc<LayerIndex>>,
    pages: HashMap<u64, PageLocation>,
    page_size: u32,
    file_len: u64,
}

impl LayerMap {
    /// Builds the map of a snapshot from its layers, oldest first. All layers must share a page
    /// size; the file length is the newest layer's.
    pub fn new(layers: Vec<Arc<LayerIndex>>) -> Result<Self, LayerError> {
        let page_size = layers.first().map_or(4096, |l| l.page_size);
        let mut pages = HashMap::new();
        for (i, layer) in layers.iter().enumerate() {
            if layer.page_size != page_size {
                return Err(LayerError::PageSizeMismatch { key: layer.key.clone(), page_size: layer.page_size, expected: page_size });
            }
            for (slot, &(page_no, _)) in layer.entries.iter().enumerate() {
                pages.insert(page_no, PageLocation { layer: i, slot });
            }
        }
        let file_len = layers.last().map_or(0, |l| l.file_len);
        Ok(LayerMap { layers, pages, page_size, file_len })
    }

    /// The layers, oldest first.
    pub fn layers(&self) -> &[Arc<LayerIndex>] {
        &self.layers
    }

    /// Length of the file this snapshot describes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Where page `page_no` lives, if any layer holds it.
    pub fn locate(&self, page_no: u64) -> Option<PageLocation> {
        self.pages.get(&page_no).copied()
    }

    /// Splits a read of `len` bytes at `offset` into per-page pieces, clipped to the file length.
    pub fn plan_read(&self, offset: u64, len: u64) -> Vec<ReadPiece> {
        let end = offset.saturating_add(len).min(self.file_len);
        let page_size = u64::from(self.page_size);
        let mut pieces = Vec::new();
        let mut at = offset;
        while at < end {
            let page_no = at / page_size;
            let start = (at % page_size) as usize;
            let stop = ((end - page_no * page_size).min(page_size)) as usize;
            pieces.push(ReadPiece { location: self.locate(page_no), within: start..stop });
            at = page_no * page_size + stop as u64;
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta_layer::LayerWriter;

    fn layer(key: &str, file_len: u64, pages: &[(u64, &[u8])]) -> Arc<LayerIndex> {
        let mut w = LayerWriter::new(8, file_len);
        for (n, d) in pages {
            w.put_page(*n, d).unwrap();
        }
        Arc::new(LayerIndex::parse(key, &w.finish()).unwrap())
    }

    #[test]
    fn newest_layer_wins_and_reads_are_clipped() {
        let base = layer("base", 24, &[(0, b"aaaaaaaa"), (1, b"bbbbbbbb"), (2, b"cccccccc")]);
        let delta = layer("delta", 28, &[(1, b"BBBBBBBB"), (3, b"dddd")]);
        let map = LayerMap::new(vec![base, delta]).unwrap();
        assert_eq!(map.locate(0), Some(PageLocation { layer: 0, slot: 0 }));
        assert_eq!(map.locate(1), Some(PageLocation { layer: 1, slot: 0 }));
        assert_eq!(map.locate(3), Some(PageLocation { layer: 1, slot: 1 }));
        assert_eq!(map.file_len(), 28);
        let plan = map.plan_read(6, 100);
        assert_eq!(
            plan,
            vec![
                ReadPiece { location: Some(PageLocation { layer: 0, slot: 0 }), within: 6..8 },
                ReadPiece { location: Some(PageLocation { layer: 1, slot: 0 }), within: 0..8 },
                ReadPiece { location: Some(PageLocation { layer: 0, slot: 2 }), within: 0..8 },
                ReadPiece { location: Some(PageLocation { layer: 1, slot: 1 }), within: 0..4 },
            ]
        );
        assert!(map.plan_read(28, 10).is_empty());
        let odd = layer("odd", 8, &[]);
        let mut w = LayerWriter::new(16, 0);
        w.put_page(0, b"x").unwrap();
        let other = Arc::new(LayerIndex::parse("p16", &w.finish()).unwrap());
        assert!(LayerMap::new(vec![odd, other]).is_err());
    }
}
