//! DuckDB column types for Arrow fields, used when ingest creates a table from a client's schema.

use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

/// Quotes an SQL identifier for DuckDB.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The DuckDB type that stores values of `field` without loss.
pub fn duckdb_type(field: &Field) -> Result<String, String> {
    if field.metadata().get("ARROW:extension:name").map(String::as_str) == Some("arrow.uuid") {
        return Ok("UUID".into());
    }
    let t = match field.data_type() {
        DataType::Null => "INTEGER".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(unit, tz) => match (unit, tz) {
            (_, Some(_)) => "TIMESTAMPTZ".into(),
            (TimeUnit::Second, None) => "TIMESTAMP_S".into(),
            (TimeUnit::Millisecond, None) => "TIMESTAMP_MS".into(),
            (TimeUnit::Microsecond, None) => "TIMESTAMP".into(),
            (TimeUnit::Nanosecond, None) => "TIMESTAMP_NS".into(),
        },
        DataType::Interval(IntervalUnit::YearMonth | IntervalUnit::DayTime | IntervalUnit::MonthDayNano) => "INTERVAL".into(),
        DataType::Duration(_) => "INTERVAL".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) if *p <= 38 && *s >= 0 => {
            format!("DECIMAL({p},{s})")
        }
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            return Err(format!("DECIMAL({p},{s}) is wider than DuckDB's DECIMAL(38)"))
        }
        DataType::List(child) | DataType::LargeList(child) | DataType::ListView(child) | DataType::LargeListView(child) => {
            format!("{}[]", duckdb_type(child)?)
        }
        DataType::FixedSizeList(child, n) => format!("{}[{n}]", duckdb_type(child)?),
        DataType::Struct(fields) => {
            let parts: Result<Vec<String>, String> =
                fields.iter().map(|f| Ok(format!("{} {}", quote_ident(f.name()), duckdb_type(f)?))).collect();
            format!("STRUCT({})", parts?.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP({}, {})", duckdb_type(&kv[0])?, duckdb_type(&kv[1])?)
            }
            other => return Err(format!("unsupported map entries type {other}")),
        },
        DataType::Union(fields, _) => {
            let parts: Result<Vec<String>, String> =
                fields.iter().map(|(_, f)| Ok(format!("{} {}", quote_ident(f.name()), duckdb_type(f)?))).collect();
            format!("UNION({})", parts?.join(", "))
        }
        DataType::Dictionary(_, value) => duckdb_type(&Field::new(field.name(), value.as_ref().clone(), true))?,
        other => return Err(format!("Arrow type {other} has no DuckDB equivalent")),
    };
    Ok(t)
}

/// `CREATE TABLE` column definitions for a schema, or an error naming the first bad column.
pub fn column_definitions(schema: &arrow::datatypes::Schema) -> Result<String, String> {
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let t = duckdb_type(f).map_err(|e| format!("column '{}': {e}", f.name()))?;
        cols.push(format!("{} {t}", quote_ident(f.name())));
    }
    Ok(cols.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use std::sync::Arc;

    #[test]
    fn maps_nested_and_rejects_unknown() {
        let s = Schema::new(vec![
            Field::new("a b", DataType::Int64, true),
            Field::new_list("l", Field::new("item", DataType::Utf8, true), true),
            Field::new_struct("s", vec![Field::new("x", DataType::Decimal128(20, 3), true)], true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))), true),
        ]);
        assert_eq!(
            column_definitions(&s).unwrap(),
            "\"a b\" BIGINT, \"l\" VARCHAR[], \"s\" STRUCT(\"x\" DECIMAL(20,3)), \"t\" TIMESTAMPTZ"
        );
        let bad = Schema::new(vec![Field::new("d", DataType::Decimal256(60, 2), true)]);
        assert!(column_definitions(&bad).unwrap_err().contains("column 'd'"));
    }
}
