//! How objects are named in the store, in one place:
//!
//! | object | key |
//! |---|---|
//! | a sealed layer | `<database>/layers/<epoch, 8 digits>-<unique>` |
//! | a piece of the write-ahead log | `<database>/wal/<snapshot it extends>/<offset, 16 hex digits>-<unique>` |
//!
//! `<unique>` (the time in nanoseconds and the process id, in hex) keeps two writers, or a retry,
//! from ever writing the same key: objects are written once (`put_if_absent`).

use std::time::{SystemTime, UNIX_EPOCH};

/// The key of a new layer of `database`, written under lease `epoch`.
pub fn layer(database: &str, epoch: i64) -> String {
    format!("{database}/layers/{epoch:08}-{}", unique())
}

/// The key of a new piece of `database`'s log, extending snapshot `base` from byte `offset`.
pub fn wal_piece(database: &str, base: i64, offset: u64) -> String {
    format!("{database}/wal/{base}/{offset:016x}-{}", unique())
}

fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout_and_never_repeat() {
        let a = layer("sales", 3);
        assert!(a.starts_with("sales/layers/00000003-"), "{a}");
        assert!(wal_piece("sales", 12, 4096).starts_with("sales/wal/12/0000000000001000-"));
        let many: std::collections::HashSet<String> = (0..1000).map(|_| layer("sales", 3)).collect();
        assert_eq!(many.len(), 1000);
    }
}
