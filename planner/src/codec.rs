//! Fragments on the wire: a fragment's logical plan encoded with datafusion-proto (DataFusion
//! 54.1; the encoding has no compatibility guarantee across DataFusion versions, so client and
//! server must agree, which they do because the server both splits and runs fragments).
//!
//! A fragment's tables are encoded by name and schema only; functions DataFusion does not know
//! travel by name and come back as the same opaque functions.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion_catalog::default_table_source::DefaultTableSource;
use datafusion_catalog::empty::EmptyTable;
use datafusion_catalog::TableProvider;
use datafusion_common::{DataFusionError, Result, TableReference};
use datafusion_execution::config::SessionConfig;
use datafusion_execution::runtime_env::RuntimeEnv;
use datafusion_execution::TaskContext;
use datafusion_expr::{Extension, LogicalPlan, ScalarUDF, TableSource};
use datafusion_proto::bytes::{logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::context::{functions, OpaqueFunction};

/// A table source the codec can carry: only a schema.
pub(crate) fn provider_source(schema: SchemaRef) -> Arc<dyn TableSource> {
    Arc::new(DefaultTableSource::new(Arc::new(EmptyTable::new(schema))))
}

#[derive(Debug)]
struct Codec;

impl LogicalExtensionCodec for Codec {
    fn try_decode(&self, _buf: &[u8], _inputs: &[LogicalPlan], _ctx: &TaskContext) -> Result<Extension> {
        Err(DataFusionError::NotImplemented("fragments have no extension operators".into()))
    }

    fn try_encode(&self, _node: &Extension, _buf: &mut Vec<u8>) -> Result<()> {
        Err(DataFusionError::NotImplemented("fragments have no extension operators".into()))
    }

    fn try_decode_table_provider(
        &self,
        _buf: &[u8],
        _table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(EmptyTable::new(schema)))
    }

    fn try_encode_table_provider(&self, table_ref: &TableReference, node: Arc<dyn TableProvider>, _buf: &mut Vec<u8>) -> Result<()> {
        if (node.as_ref() as &dyn std::any::Any).downcast_ref::<EmptyTable>().is_none() {
            return Err(DataFusionError::NotImplemented(format!("table {table_ref} is not a server table")));
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, _buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        Ok(Arc::new(ScalarUDF::new_from_impl(OpaqueFunction::new(name))))
    }
}

fn task_context() -> TaskContext {
    let (scalars, aggregates, windows) = functions();
    TaskContext::new(
        None,
        "openduck-fragment".into(),
        SessionConfig::new(),
        scalars,
        Default::default(),
        aggregates,
        windows,
        Arc::new(RuntimeEnv::default()),
    )
}

/// Encodes a fragment's plan for the wire.
pub fn encode_fragment(plan: &LogicalPlan) -> Result<Vec<u8>> {
    Ok(logical_plan_to_bytes_with_extension_codec(plan, &Codec)?.to_vec())
}

/// Decodes a fragment's plan and writes it as the DuckDB SQL the server runs.
pub fn decode_fragment(bytes: &[u8]) -> Result<(LogicalPlan, String)> {
    let plan = logical_plan_from_bytes_with_extension_codec(bytes, &task_context(), &Codec)?;
    let sql = crate::unparse(&plan)?;
    Ok((plan, sql))
}
