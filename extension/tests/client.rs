//! The extension's Flight SQL client against a real in-process OpenDuck server.

use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use openduck_extension::client::{Client, IngestMode};
use openduck_extension::conn_string::{parse, ConnInfo};
use openduck_extension::ClientError;
use openduck_flight_server::auth::Authenticator;
use openduck_flight_server::config::ServerConfig;
use openduck_flight_server::server::Server;

const TOKEN: &str = "ext-test-token";

/// Starts a server on its own thread and runtime; returns its endpoint.
fn start() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut config = ServerConfig::new(&path, "mydb");
            config.listen = "127.0.0.1:0".parse().unwrap();
            let server = Server::bind(config, Authenticator::new(Some(TOKEN), None).unwrap()).await.unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            server.serve(std::future::pending(), Duration::from_secs(1)).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (dir, format!("http://{addr}"))
}

/// The server's `running_queries` (its /health, read over plain HTTP/1.1).
fn running_queries(endpoint: &str) -> usize {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let at = response.find("\"running_queries\":").expect("/health reports running_queries") + "\"running_queries\":".len();
    response[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

fn info(endpoint: &str, token: Option<&str>) -> ConnInfo {
    let mut s = format!("openduck:mydb?endpoint={endpoint}");
    if let Some(t) = token {
        s.push_str(&format!("&token={t}"));
    }
    parse(&s, |_| None).unwrap()
}

#[test]
fn tables_query_execute_and_ingest() {
    let (_dir, endpoint) = start();
    let c = Client::connect(info(&endpoint, Some(TOKEN))).unwrap();
    assert_eq!(c.execute("CREATE TABLE t AS SELECT range AS id FROM range(100000)", None).unwrap(), 100000);
    let tables = c.tables().unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!((tables[0].schema.as_str(), tables[0].name.as_str()), ("main", "t"));
    assert_eq!(tables[0].arrow_schema.field(0).name(), "id");

    let reader = c.query("SELECT id FROM t WHERE id % 2 = 0", None).unwrap();
    let mut rows = 0;
    let mut sum = 0i64;
    for b in reader {
        let b = b.unwrap();
        rows += b.num_rows();
        sum += b.column(0).as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
    }
    assert_eq!((rows, sum), (50000, (0..100000i64).filter(|i| i % 2 == 0).sum()));

    let batch = RecordBatch::try_from_iter(vec![("id", std::sync::Arc::new(Int64Array::from(vec![7, 8])) as _)]).unwrap();
    assert_eq!(c.ingest(None, "t", IngestMode::Append, vec![Ok(batch.clone())].into_iter()).unwrap(), 2);
    assert_eq!(c.ingest(None, "fresh", IngestMode::Create, vec![Ok(batch)].into_iter()).unwrap(), 2);
    assert_eq!(c.tables().unwrap().len(), 2);

    let err = c.query("SELECT * FROM missing", None).err().unwrap().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn wrong_token_says_so() {
    let (_dir, endpoint) = start();
    let err = Client::connect(info(&endpoint, Some("wrong"))).err().unwrap();
    assert!(matches!(err, ClientError::Auth(_)), "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");
    let err = Client::connect(info(&endpoint, None)).err().unwrap();
    assert!(matches!(err, ClientError::Auth(_)), "{err}");
}

#[test]
fn unknown_database_is_named() {
    let (_dir, endpoint) = start();
    let i = parse(&format!("openduck:nope?endpoint={endpoint}&token={TOKEN}"), |_| None).unwrap();
    let err = Client::connect(i).err().unwrap().to_string();
    assert!(err.contains("no database 'nope'") && err.contains("mydb"), "{err}");
}

#[test]
fn unreachable_endpoint_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let err = Client::connect(info(&format!("http://127.0.0.1:{port}"), Some(TOKEN))).err().unwrap();
    assert!(matches!(err, ClientError::Unreachable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn transactions_and_aborted_uploads() {
    let (_dir, endpoint) = start();
    let c = Client::connect(info(&endpoint, Some(TOKEN))).unwrap();
    let txn = c.begin().unwrap();
    c.execute("CREATE TABLE tx (v BIGINT)", Some(txn.clone())).unwrap();
    let schema = c.table_schema("main", "tx", Some(txn.clone())).unwrap();
    assert_eq!(schema.field(0).name(), "v");
    let batch = RecordBatch::try_from_iter(vec![("v", std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])) as _)]).unwrap();
    let mut up = c.ingest_begin(None, "tx", IngestMode::Append, batch.schema(), Some(txn.clone())).unwrap();
    up.push(batch.clone()).unwrap();
    assert_eq!(up.finish().unwrap(), 3);
    let n: usize = c.query("SELECT * FROM tx", Some(txn.clone())).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 3);
    let hidden = c.table_schema("main", "tx", None).unwrap_err().to_string();
    assert!(hidden.contains("does not exist"), "invisible outside the transaction: {hidden}");
    c.end(txn, false).unwrap();
    let gone = c.query("SELECT * FROM tx", None).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(gone.contains("does not exist"), "rolled back: {gone}");

    // An aborted upload leaves nothing behind.
    c.execute("CREATE TABLE ab (v BIGINT)", None).unwrap();
    let mut up = c.ingest_begin(None, "ab", IngestMode::Append, batch.schema(), None).unwrap();
    up.push(batch).unwrap();
    up.abort("test");
    drop(up);
    // The server is done with the load once it runs nothing (/health's running_queries).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running_queries(&endpoint) > 0 {
        assert!(std::time::Instant::now() < deadline, "the aborted load is still running on the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    let n: usize = c.query("SELECT * FROM ab", None).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 0);
}
