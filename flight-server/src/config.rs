//! Settings of a running server, independent of how they were given (CLI, env, tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::database::LayeredStorage;

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
    /// Cancel a query running longer than this.
    pub query_timeout: Option<Duration>,
    /// Drop an executed result whose ticket is not fetched within this time.
    pub result_ttl: Duration,
    /// Roll back a transaction idle longer than this.
    pub transaction_idle_timeout: Duration,
    /// Largest gRPC message accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// Layered storage; `None` serves plain files from `data_dir`.
    pub layers: Option<LayeredStorage>,
    /// Seal a database whose log is non-empty at least this often.
    pub seal_interval: Duration,
    /// Seal a database as soon as its log reaches this many bytes.
    pub seal_log_bytes: u64,
    /// Write leases last this long without renewal (renewed every third of it).
    pub lease_ttl: Duration,
}

/// Settings applied to each DuckDB database when it is opened.
#[derive(Debug, Clone, Default)]
pub struct DuckDbSettings {
    /// DuckDB `memory_limit` (e.g. `4GB`); DuckDB's default when `None`.
    pub memory_limit: Option<String>,
    /// DuckDB `threads`; DuckDB's default when `None`.
    pub threads: Option<u32>,
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
            layers: None,
            seal_interval: Duration::from_secs(60),
            seal_log_bytes: 16 * 1024 * 1024,
            lease_ttl: Duration::from_secs(30),
        }
    }
}
