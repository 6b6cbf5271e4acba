//! Cutting a plan into its local part and remote fragments.
//!
//! Every largest subtree that may run on the server ([`crate::place`]) becomes a [`Fragment`]: its
//! plan under a projection that names its outputs `c0, c1, …`, and in the local plan a scan of
//! the table `__openduck_fragment_<id>` (a bridge REMOTE→LOCAL). A fragment that is a relation
//! (a table, a join, a filter) returns only the columns the rest of the plan reads.
//!
//! The operators above a fragment named its columns by their old names; they are renamed on the
//! way up: an operator that passes its input through (filter, join, sort, limit) renames the same
//! columns, an alias renames them under its own name, an aggregate or window renames the columns
//! it computes, and a projection writes its outputs back under their old names, so nothing above
//! it changes. A subquery that refers to a column that moved to the server makes the query fall
//! back.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, DFSchemaRef, DataFusionError, Result, TableReference};
use datafusion_expr::{Expr, LogicalPlan, Projection, TableScan};

use crate::context::RelationSource;
use crate::{codec, explain, fragment_table, names, place, unparse, Fragment, Location, Relation};

/// Old column → new column.
type ColumnMap = HashMap<Column, Column>;

/// A plan cut into its local part and fragments.
pub(crate) struct Cut {
    pub local: LogicalPlan,
    pub fragments: Vec<Fragment>,
}

/// Cuts `plan` (tables still under their internal names).
pub(crate) fn cut(plan: LogicalPlan, relations: &[Relation]) -> Result<Cut, String> {
    let width = plan.schema().fields().len();
    let mut references = HashMap::new();
    count_references(&plan, &mut references);
    let mut cutter = Cutter { relations, references, fragments: vec![] };
    let (local, _) = cutter.cut(plan, true).map_err(|e| match e {
        DataFusionError::Plan(reason) => reason,
        other => format!("the plan cannot be split: {other}"),
    })?;
    if local.schema().fields().len() != width {
        return Err("splitting changed the number of result columns".into());
    }
    if cutter.fragments.is_empty() {
        return Err("no part of the query can run on the server".into());
    }
    Ok(Cut { local, fragments: cutter.fragments })
}

/// Counts, for every column, the expressions that read it, anywhere in `plan`.
fn count_references(plan: &LogicalPlan, counts: &mut HashMap<Column, usize>) {
    let _ = plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                match e {
                    Expr::Column(c) | Expr::OuterReferenceColumn(_, c) => *counts.entry(c.clone()).or_default() += 1,
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

struct Cutter<'a> {
    relations: &'a [Relation],
    references: HashMap<Column, usize>,
    fragments: Vec<Fragment>,
}

impl Cutter<'_> {
    /// Cuts `plan`; returns the new plan and how its output columns were renamed.
    fn cut(&mut self, plan: LogicalPlan, is_root: bool) -> Result<(LogicalPlan, ColumnMap)> {
        if place::fragment_root(&plan, self.relations) {
            return self.fragment(plan, is_root);
        }
        let old_schema = plan.schema().clone();
        // Subqueries in this operator's expressions are cut on their own; their results are read
        // by position, so their renaming stops at their root.
        let plan = plan
            .map_subqueries(|node| match node {
                LogicalPlan::Subquery(mut subquery) => {
                    let inner = Arc::unwrap_or_clone(subquery.subquery);
                    let (inner, _) = self.cut(inner, true)?;
                    subquery.subquery = Arc::new(inner);
                    Ok(Transformed::yes(LogicalPlan::Subquery(subquery)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let mut map = ColumnMap::new();
        let mut children = vec![];
        for input in plan.inputs() {
            let (child, renamed) = self.cut(input.clone(), false)?;
            map.extend(renamed);
            children.push(child);
        }
        if map.is_empty() {
            if children.is_empty() {
                return Ok((plan, map));
            }
            let exprs = plan.expressions();
            return Ok((plan.with_new_exprs(exprs, children)?, map));
        }
        let exprs = plan.expressions().into_iter().map(|e| rename(e, &map)).collect::<Result<Vec<_>>>()?;
        let plan = plan.with_new_exprs(exprs, children)?;
        let out = match &plan {
            LogicalPlan::Projection(projection) => return keep_names(projection, &old_schema),
            LogicalPlan::Aggregate(_) | LogicalPlan::Union(_) => positional(&old_schema, plan.schema(), 0)?,
            LogicalPlan::Window(window) => {
                let computed = window.window_expr.len();
                let mut out = map;
                out.extend(positional(&old_schema, plan.schema(), computed)?);
                out
            }
            LogicalPlan::SubqueryAlias(alias) => map
                .into_iter()
                .map(|(old, new)| (Column::new(Some(alias.alias.clone()), old.name), Column::new(Some(alias.alias.clone()), new.name)))
                .collect(),
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Distinct(datafusion_expr::Distinct::All(_)) => map,
            other => return Err(DataFusionError::Plan(format!("cannot carry renamed columns through {}", other.display()))),
        };
        Ok((plan, out))
    }

    /// Makes `plan` a fragment; returns its scan and the renaming of its columns.
    fn fragment(&mut self, plan: LogicalPlan, is_root: bool) -> Result<(LogicalPlan, ColumnMap)> {
        let id = self.fragments.len() as u32;
        let table = fragment_table(id);
        let schema = plan.schema().clone();
        let relation_like =
            matches!(plan, LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) | LogicalPlan::Join(_) | LogicalPlan::TableScan(_));
        let mut keep: Vec<usize> = (0..schema.fields().len()).collect();
        if relation_like && !is_root {
            let mut inside = HashMap::new();
            count_references(&plan, &mut inside);
            keep.retain(|&i| {
                let column = Column::from(schema.qualified_field(i));
                self.references.get(&column).copied().unwrap_or(0) > inside.get(&column).copied().unwrap_or(0)
            });
            if keep.is_empty() {
                keep.push(0);
            }
        }
        let mut map = ColumnMap::new();
        let mut exprs = vec![];
        let mut fields = vec![];
        for (j, &i) in keep.iter().enumerate() {
            let (qualifier, field) = schema.qualified_field(i);
            let old = Column::new(qualifier.cloned(), field.name());
            let name = format!("c{j}");
            exprs.push(Expr::Column(old.clone()).alias(&name));
            fields.push(Field::new(&name, field.data_type().clone(), true));
            map.insert(old, Column::new(Some(TableReference::bare(table.clone())), name));
        }
        let estimated_rows = estimate(&plan, self.relations);
        // A fragment that ends in a projection names its own outputs; any other gets one.
        let named = if relation_like { None } else { name_outputs(plan.clone())? };
        let plan = match named {
            Some(named) => named,
            None => LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?),
        };
        let remote_plan = name_remote_tables(plan, self.relations)?;
        let sql = unparse(&remote_plan)?;
        let explain = explain::render_remote(&remote_plan);
        let column_count = fields.len();
        let source = Arc::new(RelationSource::new(Arc::new(Schema::new(fields))));
        let scan = LogicalPlan::TableScan(TableScan::try_new(table, source, None, vec![], None)?);
        self.fragments.push(Fragment { id, plan: remote_plan, sql, column_count, estimated_rows, explain });
        Ok((scan, map))
    }
}

/// The largest row estimate of the tables `plan` reads, if all have one.
fn estimate(plan: &LogicalPlan, relations: &[Relation]) -> Option<u64> {
    let mut largest = Some(0u64);
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let rows = names::relation_index(scan.table_name.table()).and_then(|i| relations.get(i)).and_then(|r| r.estimated_rows);
            largest = match (largest, rows) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        Ok(TreeNodeRecursion::Continue)
    });
    largest
}

/// `expr` with columns renamed by `map`; an error if a subquery in it refers to a renamed column.
fn rename(expr: Expr, map: &ColumnMap) -> Result<Expr> {
    if let Some(c) = place::outer_references(&expr).into_iter().find(|c| map.contains_key(c)) {
        return Err(DataFusionError::Plan(format!("a correlated subquery refers to {c}, which is computed on the server")));
    }
    Ok(expr
        .transform_up(|e| match e {
            Expr::Column(c) => match map.get(&c) {
                Some(new) => Ok(Transformed::yes(Expr::Column(new.clone()))),
                None => Ok(Transformed::no(Expr::Column(c))),
            },
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// The projection with each output that changed name written back under its old name. SQL
/// cannot give an output a table qualifier, so one that had one is now read unqualified: the
/// returned renaming says so to the operators above.
fn keep_names(projection: &Projection, old: &DFSchemaRef) -> Result<(LogicalPlan, ColumnMap)> {
    let new = projection.schema.clone();
    if new.fields().len() != old.fields().len() {
        return Err(DataFusionError::Plan("a projection changed width".into()));
    }
    let mut map = ColumnMap::new();
    let exprs = projection
        .expr
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (old_q, old_f) = old.qualified_field(i);
            let (new_q, new_f) = new.qualified_field(i);
            if old_q == new_q && old_f.name() == new_f.name() {
                e.clone()
            } else {
                if old_q.is_some() {
                    map.insert(Column::new(old_q.cloned(), old_f.name()), Column::new_unqualified(old_f.name()));
                }
                e.clone().unalias().alias(old_f.name())
            }
        })
        .collect();
    Ok((LogicalPlan::Projection(Projection::try_new(exprs, projection.input.clone())?), map))
}

/// `plan` with its outputs named `c0, c1, …` where it ends in a projection (possibly under a
/// sort, limit, DISTINCT or UNION); `None` for any other plan.
fn name_outputs(plan: LogicalPlan) -> Result<Option<LogicalPlan>> {
    match plan {
        LogicalPlan::Projection(projection) => {
            let exprs = projection.expr.iter().enumerate().map(|(i, e)| e.clone().unalias().alias(format!("c{i}"))).collect();
            Ok(Some(LogicalPlan::Projection(Projection::try_new(exprs, projection.input)?)))
        }
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) | LogicalPlan::Distinct(datafusion_expr::Distinct::All(_)) => {
            let input = plan.inputs()[0].clone();
            let old = input.schema().clone();
            let Some(input) = name_outputs(input)? else {
                return Ok(None);
            };
            let map = positional(&old, input.schema(), 0)?;
            let exprs = plan.expressions().into_iter().map(|e| rename(e, &map)).collect::<Result<Vec<_>>>()?;
            Ok(Some(plan.with_new_exprs(exprs, vec![input])?))
        }
        LogicalPlan::Union(union) => {
            let mut inputs = vec![];
            for input in union.inputs {
                match name_outputs(Arc::unwrap_or_clone(input))? {
                    Some(named) => inputs.push(Arc::new(named)),
                    None => return Ok(None),
                }
            }
            Ok(Some(LogicalPlan::Union(datafusion_expr::Union::try_new(inputs)?)))
        }
        _ => Ok(None),
    }
}

/// Old → new for the fields of `old` and `new` in the same positions, from `skip_from_end`
/// fields before the end (0: all).
fn positional(old: &DFSchemaRef, new: &DFSchemaRef, last: usize) -> Result<ColumnMap> {
    let (n_old, n_new) = (old.fields().len(), new.fields().len());
    let count = if last == 0 { n_old } else { last };
    if (last == 0 && n_old != n_new) || count > n_old || count > n_new {
        return Err(DataFusionError::Plan("an operator changed width while its inputs were cut".into()));
    }
    let mut map = ColumnMap::new();
    for k in 0..count {
        let old_column = Column::from(old.qualified_field(n_old - count + k));
        let new_column = Column::from(new.qualified_field(n_new - count + k));
        if old_column != new_column {
            map.insert(old_column, new_column);
        }
    }
    Ok(map)
}

/// Renames the scans of `location` tables in `plan` to their names there.
fn name_tables(plan: LogicalPlan, relations: &[Relation], location: Location) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) if place::scan_location(&scan, relations) == Some(location) => {
                let index = names::relation_index(scan.table_name.table()).expect("a relation's scan");
                let name = &relations[index].name;
                let reference = match name.as_slice() {
                    [table] => TableReference::bare(table.as_str()),
                    [schema, table] => TableReference::partial(schema.as_str(), table.as_str()),
                    [catalog, schema, table] => TableReference::full(catalog.as_str(), schema.as_str(), table.as_str()),
                    _ => return Err(DataFusionError::Plan(format!("relation {index} has no usable name"))),
                };
                let source = match location {
                    Location::Remote => codec::provider_source(scan.source.schema()),
                    Location::Local => scan.source.clone(),
                };
                Ok(Transformed::yes(LogicalPlan::TableScan(TableScan::try_new(
                    reference,
                    source,
                    scan.projection.clone(),
                    scan.filters.clone(),
                    scan.fetch,
                )?)))
            }
            other => Ok(Transformed::yes(other.recompute_schema()?)),
        })?
        .data)
}

/// `plan` (a fragment) with its tables named as the server names them.
pub(crate) fn name_remote_tables(plan: LogicalPlan, relations: &[Relation]) -> Result<LogicalPlan> {
    name_tables(plan, relations, Location::Remote)
}

/// `plan` (the local part) with its tables named as the client names them.
pub(crate) fn name_local_tables(plan: LogicalPlan, relations: &[Relation]) -> Result<LogicalPlan> {
    name_tables(plan, relations, Location::Local)
}
