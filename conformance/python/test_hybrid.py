"""Hybrid plans from stock DuckDB with the extension: queries that read local tables and an
OpenDuck attachment are split between them, and every answer equals the all-local answer.

TPC-H (the official tpch extension, sf 0.01): all 22 queries with the tables split between the
laptop and the server in five mixes. Bare table names resolve through DuckDB's search_path: each
mix has a local schema holding its local tables, searched before the attachment, which holds all
eight."""

import decimal

import pytest

from conftest import attach_sql, extension_path

TABLES = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]
MIXES = {
    "facts_remote": {"lineitem", "orders"},
    "dimensions_remote": {"customer", "part", "partsupp", "supplier", "nation", "region"},
    "one_remote": {"lineitem"},
    "all_remote": set(TABLES),
    "all_local": set(),
}


def tpch_extension() -> str:
    from pathlib import Path

    import duckdb_extension_tpch

    return str(next(Path(duckdb_extension_tpch.__file__).parent.rglob("tpch.duckdb_extension")))


def normalized(rows):
    """Rows comparable across plans: floats and decimals rounded (sums in another order differ
    in the last bits), order kept (every TPC-H query orders its result)."""

    def value(v):
        if isinstance(v, (float, decimal.Decimal)):
            return round(float(v), 6)
        return v

    return [tuple(value(v) for v in row) for row in rows]


@pytest.fixture(scope="module")
def tpch(server):
    import duckdb

    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD '{tpch_extension()}'")
    con.execute(f"LOAD '{extension_path()}'")
    con.execute("CALL dbgen(sf=0.01)")
    queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
    expected = {nr: normalized(con.execute(q).fetchall()) for nr, q in queries}
    con.execute(attach_sql(server))
    for t in TABLES:
        con.execute(f"DROP TABLE IF EXISTS cloud.main.{t}")
        con.execute(f"CREATE TABLE cloud.main.{t} AS SELECT * FROM memory.main.{t}")
    for name, remote in MIXES.items():
        con.execute(f"CREATE SCHEMA memory.{name}")
        for t in TABLES:
            if t not in remote:
                con.execute(f"CREATE TABLE memory.{name}.{t} AS SELECT * FROM memory.main.{t}")
    yield con, queries, expected
    con.execute("SET search_path = ''")
    for t in TABLES:
        con.execute(f"DROP TABLE IF EXISTS cloud.main.{t}")
    con.close()


def split_count(con, sql) -> int:
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + sql).fetchall())
    return plan.count("OPENDUCK_FRAGMENT")


@pytest.mark.parametrize("mix", list(MIXES))
def test_tpch_answers_equal_all_local(tpch, mix):
    con, queries, expected = tpch
    con.execute(f"SET search_path = 'memory.{mix},cloud.main'")
    con.execute("SET openduck_hybrid = 'auto'")
    wrong, split = [], 0
    for nr, sql in queries:
        got = normalized(con.execute(sql).fetchall())
        if got != expected[nr]:
            wrong.append(nr)
        split += split_count(con, sql) > 0
    assert wrong == [], f"{mix}: queries with answers different from all-local: {wrong}"
    # The mixes that read remote and local tables must really run split, not fall back.
    minimum = {"facts_remote": 15, "dimensions_remote": 12, "one_remote": 15}.get(mix, 0)
    assert split >= minimum, f"{mix}: only {split} of 22 queries ran split"


def test_hybrid_off_gives_the_same_answers(tpch):
    con, queries, expected = tpch
    con.execute("SET search_path = 'memory.facts_remote,cloud.main'")
    con.execute("SET openduck_hybrid = 'off'")
    try:
        for nr, sql in queries[:6]:
            assert split_count(con, sql) == 0
            assert normalized(con.execute(sql).fetchall()) == expected[nr], nr
    finally:
        con.execute("SET openduck_hybrid = 'auto'")


def test_explain_labels_where_each_operator_runs(tpch):
    con, queries, _ = tpch
    con.execute("SET search_path = 'memory.facts_remote,cloud.main'")
    sql = dict(queries)[3]
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + sql).fetchall())
    assert "OPENDUCK_FRAGMENT" in plan and "REMOTE→LOCAL" in plan
    assert "[LOCAL]" in plan and "[REMOTE]" in plan


def test_a_fallback_says_why_in_explain(tpch):
    con, _, _ = tpch
    con.execute("SET search_path = 'memory.facts_remote,cloud.main'")
    con.execute("CREATE OR REPLACE VIEW memory.facts_remote.big_orders AS SELECT * FROM orders WHERE o_totalprice > 1000")
    sql = "SELECT count(*) FROM big_orders JOIN customer ON o_custkey = c_custkey"
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + sql).fetchall())
    assert "OPENDUCK_FRAGMENT" not in plan
    assert "not split:" in plan, plan
    local = con.execute(sql.replace("big_orders", "(SELECT * FROM memory.main.orders WHERE o_totalprice > 1000)")).fetchall()
    assert con.execute(sql).fetchall() == local
