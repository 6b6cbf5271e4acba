//! The delta layer: the pages of a database file written between two seals.
//!
//! Format (version 1, little-endian), built so that a reader fetches only what it needs — the
//! footer, then the index, then single pages by byte range:
//!
//! ```text
//! header  : magic "ODLAYER\0" | version u32 | page_size u32 | page_count u32 | file_len u64   (28 bytes)
//! pages   : page_count × page_size bytes, in ascending page number
//! index   : page_count × (page_no u64 | crc32 u32)
//! footer  : index_offset u64 | index_crc32 u32 | header_crc32 u32 | magic "ODLEND\0\0"         (24 bytes)
//! ```
//!
//! Invariants (checked by [`LayerIndex::parse`]): page numbers strictly ascend; every page is
//! exactly `page_size` bytes (the file's tail page is zero-padded; `file_len` says where the file
//! ends); the index and header checksums match. A page is only returned after its own checksum
//! matches, so a corrupt layer is detected and never served.

use crate::LayerError;

const MAGIC: &[u8; 8] = b"ODLAYER\0";
const END_MAGIC: &[u8; 8] = b"ODLEND\0\0";
const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: u64 = 28;
/// Size of the fixed footer.
pub const FOOTER_LEN: u64 = 24;
const INDEX_ENTRY_LEN: u64 = 12;

/// Builds a layer from pages.
#[derive(Debug)]
pub struct LayerWriter {
    page_size: u32,
    file_len: u64,
    pages: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl LayerWriter {
    /// A layer of `page_size`-byte pages of a file that is `file_len` bytes long after the writes.
    pub fn new(page_size: u32, file_len: u64) -> Self {
        assert!(page_size > 0, "page size must be positive");
        LayerWriter { page_size, file_len, pages: Default::default() }
    }

    /// Adds (or replaces) page `page_no`; shorter data is zero-padded, longer is an error.
    pub fn put_page(&mut self, page_no: u64, data: &[u8]) -> Result<(), LayerError> {
        if data.len() > self.page_size as usize {
            return Err(LayerError::PageTooLong { page: page_no, len: data.len(), page_size: self.page_size });
        }
        let mut page = data.to_vec();
        page.resize(self.page_size as usize, 0);
        self.pages.insert(page_no, page);
        Ok(())
    }

    /// Number of pages so far.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The layer's bytes.
    pub fn finish(self) -> Vec<u8> {
        let count = self.pages.len() as u64;
        let data_len = count * u64::from(self.page_size);
        let mut out = Vec::with_capacity((HEADER_LEN + data_len + count * INDEX_ENTRY_LEN + FOOTER_LEN) as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.extend_from_slice(&self.file_len.to_le_bytes());
        let header_crc = crc32fast::hash(&out);
        let mut index = Vec::with_capacity((count * INDEX_ENTRY_LEN) as usize);
        for (page_no, data) in &self.pages {
            out.extend_from_slice(data);
            index.extend_from_slice(&page_no.to_le_bytes());
            index.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        }
        let index_offset = out.len() as u64;
        let index_crc = crc32fast::hash(&index);
        out.extend_from_slice(&index);
        out.extend_from_slice(&index_offset.to_le_bytes());
        out.extend_from_slice(&index_crc.to_le_bytes());
        out.extend_from_slice(&header_crc.to_le_bytes());
        out.extend_from_slice(END_MAGIC);
        out
    }
}

/// The parsed header and index of a layer: enough to know which pages it holds and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIndex {
    /// Object key of the layer (for messages).
    pub key: String,
    /// Page size in bytes.
    pub page_size: u32,
    /// Length of the database file after this layer's writes.
    pub file_len: u64,
    /// (page number, crc32) in ascending page order.
    pub entries: Vec<(u64, u32)>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

impl LayerIndex {
    /// The byte range of the footer in a layer of `total_len` bytes.
    pub fn footer_range(total_len: u64) -> std::ops::Range<u64> {
        total_len.saturating_sub(FOOTER_LEN)..total_len
    }

    /// Parses a layer's header, footer and index (`header` = first [`HEADER_LEN`] bytes,
    /// `tail` = everything from the index offset to the end), verifying their checksums.
    pub fn parse_parts(key: &str, header: &[u8], tail: &[u8], total_len: u64) -> Result<Self, LayerError> {
        let bad = |reason: String| LayerError::Malformed { key: key.to_string(), reason };
        if header.len() < HEADER_LEN as usize || &header[..8] != MAGIC {
            return Err(bad("bad magic".into()));
        }
        if tail.len() < FOOTER_LEN as usize || &tail[tail.len() - 8..] != END_MAGIC {
            return Err(bad("bad footer".into()));
        }
        let version = u32_at(header, 8);
        if version != VERSION {
            return Err(bad(format!("unsupported version {version}")));
        }
        let footer = &tail[tail.len() - FOOTER_LEN as usize..];
        let (index_offset, index_crc, header_crc) = (u64_at(footer, 0), u32_at(footer, 8), u32_at(footer, 12));
        if crc32fast::hash(&header[..HEADER_LEN as usize]) != header_crc {
            return Err(LayerError::Corrupt { key: key.to_string(), what: "header".into() });
        }
        let (page_size, count, file_len) = (u32_at(header, 12), u64::from(u32_at(header, 16)), u64_at(header, 20));
        if page_size == 0 {
            return Err(bad("zero page size".into()));
        }
        let expected_offset = HEADER_LEN + count * u64::from(page_size);
        if index_offset != expected_offset || total_len != expected_offset + count * INDEX_ENTRY_LEN + FOOTER_LEN {
            return Err(bad("sizes do not add up".into()));
        }
        let index = &tail[..tail.len() - FOOTER_LEN as usize];
        if index.len() as u64 != count * INDEX_ENTRY_LEN {
            return Err(bad("index has the wrong length".into()));
        }
        if crc32fast::hash(index) != index_crc {
            return Err(LayerError::Corrupt { key: key.to_string(), what: "index".into() });
        }
        let mut entries = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = i * INDEX_ENTRY_LEN as usize;
            let page_no = u64_at(index, at);
            if entries.last().is_some_and(|&(prev, _)| prev >= page_no) {
                return Err(bad("page numbers do not ascend".into()));
            }
            entries.push((page_no, u32_at(index, at + 8)));
        }
        Ok(LayerIndex { key: key.to_string(), page_size, file_len, entries })
    }

    /// Parses a whole layer held in memory.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self, LayerError> {
        let total = bytes.len() as u64;
        if total < HEADER_LEN + FOOTER_LEN {
            return Err(LayerError::Malformed { key: key.to_string(), reason: "too short".into() });
        }
        let footer = &bytes[(total - FOOTER_LEN) as usize..];
        let index_offset = u64_at(footer, 0).min(total - FOOTER_LEN) as usize;
        Self::parse_parts(key, &bytes[..HEADER_LEN as usize], &bytes[index_offset..], total)
    }

    /// The slot of `page_no` in this layer, if it holds that page.
    pub fn slot(&self, page_no: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&page_no, |&(p, _)| p).ok()
    }

    /// The byte range of all pages within the layer object (one read fetches every page).
    pub fn pages_range(&self) -> std::ops::Range<u64> {
        HEADER_LEN..HEADER_LEN + self.entries.len() as u64 * u64::from(self.page_size)
    }

    /// The length of the whole layer object.
    pub fn object_len(&self) -> u64 {
        self.pages_range().end + self.entries.len() as u64 * INDEX_ENTRY_LEN + FOOTER_LEN
    }

    /// The byte range of slot `slot`'s page within the layer object.
    pub fn page_range(&self, slot: usize) -> std::ops::Range<u64> {
        let start = HEADER_LEN + slot as u64 * u64::from(self.page_size);
        start..start + u64::from(self.page_size)
    }

    /// Verifies a page read from slot `slot` against its checksum.
    pub fn verify(&self, slot: usize, data: &[u8]) -> Result<(), LayerError> {
        let (page_no, crc) = self.entries[slot];
        if data.len() != self.page_size as usize || crc32fast::hash(data) != crc {
            return Err(LayerError::Corrupt { key: self.key.clone(), what: format!("page {page_no}") });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = LayerWriter::new(16, 100);
        w.put_page(5, b"five").unwrap();
        w.put_page(1, &[1u8; 16]).unwrap();
        w.put_page(2, b"two").unwrap();
        w.finish()
    }

    #[test]
    fn round_trip_and_ranged_reads() {
        let bytes = sample();
        let index = LayerIndex::parse("l1", &bytes).unwrap();
        assert_eq!(index.entries.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 5]);
        assert_eq!(index.file_len, 100);
        let slot = index.slot(5).unwrap();
        let r = index.page_range(slot);
        let page = &bytes[r.start as usize..r.end as usize];
        index.verify(slot, page).unwrap();
        assert_eq!(&page[..4], b"five");
        assert!(page[4..].iter().all(|&b| b == 0));
        assert_eq!(index.slot(3), None);
        // The footer tells where the index is: a reader needs three small range reads.
        let total = bytes.len() as u64;
        let footer = LayerIndex::footer_range(total);
        assert_eq!(footer.end - footer.start, FOOTER_LEN);
    }

    #[test]
    fn corruption_is_detected_never_served() {
        let bytes = sample();
        let index = LayerIndex::parse("l1", &bytes).unwrap();
        let mut page = bytes[index.page_range(0).start as usize..index.page_range(0).end as usize].to_vec();
        page[3] ^= 0xff;
        assert!(matches!(index.verify(0, &page), Err(LayerError::Corrupt { .. })));
        let mut broken = bytes.clone();
        let idx_at = bytes.len() - FOOTER_LEN as usize - 5;
        broken[idx_at] ^= 1;
        assert!(matches!(LayerIndex::parse("l1", &broken), Err(LayerError::Corrupt { .. })));
        broken = bytes.clone();
        broken[14] ^= 1; // page size in the header
        assert!(matches!(LayerIndex::parse("l1", &broken), Err(LayerError::Corrupt { .. })));
        assert!(matches!(LayerIndex::parse("l1", b"nonsense"), Err(LayerError::Malformed { .. })));
        assert!(LayerWriter::new(4, 0).put_page(0, b"toolong").is_err());
    }
}
