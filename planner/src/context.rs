//! What DataFusion's SQL front end sees while it plans a query: the relations the client resolved
//! (each under an internal name, `__r<i>`, see [`crate::names`]) and the functions.
//!
//! DataFusion never runs anything here; functions matter only for planning (is a name an aggregate,
//! a window function, what type comes out). Functions DataFusion knows are its own; any other
//! name plans as an opaque scalar function that keeps its name and arguments, so the SQL written
//! back is the SQL the user wrote, evaluated by DuckDB.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_err, Result, TableReference};
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{
    AggregateUDF, ColumnarValue, HigherOrderUDF, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TableSource, TypeSignature,
    Volatility, WindowUDF,
};

use crate::{Functions, Relation};

/// A relation as DataFusion sees it: only its schema.
#[derive(Debug)]
pub(crate) struct RelationSource {
    schema: SchemaRef,
}

impl RelationSource {
    /// A source with these columns.
    pub(crate) fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl TableSource for RelationSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The planning context of one query.
pub(crate) struct PlanningContext<'a> {
    /// Internal name (`__r<i>`) → the relation's schema.
    tables: HashMap<String, Arc<RelationSource>>,
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    windows: HashMap<String, Arc<WindowUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
    duckdb: &'a Functions,
}

impl<'a> PlanningContext<'a> {
    /// A context where relation `i` of `relations` is the table `__r<i>`, and a function name
    /// means what it means to DuckDB (`duckdb`).
    pub(crate) fn new(relations: &[Relation], duckdb: &'a Functions) -> Self {
        let tables = relations
            .iter()
            .enumerate()
            .map(|(i, r)| (crate::names::internal_name(i), Arc::new(RelationSource { schema: r.schema.clone() })))
            .collect();
        let (scalars, aggregates, windows) = functions();
        let planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
            Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
            Arc::new(datafusion_functions_window::planner::WindowFunctionPlanner),
        ];
        let mut options = ConfigOptions::default();
        options.sql_parser.parse_float_as_decimal = true;
        options.sql_parser.enable_ident_normalization = true;
        options.sql_parser.map_string_types_to_utf8view = false;
        // DuckDB sorts NULLs last in both directions by default.
        options.sql_parser.default_null_ordering = "nulls_last".to_string();
        options.sql_parser.dialect = datafusion_common::config::Dialect::DuckDB;
        Self { tables, scalars, aggregates, windows, planners, options, duckdb }
    }
}

impl ContextProvider for PlanningContext<'_> {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        match &name {
            TableReference::Bare { table } => match self.tables.get(table.as_ref()) {
                Some(source) => Ok(source.clone() as Arc<dyn TableSource>),
                None => plan_err!("relation {name} is not one the client resolved"),
            },
            _ => plan_err!("relation {name} is not one the client resolved"),
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }

    // A name is planned as the kind of function DuckDB says it is: a DuckDB aggregate that
    // DataFusion took for a scalar would be computed over the wrong rows. Names DuckDB does not
    // know (the client's own functions) are not planned at all.
    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        if !self.duckdb.is_scalar(name) {
            return None;
        }
        if let Some(f) = self.scalars.get(name) {
            return Some(f.clone());
        }
        Some(Arc::new(ScalarUDF::new_from_impl(OpaqueFunction::new(name))))
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregates.get(name).filter(|_| self.duckdb.is_aggregate(name)).cloned()
    }

    // DuckDB lists its window functions among its aggregates.
    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.windows.get(name).filter(|_| self.duckdb.is_aggregate(name)).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalars.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.windows.keys().cloned().collect()
    }
}

/// DataFusion's scalar, aggregate and window functions by every name they go by.
#[allow(clippy::type_complexity)]
pub(crate) fn functions() -> (HashMap<String, Arc<ScalarUDF>>, HashMap<String, Arc<AggregateUDF>>, HashMap<String, Arc<WindowUDF>>) {
    fn by_name<T: ?Sized>(items: Vec<Arc<T>>, names: impl Fn(&T) -> Vec<String>) -> HashMap<String, Arc<T>> {
        items.into_iter().flat_map(|f| names(&f).into_iter().map(move |n| (n, f.clone()))).collect()
    }
    let scalars = by_name(
        datafusion_functions::all_default_functions()
            .into_iter()
            .chain(datafusion_functions_nested::all_default_nested_functions())
            .collect(),
        |f: &ScalarUDF| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()).collect(),
    );
    let aggregates = by_name(datafusion_functions_aggregate::all_default_aggregate_functions(), |f: &AggregateUDF| {
        std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()).collect()
    });
    let windows = by_name(datafusion_functions_window::all_default_window_functions(), |f: &WindowUDF| {
        std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()).collect()
    });
    (scalars, aggregates, windows)
}

/// A scalar function DataFusion does not know: planned by name, written back unchanged. Its type
/// is a guess (its first argument's, else text): it only has to let planning go on, since DuckDB
/// types the SQL again on both sides.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct OpaqueFunction {
    name: String,
    signature: Signature,
}

impl OpaqueFunction {
    /// The opaque function `name`.
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            signature: Signature::one_of(vec![TypeSignature::VariadicAny, TypeSignature::Nullary], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for OpaqueFunction {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().filter(|t| !t.is_null()).cloned().unwrap_or(DataType::Utf8))
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        datafusion_common::not_impl_err!("{} runs in DuckDB, not here", self.name)
    }
}
