//! End-to-end tests with arrow-flight's own `FlightSqlServiceClient` against an in-process server.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetTables, CommandStatementIngest, EndTransaction, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use arrow_flight::FlightInfo;
use futures::TryStreamExt;
use openduck_flight_server::auth::Authenticator;
use openduck_flight_server::config::ServerConfig;
use openduck_flight_server::server::Server;
use tonic::transport::Channel;

const TOKEN: &str = "rust-test-token";

struct Running {
    _dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap();
        FlightSqlServiceClient::new(channel)
    }

    async fn authed(&self) -> FlightSqlServiceClient<Channel> {
        let mut c = self.client().await;
        c.set_token(TOKEN.to_string());
        c
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task).await.unwrap().unwrap();
    }
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path(), "mydb");
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::bind(config, Authenticator::new(Some(TOKEN), None).unwrap()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(
                async {
                    let _ = rx.await;
                },
                Duration::from_secs(1),
            )
            .await
            .unwrap();
    });
    Running { _dir: dir, addr, stop: Some(tx), task }
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let stream = client.do_get(ticket).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    out
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    fetch(client, info).await
}

fn int64s(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    batches.iter().flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec()).collect()
}

#[tokio::test]
async fn handshake_query_and_update() {
    let server = start().await;
    let mut c = server.client().await;
    match c.execute("SELECT 1".into(), None).await.unwrap_err() {
        arrow_flight::error::FlightError::Tonic(status) => assert_eq!(status.code(), tonic::Code::Unauthenticated, "no token: {status}"),
        other => panic!("no token must fail as unauthenticated, not with {other}"),
    }
    c.handshake("anyone", TOKEN).await.unwrap();
    assert_eq!(c.token().map(String::as_str), Some(TOKEN));
    let n = c.execute_update("CREATE TABLE t AS SELECT range AS i FROM range(10)".into(), None).await.unwrap();
    assert_eq!(n, 10);
    assert_eq!(c.execute_update("UPDATE t SET i = i + 100 WHERE i < 4".into(), None).await.unwrap(), 4);
    let info = c.execute("SELECT i FROM t ORDER BY i".into(), None).await.unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    let batches = fetch(&mut c, info).await;
    assert_eq!(int64s(&batches, 0), vec![4, 5, 6, 7, 8, 9, 100, 101, 102, 103]);
    server.shutdown().await;
}

#[tokio::test]
async fn prepared_statements_query_and_update() {
    let server = start().await;
    let mut c = server.authed().await;
    c.execute_update("CREATE TABLE p (id BIGINT, name VARCHAR)".into(), None).await.unwrap();
    let mut insert = c.prepare("INSERT INTO p VALUES (?, ?)".into(), None).await.unwrap();
    assert_eq!(insert.parameter_schema().unwrap().fields().len(), 2);
    let params = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as Arc<dyn Array>),
        ("name", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
    ])
    .unwrap();
    insert.set_parameters(params).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    insert.close().await.unwrap();

    let mut select = c.prepare("SELECT name FROM p WHERE id >= ? ORDER BY id".into(), None).await.unwrap();
    assert_eq!(select.dataset_schema().unwrap().field(0).name(), "name");
    select
        .set_parameters(RecordBatch::try_from_iter(vec![("id", Arc::new(Int64Array::from(vec![2])) as Arc<dyn Array>)]).unwrap())
        .unwrap();
    let info = select.execute().await.unwrap();
    let batches = fetch(&mut c, info).await;
    let names: Vec<String> =
        batches.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect::<Vec<_>>()).collect();
    assert_eq!(names, vec!["b", "c"]);
    select.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn ingest_inside_a_transaction_rolls_back() {
    let server = start().await;
    let mut c = server.authed().await;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![1, 2, 3]))]).unwrap();
    let ingest = |txn: Option<bytes::Bytes>| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create.into(),
            if_exists: TableExistsOption::Append.into(),
        }),
        table: "ing".into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: txn,
        options: Default::default(),
    };
    let txn = c.begin_transaction().await.unwrap();
    let stream = futures::stream::iter(vec![Ok(batch.clone())]);
    assert_eq!(c.execute_ingest(ingest(Some(txn.clone())), stream).await.unwrap(), 3);
    let inside = {
        let info = c.execute("SELECT count(*) FROM ing".into(), Some(txn.clone())).await.unwrap();
        fetch(&mut c, info).await
    };
    assert_eq!(int64s(&inside, 0), vec![3]);
    c.end_transaction(txn, EndTransaction::Rollback).await.unwrap();
    let gone = c.execute("SELECT count(*) FROM ing".into(), None).await.unwrap_err().to_string();
    assert!(gone.contains("does not exist"), "rolled back: {gone}");

    let txn = c.begin_transaction().await.unwrap();
    let stream = futures::stream::iter(vec![Ok(batch.clone()), Ok(batch)]);
    assert_eq!(c.execute_ingest(ingest(Some(txn.clone())), stream).await.unwrap(), 6);
    c.end_transaction(txn.clone(), EndTransaction::Commit).await.unwrap();
    assert_eq!(int64s(&query(&mut c, "SELECT count(*) FROM ing").await, 0), vec![6]);
    let err = c.end_transaction(txn, EndTransaction::Commit).await.unwrap_err();
    assert!(err.to_string().contains("unknown transaction"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn catalog_commands() {
    let server = start().await;
    let mut c = server.authed().await;
    c.execute_update("CREATE TABLE a (id INTEGER PRIMARY KEY, s VARCHAR)".into(), None).await.unwrap();
    c.execute_update("CREATE TABLE b (id INTEGER, aid INTEGER REFERENCES a(id))".into(), None).await.unwrap();
    let catalogs = {
        let info = c.get_catalogs().await.unwrap();
        fetch(&mut c, info).await
    };
    assert_eq!(catalogs[0].column(0).as_string::<i32>().value(0), "mydb");

    let req = CommandGetTables {
        catalog: Some("mydb".into()),
        db_schema_filter_pattern: None,
        table_name_filter_pattern: Some("%".into()),
        table_types: vec![],
        include_schema: true,
    };
    let tables = {
        let info = c.get_tables(req).await.unwrap();
        fetch(&mut c, info).await
    };
    let names: Vec<&str> = tables[0].column(2).as_string::<i32>().iter().map(|s| s.unwrap()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let schema_bytes = tables[0].column(4).as_binary::<i32>().value(0).to_vec();
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes).unwrap();
    assert_eq!(schema.field(1).name(), "s");

    let pk =
        c.get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys { catalog: None, db_schema: None, table: "a".into() }).await.unwrap();
    let pk = fetch(&mut c, pk).await;
    assert_eq!(pk[0].column(3).as_string::<i32>().value(0), "id");
    let fk =
        c.get_imported_keys(arrow_flight::sql::CommandGetImportedKeys { catalog: None, db_schema: None, table: "b".into() }).await.unwrap();
    let fk = fetch(&mut c, fk).await;
    assert_eq!(fk[0].num_rows(), 1);
    assert_eq!(fk[0].column(2).as_string::<i32>().value(0), "a");
    assert_eq!(fk[0].column(7).as_string::<i32>().value(0), "aid");
    let cross = {
        let info = c
            .get_cross_reference(arrow_flight::sql::CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: "a".into(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: "b".into(),
            })
            .await
            .unwrap();
        fetch(&mut c, info).await
    };
    assert_eq!(cross[0].num_rows(), 1);
    assert_eq!(cross[0].column(3).as_string::<i32>().value(0), "id");
    let unrelated = {
        let info = c
            .get_cross_reference(arrow_flight::sql::CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: "b".into(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: "a".into(),
            })
            .await
            .unwrap();
        fetch(&mut c, info).await
    };
    assert_eq!(unrelated.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let exported = {
        let info = c
            .get_exported_keys(arrow_flight::sql::CommandGetExportedKeys { catalog: None, db_schema: None, table: "a".into() })
            .await
            .unwrap();
        fetch(&mut c, info).await
    };
    assert_eq!(exported[0].num_rows(), 1);
    let types = {
        let info = c.get_table_types().await.unwrap();
        fetch(&mut c, info).await
    };
    assert_eq!(types[0].num_rows(), 3);
    let xdbc = {
        let info = c.get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None }).await.unwrap();
        fetch(&mut c, info).await
    };
    assert!(xdbc[0].num_rows() > 10);
    server.shutdown().await;
}

#[tokio::test]
async fn schemas_of_flight_info_and_stream_agree() {
    let server = start().await;
    let mut c = server.authed().await;
    let sql = "SELECT 1::TINYINT a, 'x'::ENUM('x','y') b, [1,2] c, {'k': 1.5} d, union_value(n := 1)::UNION(n INT, s VARCHAR) e, NULL::INTERVAL f";
    let info = c.execute(sql.into(), None).await.unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = c.do_get(ticket).await.unwrap();
    while stream.try_next().await.unwrap().is_some() {}
    let sent = stream.schema().unwrap();
    assert_eq!(&announced, sent.as_ref());
    server.shutdown().await;
}
