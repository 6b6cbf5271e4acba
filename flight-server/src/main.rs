//! The `openduck` command: `openduck serve` runs the Flight SQL server; `openduck db`,
//! `openduck snapshot` and `openduck gc` manage databases on layered storage.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use openduck_flight_server::auth::Authenticator;
use openduck_flight_server::config::{free_disk, parse_size, physical_memory, DuckDbSettings, FuseMode, LayeredStorage, ServerConfig};
use openduck_flight_server::database::valid_name;
use openduck_flight_server::server::Server;
use openduck_layers::compaction::CompactionPolicy;
use openduck_layers::retention::Retention;
use openduck_layers::storage::Storage;

/// OpenDuck: open, self-hostable, distributed DuckDB over Arrow Flight SQL.
#[derive(Parser)]
#[command(name = "openduck", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "OPENDUCK_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DuckDB databases over Arrow Flight SQL (gRPC) and `GET /health`, on one port.
    ///
    /// Clients connect with any Flight SQL driver, e.g. ADBC
    /// (`grpc://HOST:PORT`, header `authorization: Bearer TOKEN`) or JDBC
    /// (`jdbc:arrow-flight-sql://HOST:PORT?useEncryption=false&token=TOKEN`).
    Serve(Box<ServeArgs>),
    /// Databases on layered storage: list, create, drop, clone.
    #[command(subcommand)]
    Db(DbCommand),
    /// Snapshots of a database.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Deletes layers no snapshot has needed for the grace period (the first run that finds a
    /// layer unneeded starts its clock), and unrecorded objects older than it.
    Gc {
        #[command(flatten)]
        storage: StorageArgs,
        /// Keep layers released and objects written less than this ago (a reader may still be on
        /// a pruned snapshot; a writer may be about to record an object).
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        grace: Duration,
    },
}

/// Where layered storage lives (shared by `serve` and the management commands).
#[derive(clap::Args, Clone)]
struct StorageArgs {
    /// Directory holding the database files (the writable heads) and the default stores.
    #[arg(long, default_value = "./openduck-data", env = "OPENDUCK_DATA_DIR")]
    data_dir: PathBuf,
    /// Object store for layers: `file:///path` or `s3://bucket/prefix` (endpoint, region and
    /// credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    /// Default: `<data-dir>/store`.
    #[arg(long, env = "OPENDUCK_STORE")]
    store: Option<String>,
    /// Metadata store: `sqlite:///path` or `postgres://user:pass@host:port/db`.
    /// Default: `sqlite://<data-dir>/metadata.sqlite`.
    #[arg(long, env = "OPENDUCK_METADATA", hide_env_values = true)]
    metadata: Option<String>,
}

impl StorageArgs {
    /// The store and metadata URLs, local paths made absolute (a server works in its data
    /// directory once it starts, see `serve`).
    fn urls(&self) -> (String, String) {
        let absolute_url = |url: String| match ["file://", "sqlite://"].into_iter().find(|scheme| url.starts_with(scheme)) {
            Some(scheme) => format!("{scheme}{}", absolute(std::path::Path::new(&url[scheme.len()..])).display()),
            None => url,
        };
        let store =
            self.store.clone().map(absolute_url).unwrap_or_else(|| format!("file://{}", absolute(&self.data_dir.join("store")).display()));
        let metadata = self
            .metadata
            .clone()
            .map(absolute_url)
            .unwrap_or_else(|| format!("sqlite://{}", absolute(&self.data_dir.join("metadata.sqlite")).display()));
        (store, metadata)
    }

    async fn open(&self) -> anyhow::Result<Storage> {
        std::fs::create_dir_all(&self.data_dir).with_context(|| format!("creating {}", self.data_dir.display()))?;
        let (store, metadata) = self.urls();
        Storage::open(&store, &metadata).await.context("opening layered storage")
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[derive(Subcommand)]
enum DbCommand {
    /// Lists databases with their newest snapshot.
    List(#[command(flatten)] StorageArgs),
    /// Creates an empty database (a running server opens it within seconds).
    Create {
        /// Its name: letters, digits and '_', starting with a letter.
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Drops a database's metadata; `openduck gc` then deletes the layers only it used.
    Drop {
        /// The database.
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Zero-copy clone: a new database starting at a snapshot of another, sharing its layers.
    Clone {
        /// The database to clone.
        source: String,
        /// The new database.
        target: String,
        /// The snapshot to start from (default: the newest).
        #[arg(long)]
        snapshot: Option<i64>,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Deletes old snapshots (metadata only; `openduck gc` then deletes the layers nothing uses).
    /// A running server does this after each seal with its --keep-snapshots settings.
    Prune {
        /// The database.
        database: String,
        /// Keep at least this many of the newest snapshots (the newest is always kept).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
        /// Keep every snapshot younger than this.
        #[arg(long, value_parser = parse_duration, default_value = "7d")]
        keep_for: Duration,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Lists a database's snapshots: id, time, file size, bytes stored, layers, parent.
    List {
        /// The database.
        database: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Writes the file of one snapshot to a standalone DuckDB file (time travel, backups).
    Restore {
        /// The database.
        database: String,
        /// The snapshot id (see `openduck snapshot list`).
        snapshot: i64,
        /// The file to write; must not exist.
        output: PathBuf,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Default database: `<data-dir>/<NAME>.duckdb`, created if missing. Other `*.duckdb` files
    /// in the data directory are served too; clients choose one by catalog or the
    /// `x-openduck-database` header.
    #[arg(short = 'd', long = "database", default_value = "openduck", env = "OPENDUCK_DATABASE")]
    database: String,
    /// Token clients must present (`authorization: Bearer TOKEN`, or Basic auth with the token
    /// as password). Grants every database, read-write.
    #[arg(short = 't', long, env = "OPENDUCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// JSON file of scoped tokens: {"tokens": [{"token": "…", "databases": ["sales"], "read_only": true}]}.
    #[arg(long, env = "OPENDUCK_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "OPENDUCK_HOST")]
    host: IpAddr,
    /// Port for gRPC and HTTP.
    #[arg(short, long, default_value_t = 7878, env = "OPENDUCK_PORT")]
    port: u16,
    #[command(flatten)]
    storage: StorageArgs,
    /// Serve the database files as they are, without layered storage (no snapshots, no
    /// durability beyond the local disk).
    #[arg(long, env = "OPENDUCK_PLAIN")]
    plain: bool,
    /// This server's name as the holder of write leases; must stay the same across restarts.
    /// Default: `<hostname>:<data-dir>`.
    #[arg(long, env = "OPENDUCK_NODE")]
    node: Option<String>,
    /// Seal a snapshot of a changed database at least this often.
    #[arg(long, value_parser = parse_duration, default_value = "60s", env = "OPENDUCK_SEAL_INTERVAL")]
    seal_interval: Duration,
    /// Seal as soon as a database's write-ahead log reaches this many MiB.
    #[arg(long, default_value_t = 16)]
    seal_log_mib: u64,
    /// Write leases last this long unless renewed (a crashed server's databases can be taken
    /// over after it).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    lease_ttl: Duration,
    /// Serve snapshot files (time travel, followers) through FUSE, reading only the pages
    /// queries touch; `auto` uses it when it can be mounted (Linux, root), else snapshots are
    /// materialised into the data directory.
    #[arg(long, value_enum, default_value = "auto", env = "OPENDUCK_FUSE")]
    fuse: FuseMode,
    /// Also serve the heads this server writes through FUSE (needs FUSE, see --fuse): no copy of
    /// the database is made when it opens, pages are fetched when first touched, and a seal
    /// uploads just the pages written instead of diffing the whole file. Off by default: a
    /// server killed while one of its own queries waits on the filesystem cannot finish exiting
    /// until the mount is aborted (`/sys/fs/fuse/connections/*/abort`).
    #[arg(long, env = "OPENDUCK_FUSE_HEADS")]
    fuse_heads: bool,
    /// Compact a database once its newest snapshot has more layers than this, merging its
    /// newest layers into one (0: never).
    #[arg(long, default_value_t = 8, env = "OPENDUCK_COMPACT_LAYERS")]
    compact_layers: usize,
    /// The most MiB of layers one compaction merges (it holds them in memory, and commits to the
    /// database wait for it); bigger old layers stay as they are.
    #[arg(long, default_value_t = 256)]
    compact_max_mib: u64,
    /// Keep at least this many of each database's newest snapshots (the newest is always kept).
    #[arg(long, default_value_t = 10, env = "OPENDUCK_KEEP_SNAPSHOTS")]
    keep_snapshots: usize,
    /// Keep every snapshot younger than this (time travel window), e.g. `7d`, `12h`.
    #[arg(long, value_parser = parse_duration, default_value = "7d", env = "OPENDUCK_KEEP_SNAPSHOTS_FOR")]
    keep_snapshots_for: Duration,
    /// Delete layers and objects nothing needs any more this often (`0` turns it off; then run
    /// `openduck gc`).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    gc_interval: Duration,
    /// Keep released layers and unrecorded objects this long before deleting them: readers of a
    /// pruned snapshot finish, and a write in flight gets recorded. Keep it well above the time
    /// one commit takes.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    gc_grace: Duration,
    /// Memory for all databases together, e.g. `8GB`: each open database gets an equal share of
    /// 7/8 of it, the rest is for the server's own buffers. Default: 60% of RAM.
    #[arg(long, value_parser = parse_size, env = "OPENDUCK_MEMORY_LIMIT")]
    memory_limit: Option<u64>,
    /// Most spill (temp) files one database may write, e.g. `20GB`. Default: 10% of the data
    /// directory's free disk at start.
    #[arg(long, value_parser = parse_size, env = "OPENDUCK_MAX_TEMP_SIZE")]
    max_temp_size: Option<u64>,
    /// Most disk one database (file and log) may take, e.g. `100GB`: past it, statements that may
    /// grow it are refused (DELETE and DROP still run). Default: half the data directory's free
    /// disk at start.
    #[arg(long, value_parser = parse_size, env = "OPENDUCK_MAX_DATABASE_SIZE")]
    max_database_size: Option<u64>,
    /// DuckDB worker threads per database (default: all cores).
    #[arg(long, env = "OPENDUCK_THREADS")]
    threads: Option<u32>,
    /// Stop statements running longer than this, planning included (e.g. `30s`, `5m`; `0`: no
    /// limit).
    #[arg(long, value_parser = parse_duration, default_value = "30m", env = "OPENDUCK_QUERY_TIMEOUT")]
    query_timeout: Duration,
    /// Longest SQL statement accepted, in KiB (parsing and planning take memory in proportion;
    /// pass large values as parameters or load them with ingest).
    #[arg(long, default_value_t = 2048)]
    max_statement_kib: usize,
    /// Roll back transactions idle longer than this.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    transaction_idle_timeout: Duration,
    /// Largest request message accepted, in MiB (bigger ingest batches are refused).
    #[arg(long, default_value_t = 64)]
    max_message_mib: usize,
    /// On SIGINT/SIGTERM, how long in-flight calls may run before they are interrupted.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    shutdown_grace: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration '{s}' (try 30s, 500ms, 5m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("invalid duration unit '{unit}' (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENDUCK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received SIGINT"),
        _ = term => tracing::info!("received SIGTERM"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let auth = Authenticator::new(args.token.as_deref(), args.tokens_file.as_deref())?;
    let mut config = ServerConfig::new(&args.storage.data_dir, &args.database);
    if !args.plain {
        let storage = args.storage.open().await?;
        tracing::info!(storage = ?storage, "layered storage");
        let holder = args.node.clone().unwrap_or_else(|| {
            let host =
                std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
            format!("{host}:{}", absolute(&args.storage.data_dir).display())
        });
        let fuse = args.fuse;
        config.layers = Some(LayeredStorage {
            storage,
            holder,
            lease_ttl: args.lease_ttl,
            fuse,
            fuse_heads: args.fuse_heads,
            compaction: CompactionPolicy { max_layers: args.compact_layers, max_bytes: args.compact_max_mib.saturating_mul(1 << 20) },
            retention: Retention { keep_last: args.keep_snapshots, keep_for: args.keep_snapshots_for },
            gc_interval: Some(args.gc_interval).filter(|i| !i.is_zero()),
            gc_grace: args.gc_grace,
        });
    }
    config.seal_interval = args.seal_interval;
    config.seal_log_bytes = args.seal_log_mib * 1024 * 1024;
    config.listen = SocketAddr::new(args.host, args.port);
    std::fs::create_dir_all(&args.storage.data_dir).with_context(|| format!("creating {}", args.storage.data_dir.display()))?;
    let free = free_disk(&args.storage.data_dir);
    config.duckdb = DuckDbSettings {
        memory_budget: args.memory_limit.or_else(|| physical_memory().map(|m| m / 10 * 6)),
        threads: args.threads,
        max_temp_bytes: args.max_temp_size.or_else(|| free.map(|f| f / 10)),
        max_database_bytes: args.max_database_size.or_else(|| free.map(|f| f / 2)),
    };
    tracing::info!(settings = ?config.duckdb, "database limits");
    config.query_timeout = Some(args.query_timeout).filter(|t| !t.is_zero());
    config.max_statement_bytes = args.max_statement_kib * 1024;
    config.transaction_idle_timeout = args.transaction_idle_timeout;
    config.max_message_bytes = args.max_message_mib * 1024 * 1024;
    // DuckDB shows the paths of a database's files to SQL (duckdb_databases(), duckdb_settings(),
    // its error messages): the server works in its data directory, so those paths are relative
    // and say nothing of the server's disk. Every other path was made absolute before this.
    let data_dir = absolute(&args.storage.data_dir);
    std::env::set_current_dir(&data_dir).with_context(|| format!("entering the data directory {}", data_dir.display()))?;
    config.data_dir = PathBuf::from(".");
    let server = Server::bind(config, auth).await.context("starting the server")?;
    if !args.plain && args.fuse != FuseMode::Off {
        // Releases the FUSE mounts if this process is killed (see openduck_layers::fuse_watchdog);
        // mounts that are not there are ignored.
        let mounts = [data_dir.join(".fuse"), data_dir.join(".heads")];
        if let Err(e) = std::env::current_exe().and_then(|exe| openduck_layers::fuse_watchdog::spawn(&exe, &mounts)) {
            tracing::warn!(error = %e, "cannot start the FUSE watchdog");
        }
    }
    let addr = server.local_addr()?;
    // A log record, so that `--log-format json` output stays one JSON object per line.
    tracing::info!(flight_sql = %format!("grpc://{addr}"), health = %format!("http://{addr}/health"), "openduck is serving");
    server.serve(shutdown_signal(), args.shutdown_grace).await?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The FUSE watchdog (started by `serve`, see openduck_layers::fuse_watchdog) needs no runtime.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(openduck_layers::fuse_watchdog::SUBCOMMAND) {
        let parent = args.get(2).and_then(|p| p.parse().ok()).context("fuse-watchdog: expected a process id")?;
        let mounts: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
        init_logging(LogFormat::Text);
        openduck_layers::fuse_watchdog::run(parent, &mounts);
        return Ok(());
    }
    openduck_flight_server::threads::runtime()?.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Db(cmd) => db_command(cmd).await,
        Command::Snapshot(SnapshotCommand::List { database, storage }) => {
            let storage = storage.open().await?;
            let snapshots = storage.meta.snapshots(&database).await?;
            println!(
                "{:>8}  {:<24}  {:>14}  {:>14}  {:>6}  {:>8}",
                "id", "created (UTC)", "file bytes", "stored bytes", "layers", "parent"
            );
            for s in snapshots {
                let parent = s.parent.map_or("-".to_string(), |p| p.to_string());
                println!(
                    "{:>8}  {:<24}  {:>14}  {:>14}  {:>6}  {:>8}",
                    s.id,
                    format_ms(s.created_ms),
                    s.file_len,
                    s.size,
                    s.layers.len(),
                    parent
                );
            }
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Restore { database, snapshot, output, storage }) => {
            anyhow::ensure!(!output.exists(), "{} exists already", output.display());
            let storage = storage.open().await?;
            let info = storage.meta.snapshot(snapshot).await?;
            anyhow::ensure!(info.database == database, "snapshot {snapshot} belongs to database '{}', not '{database}'", info.database);
            openduck_layers::snapshot::restore_to(storage.store.as_ref(), &info, &output).await?;
            println!("wrote snapshot {snapshot} of '{database}' ({} bytes) to {}", info.file_len, output.display());
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Prune { database, keep_last, keep_for, storage }) => {
            let storage = storage.open().await?;
            let pruned = Retention { keep_last, keep_for }.apply(storage.meta.as_ref(), &database).await?;
            println!("pruned {} snapshots of '{database}' (run `openduck gc` to delete the layers nothing uses now)", pruned.len());
            for id in pruned {
                println!("  {id}");
            }
            Ok(())
        }
        Command::Gc { storage, grace } => {
            let storage = storage.open().await?;
            let report = openduck_layers::gc::collect_garbage(storage.meta.as_ref(), storage.store.as_ref(), "", grace).await?;
            println!("deleted {} unreferenced layers and {} orphaned objects", report.unreferenced.len(), report.orphans.len());
            for key in report.unreferenced.iter().chain(&report.orphans) {
                println!("  {key}");
            }
            Ok(())
        }
    }
}

async fn db_command(cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::List(storage) => {
            let storage = storage.open().await?;
            println!("{:<32}  {:>9}  {:<24}  {:>14}", "database", "snapshots", "newest (UTC)", "file bytes");
            for name in storage.meta.databases().await? {
                let snapshots = storage.meta.snapshots(&name).await?;
                let (when, len) = snapshots.last().map_or(("-".to_string(), 0), |s| (format_ms(s.created_ms), s.file_len));
                println!("{:<32}  {:>9}  {:<24}  {:>14}", name, snapshots.len(), when, len);
            }
        }
        DbCommand::Create { name, storage } => {
            anyhow::ensure!(valid_name(&name), "invalid database name '{name}': use letters, digits and '_', starting with a letter");
            storage.open().await?.meta.create_database(&name, openduck_layers::head::DEFAULT_PAGE_SIZE).await?;
            println!("created database '{name}'");
        }
        DbCommand::Drop { name, storage } => {
            storage.open().await?.meta.drop_database(&name).await?;
            println!("dropped database '{name}' (run `openduck gc` to delete layers no other database uses)");
        }
        DbCommand::Clone { source, target, snapshot, storage } => {
            anyhow::ensure!(valid_name(&target), "invalid database name '{target}': use letters, digits and '_', starting with a letter");
            let s = storage.open().await?.meta.clone_database(&source, &target, snapshot).await?;
            println!("cloned '{source}' into '{target}' at snapshot {} ({} layers shared, nothing copied)", s.id, s.layers.len());
        }
    }
    Ok(())
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| format!("{ms} ms"), |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_duration("abc").is_err() && parse_duration("5y").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_ms(1_795_435_200_123), "2026-11-23 12:00:00.123");
        assert_eq!(format_ms(951_825_600_000), "2000-02-29 12:00:00.000");
    }
}
