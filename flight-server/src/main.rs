//! The `openduck` command: `openduck serve` runs the Flight SQL server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use openduck_flight_server::auth::Authenticator;
use openduck_flight_server::config::{DuckDbSettings, ServerConfig};
use openduck_flight_server::server::Server;

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
    Serve(ServeArgs),
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
    /// Directory holding the database files.
    #[arg(long, default_value = "./openduck-data", env = "OPENDUCK_DATA_DIR")]
    data_dir: PathBuf,
    /// DuckDB memory limit per database, e.g. `4GB` (DuckDB's default: 80% of RAM).
    #[arg(long, env = "OPENDUCK_MEMORY_LIMIT")]
    memory_limit: Option<String>,
    /// DuckDB worker threads per database (default: all cores).
    #[arg(long, env = "OPENDUCK_THREADS")]
    threads: Option<u32>,
    /// Cancel queries running longer than this (e.g. `30s`, `5m`); no limit by default.
    #[arg(long, value_parser = parse_duration, env = "OPENDUCK_QUERY_TIMEOUT")]
    query_timeout: Option<Duration>,
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
        _ => return Err(format!("invalid duration unit '{unit}' (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENDUCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
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
    let mut config = ServerConfig::new(&args.data_dir, &args.database);
    config.listen = SocketAddr::new(args.host, args.port);
    config.duckdb = DuckDbSettings { memory_limit: args.memory_limit, threads: args.threads };
    config.query_timeout = args.query_timeout;
    config.transaction_idle_timeout = args.transaction_idle_timeout;
    config.max_message_bytes = args.max_message_mib * 1024 * 1024;
    let server = Server::bind(config, auth).await.context("starting the server")?;
    let addr = server.local_addr()?;
    eprintln!("openduck: serving Flight SQL on grpc://{addr} (health: http://{addr}/health)");
    server.serve(shutdown_signal(), args.shutdown_grace).await?;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
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
        assert!(parse_duration("abc").is_err() && parse_duration("5y").is_err());
    }
}
