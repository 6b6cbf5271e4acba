"""The DuckDB extension: ATTACH 'openduck:…' makes remote tables act local (real DuckDB Python
package, real server)."""

import os
import re
import time

import pytest

from conftest import TOKEN, Server, adbc_connect, attach_sql, measure_in_fresh_process


@pytest.fixture(scope="module")
def remote(server):
    """Tables on the server, and the same data built locally for comparison."""
    c = adbc_connect(server)
    cur = c.cursor()
    setup = [
        "CREATE OR REPLACE TABLE ext_users AS SELECT range AS id, 'user' || range AS name, range % 3 AS region, "
        "CASE WHEN range % 10 = 0 THEN NULL ELSE range * 1.5 END AS score FROM range(1000)",
        "CREATE OR REPLACE TABLE ext_sales AS SELECT range % 1000 AS id, (range * 7) % 101 AS amount, "
        "DATE '2024-01-01' + INTERVAL (range % 365) DAY AS day FROM range(20000)",
        "CREATE SCHEMA IF NOT EXISTS ext_other",
        "CREATE OR REPLACE TABLE ext_other.things AS SELECT range AS k, [range, range + 1] AS l, {'a': range} AS s FROM range(10)",
    ]
    for sql in setup:
        cur.execute(sql)
    c.close()
    return setup


@pytest.fixture
def local_copy(remote):
    import duckdb

    c = duckdb.connect()
    for sql in remote:
        c.execute(sql)
    yield c
    c.close()


def log_mark(server) -> int:
    """Where the server's log ends now: pass it to the helpers below to see only what follows."""
    return server.log_path.stat().st_size


def log_lines_since(server, mark: int) -> list:
    """The server's log lines written after `mark` (this test's own, on a shared server)."""
    with open(server.log_path, "rb") as f:
        f.seek(mark)
        text = f.read().decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()


def server_queries(server) -> list:
    text = re.sub(r"\x1b\[[0-9;]*m", "", server.log_path.read_text())
    return [line.split("sql=", 1)[1] for line in text.splitlines() if " query " in line and "sql=" in line]


def test_attach_lists_tables(server, remote, duck):
    duck.execute(attach_sql(server))
    tables = duck.sql("SELECT database, schema, name FROM (SHOW ALL TABLES) WHERE database = 'cloud' ORDER BY 2, 3").fetchall()
    assert ("cloud", "main", "ext_users") in tables
    assert ("cloud", "ext_other", "things") in tables
    described = duck.sql("DESCRIBE cloud.ext_users").fetchall()
    assert [(r[0], r[1]) for r in described] == [("id", "BIGINT"), ("name", "VARCHAR"), ("region", "BIGINT"), ("score", "DECIMAL(21,1)")]
    info = duck.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'cloud' AND table_name LIKE 'ext_%' ORDER BY 1"
    ).fetchall()
    assert info == [("ext_sales",), ("ext_users",)]
    # Row estimates from the server guide DuckDB's join order.
    sizes = duck.sql(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE database_name = 'cloud' AND table_name LIKE 'ext_%' ORDER BY 1"
    ).fetchall()
    assert sizes == [("ext_sales", 20000), ("ext_users", 1000)]
    duck.execute("DETACH cloud")
    assert duck.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = 'cloud'").fetchall()[0] == (0,)


QUERIES = [
    "SELECT * FROM {p}ext_users WHERE id > 10 ORDER BY id LIMIT 5",
    "SELECT region, count(*), sum(score) FROM {p}ext_users GROUP BY region ORDER BY region",
    "SELECT name FROM {p}ext_users WHERE score IS NULL AND region IN (0, 2) ORDER BY id",
    "SELECT count(*) FROM {p}ext_sales WHERE day BETWEEN DATE '2024-03-01' AND DATE '2024-03-31'",
    "SELECT u.region, sum(s.amount) FROM {p}ext_users u JOIN {p}ext_sales s USING (id) WHERE u.name LIKE 'user1%' GROUP BY 1 ORDER BY 1",
    "SELECT * FROM {p}ext_other.things WHERE s.a > 5 ORDER BY k",
    "SELECT count(*) FROM {p}ext_users",
    # Filters a remote scan pushes (with whole-query shipping off, see below): OR, NOT IN, LIKE,
    # IS NULL, a join filter, Top-N, list and struct access, NULL semantics in joins.
    "SELECT id FROM {p}ext_users WHERE (region = 1 AND score > 1400) OR id < 3 ORDER BY id",
    "SELECT count(*) FROM {p}ext_users WHERE region NOT IN (1) AND name NOT LIKE '%9'",
    "SELECT count(*) FROM {p}ext_users WHERE score IS NULL OR name ILIKE 'USER99%'",
    "SELECT s.id, s.amount FROM {p}ext_sales s JOIN (SELECT 7 AS id UNION ALL SELECT 8) k USING (id) ORDER BY 1, 2 LIMIT 7",
    "SELECT id, score FROM {p}ext_users ORDER BY score DESC NULLS LAST, id LIMIT 4",
    "SELECT k, l[2], s.a FROM {p}ext_other.things WHERE l[1] >= 7 ORDER BY k",
    "SELECT count(*) FROM {p}ext_users a LEFT JOIN {p}ext_users b ON a.score = b.score WHERE b.id IS NULL",
]


@pytest.mark.parametrize("ship", [True, False], ids=["shipped", "scanned"])
@pytest.mark.parametrize("sql", QUERIES)
def test_remote_queries_match_local(server, local_copy, duck, sql, ship):
    """Each query gives the local answer both shipped whole to the server and run locally over
    remote scans with their pushed filters."""
    duck.execute(attach_sql(server))
    if not ship:
        duck.execute("SET openduck_ship_queries = false")
    remote_sql = sql.replace("{p}ext_other.", "cloud.ext_other.").replace("{p}", "cloud.")
    local_sql = sql.replace("{p}", "")
    assert duck.sql(remote_sql).fetchall() == local_copy.sql(local_sql).fetchall()


def test_local_join_remote(server, remote, local_copy, duck):
    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE picks AS SELECT * FROM (VALUES (3), (30), (300)) t(id)")
    local_copy.execute("CREATE TABLE picks AS SELECT * FROM (VALUES (3), (30), (300)) t(id)")
    sql = "SELECT p.id, count(*), sum(s.amount) FROM picks p JOIN {p}ext_sales s ON p.id = s.id GROUP BY 1 ORDER BY 1"
    assert duck.sql(sql.replace("{p}", "cloud.")).fetchall() == local_copy.sql(sql.replace("{p}", "")).fetchall()


def test_filters_and_projections_reach_the_server(server, remote, duck):
    duck.execute(attach_sql(server))
    # Scans as in a hybrid plan (whole-query shipping off): each remote scan's SQL.
    duck.execute("SET openduck_ship_queries = false")
    before = len(server_queries(server))
    names = duck.sql("SELECT name FROM cloud.ext_users WHERE id BETWEEN 100 AND 110 AND name <> 'user105' ORDER BY id").fetchall()
    assert names == [(f"user{i}",) for i in range(100, 111) if i != 105]
    ids = duck.sql("SELECT id FROM cloud.ext_users WHERE region IS NOT NULL AND score > 10.5 ORDER BY id").fetchall()
    assert ids == [(i,) for i in range(1000) if i % 10 != 0 and i * 1.5 > 10.5]
    pushed = server_queries(server)[before:]
    # Only the needed columns are fetched, and the WHERE clause runs on the server.
    assert any(
        q.startswith('SELECT "id", "name" FROM "main"."ext_users" WHERE')
        and '"id" >= 100' in q
        and '"id" <= 110' in q
        and "\"name\" != 'user105'" in q
        for q in pushed
    ), pushed
    # (DuckDB keeps IS [NOT] NULL checks in a local FILTER above the scan.)
    assert any(q.startswith('SELECT "region", "score", "id" FROM') and '"score" > 10.5' in q for q in pushed), pushed


def operators(plan: str) -> str:
    """EXPLAIN text with operator names as DuckDB 1.5 prints them (2.0 prints "Hash Join")."""
    return plan.upper().replace(" ", "_")


def test_explain_shows_where_each_part_runs(server, remote, duck):
    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE picks AS SELECT 3 AS id")
    query = "EXPLAIN SELECT * FROM picks JOIN cloud.ext_users USING (id) WHERE region = 0"
    # Split: the remote part is a fragment, joined locally.
    hybrid = duck.sql(query).fetchall()[0][1]
    assert "HASH_JOIN" in operators(hybrid) and "OPENDUCK_FRAGMENT" in operators(hybrid)
    assert "REMOTE" in hybrid and '"main"."ext_users"' in hybrid and "[LOCAL]" in hybrid
    # Without hybrid plans: a remote scan with the filter pushed.
    duck.execute("SET openduck_hybrid = 'off'")
    scans = duck.sql(query).fetchall()[0][1]
    assert "HASH_JOIN" in operators(scans) and "OPENDUCK_SCAN" in operators(scans)
    assert "REMOTE" in scans and '"main"."ext_users"' in scans
    whole = duck.sql("EXPLAIN SELECT region, count(*) FROM cloud.ext_users GROUP BY 1").fetchall()[0][1]
    assert "OPENDUCK_QUERY" in operators(whole) and "whole query" in whole and "HASH_GROUP_BY" not in operators(whole)


def test_queries_on_one_database_run_whole_on_the_server(server, remote, local_copy, duck):
    duck.execute(attach_sql(server))
    sql = (
        "SELECT u.region, count(*) AS n, sum(s.amount) AS total FROM {p}ext_users u JOIN {p}ext_sales s USING (id) "
        "WHERE u.score > 100 GROUP BY 1 ORDER BY total DESC LIMIT 2"
    )
    before = len(server_queries(server))
    assert duck.sql(sql.replace("{p}", "cloud.")).fetchall() == local_copy.sql(sql.replace("{p}", "")).fetchall()
    shipped = server_queries(server)[before:]
    # One remote query doing the join and aggregate; no per-table scans.
    assert len(shipped) == 1 and "JOIN ext_sales" in shipped[0] and "GROUP BY" in shipped[0], shipped
    # Order is kept.
    ordered = duck.sql("SELECT id FROM cloud.ext_users ORDER BY id DESC LIMIT 5").fetchall()
    assert ordered == [(999,), (998,), (997,), (996,), (995,)]


def test_local_only_functions_keep_the_hybrid_plan(server, remote, duck):
    duck.execute(attach_sql(server))
    duck.create_function("plus_one", lambda x: x + 1, ["BIGINT"], "BIGINT")
    plan = duck.sql("EXPLAIN SELECT plus_one(max(id)) FROM cloud.ext_users").fetchall()[0][1]
    assert "OPENDUCK_SCAN" in operators(plan) and "OPENDUCK_QUERY" not in operators(plan)
    assert duck.execute("SELECT plus_one(max(id)) FROM cloud.ext_users").fetchall()[0] == (1000,)


def test_alias_and_environment(server, remote, duck, monkeypatch):
    monkeypatch.setenv("OPENDUCK_ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("OPENDUCK_TOKEN", TOKEN)
    duck.execute("ATTACH 'od:mydb' AS cloud2")
    assert duck.execute("SELECT count(*) FROM cloud2.ext_users").fetchall()[0] == (1000,)


def test_token_option(server, remote, duck):
    duck.execute(f"ATTACH 'openduck:mydb?endpoint=http://127.0.0.1:{server.port}' AS cloud3 (TOKEN '{TOKEN}')")
    assert duck.execute("SELECT max(id) FROM cloud3.ext_users").fetchall()[0] == (999,)


def test_token_from_secret(server, remote, duck, monkeypatch):
    monkeypatch.delenv("OPENDUCK_TOKEN", raising=False)
    duck.execute(f"CREATE SECRET od_secret (TYPE openduck, TOKEN '{TOKEN}')")
    duck.execute(f"ATTACH 'openduck:mydb?endpoint=http://127.0.0.1:{server.port}' AS cloud4")
    assert duck.execute("SELECT count(*) FROM cloud4.ext_users").fetchall()[0] == (1000,)
    secrets = duck.execute("SELECT secret_string FROM duckdb_secrets() WHERE name = 'od_secret'").fetchall()[0][0]
    assert TOKEN not in secrets and "token=redacted" in secrets
    # A secret scoped to another database does not apply.
    duck.execute("DROP SECRET od_secret")
    duck.execute(f"CREATE SECRET (TYPE openduck, TOKEN '{TOKEN}', SCOPE 'openduck:elsewhere')")
    with pytest.raises(Exception, match="authentication failed"):
        duck.execute(f"ATTACH 'openduck:mydb?endpoint=http://127.0.0.1:{server.port}' AS cloud5")


def test_token_precedence(server, remote, duck, monkeypatch):
    """TOKEN option, then the path's token=, then a matching secret, then OPENDUCK_TOKEN."""
    endpoint = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("OPENDUCK_TOKEN", "wrong-env")
    duck.execute("CREATE SECRET od_wrong (TYPE openduck, TOKEN 'wrong-secret')")
    duck.execute(f"ATTACH 'openduck:mydb?endpoint={endpoint}&token={TOKEN}' AS by_path")
    duck.execute(f"ATTACH 'openduck:mydb?endpoint={endpoint}&token=wrong-path' AS by_option (TOKEN '{TOKEN}')")
    for alias in ("by_path", "by_option"):
        assert duck.execute(f"SELECT count(*) FROM {alias}.ext_users").fetchall()[0] == (1000,)
    with pytest.raises(Exception, match="authentication failed"):
        duck.execute(f"ATTACH 'openduck:mydb?endpoint={endpoint}' AS by_wrong_secret")
    duck.execute("DROP SECRET od_wrong")
    duck.execute(f"CREATE SECRET od_right (TYPE openduck, TOKEN '{TOKEN}')")
    duck.execute(f"ATTACH 'openduck:mydb?endpoint={endpoint}' AS by_secret")
    assert duck.execute("SELECT count(*) FROM by_secret.ext_users").fetchall()[0] == (1000,)
    duck.execute("DROP SECRET od_right")


def test_wrong_token(server, duck):
    with pytest.raises(Exception, match="authentication failed"):
        duck.execute(attach_sql(server, token="wrong"))


def test_unknown_database(server, duck):
    with pytest.raises(Exception, match="no database 'nope'"):
        duck.execute(attach_sql(server, database="nope"))


def test_unreachable_endpoint_fails_fast(duck):
    from conftest import free_port

    started = time.time()
    with pytest.raises(Exception, match="unreachable"):
        duck.execute(f"ATTACH 'openduck:mydb?endpoint=http://127.0.0.1:{free_port()}&token=x' AS nowhere")
    assert time.time() - started < 10


def test_unknown_table_is_a_catalog_error(server, remote, duck):
    import duckdb

    duck.execute(attach_sql(server))
    with pytest.raises(duckdb.CatalogException, match="does not exist"):
        duck.sql("SELECT * FROM cloud.no_such_table").fetchall()


def test_unknown_attach_option(server, duck):
    with pytest.raises(Exception, match="unknown ATTACH option 'colour'"):
        duck.execute(attach_sql(server) + " (COLOUR 'red')")


def test_create_insert_drop(server, duck, tmp_path):
    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE cloud.w_events (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, ts TIMESTAMP, tags VARCHAR[])")
    duck.execute("INSERT INTO cloud.w_events VALUES (1, 'a', TIMESTAMP '2024-01-01 10:00', ['x', 'y']), (2, 'b', NULL, NULL)")
    duck.execute("INSERT INTO cloud.w_events (name, id) VALUES ('c', 3)")
    assert duck.sql("SELECT id, name, tags FROM cloud.w_events ORDER BY id").fetchall() == [
        (1, "a", ["x", "y"]),
        (2, "b", None),
        (3, "c", None),
    ]
    # The server enforces its constraints; nothing of a failed load stays.
    import duckdb

    with pytest.raises(duckdb.Error, match="Duplicate key"):
        duck.execute("INSERT INTO cloud.w_events VALUES (4, 'd', NULL, NULL), (1, 'dup', NULL, NULL)")
    assert duck.execute("SELECT count(*) FROM cloud.w_events").fetchall()[0] == (3,)
    with pytest.raises(duckdb.CatalogException, match="already exists"):
        duck.execute("CREATE TABLE cloud.w_events (x INTEGER)")
    duck.execute("CREATE TABLE IF NOT EXISTS cloud.w_events (x INTEGER)")
    # Another client sees the rows.
    c = adbc_connect(server)
    cur = c.cursor()
    cur.execute("SELECT count(*) FROM w_events")
    assert cur.fetchall() == [(3,)]
    c.close()
    duck.execute("DROP TABLE cloud.w_events")
    assert duck.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'cloud' AND table_name = 'w_events'").fetchall()[0] == (0,)
    duck.execute("DROP TABLE IF EXISTS cloud.w_events")


def test_bulk_writes_from_local_data(server, duck, tmp_path):
    duck.execute(attach_sql(server))
    parquet = tmp_path / "dump.parquet"
    duck.execute(f"COPY (SELECT range AS id, 'e' || range AS kind, range / 7.0 AS v FROM range(250000)) TO '{parquet}'")
    duck.execute("CREATE OR REPLACE TABLE cloud.w_dump (id BIGINT, kind VARCHAR, v DOUBLE)")
    duck.execute("CREATE TABLE local_csv AS SELECT range AS k, range % 5 AS y FROM range(1000)")
    mark = log_mark(server)
    duck.execute(f"INSERT INTO cloud.w_dump SELECT * FROM read_parquet('{parquet}')")
    duck.execute("CREATE OR REPLACE TABLE cloud.w_t2 AS SELECT * FROM local_csv")
    writes = log_lines_since(server, mark)
    # Every row arrived as it was, not just the right count and sums.
    expected = duck.execute(f"SELECT * FROM read_parquet('{parquet}') ORDER BY id").fetchall()
    assert duck.execute("SELECT * FROM cloud.w_dump ORDER BY id").fetchall() == expected
    assert duck.execute("SELECT * FROM cloud.w_t2 ORDER BY k").fetchall() == duck.execute("SELECT * FROM local_csv ORDER BY k").fetchall()
    # The rows went as Arrow batches through Flight SQL ingest, not as INSERT statements: the
    # server logged an ingest into each table, and no SQL that inserts (of any kind of message).
    for table in ("w_dump", "w_t2"):
        assert any(" ingest " in line and f"table={table}" in line for line in writes), (table, writes)
    inserts = [line for line in writes if "sql=" in line and "INSERT" in line.split("sql=", 1)[1].upper()]
    assert not inserts, inserts
    # Results of remote queries feed local writers.
    out = tmp_path / "out.parquet"
    duck.sql("SELECT * FROM cloud.w_dump WHERE kind = 'e42'").write_parquet(str(out))
    assert duck.sql(f"SELECT id FROM read_parquet('{out}')").fetchall() == [(42,)]


def test_schemas(server, duck):
    duck.execute(attach_sql(server))
    duck.execute("CREATE SCHEMA cloud.w_schema")
    assert ("w_schema",) in duck.sql("SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'cloud'").fetchall()
    duck.execute("CREATE TABLE cloud.w_schema.t AS SELECT 1 AS a")
    assert duck.sql("SELECT * FROM cloud.w_schema.t").fetchall() == [(1,)]
    duck.execute("DROP TABLE cloud.w_schema.t")
    duck.execute("DROP SCHEMA cloud.w_schema")
    assert ("w_schema",) not in duck.sql("SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'cloud'").fetchall()


def test_types_round_trip_through_writes(server, duck, local):
    duck.execute(attach_sql(server))
    duck.execute(f"CREATE OR REPLACE TABLE cloud.w_types AS {TYPE_SQL}")
    remote_row = duck.sql("SELECT * FROM cloud.w_types").fetchall()
    local_row = local.sql(TYPE_SQL).fetchall()
    assert remote_row[0][:-1] == local_row[0][:-1]
    assert str(remote_row[0][-1]) == str(local_row[0][-1])


def test_large_insert_streams_in_bounded_memory(server, duck):
    grown_mb, _ = measure_in_fresh_process(
        server,
        ["CREATE OR REPLACE TABLE cloud.w_big (id BIGINT, pad VARCHAR)"],
        "INSERT INTO cloud.w_big SELECT range, repeat('y', 24) FROM range(10000000)",
    )
    duck.execute(attach_sql(server))
    assert duck.execute("SELECT count(*), sum(id) FROM cloud.w_big").fetchall()[0] == (10000000, 49999995000000)
    # 10M rows are ~400 MB as Arrow; the upload holds only a few batches at a time.
    assert grown_mb < 250, grown_mb
    duck.execute("DROP TABLE cloud.w_big")


def _attached(server):
    import duckdb

    from conftest import extension_path

    c = duckdb.connect(config={"allow_unsigned_extensions": True})
    c.execute(f"LOAD '{extension_path()}'")
    c.execute(attach_sql(server))
    return c


def test_transactions_commit_and_rollback(server, duck):
    duck.execute(attach_sql(server))
    other = _attached(server)
    duck.execute("CREATE OR REPLACE TABLE cloud.w_acct (id INTEGER, bal INTEGER)")
    duck.execute("INSERT INTO cloud.w_acct VALUES (1, 100), (2, 50)")
    duck.execute("BEGIN")
    duck.execute("INSERT INTO cloud.w_acct VALUES (3, 10)")
    duck.execute("CREATE TABLE cloud.w_txn_new AS SELECT 1 AS x")
    assert duck.execute("SELECT count(*) FROM cloud.w_acct").fetchall()[0] == (3,)
    assert duck.sql("SELECT * FROM cloud.w_txn_new").fetchall() == [(1,)]
    # Another client sees none of it before COMMIT.
    assert other.execute("SELECT count(*) FROM cloud.w_acct").fetchall()[0] == (2,)
    duck.execute("ROLLBACK")
    assert duck.execute("SELECT count(*) FROM cloud.w_acct").fetchall()[0] == (2,)
    assert duck.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'w_txn_new'").fetchall()[0] == (0,)
    duck.execute("BEGIN")
    duck.execute("INSERT INTO cloud.w_acct VALUES (4, 1)")
    duck.execute("CREATE TABLE cloud.w_txn_kept (x INTEGER)")
    duck.execute("INSERT INTO cloud.w_txn_kept VALUES (7)")
    duck.execute("COMMIT")
    assert other.execute("SELECT sum(bal) FROM cloud.w_acct").fetchall()[0] == (151,)
    assert other.sql("SELECT * FROM cloud.w_txn_kept").fetchall() == [(7,)]
    duck.execute("DROP TABLE cloud.w_txn_kept")
    other.close()


def test_tables_created_elsewhere_appear(server, duck):
    duck.execute(attach_sql(server))
    other = _attached(server)
    other.execute("CREATE OR REPLACE TABLE cloud.w_elsewhere AS SELECT 9 AS v")
    other.execute("CREATE SCHEMA IF NOT EXISTS cloud.w_elsewhere_schema")
    other.execute("CREATE OR REPLACE TABLE cloud.w_elsewhere_schema.t AS SELECT 10 AS v")
    assert duck.sql("SELECT v FROM cloud.w_elsewhere").fetchall() == [(9,)]
    assert duck.sql("SELECT v FROM cloud.w_elsewhere_schema.t").fetchall() == [(10,)]
    other.close()


def test_update_and_delete_run_on_the_server(server, remote, duck):
    duck.execute(attach_sql(server))
    duck.execute("CREATE OR REPLACE TABLE cloud.w_ud AS SELECT range AS x, range % 2 = 0 AS y FROM range(10)")
    duck.execute("UPDATE cloud.w_ud SET x = 1 WHERE y")
    assert duck.execute("SELECT sum(x) FROM cloud.w_ud").fetchall()[0] == (5 + 1 + 3 + 5 + 7 + 9,)
    duck.execute("DELETE FROM cloud.w_ud WHERE x > 5")
    assert duck.execute("SELECT count(*) FROM cloud.w_ud").fetchall()[0] == (8,)
    # Aliases, subqueries and FROM over other tables of the same database.
    duck.execute("UPDATE cloud.w_ud AS z SET x = z.x + 100 WHERE NOT y")
    duck.execute("DELETE FROM cloud.w_ud WHERE x IN (SELECT id + 100 FROM cloud.ext_users WHERE id < 4)")
    duck.execute("UPDATE cloud.w_ud SET x = u.id + 1000 FROM cloud.main.ext_users u WHERE u.id = w_ud.x + 104")
    assert sorted(duck.sql("SELECT x FROM cloud.w_ud").fetchall()) == [(1105,)] * 5 + [(1209,)]
    # The whole statement ran on the server, in the user's transaction.
    mark = log_mark(server)
    duck.execute("BEGIN")
    duck.execute("DELETE FROM cloud.w_ud")
    assert duck.execute("SELECT count(*) FROM cloud.w_ud").fetchall()[0] == (0,)
    duck.execute("ROLLBACK")
    assert duck.execute("SELECT count(*) FROM cloud.w_ud").fetchall()[0] == (6,)
    shipped = [line.split("sql=", 1)[1] for line in log_lines_since(server, mark) if "sql=" in line]
    assert any(q.startswith("DELETE FROM w_ud") for q in shipped), ("the DELETE ran whole on the server", shipped)
    # EXPLAIN shows that the statement runs whole on the server, and changes nothing.
    plan = duck.execute("EXPLAIN UPDATE cloud.w_ud SET x = 0").fetchall()[0][1]
    assert "OPENDUCK_REMOTE_STATEMENT" in operators(plan) and "UPDATE w_ud SET x = 0" in plan.replace("\n", ""), plan
    assert "DELETE FROM w_ud" in duck.execute("EXPLAIN DELETE FROM cloud.w_ud WHERE x = 1").fetchall()[0][1]
    assert duck.execute("SELECT count(*), min(x) FROM cloud.w_ud").fetchall() == [(6, 1105)]
    # RETURNING: the server's rows come back (in a transaction too), each statement runs once.
    returned = duck.execute("UPDATE cloud.w_ud SET x = x + 1 WHERE x = 1209 RETURNING x, y").fetchall()
    assert returned == [(1210, False)], returned
    duck.execute("BEGIN")
    assert sorted(duck.execute("DELETE FROM cloud.w_ud WHERE x = 1105 RETURNING *").fetchall()) == [(1105, True)] * 5
    duck.execute("COMMIT")
    assert duck.execute("SELECT x FROM cloud.w_ud").fetchall() == [(1210,)]
    # Local tables are untouched by all this.
    duck.execute("CREATE TABLE loc AS SELECT 1 AS a")
    duck.execute("UPDATE loc SET a = 2")
    assert duck.sql("SELECT a FROM loc").fetchall() == [(2,)]


def test_views(server, remote, duck):
    duck.execute(attach_sql(server))
    duck.execute("DROP VIEW IF EXISTS cloud.w_view")
    duck.execute(
        "CREATE VIEW cloud.w_view AS SELECT u.region, count(*) AS n FROM cloud.ext_users u "
        "JOIN cloud.ext_sales s USING (id) GROUP BY 1"
    )
    assert duck.sql("SELECT * FROM cloud.w_view ORDER BY region").fetchall() == [(0, 6680), (1, 6660), (2, 6660)]
    # Another client (ADBC) sees the view on the server.
    c = adbc_connect(server)
    cur = c.cursor()
    cur.execute("SELECT sum(n) FROM w_view")
    assert cur.fetchall() == [(20000,)]
    c.close()
    duck.execute("CREATE OR REPLACE VIEW cloud.w_view AS SELECT 1 AS one")
    assert duck.sql("SELECT * FROM cloud.w_view").fetchall() == [(1,)]
    duck.execute("DROP VIEW cloud.w_view")
    assert duck.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'w_view'").fetchall()[0] == (0,)


TYPE_SQL = (
    "SELECT 1::TINYINT a, 2::SMALLINT b, 3::INTEGER c, 4::BIGINT d, 5::UTINYINT e, 6::UBIGINT f, 1.5::FLOAT g, "
    "2.5::DOUBLE h, 12.34::DECIMAL(10,2) i, 'txt' j, '\\xAA'::BLOB k, DATE '2024-02-29' l, TIME '12:34:56' m, "
    "TIMESTAMP '2024-02-29 12:34:56.789' n, TIMESTAMPTZ '2024-02-29 12:34:56+00' o, INTERVAL 3 DAY p, "
    "true q, [1, 2, NULL] r, {'x': 1, 'y': 'z'} s, MAP {'k': 1} t, NULL::INTEGER u, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID v"
)


def test_types_round_trip_through_scans(server, duck, local):
    c = adbc_connect(server)
    c.cursor().execute(f"CREATE OR REPLACE TABLE ext_types AS {TYPE_SQL}")
    c.close()
    duck.execute(attach_sql(server))
    remote_row = duck.sql("SELECT * FROM cloud.ext_types").fetchall()
    local_row = local.sql(TYPE_SQL).fetchall()
    # UUID arrives as text (Flight SQL clients see UUIDs as strings); everything else is identical.
    assert remote_row[0][:-1] == local_row[0][:-1]
    assert str(remote_row[0][-1]) == str(local_row[0][-1])


def test_large_scan_streams_in_bounded_memory(server, duck):
    c = adbc_connect(server)
    c.cursor().execute("CREATE OR REPLACE TABLE ext_big AS SELECT range AS id, repeat('x', 24) AS pad FROM range(10000000)")
    c.close()
    grown_mb, rows = measure_in_fresh_process(server, [], "SELECT count(*), sum(id), min(pad) FROM cloud.ext_big")
    assert rows == [(10000000, 49999995000000, "x" * 24)]
    # 10M rows are ~400 MB as Arrow; the client holds only a few batches at a time.
    assert grown_mb < 250, grown_mb


def test_server_restart_between_queries(fresh_server, duck):
    s = fresh_server()
    c = adbc_connect(s)
    c.cursor().execute("CREATE TABLE survivor AS SELECT 42 AS v")
    c.close()
    duck.execute(f"ATTACH 'openduck:mydb?endpoint=http://127.0.0.1:{s.port}&token=conformance-admin-token' AS r")
    assert duck.execute("SELECT v FROM r.survivor").fetchall()[0] == (42,)
    s.stop()
    restarted = Server(s.data_dir, port=s.port)
    try:
        assert duck.execute("SELECT v FROM r.survivor").fetchall()[0] == (42,)
    finally:
        restarted.stop()


def test_duckdb_cli(server, remote):
    """The DuckDB CLI of the same version loads the extension and queries a remote table."""
    import subprocess

    import duckdb_cli

    from conftest import extension_path

    cli = os.path.join(os.path.dirname(duckdb_cli.__file__), "duckdb")
    script = f"LOAD '{extension_path()}'; {attach_sql(server)}; SELECT count(*), max(name) FROM cloud.ext_users WHERE region = 1;"
    out = subprocess.run([cli, "-unsigned", "-csv", "-noheader", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "333,user997"


def interrupted_after(duck, seconds, sql, before=None) -> float:
    """Runs `sql` on `duck`, interrupting it (as Ctrl-C does) after `seconds`, calling `before`
    just before that; expects DuckDB's interrupt error and returns how long the query took."""
    import threading

    import duckdb

    def fire():
        if before:
            before()
        duck.interrupt()

    timer = threading.Timer(seconds, fire)
    timer.start()
    started = time.time()
    with pytest.raises(duckdb.InterruptException):
        duck.execute(sql).fetchall()
    waited = time.time() - started
    timer.join()
    return waited


def assert_server_idle(server, timeout):
    """The server has no running query, within `timeout` seconds."""
    deadline = time.time() + timeout
    while server.health()["running_queries"] and time.time() < deadline:
        time.sleep(0.1)
    assert server.health()["running_queries"] == 0


def test_interrupt_cancels_the_remote_query(server, duck):
    """DuckDB's interrupt (Ctrl-C in the CLI) stops a remote scan and frees the server's query."""
    c = adbc_connect(server)
    c.cursor().execute("CREATE OR REPLACE TABLE ext_huge AS SELECT range AS id FROM range(50000000)")
    c.close()
    duck.execute(attach_sql(server))
    duck.execute("SET openduck_ship_queries = false")
    # A slow local expression over a large remote scan: interrupted mid-stream.
    waited = interrupted_after(duck, 1.0, "SELECT count(*) FROM cloud.ext_huge WHERE md5(id::VARCHAR) LIKE '%abc%'")
    assert waited < 20
    assert_server_idle(server, 10)


def test_long_transfers_report_progress(server, duck):
    """Uploads and remote scans report progress to DuckDB (its progress bar in the CLI, and
    query_progress() in Python): rising percentages while the rows move, not only 0 and 100."""
    import threading

    duck.execute(attach_sql(server))
    duck.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
    duck.execute("CREATE TABLE big_local AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(3000000)")

    def progress_of(sql):
        seen = []
        errors = []

        def run():
            try:
                duck.execute(sql).fetchall()
            except Exception as e:  # reported below
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        while t.is_alive():
            seen.append(duck.query_progress())
            time.sleep(0.02)
        t.join()
        assert not errors, errors
        return [p for p in seen if 0 < p < 100]

    upload = progress_of("CREATE OR REPLACE TABLE cloud.w_progress AS SELECT * FROM big_local")
    assert len(set(round(p) for p in upload)) >= 3, upload
    duck.execute("SET openduck_ship_queries = false")
    download = progress_of("SELECT count(DISTINCT h) FROM cloud.w_progress")
    assert len(set(round(p) for p in download)) >= 3, download
    assert download == sorted(download), "progress only rises"


def test_a_build_for_another_duckdb_version_is_refused_clearly():
    """The extension is built per DuckDB version (1.5.5, and 2.0.0 for Python); loading the other
    version's build fails loudly, naming both versions."""
    import glob

    import duckdb

    here = f"v{duckdb.__version__}"
    others = [p for p in glob.glob(os.path.expanduser("~/.cache/openduck/extension/v*/openduck.duckdb_extension")) if f"/{here}/" not in p]
    if not others:
        pytest.skip("no extension built for another DuckDB version yet")
    c = duckdb.connect(config={"allow_unsigned_extensions": True})
    for path in others:
        other = path.split("/")[-2]
        with pytest.raises(duckdb.Error, match=f"built specifically for DuckDB version '{other}'.*this version of DuckDB is '{here}'"):
            c.execute(f"LOAD '{path}'")
    c.close()


def test_interrupt_while_the_server_computes_the_first_batch(server, duck):
    """An interrupt reaches a query whose result the server is still computing (no batch has
    arrived yet): the client stops waiting within a moment, raises DuckDB's interrupt error, and
    the server's query is cancelled."""
    c = adbc_connect(server)
    c.cursor().execute("CREATE OR REPLACE TABLE ext_huge AS SELECT range AS id FROM range(50000000)")
    c.close()
    duck.execute(attach_sql(server))
    running_at_interrupt = []
    # Shipped whole: the server aggregates 50M rows before it sends its one row.
    sql = "SELECT count(*) FROM cloud.ext_huge WHERE md5(md5(md5(id::VARCHAR))) LIKE '%abc%'"
    waited = interrupted_after(duck, 1.5, sql, before=lambda: running_at_interrupt.append(server.health()["running_queries"]))
    assert running_at_interrupt == [1], "the server was still computing when the interrupt came"
    assert waited < 4, f"the interrupt took {waited:.1f} s to reach the client"
    assert_server_idle(server, 10)


def test_interrupt_reaches_a_remote_update_returning(server, duck):
    """UPDATE … RETURNING runs whole on the server before its first row comes back: an interrupt
    returns at once and the server rolls the statement back."""
    c = adbc_connect(server)
    c.cursor().execute("CREATE OR REPLACE TABLE ext_upd AS SELECT range AS id, 0 AS v FROM range(50000000)")
    c.close()
    duck.execute(attach_sql(server))
    sql = "UPDATE cloud.ext_upd SET v = 1 WHERE md5(md5(md5(id::VARCHAR))) LIKE '%abc%' RETURNING id"
    waited = interrupted_after(duck, 1.5, sql)
    assert waited < 4, f"the interrupt took {waited:.1f} s to reach the client"
    assert_server_idle(server, 20)
    assert duck.execute("SELECT count(*) FILTER (v = 1) FROM cloud.ext_upd").fetchall() == [(0,)], "rolled back"


def test_interrupt_cancels_the_fragments_of_a_hybrid_plan(server, duck):
    """An interrupt stops a split query while its remote fragment is still computing on the
    server: the client returns at once and the fragment's query on the server is cancelled."""
    c = adbc_connect(server)
    c.cursor().execute("CREATE OR REPLACE TABLE ext_huge AS SELECT range AS id FROM range(50000000)")
    c.close()
    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE few AS SELECT range AS id FROM range(100)")
    # The fragment aggregates 50M rows on the server (by id % 100) before its first row comes.
    sql = (
        "SELECT f.id, count(*) FROM few f JOIN cloud.ext_huge h ON f.id = h.id % 100 "
        "WHERE md5(md5(md5(h.id::VARCHAR))) LIKE '%abc%' GROUP BY f.id"
    )
    plan = duck.execute("EXPLAIN " + sql).fetchall()[0][1]
    assert "REMOTE→LOCAL" in plan, "the query runs split"
    running_at_interrupt = []
    waited = interrupted_after(duck, 1.5, sql, before=lambda: running_at_interrupt.append(server.health()["running_queries"]))
    assert running_at_interrupt == [1], "the fragment was still computing when the interrupt came"
    assert waited < 4, f"the interrupt took {waited:.1f} s to reach the client"
    assert_server_idle(server, 10)


def test_openduck_hybrid_accepts_only_auto_and_off(server, duck):
    import duckdb

    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE few AS SELECT range AS id FROM range(3)")
    duck.execute("SET openduck_hybrid = 'sometimes'")
    with pytest.raises(duckdb.Error, match="openduck_hybrid.*'auto' or 'off'"):
        duck.execute("SELECT count(*) FROM few JOIN cloud.ext_users USING (id)").fetchall()
    duck.execute("SET openduck_hybrid = 'OFF'")
    assert duck.execute("SELECT count(*) FROM few JOIN cloud.ext_users USING (id)").fetchall() == [(3,)]


def test_hybrid_fragments_run_in_the_open_transaction(server, duck):
    """Inside BEGIN … a split query's fragment sees the transaction's own uncommitted rows."""
    duck.execute(attach_sql(server))
    duck.execute("CREATE OR REPLACE TABLE cloud.tx_hybrid AS SELECT range AS id FROM range(10)")
    duck.execute("CREATE TABLE wanted AS SELECT range AS id FROM range(100)")
    sql = "SELECT count(*) FROM wanted w JOIN cloud.tx_hybrid t ON w.id = t.id"
    assert "REMOTE→LOCAL" in duck.execute("EXPLAIN " + sql).fetchall()[0][1]
    duck.execute("BEGIN")
    duck.execute("INSERT INTO cloud.tx_hybrid SELECT range + 10 FROM range(5)")
    assert "REMOTE→LOCAL" in duck.execute("EXPLAIN " + sql).fetchall()[0][1]
    assert duck.execute(sql).fetchall() == [(15,)]
    duck.execute("ROLLBACK")
    assert duck.execute(sql).fetchall() == [(10,)]
    duck.execute("DROP TABLE cloud.tx_hybrid")


def test_local_join_keys_reach_the_server_and_the_session_keeps_its_settings(server, duck):
    """A split query ships the keys of a selective local side to the server with the fragment
    (DuckDB's join filter as an IN list), so the server sends only rows that can join. The IN-list
    limit this needs is raised for the query only; a key list too long for the server's statement
    limit is left out, and the answer is the same."""
    duck.execute(attach_sql(server))
    duck.execute("CREATE OR REPLACE TABLE cloud.keyed AS SELECT range AS k, range % 7 AS v FROM range(300000)")
    duck.execute("CREATE TABLE few_keys AS SELECT range * 1000 AS k FROM range(200)")
    duck.execute("CREATE TABLE many_keys AS SELECT range * 2 AS k FROM range(120000)")
    duck.execute("CREATE TABLE local_keyed AS SELECT * FROM cloud.keyed")
    for keys, expected_max_mb in (("few_keys", 0.1), ("many_keys", None)):
        sql = f"SELECT count(*), sum(r.v) FROM {keys} l JOIN {{t}} r ON l.k = r.k"
        before = server.health()["result_bytes_sent"]
        got = duck.execute(sql.format(t="cloud.keyed")).fetchall()
        moved = (server.health()["result_bytes_sent"] - before) / 1e6
        assert got == duck.execute(sql.format(t="local_keyed")).fetchall()
        if expected_max_mb:
            assert moved < expected_max_mb, f"{moved:.2f} MB sent for 200 keys"
    assert duck.execute("SELECT current_setting('dynamic_or_filter_threshold')").fetchall() == [(50,)]
    duck.execute("SET dynamic_or_filter_threshold = 7")
    duck.execute("SELECT count(*) FROM few_keys l JOIN cloud.keyed r ON l.k = r.k").fetchall()
    assert duck.execute("SELECT current_setting('dynamic_or_filter_threshold')").fetchall() == [(7,)]
    duck.execute("DROP TABLE cloud.keyed")


def test_hybrid_names_resolve_as_duckdb_resolves_them(server, remote, duck):
    """The split plan reads the tables DuckDB would: after USE, through a CTE or a view with a
    table's name, the answers are DuckDB's own."""
    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE memory.main.picks AS SELECT range * 3 AS id FROM range(50)")
    duck.execute("CREATE TABLE memory.main.copy_sales AS SELECT * FROM cloud.ext_sales")
    split = "SELECT count(*), sum(s.amount) FROM memory.main.picks p JOIN {sales} s ON p.id = s.id"
    expected = duck.execute(split.format(sales="memory.main.copy_sales")).fetchall()
    try:
        duck.execute("USE cloud")
        assert "REMOTE→LOCAL" in duck.execute("EXPLAIN " + split.format(sales="ext_sales")).fetchall()[0][1]
        assert duck.execute(split.format(sales="ext_sales")).fetchall() == expected
    finally:
        duck.execute("USE memory")
    # A CTE named like a remote table means the CTE.
    cte = "WITH ext_sales AS (SELECT * FROM memory.main.copy_sales WHERE amount > 50) " + split.format(sales="ext_sales")
    assert duck.execute(cte).fetchall() == duck.execute(
        "SELECT count(*), sum(s.amount) FROM memory.main.picks p JOIN (SELECT * FROM memory.main.copy_sales WHERE amount > 50) s ON p.id = s.id"
    ).fetchall()
    # A local view that shadows the remote table on the search path is the view.
    duck.execute("CREATE VIEW memory.main.ext_sales AS SELECT * FROM memory.main.copy_sales WHERE amount < 20")
    duck.execute("SET search_path = 'memory.main,cloud.main'")
    try:
        got = duck.execute(split.format(sales="ext_sales")).fetchall()
        assert got == duck.execute(split.format(sales="(SELECT * FROM memory.main.copy_sales WHERE amount < 20)")).fetchall()
    finally:
        duck.execute("RESET search_path")


def test_openduck_explain_shows_the_split_plan_as_rows(server, remote, duck):
    duck.execute(attach_sql(server))
    duck.execute("CREATE TABLE picks AS SELECT range AS id FROM range(10)")
    rows = [r[0] for r in duck.execute(
        "SELECT * FROM openduck_explain('SELECT p.id, sum(s.amount) FROM picks p JOIN cloud.ext_sales s ON p.id = s.id GROUP BY 1')"
    ).fetchall()]
    assert rows[0].startswith("[LOCAL]"), rows
    assert any("Bridge(REMOTE→LOCAL)" in r for r in rows) and any("[REMOTE] Aggregate" in r for r in rows), rows
    assert all(r.lstrip().startswith(("[LOCAL]", "[REMOTE]", "subquery:")) for r in rows), rows
    none = [("not split: the query names no table of an OpenDuck attachment (views are not looked into)",)]
    assert duck.execute("SELECT * FROM openduck_explain('SELECT * FROM picks')").fetchall() == none
    duck.execute("CREATE VIEW v AS SELECT * FROM cloud.ext_sales")
    assert duck.execute("SELECT * FROM openduck_explain('SELECT count(*) FROM picks JOIN v USING (id)')").fetchall() == none
    # A split the planner declines says why.
    why = duck.execute(
        "SELECT * FROM openduck_explain('SELECT count(*) FROM v JOIN cloud.ext_users u USING (id) JOIN picks USING (id)')"
    ).fetchall()
    assert len(why) == 1 and why[0][0].startswith("not split:") and "v is not a table the client resolved" in why[0][0], why
    with pytest.raises(Exception, match="one SELECT"):
        duck.execute("SELECT * FROM openduck_explain('DELETE FROM picks')").fetchall()
