//! The Flight SQL service: one trait method per protocol command, each a few lines that
//! authenticate, resolve the target database, and hand the work to the [`Engine`].
//!
//! Which database a call uses, in order: the catalog named in the command (ingest, catalog
//! queries), the transaction it runs in, the `x-openduck-database` header, the server default.
//!
//! Tickets are self-contained: a statement's ticket carries its SQL, database and transaction,
//! so `GetFlightInfo` only prepares (to validate and learn the schema) and `DoGet` executes.

mod catalog;
mod handles;
mod headers;
mod hybrid;
mod info;
mod results;
mod tickets;

pub use handles::{EXECUTED_MAX_BYTES, PARAMS_MAX_BYTES};
pub use openduck_proto::{DATABASE_HEADER, SNAPSHOT_HEADER};
pub use results::result_bytes_sent;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::XdbcTypeInfoData;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndTransactionRequest, Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, Ticket,
};
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::{Authenticator, Grant};
use crate::engine::{Engine, IngestMode, IngestTarget, Target};
use crate::error::ServerError;
use crate::expiring::ExpiringMap;
use handles::{check_param_count, collect_params, full, Executed, PreparedEntry};
use handles::{EXECUTED_PER_TOKEN, EXECUTED_TOTAL, PREPARED_IDLE_TTL, PREPARED_PER_TOKEN, PREPARED_TOTAL};
use headers::{header_database, header_snapshot};
use results::{announced_dataset_schema, decode, labelled, one_batch, schema_bytes, wire_schema, with_sql_metadata, BoxStream};
use tickets::TicketBody;

/// The Flight SQL service.
pub struct OpenDuckService {
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
    prepared: ExpiringMap<Uuid, Arc<PreparedEntry>>,
    /// Results of writing statements, run when their FlightInfo was requested, until fetched.
    executed: ExpiringMap<Uuid, Arc<Executed>>,
    /// Longest SQL accepted ([`crate::config::ServerConfig::max_statement_bytes`]).
    max_statement_bytes: usize,
    sql_info: info::SqlInfos,
    xdbc: XdbcTypeInfoData,
    /// What each function name means to DuckDB, for the hybrid planner (listed once).
    functions: std::sync::OnceLock<Arc<openduck_planner::Functions>>,
}

fn status(e: ServerError) -> Status {
    e.into()
}

fn uuid_from(bytes: &[u8], what: &str) -> Result<Uuid, Status> {
    Uuid::from_slice(bytes).map_err(|_| Status::invalid_argument(format!("malformed {what} handle")))
}

impl OpenDuckService {
    /// A service over `engine`, authenticating with `auth`.
    pub fn new(engine: Arc<Engine>, auth: Arc<Authenticator>, config: &crate::config::ServerConfig) -> Result<Self, ServerError> {
        Ok(OpenDuckService {
            engine,
            auth,
            prepared: ExpiringMap::new(PREPARED_IDLE_TTL, PREPARED_PER_TOKEN, PREPARED_TOTAL),
            executed: ExpiringMap::new(config.result_ttl, EXECUTED_PER_TOKEN, EXECUTED_TOTAL),
            max_statement_bytes: config.max_statement_bytes,
            sql_info: info::SqlInfos::new()?,
            xdbc: info::xdbc_type_info()?,
            functions: std::sync::OnceLock::new(),
        })
    }

    fn grant<T>(&self, request: &Request<T>) -> Result<Grant, Status> {
        self.auth.authenticate(request.metadata())
    }

    /// Authenticates and resolves the target for a call: a snapshot if the call names one, else
    /// its transaction, its catalog or database header, or the default database.
    async fn resolve<T>(&self, request: &Request<T>, catalog: Option<&str>, txn: Option<&[u8]>) -> Result<(Grant, Target), Status> {
        let grant = self.grant(request)?;
        let header = header_database(request.metadata())?;
        let name = catalog.filter(|c| !c.is_empty()).map(str::to_string).or(header);
        if let Some(id) = header_snapshot(request.metadata())? {
            if txn.is_some_and(|t| !t.is_empty()) {
                return Err(Status::invalid_argument("a snapshot is read without transactions"));
            }
            let target = self.engine.snapshot_target(&grant, name.as_deref(), id).await.map_err(status)?;
            return Ok((grant, target));
        }
        let target = self.engine.target(&grant, name.as_deref(), txn).map_err(status)?;
        Ok((grant, target))
    }

    /// The prepared statement `handle` of the calling token (another token's is unknown to it).
    fn prepared(&self, handle: &[u8], grant: &Grant) -> Result<(Uuid, Arc<PreparedEntry>), Status> {
        let id = uuid_from(handle, "prepared statement")?;
        let entry = self
            .prepared
            .get(&id, grant.owner)
            .ok_or_else(|| Status::not_found(format!("unknown prepared statement {id} (closed or expired)")))?;
        Ok((id, entry))
    }

    /// Refuses SQL longer than the server accepts.
    fn check_sql(&self, sql: &str) -> Result<(), Status> {
        if sql.len() > self.max_statement_bytes {
            return Err(status(ServerError::LimitExceeded(format!(
                "the statement is {} bytes, over this server's limit of {} (--max-statement-kib); pass large values as parameters or load them with ingest",
                sql.len(),
                self.max_statement_bytes
            ))));
        }
        Ok(())
    }

    /// Drops expired handles; the server's sweeper calls this now and then.
    pub fn sweep(&self) {
        self.prepared.sweep();
        self.executed.sweep();
    }

    fn statement_info(&self, body: &TicketBody, schema: &Schema, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let schema = &wire_schema(&with_sql_metadata(schema))?;
        let ticket = body.to_ticket()?;
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1)
            .with_ordered(true);
        Ok(Response::new(info))
    }

    /// FlightInfo for a catalog command: the ticket is the command itself.
    fn command_info(
        &self,
        command: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs statements that may write right away, so their effects are visible as soon as the
    /// client has the FlightInfo (clients need not fetch a DDL statement's result); queries run
    /// when fetched. Returns the result schema of a statement that ran.
    async fn maybe_execute(
        &self,
        grant: &Grant,
        target: Target,
        body: &TicketBody,
        writes: bool,
        sql: &str,
        params: Vec<RecordBatch>,
    ) -> Result<Option<Schema>, Status> {
        if !writes {
            return Ok(None);
        }
        tracing::info!(query = %body.q, database = %body.db, sql = %crate::log::sql(sql), "statement");
        let (schema, batches) =
            self.engine.execute_collected(grant, target, body.q, sql.to_string(), params, EXECUTED_MAX_BYTES).await.map_err(status)?;
        // A client need not fetch a write's result: unfetched results make room for new ones.
        self.executed.insert_evicting(body.q, grant.owner, Arc::new(Executed { schema: schema.clone(), batches }));
        Ok(Some(schema.as_ref().clone()))
    }

    /// Runs a statement from a ticket and streams its result.
    async fn run_ticket(
        &self,
        body: TicketBody,
        request: &Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        if body.ran {
            // The token must be the one that ran it, and still be allowed the database the
            // statement ran in (its transaction may have ended since).
            let (grant, _) = self.resolve(request, Some(&body.db), None).await?;
            let done = self.executed.take(&body.q, grant.owner).ok_or_else(|| {
                Status::not_found("the statement ran when described; its result was already fetched, or dropped (unfetched results expire, the oldest first)")
            })?;
            let Executed { schema, batches } = Arc::unwrap_or_clone(done);
            return Ok(Response::new(labelled(schema, futures::stream::iter(batches.into_iter().map(Ok)))));
        }
        let txn = body.txn.map(|t| t.as_bytes().to_vec());
        let (grant, target) = self.resolve(request, Some(&body.db), txn.as_deref()).await?;
        let (sql, params) = match (&body.sql, body.ps) {
            (Some(sql), _) => (sql.clone(), Vec::new()),
            (None, Some(ps)) => {
                let (_, entry) = self.prepared(ps.as_bytes(), &grant)?;
                let params = entry.params.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (entry.sql.clone(), params)
            }
            (None, None) => return Err(Status::invalid_argument("ticket names neither SQL nor a prepared statement")),
        };
        tracing::info!(query = %body.q, database = %body.db, sql = %crate::log::sql(&sql), "query");
        let (schema, rx) = self.engine.query(&grant, target, body.q, sql, params).await.map_err(status)?;
        Ok(Response::new(labelled(schema, tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn catalog_batch(&self, request: &Request<Ticket>, catalog: Option<&str>, f: catalog::Query) -> Result<RecordBatch, Status> {
        let (grant, target) = self.resolve(request, catalog, None).await?;
        let db = target.database().name().to_string();
        self.engine.with_connection(&grant, target, move |conn| f(conn, &db)).await.map_err(status)
    }
}

#[tonic::async_trait]
impl FlightSqlService for OpenDuckService {
    type FlightService = OpenDuckService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let token = self.auth.handshake(request.metadata())?;
        let response = HandshakeResponse { protocol_version: 0, payload: token.clone().into() };
        let mut resp: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(futures::stream::iter(vec![Ok(response)])));
        let value = format!("Bearer {token}").parse().map_err(|_| Status::internal("token is not a valid header value"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (grant, target) = self.resolve(&request, None, query.transaction_id.as_deref()).await?;
        self.check_sql(&query.query)?;
        let db = target.database().name().to_string();
        let txn = match &target {
            Target::Transaction(t) => Some(t.id),
            Target::Fresh(_) => None,
        };
        let description = self.engine.describe(&grant, target.clone(), query.query.clone()).await.map_err(status)?;
        let mut body = TicketBody { q: Uuid::new_v4(), db, sql: Some(query.query.clone()), ps: None, txn, ran: false };
        let schema = self.maybe_execute(&grant, target, &body, description.writes, &query.query, Vec::new()).await?;
        body.ran = schema.is_some();
        self.statement_info(&body, schema.as_ref().unwrap_or(&description.schema), request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (id, entry) = self.prepared(&cmd.prepared_statement_handle, &self.grant(&request)?)?;
        let txn = entry.transaction.map(|t| t.as_bytes().to_vec());
        let (grant, target) = self.resolve(&request, Some(&entry.database), txn.as_deref()).await?;
        let mut body =
            TicketBody { q: Uuid::new_v4(), db: entry.database.clone(), sql: None, ps: Some(id), txn: entry.transaction, ran: false };
        let params = entry.params.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut schema = self.maybe_execute(&grant, target.clone(), &body, entry.writes, &entry.sql, params.clone()).await?;
        body.ran = schema.is_some();
        if schema.is_none() && entry.dataset_schema.fields().is_empty() && !params.is_empty() {
            // The result's types depend on the bound parameters' types.
            let s = self.engine.schema_with_params(&grant, target, entry.sql.clone(), params).await.map_err(status)?;
            schema = Some(s);
        }
        self.statement_info(&body, schema.as_ref().unwrap_or(&entry.dataset_schema), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.run_ticket(TicketBody::from_handle(&ticket.statement_handle)?, &request).await
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (grant, target) = self.resolve(&request, None, cmd.transaction_id.as_deref()).await?;
        self.check_sql(&cmd.query)?;
        tracing::info!(database = target.database().name(), sql = %crate::log::sql(&cmd.query), "update");
        self.engine.update(&grant, target, cmd.query, Vec::new()).await.map_err(status)
    }

    async fn do_action_create_prepared_statement(
        &self,
        cmd: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (grant, target) = self.resolve(&request, None, cmd.transaction_id.as_deref()).await?;
        self.check_sql(&cmd.query)?;
        let database = target.database().name().to_string();
        let transaction = match &target {
            Target::Transaction(t) => Some(t.id),
            Target::Fresh(_) => None,
        };
        let d = self.engine.describe(&grant, target, cmd.query.clone()).await.map_err(status)?;
        let id = Uuid::new_v4();
        let result = ActionCreatePreparedStatementResult {
            prepared_statement_handle: id.as_bytes().to_vec().into(),
            dataset_schema: schema_bytes(&wire_schema(&announced_dataset_schema(d.kind, &d.schema))?)?,
            parameter_schema: schema_bytes(&d.parameters)?,
        };
        let entry = PreparedEntry {
            writes: d.writes,
            database,
            sql: cmd.query,
            transaction,
            dataset_schema: d.schema,
            parameter_schema: d.parameters,
            params: Mutex::new(Vec::new()),
        };
        self.prepared.insert(id, grant.owner, Arc::new(entry)).map_err(|e| full("prepared statements", e))?;
        Ok(result)
    }

    async fn do_action_close_prepared_statement(
        &self,
        cmd: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let grant = self.grant(&request)?;
        let id = uuid_from(&cmd.prepared_statement_handle, "prepared statement")?;
        // Another token's statement is not this token's to close; closing is idempotent.
        self.prepared.take(&id, grant.owner);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let grant = self.grant(&request)?;
        let (_, entry) = self.prepared(&cmd.prepared_statement_handle, &grant)?;
        let params = collect_params(request).await?;
        check_param_count(&entry.parameter_schema, &params)?;
        *entry.params.lock().unwrap_or_else(|p| p.into_inner()) = params;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(cmd.prepared_statement_handle) })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (_, entry) = self.prepared(&cmd.prepared_statement_handle, &self.grant(&request)?)?;
        let txn = entry.transaction.map(|t| t.as_bytes().to_vec());
        let (grant, target) = self.resolve(&request, Some(&entry.database), txn.as_deref()).await?;
        let mut params = collect_params(request).await?;
        if params.iter().all(|b| b.num_rows() == 0) {
            params = entry.params.lock().unwrap_or_else(|p| p.into_inner()).clone();
        }
        check_param_count(&entry.parameter_schema, &params)?;
        tracing::info!(database = %entry.database, sql = %crate::log::sql(&entry.sql), "prepared update");
        self.engine.update(&grant, target, entry.sql.clone(), params).await.map_err(status)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (grant, target) = self.resolve(&request, cmd.catalog.as_deref(), cmd.transaction_id.as_deref()).await?;
        let mode = ingest_mode(&cmd)?;
        if cmd.table.is_empty() {
            return Err(Status::invalid_argument("ingest needs a table name"));
        }
        let dest =
            IngestTarget { schema: cmd.schema.clone().filter(|s| !s.is_empty()), table: cmd.table.clone(), temporary: cmd.temporary, mode };
        let mut stream = decode(request);
        // The schema arrives before (or with) the first batch.
        let first = stream.next().await.transpose().map_err(flight_status)?;
        let schema = match (&first, stream.schema()) {
            (Some(b), _) => b.schema(),
            (None, Some(s)) => s.clone(),
            (None, None) => return Err(Status::invalid_argument("ingest stream carried no schema")),
        };
        let in_txn = matches!(target, Target::Transaction(_));
        tracing::info!(database = target.database().name(), table = %cmd.table, ?mode, in_txn, "ingest");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let pump = tokio::spawn(async move {
            if let Some(b) = first {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| ServerError::InvalidArgument(format!("ingest stream failed: {e}")));
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        let rows = self.engine.ingest(&grant, target, dest, schema, rx).await.map_err(status);
        pump.abort();
        rows
    }

    async fn do_action_begin_transaction(
        &self,
        _cmd: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let (grant, target) = self.resolve(&request, None, None).await?;
        let id = self.engine.begin(&grant, target.database().clone()).await.map_err(status)?;
        Ok(ActionBeginTransactionResult { transaction_id: id.as_bytes().to_vec().into() })
    }

    async fn do_action_end_transaction(&self, cmd: ActionEndTransactionRequest, request: Request<Action>) -> Result<(), Status> {
        let grant = self.grant(&request)?;
        use arrow_flight::sql::EndTransaction;
        let commit = match EndTransaction::try_from(cmd.action) {
            Ok(EndTransaction::Commit) => true,
            Ok(EndTransaction::Rollback) => false,
            _ => return Err(Status::invalid_argument("EndTransaction needs COMMIT or ROLLBACK")),
        };
        self.engine.end(&grant, &cmd.transaction_id, commit).await.map_err(status)
    }

    async fn do_action_cancel_query(
        &self,
        cmd: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let grant = self.grant(&request)?;
        let info = FlightInfo::decode(cmd.info).map_err(|_| Status::invalid_argument("malformed FlightInfo"))?;
        let status = self.cancel_info(&grant, &info);
        // CancelResult: 1 = cancelled, 2 = cancelling, 3 = not cancellable.
        let result = match status {
            CancelStatus::Cancelled => 1,
            CancelStatus::Cancelling => 2,
            _ => 3,
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(&self, request: Request<Action>) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type == "CancelFlightInfo" {
            let grant = self.grant(&request)?;
            let req = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
                .map_err(|_| Status::invalid_argument("malformed CancelFlightInfoRequest"))?;
            let info = req.info.ok_or_else(|| Status::invalid_argument("CancelFlightInfoRequest has no FlightInfo"))?;
            let result = CancelFlightInfoResult::new(self.cancel_info(&grant, &info));
            let body = result.encode_to_vec();
            let out = arrow_flight::Result { body: body.into() };
            return Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(out)]))));
        }
        if request.get_ref().r#type == openduck_proto::SPLIT_ACTION {
            return self.split_action(request).await;
        }
        Err(Status::invalid_argument(format!("unknown action '{}'", request.get_ref().r#type)))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        Some(vec![Ok(arrow_flight::ActionType {
            r#type: openduck_proto::SPLIT_ACTION.into(),
            description: openduck_proto::SPLIT_ACTION_DESCRIPTION.into(),
        })])
    }

    async fn do_exchange_fallback(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> Result<Response<<Self as FlightService>::DoExchangeStream>, Status> {
        self.exchange_fragment(request).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        let schema = query.into_builder().schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let grant = self.grant(&request)?;
        let mut builder = query.into_builder();
        for name in self.engine.databases().names() {
            if grant.allows(&name) {
                builder.append(name);
            }
        }
        Ok(Response::new(one_batch(builder.build().map_err(arrow_status)?)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        let schema = query.clone().into_builder().schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = self.catalog_batch(&request, query.catalog.as_deref(), catalog::schemas(query.clone())).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        let schema = query.clone().into_builder().schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = self.catalog_batch(&request, query.catalog.as_deref(), catalog::tables(query.clone())).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        let schema = query.into_builder().schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.grant(&request)?;
        let mut builder = query.into_builder();
        for t in catalog::TABLE_TYPES {
            builder.append(t);
        }
        Ok(Response::new(one_batch(builder.build().map_err(arrow_status)?)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let grant = self.grant(&request)?;
        let schema = query.clone().into_builder(self.sql_info.for_grant(&grant)).schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let grant = self.grant(&request)?;
        let batch = query.into_builder(self.sql_info.for_grant(&grant)).build().map_err(arrow_status)?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        self.command_info(query, &catalog::primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = self.catalog_batch(&request, query.catalog.as_deref(), catalog::primary_keys(query.clone())).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        self.command_info(query, &catalog::foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let filter = catalog::KeyFilter { pk: Some((query.db_schema.clone(), query.table.clone())), fk: None };
        let batch = self.catalog_batch(&request, query.catalog.as_deref(), catalog::foreign_keys(filter)).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        self.command_info(query, &catalog::foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let filter = catalog::KeyFilter { pk: None, fk: Some((query.db_schema.clone(), query.table.clone())) };
        let batch = self.catalog_batch(&request, query.catalog.as_deref(), catalog::foreign_keys(filter)).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        self.command_info(query, &catalog::foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let filter = catalog::KeyFilter {
            pk: Some((query.pk_db_schema.clone(), query.pk_table.clone())),
            fk: Some((query.fk_db_schema.clone(), query.fk_table.clone())),
        };
        let batch = self.catalog_batch(&request, query.pk_catalog.as_deref(), catalog::foreign_keys(filter)).await?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        let schema = query.into_builder(&self.xdbc).schema();
        self.command_info(query, &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.grant(&request)?;
        let batch = query.into_builder(&self.xdbc).build().map_err(arrow_status)?;
        Ok(Response::new(one_batch(batch)))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.grant(&request)?;
        Err(Status::invalid_argument(format!("unsupported ticket type {}", message.type_url)))
    }

    async fn get_flight_info_fallback(
        &self,
        cmd: arrow_flight::sql::Command,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.grant(&request)?;
        Err(Status::invalid_argument(format!("unsupported Flight SQL command '{}'", cmd.type_url())))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.grant(&request)?;
        Err(Status::invalid_argument(format!("unsupported DoPut command '{}'", message.type_url)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl OpenDuckService {
    /// Cancels the statement behind a FlightInfo this server issued.
    fn cancel_info(&self, grant: &Grant, info: &FlightInfo) -> CancelStatus {
        let bodies = TicketBody::in_flight_info(info);
        for body in &bodies {
            self.engine.cancel(grant, body.q);
        }
        if bodies.is_empty() {
            CancelStatus::NotCancellable
        } else {
            CancelStatus::Cancelled
        }
    }
}

fn ingest_mode(cmd: &CommandStatementIngest) -> Result<IngestMode, Status> {
    use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
    let opts = cmd.table_definition_options.unwrap_or_default();
    let exists = TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
    let not_exist = TableNotExistOption::try_from(opts.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
    Ok(match (exists, not_exist) {
        (TableExistsOption::Replace, _) => IngestMode::Replace,
        (TableExistsOption::Append, TableNotExistOption::Create) => IngestMode::CreateAppend,
        (TableExistsOption::Append, _) => IngestMode::Append,
        (_, TableNotExistOption::Fail) => {
            return Err(Status::invalid_argument("ingest options say fail if the table exists and fail if it does not"))
        }
        _ => IngestMode::Create,
    })
}

fn arrow_status(e: FlightError) -> Status {
    Status::internal(e.to_string())
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::invalid_argument(other.to_string()),
    }
}
