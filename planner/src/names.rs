//! Relation names, resolved the way the client's DuckDB resolved them.
//!
//! The client sends, for every table reference in the query, the spelling it used (`sales`,
//! `cloud.sales`, `memory.main.products`) and what DuckDB bound it to. Before DataFusion plans the
//! query, each such reference is renamed to an internal name (`__r<i>`, relation `i`) and given an
//! alias (its own, or the name's last part, which is how DuckDB qualifies its columns), so the plan
//! reads exactly the tables DuckDB would: search path, `USE` and qualified names were all decided
//! by DuckDB. References to a CTE in scope are left alone (DataFusion resolves them); a CTE with the
//! name of a relation, a table function or a name the client did not resolve makes the query fall
//! back.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Query, Statement, TableAlias, TableFactor, VisitMut, VisitorMut};

use crate::Relation;

/// The internal name of relation `i`.
pub(crate) fn internal_name(i: usize) -> String {
    format!("__r{i}")
}

/// Relation `i` of an internal name.
pub(crate) fn relation_index(name: &str) -> Option<usize> {
    name.strip_prefix("__r")?.parse().ok()
}

/// How DuckDB compares identifiers: case-insensitively, quoted or not.
fn ident_key(ident: &Ident) -> String {
    ident.value.to_lowercase()
}

struct Resolver<'a> {
    relations: &'a [Relation],
    /// CTE names in scope, one set per enclosing query.
    ctes: Vec<HashSet<String>>,
    /// Why the query cannot be planned, if it cannot.
    problem: Option<String>,
}

impl Resolver<'_> {
    fn is_cte(&self, name: &ObjectName) -> bool {
        match name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => self.ctes.iter().any(|scope| scope.contains(&ident_key(ident))),
            _ => false,
        }
    }

    fn find(&self, name: &ObjectName) -> Option<usize> {
        let parts: Option<Vec<String>> = name.0.iter().map(|p| p.as_ident().map(ident_key)).collect();
        let parts = parts?;
        self.relations
            .iter()
            .position(|r| r.reference.len() == parts.len() && r.reference.iter().zip(&parts).all(|(a, b)| a.to_lowercase() == *b))
    }
}

impl VisitorMut for Resolver<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let names: HashSet<String> =
            query.with.iter().flat_map(|with| with.cte_tables.iter().map(|cte| ident_key(&cte.alias.name))).collect();
        for name in &names {
            if self.relations.iter().any(|r| r.reference.len() == 1 && r.reference[0].to_lowercase() == *name) {
                self.problem = Some(format!("the CTE {name} has the name of a table the query also reads"));
                return ControlFlow::Break(());
            }
        }
        self.ctes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        if args.is_some() {
            self.problem = Some(format!("the table function {name} runs only in the client"));
            return ControlFlow::Break(());
        }
        if self.is_cte(name) {
            return ControlFlow::Continue(());
        }
        let Some(index) = self.find(name) else {
            self.problem = Some(format!("{name} is not a table the client resolved (a view, a file or a replacement scan?)"));
            return ControlFlow::Break(());
        };
        if alias.is_none() {
            let last = match name.0.last().and_then(|p| p.as_ident()) {
                Some(ident) => ident.clone(),
                None => {
                    self.problem = Some(format!("{name} is not a plain table name"));
                    return ControlFlow::Break(());
                }
            };
            *alias = Some(TableAlias { explicit: true, name: last, columns: vec![], at: None });
        }
        *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::with_quote('"', internal_name(index)))]);
        ControlFlow::Continue(())
    }
}

/// Renames every table reference of `statement` to its relation's internal name; the reason it
/// cannot, if it cannot.
pub(crate) fn resolve(statement: &mut Statement, relations: &[Relation]) -> Result<(), String> {
    let mut resolver = Resolver { relations, ctes: vec![], problem: None };
    let _ = statement.visit(&mut resolver);
    match resolver.problem {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}
