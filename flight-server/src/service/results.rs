//! Results on the wire: encoding batches as Flight data with the Flight SQL column metadata,
//! the schemas announced for them, and reading batches a client sends.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::{Request, Status};

use super::status;
use crate::duck::StatementKind;
use crate::error::ServerError;

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(super) fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("cannot encode schema: {e}")))?;
    Ok(bytes)
}

/// Bytes of results (Arrow IPC headers and bodies) sent to clients since the server started.
static RESULT_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes of results sent to clients since the server started (`/health`, benchmarks).
pub fn result_bytes_sent() -> u64 {
    RESULT_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Encodes a stream of batches as Flight data, mapping errors to statuses.
pub(super) fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, ServerError>> + Send + 'static,
) -> BoxStream<arrow_flight::FlightData> {
    let input = batches.map_err(|e| FlightError::Tonic(Box::new(status(e))));
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(input)
        .map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => Status::internal(other.to_string()),
        })
        .inspect_ok(|data| {
            RESULT_BYTES.fetch_add((data.data_header.len() + data.data_body.len()) as u64, std::sync::atomic::Ordering::Relaxed);
        });
    Box::pin(stream)
}

/// Adds the Flight SQL column metadata JDBC and ODBC clients read (`ARROW:FLIGHT:SQL:PRECISION`
/// and `…:SCALE` for decimals) to a result schema.
pub(super) fn with_sql_metadata(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Decimal128(p, s) | DataType::Decimal64(p, s) | DataType::Decimal32(p, s) | DataType::Decimal256(p, s) => {
                let mut md = f.metadata().clone();
                md.insert("ARROW:FLIGHT:SQL:PRECISION".into(), p.to_string());
                md.insert("ARROW:FLIGHT:SQL:SCALE".into(), s.to_string());
                f.as_ref().clone().with_metadata(md)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields).with_metadata(schema.metadata().clone())
}

/// The dataset schema a prepared statement announces: empty for statements whose only result is
/// DuckDB's row count, so JDBC runs them as updates and reports the count.
pub(super) fn announced_dataset_schema(kind: StatementKind, schema: &Schema) -> Schema {
    let only_count = schema.fields().len() == 1 && schema.field(0).name() == "Count";
    if kind.may_write() && (only_count || schema.fields().is_empty()) {
        Schema::empty()
    } else {
        with_sql_metadata(schema)
    }
}

/// The schema exactly as `DoGet` will send it: the encoder expands dictionaries (DuckDB ENUMs
/// arrive as strings) and rebuilds union fields, and clients check FlightInfo against it.
pub(super) fn wire_schema(schema: &Schema) -> Result<Schema, Status> {
    use arrow_flight::encode::FlightDataEncoder;
    let mut encoder: FlightDataEncoder =
        FlightDataEncoderBuilder::new().with_schema(Arc::new(schema.clone())).build(futures::stream::empty());
    let first = futures::executor::block_on(encoder.next())
        .ok_or_else(|| Status::internal("encoder produced no schema"))?
        .map_err(|e| Status::internal(e.to_string()))?;
    Schema::try_from(&first).map_err(|e| Status::internal(e.to_string()))
}

/// Encodes a statement's result with the Flight SQL column metadata on its schema and batches.
pub(super) fn labelled(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, ServerError>> + Send + 'static,
) -> BoxStream<arrow_flight::FlightData> {
    let schema = Arc::new(with_sql_metadata(&schema));
    let label = schema.clone();
    encode(schema, batches.map(move |b| b.and_then(|b| b.with_schema(label.clone()).map_err(ServerError::from))))
}

pub(super) fn one_batch(batch: RecordBatch) -> BoxStream<arrow_flight::FlightData> {
    let schema = batch.schema();
    encode(schema, futures::stream::once(async move { Ok(batch) }))
}

/// Reads a DoPut stream into record batches. Messages without an IPC header (a first message
/// carrying only the descriptor, as some clients send) are skipped.
pub(super) fn decode(request: Request<PeekableFlightDataStream>) -> FlightRecordBatchStream {
    let messages = request.into_inner().try_filter(|m| futures::future::ready(!m.data_header.is_empty())).map_err(FlightError::from);
    FlightRecordBatchStream::new_from_flight_data(messages)
}
