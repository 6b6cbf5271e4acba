//! Splits one query described as JSON on stdin and prints the split as JSON: a development tool
//! for checking the planner against DuckDB without a server (conformance/python/planner_check.py).
//!
//! Input: {"sql": "...", "relations": [{"reference": [...], "location": "local"|"remote",
//! "name": [...], "columns": [[name, arrow type as text], ...]}], "functions": [[name, type], ...]}
//! (`SELECT function_name, function_type FROM duckdb_functions()`).

use std::io::Read;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use openduck_planner::{split, Functions, Location, Relation, SplitPlan};

fn data_type(text: &str) -> DataType {
    let t = text.to_uppercase();
    if let Some(rest) = t.strip_prefix("DECIMAL(") {
        let inner = rest.trim_end_matches(')');
        let mut parts = inner.split(',').map(|p| p.trim().parse::<i64>().unwrap_or(0));
        let p = parts.next().unwrap_or(18) as u8;
        let s = parts.next().unwrap_or(3) as i8;
        return DataType::Decimal128(p, s);
    }
    match t.as_str() {
        "BOOLEAN" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "FLOAT" => DataType::Float32,
        "DOUBLE" => DataType::Float64,
        "DATE" => DataType::Date32,
        "TIMESTAMP" => DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        _ => DataType::Utf8,
    }
}

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    let v: serde_json::Value = serde_json::from_str(&input).expect("json");
    let strings =
        |v: &serde_json::Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let relations: Vec<Relation> = v["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Relation {
            reference: strings(&r["reference"]),
            location: if r["location"] == "remote" { Location::Remote } else { Location::Local },
            name: strings(&r["name"]),
            schema: Arc::new(Schema::new(
                r["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| Field::new(c[0].as_str().unwrap(), data_type(c[1].as_str().unwrap()), true))
                    .collect::<Vec<_>>(),
            )),
            estimated_rows: None,
        })
        .collect();
    // Input "functions": [[name, duckdb function_type], ...] (duckdb_functions()).
    let kinds: Vec<(String, String)> = v["functions"]
        .as_array()
        .map(|a| a.iter().map(|f| (f[0].as_str().unwrap().to_string(), f[1].as_str().unwrap().to_string())).collect())
        .unwrap_or_default();
    let functions = Functions::new(kinds.iter().map(|(n, k)| (n.as_str(), k.as_str())));
    let out = match split(v["sql"].as_str().unwrap(), &relations, &functions) {
        SplitPlan::Split { local_sql, fragments, explain } => serde_json::json!({
            "local_sql": local_sql,
            "explain": explain,
            "fragments": fragments.iter().map(|f| serde_json::json!({"id": f.id, "sql": f.sql})).collect::<Vec<_>>(),
        }),
        SplitPlan::Fallback { reason } => serde_json::json!({"fallback": reason}),
    };
    println!("{out}");
}
