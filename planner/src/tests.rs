//! Unit tests of the planner: shapes of split plans (answers are checked against DuckDB in the
//! conformance suite).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn relation(reference: &[&str], location: Location, name: &[&str], columns: &[(&str, DataType)]) -> Relation {
    Relation {
        reference: reference.iter().map(|s| s.to_string()).collect(),
        location,
        name: name.iter().map(|s| s.to_string()).collect(),
        schema: Arc::new(Schema::new(columns.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>())),
        estimated_rows: None,
    }
}

fn shop() -> Vec<Relation> {
    vec![
        relation(
            &["products"],
            Location::Local,
            &["memory", "main", "products"],
            &[("id", DataType::Int64), ("category", DataType::Utf8), ("price", DataType::Float64)],
        ),
        relation(
            &["cloud", "sales"],
            Location::Remote,
            &["main", "sales"],
            &[("product_id", DataType::Int64), ("amount", DataType::Float64), ("region", DataType::Utf8), ("note", DataType::Utf8)],
        ),
        relation(&["cloud", "regions"], Location::Remote, &["main", "regions"], &[("name", DataType::Utf8), ("zone", DataType::Utf8)]),
    ]
}

/// DuckDB's meaning of the function names the tests use.
fn duckdb() -> Functions {
    let scalars = ["upper", "random", "date_part", "substr", "coalesce", "my_macro"];
    let aggregates = ["sum", "count", "min", "max", "avg", "string_agg", "count_star", "row_number"];
    Functions::new(scalars.iter().map(|n| (*n, "scalar")).chain(aggregates.iter().map(|n| (*n, "aggregate"))))
}

fn split_ok(sql: &str) -> (String, Vec<Fragment>, String) {
    match split(sql, &shop(), &duckdb()) {
        SplitPlan::Split { local_sql, fragments, explain } => (local_sql, fragments, explain),
        SplitPlan::Fallback { reason } => panic!("fell back: {reason}"),
    }
}

#[test]
fn an_aggregate_over_a_join_is_reduced_on_the_server() {
    let (local, fragments, explain) = split_ok(
        "SELECT p.category, SUM(s.amount) AS revenue FROM products p JOIN cloud.sales s ON p.id = s.product_id \
         GROUP BY p.category ORDER BY revenue DESC",
    );
    println!("{local}\n{}\n{explain}", fragments[0].sql);
    assert_eq!(fragments.len(), 1);
    let remote = &fragments[0].sql;
    assert!(remote.contains("GROUP BY"), "{remote}");
    assert!(remote.contains("\"main\".\"sales\""), "{remote}");
    assert!(!remote.contains("note"), "only the columns read: {remote}");
    assert!(local.contains("\"memory\".\"main\".\"products\""), "{local}");
    assert!(local.contains("__openduck_fragment_0"), "{local}");
    assert!(explain.contains("[REMOTE] Aggregate"), "{explain}");
    assert!(explain.contains("Bridge(REMOTE→LOCAL)"), "{explain}");
}

#[test]
fn remote_tables_joined_to_each_other_go_together() {
    let (local, fragments, _) = split_ok(
        "SELECT p.category, r.zone, s.amount FROM products p, cloud.sales s, cloud.regions r \
         WHERE p.id = s.product_id AND s.region = r.name AND r.zone = 'eu' AND p.price > 3",
    );
    assert_eq!(fragments.len(), 1, "{local}");
    let remote = &fragments[0].sql;
    assert!(remote.contains("'eu'") && remote.contains("regions") && remote.contains("sales"), "{remote}");
    assert!(local.contains("> 3"), "{local}");
}

#[test]
fn a_fragment_travels_and_comes_back_as_the_same_sql() {
    let (_, fragments, _) =
        split_ok("SELECT p.category, s.amount FROM products p JOIN cloud.sales s ON p.id = s.product_id WHERE upper(s.note) = 'X'");
    let bytes = encode_fragment(&fragments[0].plan).unwrap();
    let (_, sql) = decode_fragment(&bytes).unwrap();
    assert_eq!(sql, fragments[0].sql);
    assert!(decode_fragment(b"\xff\x00garbage").is_err());
}

#[test]
fn what_cannot_run_remotely_stays_local() {
    let (local, fragments, _) =
        split_ok("SELECT p.category FROM products p JOIN cloud.sales s ON p.id = s.product_id WHERE s.amount > random()");
    assert!(!fragments[0].sql.contains("random"), "{}", fragments[0].sql);
    assert!(local.contains("random"), "{local}");
}

#[test]
fn fallbacks_say_why() {
    let cases = [
        ("SELECT * FROM products", "no remote table"),
        ("SELECT * FROM cloud.unknown_table", "not a table the client resolved"),
        ("SELECT * FROM read_csv('x.csv')", "table function"),
        ("DELETE FROM products", "not a SELECT"),
        ("SELECT 1; SELECT 2", "single statement"),
        ("SELECT * FROM products WHERE id = $1", "parameter"),
        (
            "SELECT p.category, string_agg(s.region, ',' ORDER BY s.amount) FROM products p JOIN cloud.sales s ON p.id = s.product_id GROUP BY 1",
            "its own ORDER BY",
        ),
    ];
    for (sql, why) in cases {
        match split(sql, &shop(), &duckdb()) {
            SplitPlan::Fallback { reason } => assert!(reason.contains(why), "{sql}: {reason}"),
            SplitPlan::Split { local_sql, .. } => panic!("{sql} split: {local_sql}"),
        }
    }
}

#[test]
fn functions_are_planned_as_the_kind_duckdb_evaluates() {
    // count_star() is an aggregate to DuckDB, whatever DataFusion would make of the name; a
    // name DuckDB does not know (a client's own function) is not planned at all.
    for (sql, why) in [
        ("SELECT p.id, count_star() FROM products p JOIN cloud.sales s ON p.id = s.product_id GROUP BY 1", "DataFusion cannot plan"),
        ("SELECT p.id, plus_one(s.amount) FROM products p JOIN cloud.sales s ON p.id = s.product_id", "DataFusion cannot plan"),
    ] {
        match split(sql, &shop(), &duckdb()) {
            SplitPlan::Fallback { reason } => assert!(reason.contains(why), "{sql}: {reason}"),
            SplitPlan::Split { local_sql, .. } => panic!("{sql} split: {local_sql}"),
        }
    }
    let (_, fragments, _) = split_ok("SELECT p.id FROM products p JOIN cloud.sales s ON p.id = s.product_id WHERE my_macro(s.note) = 1");
    assert!(fragments[0].sql.contains("my_macro"), "{}", fragments[0].sql);
}

#[test]
fn division_is_written_as_duckdb_division() {
    let (local, fragments, _) = split_ok("SELECT p.id / 2 AS half, s.amount FROM products p JOIN cloud.sales s ON p.id = s.product_id");
    assert!(local.contains("/ 2") && !local.contains("//"), "{local}");
    assert!(!fragments[0].sql.contains("//"));
}

#[test]
fn an_aggregate_over_a_left_join_is_reduced_on_the_server() {
    let (local, fragments, _) = split_ok(
        "SELECT p.id, count(s.amount) AS n FROM products p LEFT JOIN cloud.sales s ON p.id = s.product_id AND s.region = 'eu' GROUP BY p.id",
    );
    let remote = &fragments[0].sql;
    assert!(remote.contains("GROUP BY") && remote.contains("'eu'"), "{remote}");
    assert!(local.contains("LEFT") && local.contains("coalesce"), "unmatched rows count 0: {local}");
    // count(*) counts unmatched rows: not reduced.
    let (_, fragments, _) = split_ok("SELECT p.id, count(*) FROM products p LEFT JOIN cloud.sales s ON p.id = s.product_id GROUP BY p.id");
    assert!(!fragments[0].sql.contains("GROUP BY"), "{}", fragments[0].sql);
}
