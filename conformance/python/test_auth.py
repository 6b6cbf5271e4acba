"""Authentication and per-token grants."""

import base64

import pyarrow.flight as flight
import pytest
from adbc_driver_manager import DatabaseError, OperationalError, ProgrammingError

import proto
from conftest import READER, SCOPED, TOKEN, adbc_connect


def raw_client(server):
    return flight.FlightClient(server.uri)


def bearer(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def test_wrong_token_is_unauthenticated(server):
    c = adbc_connect(server, token="wrong-token")
    with pytest.raises((OperationalError, ProgrammingError, DatabaseError), match="(?i)unauthenticated.*invalid token"):
        c.cursor().execute("SELECT 1")


def test_missing_token_is_unauthenticated(server):
    client = raw_client(server)
    with pytest.raises(flight.FlightUnauthenticatedError, match="missing 'authorization"):
        client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT 1")))


def test_basic_handshake_returns_bearer_token(server):
    client = raw_client(server)
    header = client.authenticate_basic_token("any-user", TOKEN)
    assert header == (b"authorization", f"Bearer {TOKEN}".encode())
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT 41 + 1 AS x")), options)
    assert client.do_get(info.endpoints[0].ticket, options).read_all().to_pydict() == {"x": [42]}
    with pytest.raises(flight.FlightUnauthenticatedError):
        raw_client(server).authenticate_basic_token("any-user", "not-the-token")


def test_basic_auth_through_adbc(server):
    import adbc_driver_flightsql.dbapi as flightsql

    c = flightsql.connect(server.uri, db_kwargs={"username": "someone", "password": TOKEN}, autocommit=True)
    cur = c.cursor()
    cur.execute("SELECT 'ok'")
    assert cur.fetchall() == [("ok",)]
    c.close()


def test_scoped_token_cannot_read_or_list_other_databases(server):
    c = adbc_connect(server, token=SCOPED, database="other")
    cur = c.cursor()
    cur.execute("SELECT x FROM other_t")
    assert cur.fetchall() == [(7,)]
    names = [o["catalog_name"] for o in c.adbc_get_objects(depth="catalogs").read_all().to_pylist()]
    assert names == ["other"]
    c.close()
    # Without the header it would use the default database, which it may not.
    c = adbc_connect(server, token=SCOPED)
    with pytest.raises(ProgrammingError, match="not allowed to use database 'mydb'"):
        c.cursor().execute("SELECT 1")
    with pytest.raises(ProgrammingError, match="not allowed"):
        c.adbc_get_objects(depth="all", catalog_filter="mydb").read_all()
    c.close()


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE ro_new (x INTEGER)",
        "INSERT INTO ro_target VALUES (1)",
        "UPDATE ro_target SET x = 2",
        "DELETE FROM ro_target",
        "DROP TABLE ro_target",
        "COMMIT",
    ],
)
def test_read_only_token_cannot_write(server, sql):
    admin = adbc_connect(server)
    admin.cursor().execute("CREATE OR REPLACE TABLE ro_target AS SELECT 1 AS x")
    admin.close()
    c = adbc_connect(server, token=READER)
    cur = c.cursor()
    cur.execute("SELECT x FROM ro_target")
    assert cur.fetchall() == [(1,)]
    with pytest.raises((ProgrammingError, OperationalError, DatabaseError), match="(?i)read-only|read only"):
        cur.execute(sql)
    c.close()
    check = adbc_connect(server)
    ccur = check.cursor()
    ccur.execute("SELECT count(*), sum(x) FROM ro_target")
    assert ccur.fetchall() == [(1, 1)]
    check.close()


def test_read_only_token_cannot_ingest(server):
    import pyarrow as pa

    c = adbc_connect(server, token=READER)
    with pytest.raises((ProgrammingError, OperationalError, DatabaseError), match="read-only"):
        c.cursor().adbc_ingest("ro_ingest", pa.table({"a": [1]}), mode="create")
    c.close()


def test_read_only_transactions(server):
    c = adbc_connect(server, token=READER, autocommit=False)
    cur = c.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    with pytest.raises((ProgrammingError, OperationalError, DatabaseError), match="(?i)read-only"):
        cur.execute("CREATE TABLE ro_txn (x INTEGER)")
    c.rollback()
    c.close()


def test_sql_info_reports_read_only_per_token(server):
    info = adbc_connect(server, token=READER).adbc_get_info()
    assert info["vendor_name"] == "OpenDuck"
    client = raw_client(server)
    for token, expected in [(TOKEN, False), (READER, True)]:
        # SqlInfo 3 = FLIGHT_SQL_SERVER_READ_ONLY
        fi = client.get_flight_info(flight.FlightDescriptor.for_command(proto.get_sql_info(3)), bearer(token))
        table = client.do_get(fi.endpoints[0].ticket, bearer(token)).read_all()
        value = table.column("value")[0].as_py()
        assert value is expected, token


def test_header_value_without_scheme_is_rejected(server):
    client = raw_client(server)
    options = flight.FlightCallOptions(headers=[(b"authorization", base64.b64encode(TOKEN.encode()))])
    with pytest.raises(flight.FlightUnauthenticatedError, match="must be 'Bearer"):
        client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT 1")), options)
