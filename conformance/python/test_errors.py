"""Bad input gets a clear error with the right status, never a crash."""

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import DatabaseError, OperationalError, ProgrammingError

import proto
from conftest import TOKEN, adbc_connect

OPTIONS = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])


def info(client, sql):
    return client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query(sql)), OPTIONS)


# pyarrow raises ArrowInvalid for INVALID_ARGUMENT, ArrowKeyError for NOT_FOUND.


def test_syntax_error_is_invalid_argument(server):
    client = flight.FlightClient(server.uri)
    with pytest.raises(pa.ArrowInvalid, match="Parser Error"):
        info(client, "SELEC 1")


def test_status_codes(server):
    """gRPC status codes, read through the ADBC driver's error text."""
    c = adbc_connect(server)
    cur = c.cursor()
    cases = [
        ("SELEC 1", "INVALID_ARGUMENT", "Parser Error"),
        ("SELECT * FROM no_such_table", "NOT_FOUND", "does not exist"),
        ("SELECT no_such_column FROM range(1)", "INVALID_ARGUMENT", "Binder Error"),
        ("SELECT 'abc'::INTEGER", "INVALID_ARGUMENT", "Conversion Error"),
        ("SELECT error('custom failure')", "INVALID_ARGUMENT", "custom failure"),
    ]
    for sql, code, text in cases:
        with pytest.raises((ProgrammingError, OperationalError, DatabaseError)) as e:
            cur.execute(sql)
            cur.fetchall()
        assert code in str(e.value) and text in str(e.value), (sql, str(e.value))
    c.close()


def test_constraint_violation(conn):
    cur = conn.cursor()
    cur.execute("CREATE OR REPLACE TABLE pk_t (id INTEGER PRIMARY KEY)")
    cur.execute("INSERT INTO pk_t VALUES (1)")
    with pytest.raises((ProgrammingError, OperationalError, DatabaseError), match="Constraint Error"):
        cur.execute("INSERT INTO pk_t VALUES (1)")


def test_multiple_statements_are_refused_cleanly(conn):
    with pytest.raises((ProgrammingError, OperationalError, DatabaseError)) as e:
        cur = conn.cursor()
        cur.execute("SELECT 1; SELECT 2")
        cur.fetchall()
    assert "INVALID_ARGUMENT" in str(e.value) and "multiple statements" in str(e.value), e.value


@pytest.mark.parametrize(
    "command",
    [
        b"",
        b"\x00\x01garbage",
        proto.any_message("CommandStatementQuery", b"\xff\xff\xff"),
        proto.any_message("NoSuchCommand", b""),
        proto.field_bytes(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + proto.field_bytes(2, b"\x0a\x05ab"),
        proto.statement_query("SELECT 1", transaction_id=b"not-a-uuid"),
        proto.statement_query("SELECT 1", transaction_id=b"0123456789abcdef"),
    ],
)
def test_garbage_commands_never_crash(server, command):
    client = flight.FlightClient(server.uri)
    # arrow-flight's dispatcher reports an undecodable command payload as INTERNAL ("Unable to
    # decode Any value"); everything else is INVALID_ARGUMENT or NOT_FOUND.
    with pytest.raises((pa.ArrowInvalid, pa.ArrowKeyError, flight.FlightInternalError)):
        client.get_flight_info(flight.FlightDescriptor.for_command(command), OPTIONS)
    assert server.proc.poll() is None
    assert server.health()["status"] == "ok"


@pytest.mark.parametrize("ticket", [b"", b"junk", proto.any_message("TicketStatementQuery", proto.field_bytes(1, b"{not json"))])
def test_garbage_tickets_never_crash(server, ticket):
    client = flight.FlightClient(server.uri)
    with pytest.raises(pa.ArrowInvalid):
        client.do_get(flight.Ticket(ticket), OPTIONS).read_all()
    assert server.health()["status"] == "ok"


def test_garbage_actions_never_crash(server):
    client = flight.FlightClient(server.uri)
    for action in ["CreatePreparedStatement", "ClosePreparedStatement", "BeginTransaction", "EndTransaction", "CancelFlightInfo", "NoSuchAction"]:
        with pytest.raises(pa.ArrowInvalid):
            list(client.do_action(flight.Action(action, b"\x0a\x03abc\xff"), OPTIONS))
    assert server.health()["status"] == "ok"


def test_unknown_prepared_handle(server):
    client = flight.FlightClient(server.uri)
    cmd = proto.any_message("CommandPreparedStatementQuery", proto.field_bytes(1, b"0123456789abcdef"))
    with pytest.raises(pa.ArrowKeyError, match="unknown prepared statement"):
        client.get_flight_info(flight.FlightDescriptor.for_command(cmd), OPTIONS)


def test_oversized_request_is_resource_exhausted(fresh_server):
    server = fresh_server(extra=["--max-message-mib", "1"])
    c = adbc_connect(server)
    big = pa.table({"s": ["x" * 1024] * 4096})  # ~4 MiB in one batch
    with pytest.raises((ProgrammingError, OperationalError, DatabaseError), match="(?i)RESOURCE_EXHAUSTED|larger than max|too large"):
        c.cursor().adbc_ingest("too_big", big, mode="create")
    # The server is fine and the table was not created.
    cur = c.cursor()
    cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'too_big'")
    assert cur.fetchall() == [(0,)]
    c.close()
