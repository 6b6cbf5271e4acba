//! Hybrid execution's two custom verbs (`proto/openduck/v1/hybrid.proto`):
//!
//! - the split action ([`openduck_proto::SPLIT_ACTION`]): the client names a query and the relations
//!   its DuckDB resolved; the planner (`openduck-planner`) splits it into a local part and remote
//!   fragments, each of which the server prepares (so a fragment it cannot run makes the query
//!   fall back instead of failing later), or says why it leaves the query to the client;
//! - DoExchange with a `FragmentCommand`: runs one fragment under the caller's token, database,
//!   snapshot and transaction, through the same engine (and lockdown) as every statement, and
//!   streams its rows down as they are produced.
//!
//! Generic Flight SQL clients never see either; they are listed by ListActions.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_flight::{Action, FlightData};
use openduck_planner as planner;
use openduck_proto::v1::{Fragment, FragmentCommand, Location, SplitRequest, SplitResponse};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::results::{labelled, schema_bytes, BoxStream};
use super::{status, OpenDuckService};
use crate::auth::Grant;
use crate::engine::Target;

/// Most relations and settings a split request may name.
const MAX_RELATIONS: usize = 1024;
const MAX_SETTINGS: usize = 64;

fn fallback(reason: impl Into<String>) -> SplitResponse {
    SplitResponse { fallback_reason: reason.into(), ..Default::default() }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl OpenDuckService {
    /// The split action.
    pub(super) async fn split_action(&self, request: Request<Action>) -> Result<Response<BoxStream<arrow_flight::Result>>, Status> {
        let split = SplitRequest::decode(request.get_ref().body.clone()).map_err(|_| Status::invalid_argument("malformed SplitRequest"))?;
        self.check_sql(&split.sql)?;
        if split.relations.len() > MAX_RELATIONS || split.settings.len() > MAX_SETTINGS {
            return Err(Status::invalid_argument(format!(
                "a split request names at most {MAX_RELATIONS} relations and {MAX_SETTINGS} settings"
            )));
        }
        let txn = (!split.transaction.is_empty()).then_some(split.transaction.as_slice());
        let (grant, target) = self.resolve(&request, None, txn).await?;
        let sql = crate::log::sql(&split.sql).to_string();
        let response = self.split(&grant, target, split).await?;
        tracing::info!(
            sql = %sql,
            fragments = response.fragments.len(),
            fallback = %response.fallback_reason,
            "split"
        );
        let out = arrow_flight::Result { body: response.encode_to_vec().into() };
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(out)]))))
    }

    async fn split(&self, grant: &Grant, target: Target, split: SplitRequest) -> Result<SplitResponse, Status> {
        if let Some(reason) = self.settings_differ(grant, &target, &split.settings).await? {
            return Ok(fallback(reason));
        }
        if let Some(reason) = planner_assumptions(&split.settings) {
            return Ok(fallback(reason));
        }
        let mut relations = Vec::with_capacity(split.relations.len());
        // A table named twice (a self-join, two spellings) is described once.
        let mut described: HashMap<(String, String), Arc<arrow::datatypes::Schema>> = HashMap::new();
        for r in &split.relations {
            let (location, name, schema) = match r.location() {
                Location::Local => {
                    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&r.arrow_schema).map_err(|e| {
                        Status::invalid_argument(format!("relation {}: malformed Arrow schema: {e}", r.reference.join(".")))
                    })?;
                    (planner::Location::Local, vec![r.catalog.clone(), r.schema.clone(), r.table.clone()], Arc::new(schema))
                }
                Location::Remote => {
                    let key = (r.schema.clone(), r.table.clone());
                    let schema = match described.get(&key) {
                        Some(schema) => schema.clone(),
                        None => {
                            let sql = format!("SELECT * FROM {}.{}", quote(&r.schema), quote(&r.table));
                            match self.engine.describe(grant, target.clone(), sql).await {
                                Ok(d) => described.entry(key).or_insert(Arc::new(d.schema)).clone(),
                                Err(e) => return Ok(fallback(format!("the server cannot read {}.{}: {e}", r.schema, r.table))),
                            }
                        }
                    };
                    (planner::Location::Remote, vec![r.schema.clone(), r.table.clone()], schema)
                }
                Location::Unspecified => {
                    return Err(Status::invalid_argument(format!("relation {} has no location", r.reference.join("."))))
                }
            };
            relations.push(planner::Relation { reference: r.reference.clone(), location, name, schema, estimated_rows: r.estimated_rows });
        }
        let functions = match self.duckdb_functions(grant, &target).await {
            Ok(f) => f,
            Err(reason) => return Ok(fallback(reason)),
        };
        let sql = split.sql.clone();
        let plan = crate::blocking::run(move |_| planner::split(&sql, &relations, &functions)).await.map_err(status)?;
        let (local_sql, fragments, explain) = match plan {
            planner::SplitPlan::Fallback { reason } => return Ok(fallback(reason)),
            planner::SplitPlan::Split { local_sql, fragments, explain } => (local_sql, fragments, explain),
        };
        let mut out = Vec::with_capacity(fragments.len());
        for f in fragments {
            // Prepared here (nothing runs), so a fragment the server cannot run is found now.
            let schema = match self.engine.describe(grant, target.clone(), f.sql.clone()).await {
                Ok(d) => d.schema,
                Err(e) => return Ok(fallback(format!("the server cannot run fragment {}: {e}", f.id))),
            };
            let plan = planner::encode_fragment(&f.plan).unwrap_or_default();
            out.push(Fragment {
                id: f.id,
                plan,
                sql: f.sql,
                column_count: f.column_count as u32,
                estimated_rows: f.estimated_rows,
                explain: f.explain,
                arrow_schema: schema_bytes(&schema)?.to_vec(),
            });
        }
        Ok(SplitResponse { local_sql, fragments: out, fallback_reason: String::new(), explain })
    }

    /// What each function name means to DuckDB (listed once; built-in functions are the same in
    /// every database).
    async fn duckdb_functions(&self, grant: &Grant, target: &Target) -> Result<Arc<planner::Functions>, String> {
        if let Some(f) = self.functions.get() {
            return Ok(f.clone());
        }
        let sql = "SELECT DISTINCT function_name, function_type FROM duckdb_functions()";
        let batches = self
            .engine
            .with_connection(grant, target.clone(), move |conn| Ok(conn.query_all(sql)?))
            .await
            .map_err(|e| format!("the server cannot list DuckDB's functions: {e}"))?;
        let mut rows = Vec::new();
        for batch in &batches {
            use arrow::array::AsArray;
            let (Some(names), Some(kinds)) = (batch.column(0).as_string_opt::<i32>(), batch.column(1).as_string_opt::<i32>()) else {
                return Err("the server's function list has unexpected types".into());
            };
            for i in 0..batch.num_rows() {
                rows.push((names.value(i).to_string(), kinds.value(i).to_string()));
            }
        }
        let functions = Arc::new(planner::Functions::new(rows.iter().map(|(n, k)| (n.as_str(), k.as_str()))));
        Ok(self.functions.get_or_init(|| functions).clone())
    }

    /// Why the client's settings make SQL mean something else here, if they do.
    async fn settings_differ(&self, grant: &Grant, target: &Target, settings: &HashMap<String, String>) -> Result<Option<String>, Status> {
        if settings.is_empty() {
            return Ok(None);
        }
        let mut names: Vec<&String> = settings.keys().collect();
        names.sort();
        for name in &names {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Status::invalid_argument(format!("'{name}' is not a setting name")));
            }
        }
        let sql = format!("SELECT [{}]", names.iter().map(|n| format!("current_setting('{n}')::VARCHAR")).collect::<Vec<_>>().join(", "));
        let batches = match self.engine.with_connection(grant, target.clone(), move |conn| Ok(conn.query_all(&sql)?)).await {
            Ok(b) => b,
            Err(e) => return Ok(Some(format!("the server cannot compare settings: {e}"))),
        };
        let values = server_values(&batches);
        for (i, name) in names.iter().enumerate() {
            let client = &settings[*name];
            match values.get(i).cloned().flatten() {
                Some(server) if &server == client => {}
                server => {
                    return Ok(Some(format!(
                        "the setting {name} differs (client '{client}', server '{}')",
                        server.unwrap_or_else(|| "NULL".into())
                    )))
                }
            }
        }
        Ok(None)
    }

    /// DoExchange: runs one fragment.
    pub(super) async fn exchange_fragment(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let (metadata, extensions, mut input) = request.into_parts();
        let first =
            input.message().await?.ok_or_else(|| Status::invalid_argument("DoExchange needs a first message with a FlightDescriptor"))?;
        let descriptor =
            first.flight_descriptor.ok_or_else(|| Status::invalid_argument("DoExchange's first message has no FlightDescriptor"))?;
        let command = FragmentCommand::decode(descriptor.cmd.clone())
            .map_err(|_| Status::invalid_argument("DoExchange: the descriptor is not an OpenDuck FragmentCommand"))?;
        let probe = Request::from_parts(metadata, extensions, ());
        let txn = (!command.transaction.is_empty()).then_some(command.transaction.as_slice());
        let (grant, target) = self.resolve(&probe, None, txn).await?;
        let sql = if command.plan.is_empty() {
            command.sql
        } else {
            let plan = command.plan;
            crate::blocking::run(move |_| planner::decode_fragment(&plan))
                .await
                .map_err(status)?
                .map_err(|e| Status::invalid_argument(format!("malformed fragment plan: {e}")))?
                .1
        };
        self.check_sql(&sql)?;
        if sql.is_empty() {
            return Err(Status::invalid_argument("the fragment has neither a plan nor SQL"));
        }
        // No fragment takes input from the client yet (bridges LOCAL→REMOTE): anything sent is
        // refused rather than ignored.
        if let Some(extra) = input.message().await? {
            if !extra.data_body.is_empty() || !extra.data_header.is_empty() {
                return Err(Status::unimplemented("this fragment takes no input from the client"));
            }
        }
        let id = Uuid::new_v4();
        tracing::info!(query = %id, database = target.database().name(), sql = %crate::log::sql(&sql), "fragment");
        // A fragment only reads: the engine refuses anything else once it is prepared.
        let (schema, rx) = self.engine.query_fragment(&grant, target, id, sql).await.map_err(status)?;
        Ok(Response::new(labelled(schema, tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Why the client's settings contradict what the planner writes into the SQL it produces, if they
/// do: it spells out every ORDER BY as ascending unless told otherwise, NULLs last.
fn planner_assumptions(settings: &HashMap<String, String>) -> Option<String> {
    let is = |name: &str, allowed: &[&str]| settings.get(name).is_none_or(|v| allowed.iter().any(|a| v.eq_ignore_ascii_case(a)));
    if !is("default_order", &["asc", "ascending"]) {
        return Some("the setting default_order is not ascending; split plans assume it is".into());
    }
    if !is("default_null_order", &["nulls_last"]) {
        return Some("the setting default_null_order is not NULLS_LAST; split plans assume it is".into());
    }
    None
}

/// The server's values of the settings (one list column, one row).
fn server_values(batches: &[arrow::array::RecordBatch]) -> Vec<Option<String>> {
    use arrow::array::{Array, AsArray};
    let Some(batch) = batches.first() else {
        return vec![];
    };
    if batch.num_rows() == 0 || batch.num_columns() == 0 {
        return vec![];
    }
    let Some(list) = batch.column(0).as_list_opt::<i32>() else {
        return vec![];
    };
    let values = list.value(0);
    let Some(strings) = values.as_string_opt::<i32>() else {
        return vec![];
    };
    (0..strings.len()).map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_string())).collect()
}
