//! Settings of a running server, independent of how they were given (CLI, env, tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openduck_layers::compaction::CompactionPolicy;
use openduck_layers::retention::Retention;
use openduck_layers::storage::Storage;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the one port serving gRPC and HTTP.
    pub listen: SocketAddr,
    /// Directory that holds `<name>.duckdb` files.
    pub data_dir: PathBuf,
    /// Database used when a call names none; created if missing.
    pub default_database: String,
    /// DuckDB settings for every database.
    pub duckdb: DuckDbSettings,
    /// Stop a statement (planning included) running longer than this.
    pub query_timeout: Option<Duration>,
    /// Drop an executed result whose ticket is not fetched within this time.
    pub result_ttl: Duration,
    /// Roll back a transaction idle longer than this.
    pub transaction_idle_timeout: Duration,
    /// Largest gRPC message accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// Longest SQL statement accepted, in bytes (parsing and binding take memory in proportion).
    pub max_statement_bytes: usize,
    /// Layered storage; `None` serves plain files from `data_dir`.
    pub layers: Option<LayeredStorage>,
    /// Seal a database whose log is non-empty at least this often.
    pub seal_interval: Duration,
    /// Seal a database as soon as its log reaches this many bytes.
    pub seal_log_bytes: u64,
}

/// Layered storage of a server: where layers and metadata live, and who this server is.
#[derive(Debug, Clone)]
pub struct LayeredStorage {
    /// The object and metadata stores.
    pub storage: Storage,
    /// This server's name as a lease holder (stable across restarts of the same server).
    pub holder: String,
    /// How long a write lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Whether snapshots are served through FUSE.
    pub fuse: FuseMode,
    /// Whether heads are served through FUSE too (when `fuse` allows FUSE).
    pub fuse_heads: bool,
    /// When to merge a database's layers (checked after each seal).
    pub compaction: CompactionPolicy,
    /// Which old snapshots to keep (applied after each seal).
    pub retention: Retention,
    /// How often to delete layers and objects nothing needs any more (`None`: never; then
    /// `openduck gc` does it).
    pub gc_interval: Option<Duration>,
    /// How long released layers and unrecorded objects are kept before garbage collection.
    pub gc_grace: Duration,
}

/// Whether to serve database files through FUSE: snapshots without materialising them, and
/// (with [`LayeredStorage::fuse_heads`]) heads page by page; else heads are local files diffed
/// at each seal, and snapshots are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FuseMode {
    /// Use FUSE when it can be mounted.
    #[default]
    Auto,
    /// Require FUSE.
    On,
    /// Never use FUSE.
    Off,
}

/// Settings applied to each DuckDB database when it is opened. `None` leaves DuckDB's default
/// (which for memory and spill files is generous: 80% of RAM and 90% of free disk per database);
/// `openduck serve` sets bounded defaults (see its `--help`).
#[derive(Debug, Clone, Default)]
pub struct DuckDbSettings {
    /// Memory for all databases together, in bytes: each open database gets an equal share of
    /// [`DATABASES_SHARE`] of it, and the rest is left to the server's own buffers.
    pub memory_budget: Option<u64>,
    /// DuckDB `threads`; DuckDB's default when `None`.
    pub threads: Option<u32>,
    /// Most bytes of spill (temp) files one database may write.
    pub max_temp_bytes: Option<u64>,
    /// Most bytes a database (its file and log) may take: past it, statements that may grow it
    /// are refused (DELETE and DROP still run).
    pub max_database_bytes: Option<u64>,
}

/// The part of [`DuckDbSettings::memory_budget`] the databases share (7/8); the server's own
/// buffers (results waiting for their fetch, parameters, streams) live in the rest.
pub const DATABASES_SHARE: f64 = 0.875;

/// Parses a size such as `4GB`, `512MiB`, `1.5TB` or `1048576` (bytes) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid size '{s}' (try 4GB, 512MiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("invalid size unit '{other}' (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)")),
    };
    Ok((n * scale) as u64)
}

/// Bytes of physical memory, from the operating system.
pub fn physical_memory() -> Option<u64> {
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}

/// Bytes free (for an unprivileged user) on the filesystem holding `path`.
pub fn free_disk(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl ServerConfig {
    /// A configuration with the documented defaults for `data_dir` and `default_database`.
    pub fn new(data_dir: impl Into<PathBuf>, default_database: impl Into<String>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: data_dir.into(),
            default_database: default_database.into(),
            duckdb: DuckDbSettings::default(),
            query_timeout: None,
            result_ttl: Duration::from_secs(300),
            transaction_idle_timeout: Duration::from_secs(900),
            max_message_bytes: 64 * 1024 * 1024,
            max_statement_bytes: 2 * 1024 * 1024,
            layers: None,
            seal_interval: Duration::from_secs(60),
            seal_log_bytes: 16 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("4 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("GB").is_err());
    }
}
