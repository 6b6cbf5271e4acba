//! A blocking Flight SQL client for the extension: DuckDB calls it from its own threads, so every
//! call runs on the client's private Tokio runtime and blocks until done. Results are streamed:
//! [`Client::query`] returns a reader that pulls one batch at a time from the server.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementIngest, EndTransaction, TableDefinitionOptions, TableExistsOption,
    TableNotExistOption,
};
use arrow_flight::sql::{DoPutUpdateResult, ProstMessageExt};
use arrow_flight::{FlightDescriptor, Ticket};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

use crate::abortable::{AbortSignal, AbortableChannel};
use crate::conn_string::ConnInfo;
use crate::ClientError;

use openduck_proto::v1::{FragmentCommand, SplitRequest, SplitResponse};
use openduck_proto::{DATABASE_HEADER, SNAPSHOT_HEADER, SPLIT_ACTION};

/// A remote table and its columns.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Schema (namespace) name, e.g. `main`.
    pub schema: String,
    /// Table or view name.
    pub name: String,
    /// `TABLE`, `VIEW` or `LOCAL TEMPORARY`.
    pub kind: String,
    /// Its columns as Arrow fields.
    pub arrow_schema: Schema,
    /// The server's estimate of its row count (tables only), for DuckDB's join ordering.
    pub estimated_rows: Option<u64>,
}

/// A remote transaction's id, as the server issued it.
pub type TxnId = bytes::Bytes;

/// How ingest treats an existing or missing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Create; fail if it exists.
    Create,
    /// Append; fail if missing.
    Append,
}

/// A connection to one remote database.
pub struct Client {
    rt: Arc<Runtime>,
    flight: FlightSqlServiceClient<Channel>,
    /// The connection under `flight`, for calls that need their own wrapper (bulk loads).
    channel: Channel,
    info: ConnInfo,
    /// The last table listing, for table schemas outside transactions.
    listing: std::sync::Mutex<Vec<TableInfo>>,
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn flight_err(context: &str, e: impl std::fmt::Display) -> ClientError {
    let text = e.to_string();
    if text.contains("Unauthenticated")
        || text.contains("UNAUTHENTICATED")
        || text.contains("invalid token")
        || text.contains("missing 'authorization")
    {
        ClientError::Auth(text)
    } else {
        ClientError::Remote(format!("{context}: {}", clean(&text)))
    }
}

/// Extracts the server's message from a gRPC status as arrow-flight prints it
/// (`… code: '…', message: "…"` with the message escaped, possibly followed by more fields).
fn clean(text: &str) -> String {
    let Some(start) = text.find("message: \"") else {
        return text.to_string();
    };
    let rest = &text[start + 10..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            '"' => return out,
            c => out.push(c),
        }
    }
    out
}

/// Sets the token and database header every call carries.
fn authorized<T>(mut flight: FlightSqlServiceClient<T>, info: &ConnInfo) -> FlightSqlServiceClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    if let Some(token) = &info.token {
        flight.set_token(token.clone());
    }
    flight.set_header(DATABASE_HEADER, info.database.clone());
    if let Some(id) = info.snapshot {
        flight.set_header(SNAPSHOT_HEADER, id.to_string());
    }
    flight
}

impl Client {
    /// Connects and checks the token and database by listing the server's catalogs.
    pub fn connect(info: ConnInfo) -> Result<Self, ClientError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("openduck-client")
            .enable_all()
            .build()
            .map_err(|e| ClientError::Config(format!("cannot start client runtime: {e}")))?;
        let endpoint = Endpoint::from_shared(info.endpoint.clone())
            .map_err(|e| ClientError::Config(format!("invalid endpoint '{}': {e}", info.endpoint)))?
            .connect_timeout(Duration::from_secs(info.connect_timeout_secs))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        let channel = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(info.connect_timeout_secs), endpoint.connect()).await })
            .map_err(|_| ClientError::Unreachable(format!("{} did not answer within {}s", info.endpoint, info.connect_timeout_secs)))?
            .map_err(|e| ClientError::Unreachable(format!("cannot reach {}: {e}", info.endpoint)))?;
        let flight = authorized(FlightSqlServiceClient::new(channel.clone()), &info);
        let client = Client { rt: Arc::new(rt), flight, channel, info, listing: Default::default() };
        let catalogs = client.catalogs()?;
        if !catalogs.iter().any(|c| c == &client.info.database) {
            return Err(ClientError::Remote(format!(
                "the server has no database '{}' this token may use (available: {})",
                client.info.database,
                catalogs.join(", ")
            )));
        }
        Ok(client)
    }

    /// The connection settings.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    fn catalogs(&self) -> Result<Vec<String>, ClientError> {
        let mut flight = self.flight.clone();
        let batches = self.rt.block_on(async move {
            let info = flight.get_catalogs().await.map_err(|e| flight_err("listing databases", e))?;
            collect(&mut flight, info).await
        })?;
        Ok(batches.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().flatten().map(str::to_string).collect::<Vec<_>>()).collect())
    }

    /// The schemas (namespaces) of the remote database.
    pub fn schemas(&self) -> Result<Vec<String>, ClientError> {
        let mut flight = self.flight.clone();
        let request = CommandGetDbSchemas { catalog: Some(self.info.database.clone()), db_schema_filter_pattern: None };
        let batches = self.rt.block_on(async move {
            let info = flight.get_db_schemas(request).await.map_err(|e| flight_err("listing schemas", e))?;
            collect(&mut flight, info).await
        })?;
        Ok(batches.iter().flat_map(|b| b.column(1).as_string::<i32>().iter().flatten().map(str::to_string).collect::<Vec<_>>()).collect())
    }

    /// Every table and view of the remote database, with its columns.
    pub fn tables(&self) -> Result<Vec<TableInfo>, ClientError> {
        let mut flight = self.flight.clone();
        let request = CommandGetTables {
            catalog: Some(self.info.database.clone()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        };
        let batches = self.rt.block_on(async move {
            let info = flight.get_tables(request).await.map_err(|e| flight_err("listing tables", e))?;
            collect(&mut flight, info).await
        })?;
        let mut out = Vec::new();
        for b in &batches {
            let (schemas, names, kinds) = (b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>(), b.column(3).as_string::<i32>());
            let ipc = b.column(4).as_binary::<i32>();
            for i in 0..b.num_rows() {
                let arrow_schema = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc.value(i))
                    .map_err(|e| ClientError::Remote(format!("bad table schema from server: {e}")))?;
                out.push(TableInfo {
                    schema: schemas.value(i).to_string(),
                    name: names.value(i).to_string(),
                    kind: kinds.value(i).to_string(),
                    arrow_schema,
                    estimated_rows: None,
                });
            }
        }
        // Row estimates come from the server's DuckDB catalog; a server without it just gives none.
        if let Ok(reader) = self.query("SELECT schema_name, table_name, estimated_size FROM duckdb_tables()", None) {
            for batch in reader.flatten() {
                let (s, n) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
                let rows = arrow::compute::cast(batch.column(2), &arrow::datatypes::DataType::UInt64);
                let Ok(rows) = rows else { continue };
                let rows = rows.as_primitive::<arrow::datatypes::UInt64Type>();
                for i in 0..batch.num_rows() {
                    if let Some(t) = out.iter_mut().find(|t| t.schema == s.value(i) && t.name == n.value(i)) {
                        t.estimated_rows = rows.is_valid(i).then(|| rows.value(i));
                    }
                }
            }
        }
        *self.listing.lock().unwrap_or_else(|p| p.into_inner()) = out.clone();
        Ok(out)
    }

    /// Begins a remote transaction.
    pub fn begin(&self) -> Result<TxnId, ClientError> {
        let mut flight = self.flight.clone();
        self.rt.block_on(async { flight.begin_transaction().await }).map_err(|e| flight_err("BEGIN failed", e))
    }

    /// Commits (`commit`) or rolls back a remote transaction.
    pub fn end(&self, txn: TxnId, commit: bool) -> Result<(), ClientError> {
        let mut flight = self.flight.clone();
        let action = if commit { EndTransaction::Commit } else { EndTransaction::Rollback };
        self.rt
            .block_on(async { flight.end_transaction(txn, action).await })
            .map_err(|e| flight_err(if commit { "COMMIT failed" } else { "ROLLBACK failed" }, e))
    }

    /// The columns of `schema.table` as the server sees them (inside `txn` if given).
    pub fn table_schema(&self, schema: &str, table: &str, txn: Option<TxnId>) -> Result<Schema, ClientError> {
        if txn.is_none() {
            let cached = self.listing.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = cached.iter().find(|t| t.schema == schema && t.name == table) {
                return Ok(t.arrow_schema.clone());
            }
        }
        self.describe(&format!("SELECT * FROM {}.{} LIMIT 0", quote_ident(schema), quote_ident(table)), txn)
    }

    /// The result schema of a query, without running it (the server only prepares queries
    /// until their result is fetched).
    pub fn describe(&self, sql: &str, txn: Option<TxnId>) -> Result<Schema, ClientError> {
        // A prepared statement tells its result schema without running: describing an UPDATE …
        // RETURNING must not change anything.
        let mut flight = self.flight.clone();
        let sql = sql.to_string();
        self.rt
            .block_on(async {
                let prepared = flight.prepare(sql, txn).await?;
                let schema = prepared.dataset_schema().cloned();
                prepared.close().await?;
                schema
            })
            .map_err(|e| flight_err("describing query", e))
    }

    /// Runs a query on the server (inside `txn` if given) and streams its result.
    pub fn query(&self, sql: &str, txn: Option<TxnId>) -> Result<QueryReader, ClientError> {
        self.query_with(sql, txn, None)
    }

    /// Like [`Client::query`], but every wait on the server (for the statement to start, which
    /// for `UPDATE … RETURNING` is the whole statement, and for each batch) ends with an error
    /// ([`INTERRUPTED`]) once `check` says the query was interrupted.
    pub fn query_interruptible(&self, sql: &str, txn: Option<TxnId>, check: InterruptCheck) -> Result<QueryReader, ClientError> {
        self.query_with(sql, txn, Some(check))
    }

    fn query_with(&self, sql: &str, txn: Option<TxnId>, interrupted: Option<InterruptCheck>) -> Result<QueryReader, ClientError> {
        let mut flight = self.flight.clone();
        let sql = sql.to_string();
        let info = wait_unless_interrupted(&self.rt, async { flight.execute(sql, txn).await }, interrupted.as_ref())
            .ok_or_else(|| ClientError::Remote(INTERRUPTED.to_string()))?
            .map_err(|e| flight_err("query failed", e))?;
        let schema = Arc::new(info.clone().try_decode_schema().map_err(|e| ClientError::Remote(format!("bad result schema: {e}")))?);
        let tickets = info.endpoint.into_iter().filter_map(|e| e.ticket).collect();
        // Fetching starts now: the first batches are on their way before the caller asks.
        let (tx, batches) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
        let fetcher = self.rt.spawn(fetch_all(flight, tickets, tx));
        Ok(QueryReader { rt: self.rt.clone(), schema, batches, fetcher, interrupted })
    }

    /// Runs a statement for its effect (inside `txn` if given); returns the rows it changed.
    pub fn execute(&self, sql: &str, txn: Option<TxnId>) -> Result<i64, ClientError> {
        let mut flight = self.flight.clone();
        let sql = sql.to_string();
        self.rt.block_on(async { flight.execute_update(sql, txn).await }).map_err(|e| flight_err("statement failed", e))
    }

    /// Streams `batches` into `schema.table` through Flight SQL bulk ingest.
    pub fn ingest(
        &self,
        schema: Option<&str>,
        table: &str,
        mode: IngestMode,
        batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    ) -> Result<i64, ClientError> {
        let mut batches = batches;
        let first = match batches.next() {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(ClientError::Remote(format!("bulk load aborted: {e}"))),
            None => return Ok(0),
        };
        let mut upload = self.ingest_begin(schema, table, mode, first.schema(), None)?;
        upload.push(first)?;
        for b in batches {
            match b {
                Ok(b) => upload.push(b)?,
                Err(e) => {
                    upload.abort(&e.to_string());
                    return Err(ClientError::Remote(format!("bulk load aborted: {e}")));
                }
            }
        }
        upload.finish()
    }

    /// Starts a bulk load into `schema.table`; batches of `arrow_schema` are then pushed one at a
    /// time (with backpressure) and [`Upload::finish`] commits them.
    pub fn ingest_begin(
        &self,
        schema: Option<&str>,
        table: &str,
        mode: IngestMode,
        arrow_schema: SchemaRef,
        txn: Option<TxnId>,
    ) -> Result<Upload, ClientError> {
        // Its own channel wrapper, so an abort resets this call's stream rather than ending it.
        let (channel, abort) = AbortableChannel::new(self.channel.clone());
        let mut flight = authorized(FlightSqlServiceClient::new(channel), &self.info);
        let (if_not_exist, if_exists) = match mode {
            IngestMode::Create => (TableNotExistOption::Create, TableExistsOption::Fail),
            IngestMode::Append => (TableNotExistOption::Fail, TableExistsOption::Append),
        };
        let command = CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions { if_not_exist: if_not_exist.into(), if_exists: if_exists.into() }),
            table: table.to_string(),
            schema: schema.map(str::to_string),
            catalog: Some(self.info.database.clone()),
            temporary: false,
            transaction_id: txn,
            options: Default::default(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, FlightError>>(2);
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let data = FlightDataEncoderBuilder::new()
            .with_schema(arrow_schema.clone())
            .with_flight_descriptor(Some(descriptor))
            .build(tokio_stream::wrappers::ReceiverStream::new(rx))
            .filter_map(|m| futures::future::ready(m.ok()));
        let task = self.rt.spawn(async move {
            let mut results = flight.do_put(data).await.map_err(|e| flight_err("bulk load failed", e))?;
            let first = results.next().await.transpose().map_err(|e| flight_err("bulk load failed", e))?;
            let first = first.ok_or_else(|| ClientError::Remote("bulk load: the server sent no result".into()))?;
            let result =
                DoPutUpdateResult::decode(first.app_metadata).map_err(|e| ClientError::Remote(format!("bulk load: bad result: {e}")))?;
            Ok(result.record_count)
        });
        Ok(Upload { rt: self.rt.clone(), tx: Some(tx), task: Some(task), abort, schema: arrow_schema })
    }
}

/// A bulk load in progress. Dropping it without [`Upload::finish`] aborts it: the server rolls
/// the load back.
pub struct Upload {
    rt: Arc<Runtime>,
    tx: Option<tokio::sync::mpsc::Sender<Result<RecordBatch, FlightError>>>,
    task: Option<tokio::task::JoinHandle<Result<i64, ClientError>>>,
    abort: AbortSignal,
    schema: SchemaRef,
}

impl Upload {
    /// The schema batches must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Sends one batch; waits while the server is behind.
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), ClientError> {
        let tx = self.tx.as_ref().ok_or_else(|| ClientError::Remote("bulk load already finished".into()))?;
        if tx.blocking_send(Ok(batch)).is_err() {
            // The upload ended early: report why.
            return Err(self.outcome().err().unwrap_or_else(|| ClientError::Remote("bulk load ended early".into())));
        }
        Ok(())
    }

    fn outcome(&mut self) -> Result<i64, ClientError> {
        self.tx = None;
        match self.task.take() {
            Some(task) => self.rt.block_on(task).map_err(|e| ClientError::Remote(format!("bulk load task failed: {e}")))?,
            None => Err(ClientError::Remote("bulk load already finished".into())),
        }
    }

    /// Ends the stream and waits for the server to commit; returns the rows loaded.
    pub fn finish(mut self) -> Result<i64, ClientError> {
        self.outcome()
    }

    /// Aborts the load; the server discards what it received. The call's stream is reset before
    /// the batch sender is dropped, so the server never sees the data as complete; this returns
    /// once the call has ended (or after a few seconds if the server does not answer).
    pub fn abort(&mut self, reason: &str) {
        self.abort.fire(reason);
        // Only now may the batch stream end: the body has already failed.
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.abort("bulk load abandoned");
        }
    }
}

impl Client {
    /// Asks the server to split a query between this client and itself (the split action).
    pub fn split(&self, request: &SplitRequest) -> Result<SplitResponse, ClientError> {
        let mut flight = self.flight.clone();
        let action = arrow_flight::Action { r#type: SPLIT_ACTION.into(), body: request.encode_to_vec().into() };
        self.rt.block_on(async {
            let mut results = flight.do_action(action).await.map_err(|e| flight_err("splitting the query", e))?;
            let first = results
                .next()
                .await
                .ok_or_else(|| ClientError::Remote("splitting the query: the server sent no answer".into()))?
                .map_err(|e| flight_err("splitting the query", e))?;
            SplitResponse::decode(first.body).map_err(|e| ClientError::Remote(format!("splitting the query: malformed answer: {e}")))
        })
    }

    /// Runs one fragment of a split query on the server (DoExchange) and streams its rows, which
    /// have `schema` (the split answer's). Interrupts as [`Client::query_interruptible`] does.
    pub fn exchange(
        &self,
        plan: Vec<u8>,
        sql: String,
        schema: SchemaRef,
        txn: Option<TxnId>,
        interrupted: Option<InterruptCheck>,
    ) -> Result<QueryReader, ClientError> {
        let command = FragmentCommand { plan, sql, transaction: txn.map(|t| t.to_vec()).unwrap_or_default() };
        let descriptor = FlightDescriptor::new_cmd(command.encode_to_vec());
        let first = arrow_flight::FlightData { flight_descriptor: Some(descriptor), ..Default::default() };
        let mut request = tonic::Request::new(futures::stream::iter(vec![first]));
        let metadata = request.metadata_mut();
        if let Some(token) = &self.info.token {
            let value =
                format!("Bearer {token}").parse().map_err(|_| ClientError::Config("the token is not a valid header value".into()))?;
            metadata.insert("authorization", value);
        }
        let database =
            self.info.database.parse().map_err(|_| ClientError::Config("the database name is not a valid header value".into()))?;
        metadata.insert(DATABASE_HEADER, database);
        if let Some(id) = self.info.snapshot {
            metadata.insert(SNAPSHOT_HEADER, id.to_string().parse().map_err(|_| ClientError::Config("bad snapshot id".into()))?);
        }
        let mut inner = self.flight.inner().clone();
        let response = wait_unless_interrupted(&self.rt, async { inner.do_exchange(request).await }, interrupted.as_ref())
            .ok_or_else(|| ClientError::Remote(INTERRUPTED.to_string()))?
            .map_err(|e| flight_err("running a fragment", e))?;
        let stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(response.into_inner().map_err(FlightError::from));
        let (tx, batches) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
        let fetcher = self.rt.spawn(forward(stream, tx));
        Ok(QueryReader { rt: self.rt.clone(), schema, batches, fetcher, interrupted })
    }
}

/// Forwards a fragment's batches into `tx` until the end, an error, or the reader is gone.
async fn forward(
    mut stream: arrow_flight::decode::FlightRecordBatchStream,
    tx: tokio::sync::mpsc::Sender<Result<RecordBatch, ArrowError>>,
) {
    while let Some(batch) = stream.next().await {
        let failed = batch.is_err();
        let item = batch.map_err(|e| ArrowError::ExternalError(Box::new(flight_err("fragment failed", e))));
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

async fn collect(flight: &mut FlightSqlServiceClient<Channel>, info: arrow_flight::FlightInfo) -> Result<Vec<RecordBatch>, ClientError> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            continue;
        };
        let mut stream = flight.do_get(ticket).await.map_err(|e| flight_err("fetch failed", e))?;
        while let Some(b) = stream.next().await {
            out.push(b.map_err(|e| flight_err("fetch failed", e))?);
        }
    }
    Ok(out)
}

/// Asks the caller whether its query was interrupted (polled while waiting on the server).
pub type InterruptCheck = Box<dyn Fn() -> bool + Send>;

/// How often a reader waiting on the server asks whether its query was interrupted.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// The error a reader returns when its query was interrupted while it waited on the server.
pub const INTERRUPTED: &str = "interrupted while waiting for the server";

/// Batches fetched ahead of the reader: receiving and decoding the next batches overlaps with
/// the caller's work on the current one, with at most this many waiting (bounded memory).
const PREFETCH_BATCHES: usize = 4;

/// Streams a query's result batch by batch, in order; dropping it cancels the remote query.
pub struct QueryReader {
    rt: Arc<Runtime>,
    schema: SchemaRef,
    /// Batches from the fetcher task.
    batches: tokio::sync::mpsc::Receiver<Result<RecordBatch, ArrowError>>,
    fetcher: tokio::task::JoinHandle<()>,
    interrupted: Option<InterruptCheck>,
}

impl Drop for QueryReader {
    fn drop(&mut self) {
        // Stops the fetcher even while it waits on the server: its stream is dropped, which
        // cancels the call and so the server's query.
        self.fetcher.abort();
    }
}

/// Fetches every endpoint's batches in order into `tx`, until the end, an error, or the reader
/// is gone.
async fn fetch_all(
    mut flight: FlightSqlServiceClient<Channel>,
    tickets: Vec<Ticket>,
    tx: tokio::sync::mpsc::Sender<Result<RecordBatch, ArrowError>>,
) {
    for ticket in tickets {
        let mut stream = match flight.do_get(ticket).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(ArrowError::ExternalError(Box::new(flight_err("fetch failed", e))))).await;
                return;
            }
        };
        while let Some(batch) = stream.next().await {
            let failed = batch.is_err();
            let item = batch.map_err(|e| ArrowError::ExternalError(Box::new(flight_err("query failed", e))));
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    }
}

/// Runs `fut` to completion on `rt`, or returns `None` once `check` (asked every
/// [`INTERRUPT_POLL`]) says the caller's query was interrupted; `fut` is then dropped, which
/// cancels a call in flight.
fn wait_unless_interrupted<F: std::future::Future>(rt: &Runtime, fut: F, check: Option<&InterruptCheck>) -> Option<F::Output> {
    let Some(check) = check else {
        return Some(rt.block_on(fut));
    };
    rt.block_on(async {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep(INTERRUPT_POLL) => {
                    if check() {
                        return None;
                    }
                }
            }
        }
    })
}

fn interrupted_error() -> ArrowError {
    ArrowError::ExternalError(Box::new(ClientError::Remote(INTERRUPTED.to_string())))
}

impl Iterator for QueryReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = wait_unless_interrupted(&self.rt, self.batches.recv(), self.interrupted.as_ref());
        let Some(next) = next else {
            return Some(Err(interrupted_error()));
        };
        // Relabel with the announced schema so every batch matches it exactly.
        Some(next?.and_then(|batch| RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())))
    }
}

impl RecordBatchReader for QueryReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn status_messages_are_unescaped() {
        let dump = r#"Tonic error: code: 'Already exists', message: "Catalog Error: Table with name \"t\" already exists!\nLINE 1""#;
        assert_eq!(clean(dump), "Catalog Error: Table with name \"t\" already exists!\nLINE 1");
        let with_more = r#"Status { code: NotFound, message: "Catalog Error: x", details: [] }"#;
        assert_eq!(clean(with_more), "Catalog Error: x");
        assert_eq!(clean("plain"), "plain");
    }
}
