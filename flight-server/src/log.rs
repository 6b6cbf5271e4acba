//! How the server's logs show a client's SQL: a bounded prefix and a digest, never the whole
//! statement (a 60 MB statement would be 60 MB of log, literals and all). The digest identifies
//! a statement across log lines without showing it.

use std::fmt;

use sha2::Digest as _;

/// How many characters of a statement the log shows.
pub const PREFIX_CHARS: usize = 200;

/// A statement as logged: `sql(&text)` in a `tracing` field.
pub struct LoggedSql<'a>(&'a str);

/// Wraps `sql` for logging (see the module docs).
pub fn sql(sql: &str) -> LoggedSql<'_> {
    LoggedSql(sql)
}

impl fmt::Display for LoggedSql<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let cut = text.char_indices().nth(PREFIX_CHARS).map_or(text.len(), |(i, _)| i);
        // One line per statement in the log.
        for c in text[..cut].chars() {
            let c = if c == '\n' || c == '\r' { ' ' } else { c };
            f.write_str(c.encode_utf8(&mut [0; 4]))?;
        }
        let digest = sha2::Sha256::digest(text.as_bytes());
        if cut < text.len() {
            f.write_str("…")?;
        }
        write!(f, " [{} bytes, sha256:", text.len())?;
        for b in &digest[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_are_cut_and_digested() {
        let long = format!("SELECT '{}'", "x".repeat(10_000));
        let shown = sql(&long).to_string();
        assert!(shown.len() < PREFIX_CHARS + 64, "{} chars logged", shown.len());
        assert!(shown.starts_with("SELECT 'xxx") && shown.contains(&format!("[{} bytes, sha256:", long.len())), "{shown}");
        let other = format!("SELECT '{}y'", "x".repeat(10_000));
        assert_ne!(sql(&other).to_string(), shown, "the digest tells statements with the same prefix apart");
        assert_eq!(sql("SELECT\n1").to_string().lines().count(), 1);
        // Cut on a character boundary.
        let wide = "é".repeat(1000);
        assert!(sql(&wide).to_string().starts_with(&"é".repeat(PREFIX_CHARS)));
    }
}
