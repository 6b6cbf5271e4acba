"""The ADBC Flight SQL driver through its DB-API, compared with local DuckDB."""

import pyarrow as pa
import pytest
from adbc_driver_manager import ProgrammingError

from conftest import adbc_connect

QUERIES = [
    "SELECT range AS i, range * 2.5 AS d, 'row ' || range AS s FROM range(10000) ORDER BY i",
    "SELECT i % 7 AS k, count(*) AS n, sum(i) AS total FROM range(100000) t(i) GROUP BY k ORDER BY k",
    "SELECT * FROM (VALUES (1, 'a', NULL), (NULL, NULL, 2.5)) t(a, b, c)",
    "WITH x AS (SELECT unnest([1, 2, 3]) AS v) SELECT v, v * v AS sq FROM x ORDER BY v",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_execute_matches_local(conn, local, sql):
    cur = conn.cursor()
    cur.execute(sql)
    remote = cur.fetch_arrow_table()
    expected = local.sql(sql).to_arrow_table()
    assert remote.schema.names == expected.schema.names
    assert remote.to_pylist() == expected.to_pylist()


def test_ddl_dml_and_row_counts(conn):
    cur = conn.cursor()
    cur.execute("CREATE OR REPLACE TABLE counts (id INTEGER, v VARCHAR)")
    cur.execute("INSERT INTO counts SELECT range, 'x' FROM range(25)")
    assert cur.fetchall() == [(25,)]
    cur.execute("UPDATE counts SET v = 'y' WHERE id < 10")
    assert cur.fetchall() == [(10,)]
    cur.execute("DELETE FROM counts WHERE id >= 20")
    assert cur.fetchall() == [(5,)]
    cur.execute("SELECT v, count(*) FROM counts GROUP BY v ORDER BY v")
    assert cur.fetchall() == [("x", 10), ("y", 10)]


def test_ddl_is_visible_without_fetching(server, conn):
    """A DDL statement takes effect even if the client never reads its result: GetFlightInfo
    alone (raw Flight, no DoGet; ADBC would fetch inside execute) creates the tables."""
    import pyarrow.flight as flight

    import proto
    from conftest import TOKEN

    client = flight.FlightClient(server.uri)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    for sql in (
        "CREATE OR REPLACE TABLE parent_t (id INTEGER PRIMARY KEY)",
        "CREATE OR REPLACE TABLE child_t (id INTEGER, pid INTEGER REFERENCES parent_t(id))",
    ):
        client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query(sql)), options)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM child_t")
    assert cur.fetchall() == [(0,)]


def test_prepared_with_parameters(conn, local):
    cur = conn.cursor()
    cur.execute("CREATE OR REPLACE TABLE people AS SELECT range AS id, 'p' || range AS name, range / 3.0 AS score FROM range(100)")
    cur.execute("SELECT id, name FROM people WHERE id > ? AND name <> ? ORDER BY id LIMIT 5", parameters=(90, "p92"))
    assert cur.fetchall() == [(91, "p91"), (93, "p93"), (94, "p94"), (95, "p95"), (96, "p96")]
    # The same statement again with other values reuses the prepared handle.
    cur.execute("SELECT id, name FROM people WHERE id > ? AND name <> ? ORDER BY id LIMIT 5", parameters=(97, "x"))
    assert cur.fetchall() == [(98, "p98"), (99, "p99")]
    cur.execute("SELECT ?::DATE + 1 AS d, ?::DECIMAL(10,2) * 2 AS m, ? AS s", parameters=("2024-02-28", "1.25", None))
    assert cur.fetch_arrow_table().to_pylist() == local.sql(
        "SELECT '2024-02-28'::DATE + 1 AS d, '1.25'::DECIMAL(10,2) * 2 AS m, NULL AS s"
    ).to_arrow_table().to_pylist()


def test_executemany_inserts_every_row(conn):
    cur = conn.cursor()
    cur.execute("CREATE OR REPLACE TABLE many (a INTEGER, b VARCHAR)")
    cur.executemany("INSERT INTO many VALUES (?, ?)", [(i, f"v{i}") for i in range(50)])
    assert cur.rowcount == 50
    cur.execute("SELECT count(*), sum(a) FROM many")
    assert cur.fetchall() == [(50, sum(range(50)))]


def test_get_objects_and_table_schema(conn):
    cur = conn.cursor()
    cur.execute("CREATE OR REPLACE TABLE objs (id BIGINT, label VARCHAR, amount DECIMAL(12, 3))")
    cur.execute("CREATE OR REPLACE VIEW objs_v AS SELECT id FROM objs")
    objects = conn.adbc_get_objects(depth="all", catalog_filter="mydb").read_all().to_pylist()
    assert [o["catalog_name"] for o in objects] == ["mydb"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert "main" in schemas
    tables = {t["table_name"]: t for t in schemas["main"]["db_schema_tables"]}
    assert tables["objs"]["table_type"] == "TABLE"
    assert tables["objs_v"]["table_type"] == "VIEW"
    assert [c["column_name"] for c in tables["objs"]["table_columns"]] == ["id", "label", "amount"]
    schema = conn.adbc_get_table_schema("objs")
    assert schema == pa.schema([("id", pa.int64()), ("label", pa.string()), ("amount", pa.decimal128(12, 3))])
    with pytest.raises(ProgrammingError):
        conn.adbc_get_table_schema("no_such_table")


def test_table_filters(conn):
    cur = conn.cursor()
    cur.execute("CREATE OR REPLACE TABLE filt_a (x INTEGER)")
    cur.execute("CREATE OR REPLACE TABLE filt_b (x INTEGER)")
    objects = conn.adbc_get_objects(depth="tables", table_name_filter="filt_%").read_all().to_pylist()
    names = sorted(t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
    assert names == ["filt_a", "filt_b"]


def test_ingest_modes(conn):
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS ingested")
    data = pa.table({"a": pa.array([1, 2, 3], pa.int32()), "b": ["x", "y", None]})
    assert cur.adbc_ingest("ingested", data, mode="create") == 3
    with pytest.raises(ProgrammingError, match="already exists"):
        cur.adbc_ingest("ingested", data, mode="create")
    assert cur.adbc_ingest("ingested", data, mode="append") == 3
    assert cur.adbc_ingest("ingested", data, mode="create_append") == 3
    cur.execute("SELECT count(*) FROM ingested")
    assert cur.fetchall() == [(9,)]
    assert cur.adbc_ingest("ingested", data.slice(0, 1), mode="replace") == 1
    cur.execute("SELECT * FROM ingested")
    assert cur.fetch_arrow_table() == data.slice(0, 1)
    with pytest.raises(ProgrammingError, match="does not exist"):
        cur.adbc_ingest("never_created", data, mode="append")


def test_ingest_large_batches_streams(conn):
    cur = conn.cursor()
    n = 1_000_000
    big = pa.table({"id": pa.array(range(n), pa.int64()), "s": pa.array([f"s{i % 1000}" for i in range(n)])})
    assert cur.adbc_ingest("ingested_big", big, mode="replace") == n
    cur.execute("SELECT count(*), sum(id), count(DISTINCT s) FROM ingested_big")
    assert cur.fetchall() == [(n, n * (n - 1) // 2, 1000)]


def test_commit_and_rollback(server):
    setup = adbc_connect(server)
    setup.cursor().execute("CREATE OR REPLACE TABLE txn_t (v INTEGER)")
    setup.close()

    c = adbc_connect(server, autocommit=False)
    other = adbc_connect(server)
    cur = c.cursor()
    cur.execute("INSERT INTO txn_t VALUES (1), (2)")
    # Not visible to another connection before commit.
    ocur = other.cursor()
    ocur.execute("SELECT count(*) FROM txn_t")
    assert ocur.fetchall() == [(0,)]
    c.rollback()
    cur.execute("SELECT count(*) FROM txn_t")
    assert cur.fetchall() == [(0,)]
    cur.execute("INSERT INTO txn_t VALUES (3)")
    cur.execute("CREATE TABLE txn_new (x INTEGER)")
    c.commit()
    ocur.execute("SELECT sum(v) FROM txn_t")
    assert ocur.fetchall() == [(3,)]
    ocur.execute("SELECT count(*) FROM txn_new")
    assert ocur.fetchall() == [(0,)]
    # (The ADBC Go driver sends bulk ingest outside the transaction; ingest inside a transaction
    # is covered by the Rust integration tests, which set the transaction id.)
    c.close()
    other.close()


def test_get_info(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "OpenDuck"
    assert "1.5.5" in info["vendor_version"]


def test_other_database_by_header(server):
    c = adbc_connect(server, database="other")
    cur = c.cursor()
    cur.execute("SELECT current_database(), x FROM other_t")
    assert cur.fetchall() == [("other", 7)]
    c.close()
    names = [o["catalog_name"] for o in adbc_connect(server).adbc_get_objects(depth="catalogs").read_all().to_pylist()]
    assert sorted(names) == ["mydb", "other"]


def test_unknown_database_header(server):
    c = adbc_connect(server, database="nope")
    with pytest.raises(ProgrammingError, match="unknown database 'nope'"):
        c.cursor().execute("SELECT 1")
    c.close()
