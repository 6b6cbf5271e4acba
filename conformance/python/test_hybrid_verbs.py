"""Hybrid execution's two custom verbs, driven by pyarrow.flight directly: the split action and the
DoExchange that runs one fragment (proto/openduck/v1/hybrid.proto). The client's part is played
by a local DuckDB, so each answer is checked against the same query run all-local."""

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import proto
from conftest import READER, TOKEN, adbc_connect


def options(token=TOKEN, database="mydb"):
    return flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {token}".encode()), (b"x-openduck-database", database.encode())]
    )


@pytest.fixture(scope="module")
def shop(server):
    """A remote `hv_sales` table on the server and a local `products` table in a local DuckDB
    (which also keeps a copy of the sales, to compute the all-local answer)."""
    import duckdb

    with adbc_connect(server) as c:
        cur = c.cursor()
        cur.execute("DROP TABLE IF EXISTS hv_sales")
        cur.execute(
            "CREATE TABLE hv_sales AS SELECT i % 1000 AS product_id, (i % 97)::DOUBLE AS amount, "
            "'r' || (i % 5) AS region, repeat('x', 50) AS note FROM range(200000) t(i)"
        )
        cur.close()
    local = duckdb.connect()
    local.execute("CREATE TABLE products AS SELECT i AS id, 'c' || (i % 7) AS category FROM range(1000) t(i)")
    local.execute(
        "CREATE TABLE hv_sales AS SELECT i % 1000 AS product_id, (i % 97)::DOUBLE AS amount, "
        "'r' || (i % 5) AS region, repeat('x', 50) AS note FROM range(200000) t(i)"
    )
    yield local
    local.close()


def relations(local):
    products_schema = local.execute("SELECT * FROM products LIMIT 0").to_arrow_table().schema
    return [
        proto.relation(
            ["products"], proto.LOCAL, catalog="memory", schema="main", table="products",
            arrow_schema=products_schema.serialize().to_pybytes(),
        ),
        proto.relation(["cloud", "hv_sales"], proto.REMOTE, schema="main", table="hv_sales"),
    ]


QUERY = (
    "SELECT p.category, sum(s.amount) AS revenue, count(*) AS n "
    "FROM products p JOIN cloud.hv_sales s ON p.id = s.product_id WHERE s.region <> 'r3' "
    "GROUP BY p.category ORDER BY revenue DESC"
)


def split(server, sql, rels, token=TOKEN, settings=None):
    client = flight.FlightClient(server.uri)
    action = flight.Action(proto.SPLIT_ACTION, proto.split_request(sql, rels, settings))
    results = list(client.do_action(action, options(token)))
    assert len(results) == 1
    return proto.split_response(results[0].body.to_pybytes())


def run_fragment(server, command: bytes, token=TOKEN) -> pa.Table:
    client = flight.FlightClient(server.uri)
    writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(command), options(token))
    writer.done_writing()
    table = reader.read_all()
    writer.close()
    return table


def test_the_split_action_is_listed(server):
    client = flight.FlightClient(server.uri)
    actions = {a.type: a.description for a in client.list_actions(options())}
    assert proto.SPLIT_ACTION in actions
    assert "SplitRequest" in actions[proto.SPLIT_ACTION]


def test_a_split_query_gives_the_all_local_answer(server, shop):
    response = split(server, QUERY, relations(shop))
    assert response["fallback_reason"] == "", response
    assert len(response["fragments"]) == 1
    fragment = response["fragments"][0]
    # The server reduces the sales to one row per product before they cross the wire.
    assert "GROUP BY" in fragment["sql"] and "note" not in fragment["sql"], fragment["sql"]
    assert "[REMOTE] Aggregate" in response["explain"] and "Bridge(REMOTE→LOCAL)" in response["explain"]
    announced = pa.ipc.read_schema(pa.py_buffer(fragment["arrow_schema"]))
    # Run it by plan (datafusion-proto), as the extension does.
    rows = run_fragment(server, proto.fragment_command(plan=fragment["plan"]))
    assert rows.schema.names == announced.names
    # One row per product that has sales outside r3.
    assert rows.num_rows == shop.execute("SELECT count(DISTINCT product_id) FROM hv_sales WHERE region <> 'r3'").fetchone()[0]
    shop.register("__openduck_fragment_0", rows)
    got = shop.execute(response["local_sql"]).fetchall()
    expected = shop.execute(QUERY.replace("cloud.hv_sales", "hv_sales")).fetchall()
    assert got == expected
    shop.unregister("__openduck_fragment_0")


def test_a_fragment_runs_by_sql_and_under_a_read_only_token(server, shop):
    response = split(server, QUERY, relations(shop), token=READER)
    fragment = response["fragments"][0]
    by_sql = run_fragment(server, proto.fragment_command(sql=fragment["sql"]), token=READER)
    by_plan = run_fragment(server, proto.fragment_command(plan=fragment["plan"]), token=READER)
    assert by_sql.sort_by("c0").equals(by_plan.sort_by("c0"))


def test_fragments_only_read(server):
    for token in (TOKEN, READER):
        for sql in ("DELETE FROM hv_sales", "CREATE TABLE hv_other AS SELECT 1"):
            with pytest.raises((flight.FlightError, pa.ArrowInvalid), match="a fragment is a query|read-only"):
                run_fragment(server, proto.fragment_command(sql=sql), token=token)
    with adbc_connect(server) as c:
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM hv_sales")
        assert cur.fetchone()[0] == 200000
        cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'hv_other'")
        assert cur.fetchone()[0] == 0
        cur.close()


def test_bad_requests_name_what_is_wrong(server, shop):
    client = flight.FlightClient(server.uri)
    with pytest.raises(pa.ArrowInvalid, match="malformed SplitRequest"):
        list(client.do_action(flight.Action(proto.SPLIT_ACTION, b"\xff\xff\xff"), options()))
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.do_action(flight.Action(proto.SPLIT_ACTION, proto.split_request(QUERY, relations(shop))), options("wrong")))
    with pytest.raises(pa.ArrowInvalid, match="malformed fragment plan"):
        run_fragment(server, proto.fragment_command(plan=b"\x0a\x03abc"))
    with pytest.raises(pa.ArrowInvalid, match="not an OpenDuck FragmentCommand"):
        run_fragment(server, b"\xff\xff")
    bad_schema = [proto.relation(["products"], proto.LOCAL, catalog="memory", schema="main", table="products", arrow_schema=b"nope")]
    with pytest.raises(pa.ArrowInvalid, match="malformed Arrow schema"):
        split(server, "SELECT * FROM products", bad_schema)


def test_what_cannot_be_split_falls_back_with_a_reason(server, shop):
    rels = relations(shop)
    cases = {
        "SELECT * FROM products": "no remote table",
        "SELECT * FROM cloud.no_such_table": "not a table the client resolved",
        "SELECT * FROM read_parquet('x.parquet') JOIN cloud.hv_sales ON true": "table function",
    }
    for sql, why in cases.items():
        response = split(server, sql, rels)
        assert why in response["fallback_reason"], (sql, response)
        assert response["fragments"] == []
    missing = [proto.relation(["cloud", "gone"], proto.REMOTE, schema="main", table="gone")]
    assert "cannot read main.gone" in split(server, "SELECT * FROM cloud.gone", missing)["fallback_reason"]
    # A session setting that changes what SQL means, set differently in the client.
    response = split(server, QUERY, rels, settings={"integer_division": "true"})
    assert "integer_division differs" in response["fallback_reason"]
    assert split(server, QUERY, rels, settings={"integer_division": "false"})["fallback_reason"] == ""
    # Even when the server agrees, an ORDER BY default the planner does not write falls back.
    for setting, value in (("default_order", "DESC"), ("default_null_order", "NULLS_FIRST")):
        with adbc_connect(server) as c:
            cur = c.cursor()
            cur.execute(f"SELECT current_setting('{setting}')")
            server_default = cur.fetchone()[0]
            cur.close()
        assert split(server, QUERY, rels, settings={setting: server_default})["fallback_reason"] == ""
        assert setting in split(server, QUERY, rels, settings={setting: value})["fallback_reason"]
