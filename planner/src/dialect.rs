//! How plans are written back as DuckDB SQL.

use datafusion_common::Result;
use datafusion_expr::Expr;
use datafusion_sql::sqlparser::ast::{self, BinaryOperator};
use datafusion_sql::unparser::dialect::{CharacterLengthStyle, Dialect, DuckDBDialect};
use datafusion_sql::unparser::Unparser;

/// DataFusion's DuckDB dialect, except that division is written `/`: the planner only carries
/// the user's own `/` (DuckDB's), where DataFusion's dialect assumes DataFusion's integer division
/// and writes DuckDB's `//`.
pub(crate) struct DuckDb {
    inner: DuckDBDialect,
}

impl DuckDb {
    pub(crate) fn new() -> Self {
        Self { inner: DuckDBDialect::new() }
    }
}

impl Dialect for DuckDb {
    fn identifier_quote_style(&self, _identifier: &str) -> Option<char> {
        Some('"')
    }

    fn character_length_style(&self) -> CharacterLengthStyle {
        CharacterLengthStyle::Length
    }

    fn division_operator(&self) -> BinaryOperator {
        BinaryOperator::Divide
    }

    fn scalar_function_to_sql_overrides(&self, unparser: &Unparser, func_name: &str, args: &[Expr]) -> Result<Option<ast::Expr>> {
        self.inner.scalar_function_to_sql_overrides(unparser, func_name, args)
    }
}
