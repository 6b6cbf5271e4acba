//! Placement: which operators may run on the server.
//!
//! An operator may run REMOTE when every relation under it is remote, its kind is one the planner
//! carries, and its expressions mean the same on the server: nothing volatile (`random()` could
//! change row counts), nothing that reads the client's clock, session or state (`now()`,
//! `current_setting()`, `nextval()`), and no subquery that reads local data or refers to a column
//! from outside the operator.

use std::collections::HashSet;

use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::Column;
use datafusion_expr::{Distinct, Expr, LogicalPlan, TableScan};

use crate::{names, Location, Relation};

/// Functions that must run in the client: volatile ones, and ones that read the client's clock,
/// session or state. Matched by name (lowercase).
const LOCAL_ONLY: &[&str] = &[
    "random",
    "setseed",
    "uuid",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "now",
    "today",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "get_current_time",
    "get_current_timestamp",
    "transaction_timestamp",
    "nextval",
    "currval",
    "current_setting",
    "getvariable",
    "current_schema",
    "current_schemas",
    "current_database",
    "current_catalog",
    "current_query",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "version",
    "txid_current",
    "pg_backend_pid",
];

/// Whether a function of this name must run in the client.
pub(crate) fn local_only(name: &str) -> bool {
    LOCAL_ONLY.contains(&name.to_lowercase().as_str())
}

/// Where the table a scan reads lives (`None` for a scan of something else, e.g. a fragment).
pub(crate) fn scan_location(scan: &TableScan, relations: &[Relation]) -> Option<Location> {
    let index = names::relation_index(scan.table_name.table())?;
    relations.get(index).map(|r| r.location)
}

/// Whether `plan` (or a subquery in it) reads a remote table.
pub(crate) fn reads_remote(plan: &LogicalPlan, relations: &[Relation]) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if scan_location(scan, relations) == Some(Location::Remote) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The kinds of operator the planner carries (any other makes the query fall back).
fn carried(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::Distinct(Distinct::All(_))
            | LogicalPlan::Union(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Subquery(_)
    )
}

/// Checks that the planner carries every operator and expression of `plan`.
pub(crate) fn check_supported(plan: &LogicalPlan) -> Result<(), String> {
    let mut problem = None;
    let _ = plan.apply_with_subqueries(|node| {
        if !carried(node) {
            problem = Some(format!("the planner does not carry {}", node.display()));
            return Ok(TreeNodeRecursion::Stop);
        }
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                let what = match e {
                    Expr::Placeholder(_) => Some("a parameter"),
                    Expr::Unnest(_) => Some("UNNEST"),
                    Expr::GroupingSet(_) => Some("GROUPING SETS, ROLLUP or CUBE"),
                    Expr::ScalarVariable(..) => Some("a variable"),
                    Expr::SetComparison(_) => Some("ANY/ALL with a subquery"),
                    Expr::HigherOrderFunction(_) | Expr::Lambda(_) | Expr::LambdaVariable(_) => Some("a lambda"),
                    Expr::SimilarTo(_) => Some("SIMILAR TO"),
                    // The unparser drops an aggregate's own ORDER BY (string_agg(x, ',' ORDER BY y)).
                    Expr::AggregateFunction(f) if !f.params.order_by.is_empty() => Some("an aggregate with its own ORDER BY"),
                    Expr::AggregateFunction(f) if f.params.null_treatment.is_some() => Some("IGNORE/RESPECT NULLS"),
                    _ => None,
                };
                if let Some(what) = what {
                    problem = Some(format!("the planner does not carry {what}"));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
            if problem.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match problem {
        Some(p) => Err(p),
        None => Ok(()),
    }
}

/// Whether all of `plan` may run on the server.
pub(crate) fn remote_able(plan: &LogicalPlan, relations: &[Relation]) -> bool {
    subtree_remote(plan, relations, &HashSet::new())
}

/// Whether `plan` may run on the server as one fragment, reading a remote table (a subtree of
/// constants alone is left where it is).
pub(crate) fn fragment_root(plan: &LogicalPlan, relations: &[Relation]) -> bool {
    remote_able(plan, relations) && reads_remote(plan, relations)
}

/// Like [`remote_able`], where subqueries may also refer to the columns in `outer`.
fn subtree_remote(plan: &LogicalPlan, relations: &[Relation], outer: &HashSet<Column>) -> bool {
    if let LogicalPlan::TableScan(scan) = plan {
        return scan_location(scan, relations) == Some(Location::Remote);
    }
    if !carried(plan) {
        return false;
    }
    let mut visible = outer.clone();
    for input in plan.inputs() {
        visible.extend(input.schema().columns());
    }
    if !plan.expressions().iter().all(|e| expr_remote(e, relations, &visible)) {
        return false;
    }
    plan.inputs().into_iter().all(|input| subtree_remote(input, relations, outer))
}

/// Whether `expr`, over the columns in `visible`, may be evaluated on the server.
pub(crate) fn expr_remote(expr: &Expr, relations: &[Relation], visible: &HashSet<Column>) -> bool {
    let mut ok = true;
    let _ = expr.apply(|e| {
        ok = match e {
            Expr::ScalarFunction(f) => !local_only(f.name()),
            Expr::AggregateFunction(f) => !local_only(f.func.name()),
            Expr::OuterReferenceColumn(_, column) => visible.contains(column),
            Expr::Exists(e) => subtree_remote(&e.subquery.subquery, relations, visible),
            Expr::InSubquery(e) => subtree_remote(&e.subquery.subquery, relations, visible),
            Expr::ScalarSubquery(s) => subtree_remote(&s.subquery, relations, visible),
            Expr::Placeholder(_) | Expr::ScalarVariable(..) => false,
            _ => true,
        };
        Ok(if ok { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    });
    ok
}

/// Whether `expr` contains a subquery.
pub(crate) fn has_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found = matches!(e, Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::SetComparison(_));
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// The columns from outside that the subqueries inside `expr` read (their outer references).
pub(crate) fn outer_references(expr: &Expr) -> Vec<Column> {
    let mut out = Vec::new();
    let _ = expr.apply(|e| {
        let plan = match e {
            Expr::Exists(x) => Some(&x.subquery.subquery),
            Expr::InSubquery(x) => Some(&x.subquery.subquery),
            Expr::ScalarSubquery(x) => Some(&x.subquery),
            _ => None,
        };
        if let Some(plan) = plan {
            let _ = plan.apply_with_subqueries(|node| {
                for inner in node.expressions() {
                    let _ = inner.apply(|x| {
                        if let Expr::OuterReferenceColumn(_, c) = x {
                            out.push(c.clone());
                        }
                        Ok(TreeNodeRecursion::Continue)
                    });
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}
