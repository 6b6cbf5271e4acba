//! The PostgreSQL metadata store against a real PostgreSQL server, started here on a random
//! loopback port in a temporary directory (Debian's `postgresql` package; `scripts/setup.sh`
//! installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use openduck_layers::metadata::{check_behaviour, Metadata, MetadataError, PostgresMetadata};

struct TempPostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("OPENDUCK_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.pop().expect("PostgreSQL server binaries not found: install Debian's postgresql (scripts/setup.sh does)")
}

impl TempPostgres {
    fn run(&self, program: &Path, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = cmd.args(args).output().expect("run PostgreSQL tool");
        assert!(out.status.success(), "{} failed: {}", program.display(), String::from_utf8_lossy(&out.stderr));
    }

    fn start() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let as_postgres = effective_uid() == 0;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = TempPostgres { data: dir.path().join("data"), bin: pg_bin(), port, as_postgres, _dir: dir };
        let data = pg.data.to_string_lossy().to_string();
        pg.run(&pg.bin.join("initdb"), &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        let socket_dir = pg.data.parent().unwrap().to_string_lossy().to_string();
        let options = format!("-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir} -c fsync=off");
        let log = format!("{socket_dir}/server.log");
        pg.run(&pg.bin.join("pg_ctl"), &["-D", &data, "-o", &options, "-l", &log, "-w", "start"]);
        pg
    }

    fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().to_string();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

fn effective_uid() -> u32 {
    // The numeric user id, read without libc: /proc/self/status has "Uid: real effective …".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)).and_then(|u| u.parse().ok()))
        .unwrap_or(1)
}

#[tokio::test]
async fn postgres_behaves_like_a_metadata_store() {
    let pg = TempPostgres::start();
    let m = PostgresMetadata::connect(&pg.url()).await.unwrap();
    check_behaviour(&m).await;
    assert_eq!(m.schema_version().await.unwrap(), 3);
    // A second connection (another host) migrates nothing and sees the same state.
    let again = PostgresMetadata::connect(&pg.url()).await.unwrap();
    assert_eq!(again.databases().await.unwrap(), vec!["copy"]);
}

#[tokio::test]
async fn concurrent_commits_are_fenced_by_the_lease_row() {
    let pg = TempPostgres::start();
    let m = PostgresMetadata::connect(&pg.url()).await.unwrap();
    m.create_database("db", 4096).await.unwrap();
    let lease = m.acquire_lease("db", "w", std::time::Duration::from_secs(30)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (m, lease) = (m.clone(), lease.clone());
        tasks.push(tokio::spawn(async move { m.commit(&lease, &format!("db/{i}"), 1, 1).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let snapshots = m.snapshots("db").await.unwrap();
    assert_eq!(snapshots.len(), 16);
    // Each snapshot extends the previous one: commits were serialized, none lost a layer.
    for (i, s) in snapshots.iter().enumerate() {
        assert_eq!(s.layers.len(), i + 1);
    }
}

#[tokio::test]
async fn metadata_store_down_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = PostgresMetadata::connect(&format!("host=127.0.0.1 port={port} user=postgres connect_timeout=2")).await.err().unwrap();
    assert!(matches!(err, MetadataError::Store(ref m) if m.contains("postgres")), "{err}");
}
