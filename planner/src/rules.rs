//! The planner's rewrite rules. Each keeps the query's answer (the conformance suite checks each
//! against DuckDB on every TPC-H query and a corpus of DuckDB SQL) and only moves work so that
//! more of it can run where the data is.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{Column, DataFusionError, Result};
use datafusion_expr::expr::AggregateFunction;
use datafusion_expr::utils::{conjunction, split_conjunction_owned};
use datafusion_expr::{Aggregate, Expr, Filter, JoinConstraint, JoinType, LogicalPlan, LogicalPlanBuilder};

use crate::place;
use crate::Relation;

/// Whether `plan` is an inner join the rules may take apart (plain `ON` equality and conditions).
fn is_inner_join(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Join(join) => {
            join.join_type == JoinType::Inner
                && join.join_constraint == JoinConstraint::On
                && join.null_equality == datafusion_common::NullEquality::NullEqualsNothing
                && !join.null_aware
        }
        _ => false,
    }
}

/// The inputs (leaves) of a tree of inner joins and the conditions that join them.
fn flatten(plan: &LogicalPlan, leaves: &mut Vec<LogicalPlan>, predicates: &mut Vec<Expr>) {
    match plan {
        LogicalPlan::Join(join) if is_inner_join(plan) => {
            flatten(&join.left, leaves, predicates);
            flatten(&join.right, leaves, predicates);
            for (l, r) in &join.on {
                predicates.push(l.clone().eq(r.clone()));
            }
            if let Some(filter) = &join.filter {
                predicates.extend(split_conjunction_owned(filter.clone()));
            }
        }
        other => leaves.push(other.clone()),
    }
}

/// Cross-joins `leaves` in order and filters the result by `predicates`.
fn join_all(leaves: Vec<LogicalPlan>, predicates: Vec<Expr>) -> Result<LogicalPlan> {
    let mut leaves = leaves.into_iter();
    let first = leaves.next().ok_or_else(|| DataFusionError::Internal("a join of nothing".into()))?;
    let mut builder = LogicalPlanBuilder::from(first);
    for leaf in leaves {
        builder = builder.cross_join(leaf)?;
    }
    let joined = builder.build()?;
    match conjunction(predicates) {
        Some(predicate) => Ok(LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(joined))?)),
        None => Ok(joined),
    }
}

/// The qualified columns a plan's output has.
fn columns_of(plan: &LogicalPlan) -> HashSet<Column> {
    plan.schema().columns().into_iter().collect()
}

/// Applies `f` to the plan of every subquery in `plan`'s own expressions.
fn map_subquery_plans(plan: LogicalPlan, f: &mut dyn FnMut(LogicalPlan) -> Result<LogicalPlan>) -> Result<LogicalPlan> {
    Ok(plan
        .map_subqueries(|node| match node {
            LogicalPlan::Subquery(mut subquery) => {
                let inner = Arc::unwrap_or_clone(subquery.subquery);
                subquery.subquery = Arc::new(f(inner)?);
                Ok(Transformed::yes(LogicalPlan::Subquery(subquery)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// **Join grouping.** In each query block, the inputs of its inner joins (`FROM a, b WHERE …` or
/// `a JOIN b ON …`) are taken apart with all their conditions. When some inputs are remote and
/// some local, the remote inputs that conditions connect are joined to each other first, with
/// every condition that reads only them, into one subtree the server can run; the local inputs
/// and those subtrees are then joined under the remaining conditions. A condition with a subquery
/// goes with them when the subquery, too, reads only remote tables and their columns. Only inner joins are regrouped, which is what makes the
/// reordering exact; DuckDB picks the join order of each part again.
pub fn group_joins(plan: LogicalPlan, relations: &[Relation]) -> Result<LogicalPlan> {
    let (leaves, predicates) = match &plan {
        LogicalPlan::Filter(filter) if is_inner_join(&filter.input) => {
            let mut leaves = vec![];
            let mut predicates = vec![];
            flatten(&filter.input, &mut leaves, &mut predicates);
            predicates.extend(split_conjunction_owned(filter.predicate.clone()));
            (leaves, predicates)
        }
        LogicalPlan::Join(_) if is_inner_join(&plan) => {
            let mut leaves = vec![];
            let mut predicates = vec![];
            flatten(&plan, &mut leaves, &mut predicates);
            (leaves, predicates)
        }
        _ => (vec![], vec![]),
    };
    let remote: Vec<bool> = leaves.iter().map(|leaf| place::fragment_root(leaf, relations)).collect();
    if leaves.is_empty() || remote.iter().all(|r| *r) || !remote.iter().any(|r| *r) {
        let plan = plan.map_children(|child| Ok(Transformed::yes(group_joins(child, relations)?)))?.data;
        let plan = map_subquery_plans(plan, &mut |p| group_joins(p, relations))?;
        return plan.recompute_schema();
    }
    let leaves = leaves.into_iter().map(|leaf| group_joins(leaf, relations)).collect::<Result<Vec<_>>>()?;
    let predicates = predicates
        .into_iter()
        .map(|p| {
            // Subqueries inside a condition are blocks of their own.
            Ok(match p {
                Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_) => {
                    let wrapped = LogicalPlan::Filter(Filter::try_new(p, Arc::new(LogicalPlan::EmptyRelation(empty())))?);
                    match map_subquery_plans(wrapped, &mut |q| group_joins(q, relations))? {
                        LogicalPlan::Filter(f) => f.predicate,
                        _ => return Err(DataFusionError::Internal("filter expected".into())),
                    }
                }
                other => other,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    regroup(leaves, remote, predicates, relations)
}

fn empty() -> datafusion_expr::EmptyRelation {
    datafusion_expr::EmptyRelation { produce_one_row: true, schema: Arc::new(datafusion_common::DFSchema::empty()) }
}

fn regroup(leaves: Vec<LogicalPlan>, remote: Vec<bool>, predicates: Vec<Expr>, relations: &[Relation]) -> Result<LogicalPlan> {
    let columns: Vec<HashSet<Column>> = leaves.iter().map(columns_of).collect();
    let touched: Vec<BTreeSet<usize>> = predicates
        .iter()
        .map(|p| {
            let refs = all_columns(p);
            (0..leaves.len()).filter(|&i| refs.iter().any(|c| columns[i].contains(c))).collect()
        })
        .collect();
    let remote_columns: HashSet<Column> = (0..leaves.len()).filter(|&i| remote[i]).flat_map(|i| columns[i].clone()).collect();
    let pushable: Vec<bool> = predicates
        .iter()
        .zip(&touched)
        .map(|(p, t)| !t.is_empty() && t.iter().all(|&i| remote[i]) && place::expr_remote(p, relations, &remote_columns))
        .collect();
    // Union-find over the remote leaves, joined by pushable conditions.
    let mut parent: Vec<usize> = (0..leaves.len()).collect();
    fn find(parent: &mut [usize], i: usize) -> usize {
        let mut i = i;
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (t, ok) in touched.iter().zip(&pushable) {
        if *ok {
            let mut it = t.iter();
            if let Some(&first) = it.next() {
                for &other in it {
                    let (a, b) = (find(&mut parent, first), find(&mut parent, other));
                    parent[a] = b;
                }
            }
        }
    }
    let mut leaves: Vec<Option<LogicalPlan>> = leaves.into_iter().map(Some).collect();
    let mut used = vec![false; predicates.len()];
    let mut predicates: Vec<Option<Expr>> = predicates.into_iter().map(Some).collect();
    let mut top_leaves = vec![];
    for (i, is_remote) in remote.iter().enumerate() {
        if !is_remote {
            top_leaves.push(leaves[i].take().expect("each leaf is taken once"));
        }
    }
    for root in 0..leaves.len() {
        let members: Vec<usize> = (0..leaves.len()).filter(|&i| remote[i] && find(&mut parent, i) == root).collect();
        if members.is_empty() {
            continue;
        }
        let mut own = vec![];
        for (p, t) in touched.iter().enumerate() {
            if pushable[p] && !used[p] && t.iter().all(|i| members.contains(i)) {
                used[p] = true;
                own.push(predicates[p].take().expect("each condition is used once"));
            }
        }
        let group: Vec<LogicalPlan> = members.iter().map(|&i| leaves[i].take().expect("each leaf is taken once")).collect();
        top_leaves.push(join_all(group, own)?);
    }
    let rest: Vec<Expr> = predicates.into_iter().flatten().collect();
    join_all(top_leaves, rest)
}

/// The columns `expr` reads, including those its subqueries read from outside.
fn all_columns(expr: &Expr) -> Vec<Column> {
    let mut out: Vec<Column> = expr.column_refs().into_iter().cloned().collect();
    out.extend(place::outer_references(expr));
    out
}

/// The aggregates [`partial_aggregate`] can compute in two steps, and the aggregate that combines
/// the partial results.
fn combiner(name: &str) -> Option<&'static str> {
    match name {
        "sum" => Some("sum"),
        "count" => Some("sum"),
        "min" => Some("min"),
        "max" => Some("max"),
        _ => None,
    }
}

/// **Partial aggregation below a join.** `Aggregate(G; A)` over inner joins of local inputs and
/// one remote subtree `R`, where every aggregate in `A` is a plain `sum`/`count`/`min`/`max` of
/// `R`'s columns: `R` is first aggregated on the server, grouped by every column of `R` that
/// anything else reads (join conditions, `G`), and `A` then combines those partial results. Each
/// partial row stands for rows of `R` that every condition treats alike, so the combined results
/// are the same; only inner joins are taken (an outer join's missing rows would count), and a
/// `count` without `GROUP BY` is left alone (its empty result is 0, not NULL).
pub fn partial_aggregate(plan: LogicalPlan, relations: &[Relation]) -> Result<LogicalPlan> {
    let plan = plan
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::Aggregate(aggregate) => match two_step(&aggregate, relations)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => match two_step_left(&aggregate, relations)? {
                    Some(rewritten) => Ok(Transformed::yes(rewritten)),
                    None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
                },
            },
            other => Ok(Transformed::yes(other.recompute_schema()?)),
        })?
        .data;
    Ok(plan)
}

fn two_step(aggregate: &Aggregate, relations: &[Relation]) -> Result<Option<LogicalPlan>> {
    let mut leaves = vec![];
    let mut predicates = vec![];
    match aggregate.input.as_ref() {
        LogicalPlan::Filter(filter) if is_inner_join(&filter.input) => {
            flatten(&filter.input, &mut leaves, &mut predicates);
            predicates.extend(split_conjunction_owned(filter.predicate.clone()));
        }
        input if is_inner_join(input) => flatten(input, &mut leaves, &mut predicates),
        _ => return Ok(None),
    }
    let remote: Vec<usize> = (0..leaves.len()).filter(|&i| place::fragment_root(&leaves[i], relations)).collect();
    if remote.len() != 1 || leaves.len() < 2 {
        return Ok(None);
    }
    let r = remote[0];
    let r_columns = columns_of(&leaves[r]);
    if predicates.iter().chain(&aggregate.group_expr).any(place::has_subquery) {
        return Ok(None);
    }
    let Some((partials, finals)) = partial_and_final(aggregate, relations, &r_columns, true, false) else {
        return Ok(None);
    };
    // The columns of R that anything above it reads.
    let mut keys: BTreeSet<Column> = BTreeSet::new();
    for expr in predicates.iter().chain(&aggregate.group_expr) {
        for c in expr.column_refs() {
            if r_columns.contains(c) {
                keys.insert(c.clone());
            }
        }
    }
    let reduced =
        LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(leaves[r].clone()), keys.into_iter().map(Expr::Column).collect(), partials)?);
    leaves[r] = reduced;
    let input = join_all(leaves, predicates)?;
    Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), aggregate.group_expr.clone(), finals)?)))
}

/// The partial and combining aggregates for `aggregate`'s aggregates, if each is a plain
/// `sum`/`count`/`min`/`max` of `r_columns` (`count(*)` only when `count_star` allows it). For an
/// outer join, `count` combines as `sum(coalesce(partial, 0))`: a row without a match counts 0.
fn partial_and_final(
    aggregate: &Aggregate,
    relations: &[Relation],
    r_columns: &HashSet<Column>,
    count_star: bool,
    outer: bool,
) -> Option<(Vec<Expr>, Vec<Expr>)> {
    let mut partials = vec![];
    let mut finals = vec![];
    let group_count = aggregate.group_expr.len();
    for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr.clone().unalias() else {
            return None;
        };
        combiner(func.name())?;
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() || params.null_treatment.is_some() {
            return None;
        }
        let columns: Vec<Column> = params.args.iter().flat_map(|a| a.column_refs().into_iter().cloned()).collect();
        if params.args.iter().any(place::has_subquery) || columns.iter().any(|c| !r_columns.contains(c)) {
            return None;
        }
        if columns.is_empty() && !count_star {
            return None;
        }
        if !params.args.iter().all(|a| place::expr_remote(a, relations, r_columns)) {
            return None;
        }
        if func.name() == "count" && group_count == 0 {
            return None;
        }
        let partial_name = format!("__openduck_p{i}");
        let partial = Expr::Column(Column::new_unqualified(&partial_name));
        partials.push(Expr::AggregateFunction(AggregateFunction { func: func.clone(), params }).alias(&partial_name));
        let output = aggregate.schema.field(group_count + i).name().clone();
        let combined = match func.name() {
            "count" if outer => datafusion_functions_aggregate::sum::sum_udaf()
                .call(vec![datafusion_functions::core::coalesce().call(vec![partial, datafusion_expr::lit(0i64)])]),
            "count" | "sum" => datafusion_functions_aggregate::sum::sum_udaf().call(vec![partial]),
            "min" => datafusion_functions_aggregate::min_max::min_udaf().call(vec![partial]),
            _ => datafusion_functions_aggregate::min_max::max_udaf().call(vec![partial]),
        };
        finals.push(combined.alias(output));
    }
    Some((partials, finals))
}

/// **Partial aggregation below a LEFT JOIN.** `Aggregate(G; A)` directly over `L LEFT JOIN R`
/// with `R` remote and every aggregate a `sum`/`count`/`min`/`max` of `R`'s columns (not
/// `count(*)`, which counts `L`'s unmatched rows): `R` is filtered by the join conditions that
/// read only it and aggregated on the server by every column of `R` the rest reads; each partial
/// row stands for rows of `R` the join treats alike. A row of `L` without a match gets NULL
/// partials, which combine to what the aggregates give over NULLs (`count` as 0).
fn two_step_left(aggregate: &Aggregate, relations: &[Relation]) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Join(join) = aggregate.input.as_ref() else {
        return Ok(None);
    };
    if join.join_type != JoinType::Left
        || join.join_constraint != JoinConstraint::On
        || join.null_equality != datafusion_common::NullEquality::NullEqualsNothing
        || join.null_aware
        || !place::fragment_root(&join.right, relations)
        || place::fragment_root(&join.left, relations)
    {
        return Ok(None);
    }
    let r_columns = columns_of(&join.right);
    let conditions: Vec<Expr> = join.filter.clone().map(split_conjunction_owned).unwrap_or_default();
    if conditions.iter().chain(&aggregate.group_expr).any(place::has_subquery)
        || join.on.iter().any(|(l, r)| place::has_subquery(l) || place::has_subquery(r))
    {
        return Ok(None);
    }
    let Some((partials, finals)) = partial_and_final(aggregate, relations, &r_columns, false, true) else {
        return Ok(None);
    };
    // Conditions on R alone filter R before it is aggregated; the others stay in the join.
    let (r_only, mixed): (Vec<Expr>, Vec<Expr>) = conditions.into_iter().partition(|c| {
        let refs = c.column_refs();
        !refs.is_empty() && refs.iter().all(|col| r_columns.contains(*col)) && place::expr_remote(c, relations, &r_columns)
    });
    let mut keys: BTreeSet<Column> = BTreeSet::new();
    let readers = join.on.iter().flat_map(|(l, r)| [l, r]).chain(&mixed).chain(&aggregate.group_expr);
    for expr in readers {
        for c in expr.column_refs() {
            if r_columns.contains(c) {
                keys.insert(c.clone());
            }
        }
    }
    let mut right = join.right.as_ref().clone();
    if let Some(predicate) = conjunction(r_only) {
        right = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(right))?);
    }
    let reduced = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(right), keys.into_iter().map(Expr::Column).collect(), partials)?);
    let input = LogicalPlanBuilder::from(join.left.as_ref().clone())
        .join_on(reduced, JoinType::Left, join.on.iter().map(|(l, r)| l.clone().eq(r.clone())).chain(mixed))?
        .build()?;
    Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), aggregate.group_expr.clone(), finals)?)))
}
