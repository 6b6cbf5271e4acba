//! Hybrid plan splitting: one query, part of it run by the client's DuckDB (LOCAL), part by an
//! OpenDuck server (REMOTE), with only intermediate results crossing between them.
//!
//! Input: a DuckDB `SELECT` and the relations it reads, as the client's DuckDB resolved them
//! ([`Relation`]: where each lives, its columns, a row estimate). Output: a [`SplitPlan`] — either
//! the local part as DuckDB SQL plus the remote [`Fragment`]s it reads (each a bridge
//! REMOTE→LOCAL), or a fallback with its reason, in which case the client runs its own plan, which
//! is always correct. Either way an EXPLAIN text labels every operator LOCAL or REMOTE.
//!
//! DataFusion's SQL front end (DuckDB dialect) parses and binds; its *unoptimized* logical plan is
//! the carrier, and DataFusion's unparser writes each part back as DuckDB SQL. DataFusion's own
//! optimizer is never used: its rewrites do not unparse to valid DuckDB SQL. The planner's rules
//! are its own, each kept to what it can prove:
//! 1. [`rules::group_joins`] — a block's inner joins are regrouped so that the remote relations
//!    joined to each other, with every predicate that reads only them, form one remote subtree.
//! 2. [`rules::partial_aggregate`] — an aggregate over a join of local relations and one remote
//!    subtree is computed in two steps, the first (grouped by the join keys) on the server.
//! 3. [`cut`] — every largest subtree that reads only remote tables and uses nothing the server
//!    cannot evaluate the same way becomes a fragment, pruned to the columns the rest reads.
//!
//! The planner never sees data and runs nothing.

#![warn(missing_docs)]

mod codec;
mod context;
mod cut;
mod dialect;
mod explain;
mod names;
mod place;
pub mod rules;

use arrow::datatypes::SchemaRef;
use datafusion_expr::LogicalPlan;
use datafusion_sql::planner::SqlToRel;
use datafusion_sql::sqlparser::dialect::DuckDbDialect;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::unparser::Unparser;

pub use codec::{decode_fragment, encode_fragment};

/// Where a relation lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// In the client's DuckDB.
    Local,
    /// On the server that splits the query.
    Remote,
}

/// A relation the query reads, as the client resolved it.
#[derive(Debug, Clone)]
pub struct Relation {
    /// The name as the query spells it (one to three parts).
    pub reference: Vec<String>,
    /// Where it lives.
    pub location: Location,
    /// Its full name where it lives: catalog, schema and table for a local relation (the local
    /// SQL names it so), schema and table for a remote one (the server's).
    pub name: Vec<String>,
    /// Its columns.
    pub schema: SchemaRef,
    /// Its estimated row count, if known.
    pub estimated_rows: Option<u64>,
}

/// One remote part of a split plan: it reads only the server's tables.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Its number; the local SQL reads it as `__openduck_fragment_<id>`.
    pub id: u32,
    /// Its plan, whose output columns are `c0`, `c1`, ….
    pub plan: LogicalPlan,
    /// The plan as DuckDB SQL for the server.
    pub sql: String,
    /// How many columns it returns.
    pub column_count: usize,
    /// An upper bound of its rows when every table it reads has an estimate: the largest of
    /// those (joins, filters and aggregates in a fragment are assumed not to grow it).
    pub estimated_rows: Option<u64>,
    /// The fragment's operators, one per line, labelled REMOTE.
    pub explain: String,
}

/// The outcome of splitting one query.
#[derive(Debug, Clone)]
pub enum SplitPlan {
    /// The query runs split: `local_sql` (DuckDB SQL over local tables and the fragments) runs in
    /// the client, each fragment on the server.
    Split {
        /// The local part.
        local_sql: String,
        /// The remote parts.
        fragments: Vec<Fragment>,
        /// The whole plan, one operator per line, labelled.
        explain: String,
    },
    /// The planner leaves the query to the client's own plan.
    Fallback {
        /// Why, in words for EXPLAIN.
        reason: String,
    },
}

impl SplitPlan {
    fn fallback(reason: impl Into<String>) -> Self {
        SplitPlan::Fallback { reason: reason.into() }
    }
}

/// What each function name means to DuckDB (from `duckdb_functions()`), so that the planner treats
/// every function as the kind DuckDB will evaluate it as.
#[derive(Debug, Clone, Default)]
pub struct Functions {
    scalars: std::collections::HashSet<String>,
    aggregates: std::collections::HashSet<String>,
}

impl Functions {
    /// From `(name, function_type)` pairs as `duckdb_functions()` lists them. A name DuckDB lists
    /// as both a scalar and an aggregate is neither here (queries using it fall back).
    pub fn new<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut scalars = std::collections::HashSet::new();
        let mut aggregates = std::collections::HashSet::new();
        for (name, kind) in rows {
            match kind {
                "scalar" | "macro" => scalars.insert(name.to_lowercase()),
                "aggregate" => aggregates.insert(name.to_lowercase()),
                _ => false,
            };
        }
        let both: Vec<String> = scalars.intersection(&aggregates).cloned().collect();
        for name in both {
            scalars.remove(&name);
            aggregates.remove(&name);
        }
        Self { scalars, aggregates }
    }

    /// Whether DuckDB evaluates `name` as a scalar function (or macro).
    pub fn is_scalar(&self, name: &str) -> bool {
        self.scalars.contains(&name.to_lowercase())
    }

    /// Whether DuckDB evaluates `name` as an aggregate (or window) function.
    pub fn is_aggregate(&self, name: &str) -> bool {
        self.aggregates.contains(&name.to_lowercase())
    }
}

/// The name under which the local SQL reads fragment `id`.
pub fn fragment_table(id: u32) -> String {
    format!("__openduck_fragment_{id}")
}

/// Splits `sql` (one DuckDB `SELECT`) over `relations` (every table it names, as spelled), with
/// function names meaning what `functions` says they mean to DuckDB.
pub fn split(sql: &str, relations: &[Relation], functions: &Functions) -> SplitPlan {
    let plan = match plan_query(sql, relations, functions) {
        Ok(plan) => plan,
        Err(reason) => return SplitPlan::fallback(reason),
    };
    if !place::reads_remote(&plan, relations) {
        return SplitPlan::fallback("the query reads no remote table");
    }
    let plan = match rules::group_joins(plan, relations).and_then(|p| rules::partial_aggregate(p, relations)) {
        Ok(plan) => plan,
        Err(e) => return SplitPlan::fallback(format!("a planner rule failed: {e}")),
    };
    let cut = match cut::cut(plan, relations) {
        Ok(cut) => cut,
        Err(reason) => return SplitPlan::fallback(reason),
    };
    let local = match cut::name_local_tables(cut.local, relations) {
        Ok(plan) => plan,
        Err(e) => return SplitPlan::fallback(format!("cannot name the local tables: {e}")),
    };
    let local_sql = match unparse(&local) {
        Ok(sql) => sql,
        Err(e) => return SplitPlan::fallback(format!("the local part cannot be written as SQL: {e}")),
    };
    let explain = explain::render(&local, &cut.fragments);
    SplitPlan::Split { local_sql, fragments: cut.fragments, explain }
}

/// Parses and binds `sql` into DataFusion's unoptimized plan, tables renamed to their relations.
fn plan_query(sql: &str, relations: &[Relation], functions: &Functions) -> Result<LogicalPlan, String> {
    let mut statements =
        Parser::parse_sql(&DuckDbDialect {}, sql).map_err(|e| format!("DataFusion's parser does not accept the query: {e}"))?;
    if statements.len() != 1 {
        return Err("not a single statement".into());
    }
    let mut statement = statements.remove(0);
    if !matches!(statement, datafusion_sql::sqlparser::ast::Statement::Query(_)) {
        return Err("not a SELECT".into());
    }
    names::resolve(&mut statement, relations)?;
    let context = context::PlanningContext::new(relations, functions);
    let planner = SqlToRel::new(&context);
    let plan = planner.sql_statement_to_plan(statement).map_err(|e| format!("DataFusion cannot plan the query: {e}"))?;
    place::check_supported(&plan)?;
    Ok(plan)
}

/// Writes `plan` as DuckDB SQL.
pub(crate) fn unparse(plan: &LogicalPlan) -> datafusion_common::Result<String> {
    let dialect = dialect::DuckDb::new();
    let unparser = Unparser::new(&dialect);
    Ok(unparser.plan_to_sql(plan)?.to_string())
}

#[cfg(test)]
mod tests;
