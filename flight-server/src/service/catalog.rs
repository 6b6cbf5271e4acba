//! Answers to the Flight SQL catalog commands, read from DuckDB's own catalog functions and
//! built with arrow-flight's builders where it has them.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};

use crate::arrow_types::quote_ident;
use crate::duck::Conn;
use crate::error::{Result, ServerError};

/// A catalog query: runs on a connection to the database named by the second argument.
pub type Query = Box<dyn FnOnce(&Conn, &str) -> Result<RecordBatch> + Send + 'static>;

/// The table types this server reports.
pub const TABLE_TYPES: [&str; 3] = ["LOCAL TEMPORARY", "TABLE", "VIEW"];

/// Quotes a string literal for DuckDB.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads string column `i` of every row of `batches`.
fn strings(batches: &[RecordBatch], i: usize) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column(i);
        let col = arrow::compute::cast(col, &DataType::Utf8).unwrap_or_else(|_| col.clone());
        let s = col.as_string::<i32>();
        for r in 0..s.len() {
            out.push(s.is_valid(r).then(|| s.value(r).to_string()));
        }
    }
    out
}

/// GetDbSchemas.
pub fn schemas(query: CommandGetDbSchemas) -> Query {
    Box::new(move |conn, db| {
        let mut builder = query.into_builder();
        let rows = conn.query_all(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() \
             AND schema_name NOT IN ('information_schema', 'pg_catalog') ORDER BY 1",
        )?;
        for name in strings(&rows, 0).into_iter().flatten() {
            builder.append(db, name);
        }
        builder.build().map_err(ServerError::from)
    })
}

/// GetTables, with each table's Arrow schema when asked.
pub fn tables(query: CommandGetTables) -> Query {
    Box::new(move |conn, db| {
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        let rows = conn.query_all(
            "SELECT schema_name, table_name, CASE WHEN temporary THEN 'LOCAL TEMPORARY' ELSE 'TABLE' END \
             FROM duckdb_tables() WHERE database_name = current_database() \
             UNION ALL SELECT schema_name, view_name, 'VIEW' FROM duckdb_views() \
             WHERE database_name = current_database() AND NOT internal ORDER BY 1, 2",
        )?;
        let (schemas, names, types) = (strings(&rows, 0), strings(&rows, 1), strings(&rows, 2));
        // Column nullability as declared (a query result marks every column nullable).
        let mut not_null = std::collections::HashSet::new();
        if include_schema {
            let cols = conn.query_all(
                "SELECT schema_name, table_name, column_name FROM duckdb_columns() \
                 WHERE database_name = current_database() AND NOT is_nullable",
            )?;
            let (s, t, c) = (strings(&cols, 0), strings(&cols, 1), strings(&cols, 2));
            for ((s, t), c) in s.into_iter().zip(t).zip(c) {
                not_null.insert((s.unwrap_or_default(), t.unwrap_or_default(), c.unwrap_or_default()));
            }
        }
        for ((schema, name), kind) in schemas.into_iter().zip(names).zip(types) {
            let (schema, name, kind) = (schema.unwrap_or_default(), name.unwrap_or_default(), kind.unwrap_or_default());
            let arrow_schema = if include_schema {
                let sql = format!("SELECT * FROM {}.{}", quote_ident(&schema), quote_ident(&name));
                // A view that no longer binds (its table dropped, or it calls what the server
                // refuses) is listed without columns rather than failing the listing for all.
                let s = match conn.prepare(&sql).and_then(|p| p.result_schema()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(schema = %schema, name = %name, error = %e, "listing a relation that does not bind without its columns");
                        Schema::empty()
                    }
                };
                let fields: Vec<Field> = s
                    .fields()
                    .iter()
                    .map(|f| {
                        let key = (schema.clone(), name.clone(), f.name().clone());
                        f.as_ref().clone().with_nullable(!not_null.contains(&key))
                    })
                    .collect();
                Schema::new(fields)
            } else {
                Schema::empty()
            };
            builder.append(db, &schema, &name, &kind, &arrow_schema)?;
        }
        builder.build().map_err(ServerError::from)
    })
}

/// The result schema of GetPrimaryKeys, as the Flight SQL specification defines it.
pub fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// GetPrimaryKeys.
pub fn primary_keys(query: arrow_flight::sql::CommandGetPrimaryKeys) -> Query {
    Box::new(move |conn, _db| {
        let mut sql = String::from(
            "SELECT database_name, schema_name, table_name, unnest(constraint_column_names), constraint_name, \
             CAST(generate_subscripts(constraint_column_names, 1) AS INTEGER) \
             FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' AND database_name = current_database()",
        );
        sql.push_str(&format!(" AND table_name = {}", literal(&query.table)));
        if let Some(s) = &query.db_schema {
            sql.push_str(&format!(" AND schema_name = {}", literal(s)));
        }
        sql.push_str(" ORDER BY 1, 2, 3, 6");
        rebatch(conn.query_all(&sql)?, primary_keys_schema())
    })
}

/// The result schema of GetExportedKeys, GetImportedKeys and GetCrossReference.
pub fn foreign_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}

/// Which foreign keys to list: by referenced (pk) table, referencing (fk) table, or both.
pub struct KeyFilter {
    /// Schema and name of the referenced table.
    pub pk: Option<(Option<String>, String)>,
    /// Schema and name of the referencing table.
    pub fk: Option<(Option<String>, String)>,
}

/// GetExportedKeys / GetImportedKeys / GetCrossReference. DuckDB foreign keys restrict updates
/// and deletes of referenced rows, reported as RESTRICT (1).
pub fn foreign_keys(filter: KeyFilter) -> Query {
    Box::new(move |conn, _db| {
        let mut sql = String::from(
            "SELECT * FROM (SELECT database_name AS pk_catalog_name, schema_name AS pk_db_schema_name, \
             referenced_table AS pk_table_name, unnest(referenced_column_names) AS pk_column_name, \
             database_name AS fk_catalog_name, schema_name AS fk_db_schema_name, table_name AS fk_table_name, \
             unnest(constraint_column_names) AS fk_column_name, \
             CAST(generate_subscripts(constraint_column_names, 1) AS INTEGER) AS key_sequence, \
             constraint_name AS fk_key_name, CAST(NULL AS VARCHAR) AS pk_key_name, \
             CAST(1 AS UTINYINT) AS update_rule, CAST(1 AS UTINYINT) AS delete_rule \
             FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY' AND database_name = current_database()) WHERE true",
        );
        for (prefix, part) in [("pk", &filter.pk), ("fk", &filter.fk)] {
            if let Some((schema, table)) = part {
                sql.push_str(&format!(" AND {prefix}_table_name = {}", literal(table)));
                if let Some(s) = schema {
                    sql.push_str(&format!(" AND {prefix}_db_schema_name = {}", literal(s)));
                }
            }
        }
        sql.push_str(" ORDER BY fk_catalog_name, fk_db_schema_name, fk_table_name, fk_key_name, key_sequence");
        rebatch(conn.query_all(&sql)?, foreign_keys_schema())
    })
}

/// Concatenates batches and relabels them with the specification's schema.
fn rebatch(batches: Vec<RecordBatch>, schema: Schema) -> Result<RecordBatch> {
    let schema = Arc::new(schema);
    let columns: Vec<Arc<dyn Array>> = (0..schema.fields().len())
        .map(|i| {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            let target = schema.field(i).data_type();
            let joined = if parts.is_empty() { arrow::array::new_empty_array(target) } else { arrow::compute::concat(&parts)? };
            arrow::compute::cast(&joined, target)
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
