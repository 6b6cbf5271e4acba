//! What the service keeps for a client between calls: prepared statements with their bound
//! parameters, and results of statements run when described, waiting for their fetch. Both live
//! in [`crate::expiring::ExpiringMap`]s owned by the service; this file holds what goes in them
//! and their limits.

use std::sync::Mutex;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::StreamExt;
use tonic::{Request, Status};
use uuid::Uuid;

use super::results::decode;
use super::status;
use crate::error::ServerError;
use crate::expiring::Full;

/// A prepared statement held by the server between CreatePreparedStatement and its close, for
/// the token that prepared it.
pub(super) struct PreparedEntry {
    /// Whether running it may change the database (then it runs at GetFlightInfo).
    pub(super) writes: bool,
    pub(super) database: String,
    pub(super) sql: String,
    pub(super) transaction: Option<Uuid>,
    pub(super) dataset_schema: Schema,
    pub(super) parameter_schema: Schema,
    pub(super) params: Mutex<Vec<RecordBatch>>,
}

/// How long a prepared statement that is neither used nor closed is kept.
pub(super) const PREPARED_IDLE_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// How many prepared statements one token may hold open, and the server in all.
pub(super) const PREPARED_PER_TOKEN: usize = 1_000;
pub(super) const PREPARED_TOTAL: usize = 20_000;
/// How many results of statements run at GetFlightInfo wait for their DoGet, per token and in all.
pub(super) const EXECUTED_PER_TOKEN: usize = 16;
pub(super) const EXECUTED_TOTAL: usize = 64;
/// The most bytes of one such result the server holds (a statement that changes data and returns
/// more, e.g. `UPDATE … RETURNING *` of many rows, is stopped and rolled back).
pub const EXECUTED_MAX_BYTES: usize = 8 << 20;
/// The most bytes of bound parameters one prepared statement holds.
pub const PARAMS_MAX_BYTES: usize = 16 << 20;

/// A statement that was run eagerly, with its whole (small: [`EXECUTED_MAX_BYTES`]) result.
#[derive(Clone)]
pub(super) struct Executed {
    pub(super) schema: SchemaRef,
    pub(super) batches: Vec<RecordBatch>,
}

/// Reads bound parameters, refusing more than [`PARAMS_MAX_BYTES`] (bulk data goes through
/// ingest, which streams).
pub(super) async fn collect_params(request: Request<PeekableFlightDataStream>) -> Result<Vec<RecordBatch>, Status> {
    let mut stream = decode(request);
    let (mut batches, mut bytes) = (Vec::new(), 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => Status::invalid_argument(format!("cannot read bound parameters: {other}")),
        })?;
        bytes += batch.get_array_memory_size();
        if bytes > PARAMS_MAX_BYTES {
            return Err(status(ServerError::LimitExceeded(format!(
                "bound parameters exceed {} MiB; load bulk data with ingest (adbc_ingest, DoPut CommandStatementIngest) instead",
                PARAMS_MAX_BYTES >> 20
            ))));
        }
        batches.push(batch);
    }
    Ok(batches)
}

pub(super) fn full(what: &str, e: Full) -> Status {
    status(ServerError::LimitExceeded(format!("too many open {what}: {e}; close some first")))
}

pub(super) fn check_param_count(schema: &Schema, params: &[RecordBatch]) -> Result<(), Status> {
    if let Some(b) = params.first() {
        if b.num_columns() != schema.fields().len() {
            return Err(Status::invalid_argument(format!(
                "statement has {} parameter(s) but {} were bound",
                schema.fields().len(),
                b.num_columns()
            )));
        }
    }
    Ok(())
}
