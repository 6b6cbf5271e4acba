"""What remote SQL must never do to a server, tried as an attacker would: with a read-only token
and with an admin token, against a layered database. Each class of attack is tried with several
statements of its kind (plain SQL, views, macros, replacement scans, prepared statements, EXPLAIN
ANALYZE); every one is refused with an error that names why, and afterwards the database's files
are intact, the server is alive, and a restart (and a loss of the local disk) brings back every
acknowledged row.

How "remote SQL reaches no server file" holds in general: the server checks every plan a client
connection is about to run against an allow-list of operators and table functions
(flight-server/cpp/guard.cpp), so anything not listed, including what DuckDB adds later, is
refused."""

import hashlib
import signal
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import DatabaseError, Error, OperationalError, ProgrammingError

import proto
from conftest import Server, adbc_connect
from services import wipe

ADMIN = "hardening-admin"
READER = "hardening-reader"
TOKENS = [{"token": ADMIN}, {"token": READER, "read_only": True, "databases": ["mydb"]}]
ERRORS = (ProgrammingError, OperationalError, DatabaseError, Error)


class Layered:
    """A layered server on a local store (the stores survive the loss of `disk`)."""

    def __init__(self, tmp_path):
        self.disk = tmp_path / "disk"
        durable = tmp_path / "durable"
        self.args = ["--store", f"file://{durable / 'store'}", "--metadata", f"sqlite://{durable / 'meta.sqlite'}"]
        self.server = None

    def serve(self, extra=()):
        self.disk.mkdir(parents=True, exist_ok=True)
        self.server = Server(self.disk, tokens=TOKENS, extra=[*self.args, *extra])
        return self.server

    @property
    def db(self):
        return self.disk / "mydb.duckdb"


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    layout = Layered(tmp_path_factory.mktemp("hardening"))
    s = layout.serve()
    with adbc_connect(s, token=ADMIN) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t AS SELECT range AS id, 'row ' || range AS s FROM range(1000)")
        cur.execute("CHECKPOINT")
    yield layout
    if layout.server.proc.poll() is None:
        layout.server.stop(signal.SIGKILL)


def run(server, sql, token=READER, params=None):
    with adbc_connect(server, token=token) as c, c.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


# The guard's refusal, or DuckDB's own lockdown refusing a file outside the database (DuckDB
# allows the database's own files and temp directory: only the guard refuses those).
REFUSALS = (
    "not allowed on an OpenDuck server",
    "file system operations are disabled by configuration",
    "the configuration has been locked",
)


def refused(server, sql, token=READER, why=REFUSALS, params=None):
    with pytest.raises(ERRORS) as e:
        run(server, sql, token, params)
    reasons = (why,) if isinstance(why, str) else why
    assert any(r in str(e.value) for r in reasons), f"{sql}: {e.value}"
    return str(e.value)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def intact(layout):
    """The database answers as before."""
    assert run(layout.server, "SELECT count(*), sum(id) FROM t", token=ADMIN) == [(1000, sum(range(1000)))]
    assert layout.server.health()["status"] == "ok"


# Statements that read or write the database's own files (or its temp directory, or any other
# file); {db} is the live database file, {dir} the data directory. Each is tried with both tokens.
FILE_ATTACKS = [
    "COPY (SELECT 'x') TO '{db}' (FORMAT csv, USE_TMP_FILE false)",
    "COPY (SELECT 'x') TO '{db}.wal' (FORMAT csv)",
    "COPY (SELECT 42 AS x) TO '{db}.wal.checkpoint' (FORMAT parquet)",
    "COPY (SELECT 'x') TO '{db}.tmp/dropped.csv'",
    "COPY t TO '{dir}/t.json'",
    "COPY t FROM '{db}'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{db}'",
    "SELECT * FROM read_blob('{db}')",
    "SELECT content FROM read_text('{db}.wal')",
    "SELECT * FROM read_csv('{db}', header = false, all_varchar = true)",
    "SELECT * FROM read_json_objects('{db}')",
    "SELECT * FROM read_parquet('{db}')",
    "SELECT * FROM parquet_metadata('{db}')",
    "SELECT * FROM sniff_csv('{db}')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM read_duckdb('{db}')",
    "SELECT count(*) FROM '{db}.tmp/spilled.csv'",
    "SELECT count(*) FROM '{dir}/anything.csv'",
    "SELECT * FROM query('SELECT * FROM read_blob(''{db}'')')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM read_blob(''{db}'')'))",
    "SELECT * FROM range(3) r, LATERAL (SELECT * FROM read_text('{db}'))",
    "SELECT * FROM read_blob(['{db}', '{db}.wal'])",
    "SELECT * FROM t WHERE id IN (SELECT size FROM read_blob('{db}'))",
    "EXPORT DATABASE '{dir}/export'",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_secrets()",
]


@pytest.mark.parametrize("token", [READER, ADMIN], ids=["reader", "admin"])
@pytest.mark.parametrize("sql", FILE_ATTACKS)
def test_remote_sql_reaches_no_server_file(layered, token, sql):
    before = digest(layered.db)
    refused(layered.server, sql.format(db=layered.db, dir=layered.disk), token=token)
    assert digest(layered.db) == before
    assert not (layered.disk / "export").exists()
    assert not (layered.disk / "t.json").exists()
    assert not list(layered.disk.glob("mydb.duckdb.tmp/*.csv"))


def test_views_macros_and_parameters_cannot_smuggle_a_file_read(layered):
    s = layered.server
    path = str(layered.db)
    # A writer may define them (DuckDB binds a view's query without running it) ...
    try:
        run(s, f"CREATE OR REPLACE VIEW leak AS SELECT * FROM read_blob('{path}')", token=ADMIN)
    except ERRORS as e:
        assert "not allowed on an OpenDuck server" in str(e)
    run(s, "CREATE OR REPLACE MACRO peek(p) AS TABLE SELECT * FROM read_text(p)", token=ADMIN)
    run(s, "CREATE OR REPLACE MACRO blob(p) AS TABLE SELECT * FROM read_blob(p)", token=ADMIN)
    # ... but nobody can run them.
    for token in (READER, ADMIN):
        if run(s, "SELECT count(*) FROM duckdb_views() WHERE view_name = 'leak'", token=ADMIN) == [(1,)]:
            refused(s, "SELECT * FROM leak", token=token)
        refused(s, f"SELECT * FROM peek('{path}')", token=token)
        refused(s, f"SELECT * FROM blob('{path}.wal')", token=token)
        refused(s, "SELECT * FROM read_blob(?)", token=token, params=(path,))
        refused(s, "SELECT * FROM peek(?)", token=token, params=(path,))
    intact(layered)


LOGGING_AND_PROFILING = [
    "CALL enable_logging(storage = 'file', storage_path = '/tmp/openduck-hardening-log')",
    "CALL enable_logging('QueryLog')",
    "CALL disable_logging()",
    "CALL truncate_duckdb_logs()",
    "SELECT * FROM duckdb_logs",
    "SELECT * FROM duckdb_logs_parsed('QueryLog')",
    "SELECT * FROM duckdb_log_contexts()",
    "CALL enable_profiling()",
    "CALL disable_profiling()",
    "PRAGMA enable_profiling",
    "PRAGMA enable_profiling = 'json'",
    "PRAGMA disable_optimizer",
    "PRAGMA enable_checkpoint_on_shutdown",
    "PRAGMA enable_verification",
]


@pytest.mark.parametrize("token", [READER, ADMIN], ids=["reader", "admin"])
@pytest.mark.parametrize("sql", LOGGING_AND_PROFILING)
def test_logging_and_profiling_are_not_for_clients(layered, token, sql):
    refused(layered.server, sql, token=token)
    intact(layered)


@pytest.mark.parametrize(
    "sql",
    ["SET profiling_output = '{db}'", "SET enable_profiling = 'json'", "SET log_query_path = '{db}'", "SET enable_logging = true"],
)
def test_settings_that_write_files_stay_locked(layered, sql):
    refused(layered.server, sql.format(db=layered.db), token=ADMIN, why="locked")
    intact(layered)


CHECKPOINT_TRICKS = [
    "CALL force_checkpoint('system')",
    "FORCE CHECKPOINT system",
    "CHECKPOINT system",
    "CALL checkpoint()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM force_checkpoint('mydb')",
    "PRAGMA force_checkpoint",
    "CHECKPOINT; SELECT 1",
]


@pytest.mark.parametrize("sql", CHECKPOINT_TRICKS)
def test_checkpoints_only_through_the_sealer(layered, sql):
    why = "not allowed on an OpenDuck server" if ";" not in sql else "multiple statements"
    refused(layered.server, sql, token=ADMIN, why=why)
    # The database is not invalidated: writes and reads go on.
    run(layered.server, "CREATE OR REPLACE TABLE after_checkpoint AS SELECT 1 AS x", token=ADMIN)
    intact(layered)


def test_plain_checkpoint_seals_and_is_refused_to_readers_and_inside_transactions(layered):
    s = layered.server
    assert run(s, "CHECKPOINT", token=ADMIN) is not None
    assert run(s, "checkpoint mydb;", token=ADMIN) is not None
    refused(s, "CHECKPOINT", token=READER, why="read-only")
    with adbc_connect(s, token=ADMIN, autocommit=False) as c, c.cursor() as cur:
        cur.execute("INSERT INTO t SELECT 5000 + range, 'txn' FROM range(10)")
        with pytest.raises(ERRORS) as e:
            cur.execute("CHECKPOINT")
        assert "CHECKPOINT inside a transaction" in str(e.value)
        c.rollback()
    intact(layered)


def test_checkpoint_inside_a_transaction_loses_no_acknowledged_row(tmp_path):
    """The reported attack: CHECKPOINT in a Flight SQL transaction, then kill -9 and disk loss."""
    layout = Layered(tmp_path)
    s = layout.serve()
    with adbc_connect(s, token=ADMIN) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE big AS SELECT range AS id FROM range(1)")
    with adbc_connect(s, token=ADMIN, autocommit=False) as c, c.cursor() as cur:
        cur.execute("INSERT INTO big SELECT range + 1 FROM range(50000)")
        with pytest.raises(ERRORS):
            cur.execute("CHECKPOINT")
        c.commit()
    with adbc_connect(s, token=ADMIN) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM big")
        assert cur.fetchall() == [(50001,)]
    s.stop(signal.SIGKILL)
    wipe(layout.disk)
    s = layout.serve()
    try:
        assert run(s, "SELECT count(*), sum(id) FROM big", token=ADMIN) == [(50001, sum(range(50001)))]
    finally:
        s.stop()


def test_deep_recursion_does_not_take_the_server_down(layered):
    s = layered.server
    ctes = "WITH c0 AS (SELECT 1 AS x)" + "".join(f", c{i} AS (SELECT x + 1 AS x FROM c{i - 1})" for i in range(1, 400))
    assert run(s, ctes + " SELECT x FROM c399") == [(400,)]
    # Constant-folded while planning (on the request's thread) ...
    assert run(s, "SELECT length(json_structure(repeat('[', 25000) || repeat(']', 25000)))") == [(50006,)]
    # ... and built at run time, evaluated on DuckDB's worker threads.
    deep = "SELECT length(json_structure(repeat('[', n) || repeat(']', n))) FROM (VALUES (400000)) v(n)"
    assert run(s, deep) == [(800006,)]
    # Deeper than any stack should hold: every JSON function refuses it, the server stays up.
    for function in ("json_structure(j)", "json_contains(j, '1')", "json_merge_patch(j, j)", "json_keys(j)", "json_transform(j, '\"JSON\"')"):
        sql = f"SELECT length({function}::VARCHAR) FROM (SELECT repeat('[', n) || repeat(']', n) AS j FROM (VALUES (3000000)) v(n))"
        refused(s, sql, why="nested deeper than")
    refused(s, "SELECT * FROM json_tree('[[1]]')")
    # Far deeper than any stack: refused by the parser, or answered; the server stays up.
    try:
        run(s, "SELECT " + "(" * 200000 + "1" + ")" * 200000)
    except ERRORS as e:
        assert "Parser" in str(e) or "depth" in str(e), e
    intact(layered)


def test_many_attacks_at_once_leave_the_server_serving(layered):
    s = layered.server
    failures = []

    def attack(sql):
        try:
            refused(s, sql.format(db=layered.db, dir=layered.disk))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(f"{sql}: {e}")

    threads = [threading.Thread(target=attack, args=(sql,)) for sql in FILE_ATTACKS[:8] + LOGGING_AND_PROFILING[:6]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "an attack hung"
    assert not failures, failures
    intact(layered)


# --- Server memory and handles ---------------------------------------------------------------

def options(token):
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def test_calls_that_only_read_are_not_run_ahead_and_held(layered):
    """`CALL range(…)` used to run when described and sit in memory until fetched."""
    s = layered.server
    client = flight.FlightClient(s.uri)
    baseline = s.rss_bytes()
    infos = [
        client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("CALL range(50000000)")), options(READER))
        for _ in range(4)
    ]
    time.sleep(0.5)
    assert s.rss_bytes() - baseline < 200 << 20, "described results were run and held in memory"
    # Fetched, it streams; and never fetched, it costs nothing.
    rows = sum(chunk.data.num_rows for chunk in client.do_get(infos[0].endpoints[0].ticket, options(READER)))
    assert rows == 50_000_000
    intact(layered)


def test_a_writing_statement_with_a_huge_result_is_stopped_and_rolled_back(layered):
    s = layered.server
    run(s, "CREATE OR REPLACE TABLE wide AS SELECT range AS id, repeat('x', 200) AS s FROM range(200000)", token=ADMIN)
    message = refused(s, "UPDATE wide SET s = s || 'y' RETURNING *", token=ADMIN, why="MiB")
    assert "rolled back" in message, message
    assert run(s, "SELECT count(*) FROM wide WHERE s LIKE '%y'", token=ADMIN) == [(0,)]
    # A small RETURNING still works.
    assert sorted(run(s, "UPDATE wide SET s = 'z' WHERE id < 3 RETURNING id", token=ADMIN)) == [(0,), (1,), (2,)]
    assert run(s, "SELECT count(*) FROM wide WHERE s = 'z'", token=ADMIN) == [(3,)]


def test_bound_parameters_are_capped(layered):
    s = layered.server
    with adbc_connect(s, token=READER) as c, c.cursor() as cur:
        cur.adbc_prepare("SELECT count(*) FROM (SELECT ? AS v)")
        # ~40 MB of parameters, in messages of 4 MB.
        batch = pa.record_batch({"v": pa.array(["x" * 1000] * 4_000)})
        big = pa.Table.from_batches([batch] * 10)
        with pytest.raises(ERRORS) as e:
            cur.execute("SELECT count(*) FROM (SELECT ? AS v)", big)
            cur.fetchall()
        assert "bound parameters exceed" in str(e.value), e.value
    intact(layered)


def test_handles_belong_to_the_token_that_made_them(layered):
    """Prepared statements, transactions and queries of one token are unknown to another."""
    s = layered.server
    client = flight.FlightClient(s.uri)
    # A prepared statement made by the admin token, looked up by the reader token.
    body = proto.field_bytes(1, b"SELECT 41 + 1")
    action = flight.Action("CreatePreparedStatement", proto.any_message("ActionCreatePreparedStatementRequest", body))
    result = list(client.do_action(action, options(ADMIN)))[0].body.to_pybytes()
    handle = prepared_handle(result)
    command = proto.any_message("CommandPreparedStatementQuery", proto.field_bytes(1, handle))
    with pytest.raises(KeyError, match="unknown prepared statement"):
        client.get_flight_info(flight.FlightDescriptor.for_command(command), options(READER))
    close = proto.any_message("ActionClosePreparedStatementRequest", proto.field_bytes(1, handle))
    list(client.do_action(flight.Action("ClosePreparedStatement", close), options(READER)))
    # The reader's close did not close the admin's statement.
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), options(ADMIN))
    assert client.do_get(info.endpoints[0].ticket, options(ADMIN)).read_all().column(0).to_pylist() == [42]
    list(client.do_action(flight.Action("ClosePreparedStatement", close), options(ADMIN)))
    with pytest.raises(KeyError, match="unknown prepared statement"):
        client.get_flight_info(flight.FlightDescriptor.for_command(command), options(ADMIN))
    # A transaction begun by the admin token cannot be used by the reader token.
    begin = flight.Action("BeginTransaction", proto.any_message("ActionBeginTransactionRequest", b""))
    txn = proto_bytes_field(proto_bytes_field(list(client.do_action(begin, options(ADMIN)))[0].body.to_pybytes(), 2), 1)
    with pytest.raises(KeyError, match="unknown transaction"):
        client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT 1", txn)), options(READER))
    # A running query cannot be cancelled by another token.
    info = client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT count(*) FROM range(3000000000) a, range(2) b")), options(ADMIN))
    outcome = []

    def fetch():
        try:
            client.do_get(info.endpoints[0].ticket, options(ADMIN)).read_all()
            outcome.append("finished")
        except flight.FlightCancelledError:
            outcome.append("cancelled")

    fetcher = threading.Thread(target=fetch)
    fetcher.start()
    deadline = time.time() + 10
    while s.health()["running_queries"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    cancel = flight.Action("CancelFlightInfo", proto.cancel_flight_info_request(info.serialize()))
    list(client.do_action(cancel, options(READER)))
    time.sleep(0.5)
    assert s.health()["running_queries"] >= 1 and not outcome, "the reader's cancel stopped the admin's query"
    list(client.do_action(cancel, options(ADMIN)))
    fetcher.join(30)
    assert outcome == ["cancelled"]


def test_unfetched_results_of_writes_make_room_for_new_ones(layered):
    """Clients need not fetch a write's result: held results are bounded, the oldest go first."""
    s = layered.server
    client = flight.FlightClient(s.uri)
    infos = []
    for i in range(100):
        sql = f"CREATE OR REPLACE TABLE unfetched_{i % 3} AS SELECT {i} AS x"
        infos.append(client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query(sql)), options(ADMIN)))
    # The newest result is still there; the oldest was dropped to bound the memory held.
    assert client.do_get(infos[-1].endpoints[0].ticket, options(ADMIN)).read_all().num_rows == 1
    with pytest.raises(KeyError, match="already fetched"):
        client.do_get(infos[0].endpoints[0].ticket, options(ADMIN)).read_all()
    assert run(s, "SELECT x FROM unfetched_0", token=ADMIN) == [(99,)]


def prepared_handle(action_result: bytes) -> bytes:
    """The handle (field 1) of an ActionCreatePreparedStatementResult wrapped in Any."""
    any_value = proto_bytes_field(action_result, number=2)
    return proto_bytes_field(any_value, number=1)


def proto_bytes_field(message: bytes, number: int = 1) -> bytes:
    """The first length-delimited field `number` of a protobuf message (an Any's value is field 2)."""
    pos = 0
    while pos < len(message):
        key, pos = proto.read_varint(message, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = proto.read_varint(message, pos)
            if field == number:
                return message[pos : pos + length]
            pos += length
        elif wire == 0:
            _, pos = proto.read_varint(message, pos)
        else:
            raise ValueError(f"unexpected wire type {wire}")
    raise ValueError(f"no field {number}")


def test_one_database_that_cannot_open_does_not_stop_the_others(tmp_path):
    layout = Layered(tmp_path)
    layout.disk.mkdir(parents=True)
    (layout.disk / "broken.duckdb").write_bytes(b"not a database " * 2000)
    s = layout.serve()
    try:
        assert run(s, "SELECT 42", token=ADMIN) == [(42,)]
        health = s.health(token=ADMIN)
        assert health["status"] == "degraded", health
        assert "mydb" in health["databases"] and "broken" in health["unavailable"], health
        # Without a token: no names, no reasons.
        anonymous = s.health(token=None)
        assert "databases" not in anonymous and "unavailable" not in anonymous, anonymous
        assert anonymous["unavailable_count"] == 1 and anonymous["database_count"] == 1
        # A token scoped to mydb is not told about broken.
        assert s.health(token=READER)["unavailable"] == {}
        with adbc_connect(s, token=ADMIN, database="broken") as c, c.cursor() as cur:
            with pytest.raises(ERRORS) as e:
                cur.execute("SELECT 1")
        assert "broken" in str(e.value) and "not served" in str(e.value), e.value
    finally:
        s.stop()


# --- Limits: time, statement size, memory, disk -----------------------------------------------


def test_the_timeout_covers_planning_too(tmp_path):
    """Constant folding cannot be interrupted; the client still gets the timeout on time."""
    layout = Layered(tmp_path)
    s = layout.serve(extra=["--query-timeout", "2s"])
    try:
        slow_fold = "SELECT levenshtein(repeat('ab', 30000), repeat('ba', 30000))"
        started = time.time()
        message = refused(s, slow_fold, token=ADMIN, why="timeout")
        assert time.time() - started < 8, f"the timeout came after {time.time() - started:.1f} s: {message}"
        # A statement that changes data runs when described: the timeout stops it there too,
        # and nothing of it is left.
        started = time.time()
        refused(s, "CREATE TABLE slow_write AS SELECT sum(hash(range)) AS n FROM range(5000000000)", token=ADMIN, why="timeout")
        assert time.time() - started < 8, f"the write's timeout came after {time.time() - started:.1f} s"
        refused(s, "SELECT * FROM slow_write", token=ADMIN, why="does not exist")
        # The server goes on serving.
        assert run(s, "SELECT 1", token=READER) == [(1,)]
    finally:
        s.stop(signal.SIGKILL)


def test_statements_over_the_size_limit_are_refused(layered):
    huge = "SELECT count(*) FROM range(10) WHERE range IN (" + ",".join(str(i) for i in range(400_000)) + ")"
    assert len(huge) > 2 << 20
    refused(layered.server, huge, token=READER, why="over this server's limit")
    intact(layered)


def test_memory_budget_is_shared_and_disk_limits_are_set(tmp_path):
    layout = Layered(tmp_path)
    layout.disk.mkdir(parents=True)
    import duckdb

    duckdb.connect(str(layout.disk / "second.duckdb")).execute("CREATE TABLE x AS SELECT 1 AS a").close()
    s = layout.serve(extra=["--memory-limit", "800MiB", "--max-temp-size", "1GiB", "--max-database-size", "8MiB"])
    try:
        # Two databases share 7/8 of 800 MiB.
        for db in ("mydb", "second"):
            with adbc_connect(s, token=ADMIN, database=db) as c, c.cursor() as cur:
                cur.execute("SELECT current_setting('memory_limit'), current_setting('max_temp_directory_size')")
                assert cur.fetchall() == [("350.0 MiB", "1.0 GiB")]
        # Past its size limit a database refuses to grow, but DELETE and DROP still run.
        run(s, "CREATE TABLE filler AS SELECT range AS id, md5(range::VARCHAR) || md5((-range)::VARCHAR) AS s FROM range(400000)", token=ADMIN)
        run(s, "CHECKPOINT", token=ADMIN)
        message = refused(s, "INSERT INTO filler VALUES (1, 'one more')", token=ADMIN, why="--max-database-size")
        assert "delete or drop" in message
        refused(s, "CREATE TABLE more (a INTEGER)", token=ADMIN, why="--max-database-size")
        run(s, "DELETE FROM filler WHERE id < 10", token=ADMIN)
        run(s, "DROP TABLE filler", token=ADMIN)
        run(s, "CHECKPOINT", token=ADMIN)
        run(s, "CREATE TABLE more AS SELECT 1 AS a", token=ADMIN)
    finally:
        s.stop(signal.SIGKILL)


def test_a_view_that_no_longer_binds_does_not_break_listing_tables(layered):
    s = layered.server
    run(s, "CREATE OR REPLACE TABLE gone (x INTEGER)", token=ADMIN)
    run(s, "CREATE OR REPLACE VIEW orphan AS SELECT x FROM gone", token=ADMIN)
    run(s, "DROP TABLE gone", token=ADMIN)
    for token in (READER, ADMIN):
        with adbc_connect(s, token=token) as c:
            objects = c.adbc_get_objects(depth="all", catalog_filter="mydb").read_all().to_pylist()
        tables = {t["table_name"]: t for schema in objects[0]["catalog_db_schemas"] for t in schema["db_schema_tables"]}
        assert "orphan" in tables, sorted(tables)
        assert [col["column_name"] for col in tables["t"]["table_columns"]] == ["id", "s"]
    run(s, "DROP VIEW orphan", token=ADMIN)


def test_no_server_path_reaches_sql(layered):
    """DuckDB shows its files' paths to SQL; the server's are relative to its data directory."""
    s = layered.server
    disk = str(layered.disk.resolve())
    settings = run(s, "SELECT name, value FROM duckdb_settings() WHERE value LIKE '%/%'")
    leaked = [(n, v) for n, v in settings if v.startswith("/") or disk in v or "/root" in v]
    assert not leaked, leaked
    for (path,) in run(s, "SELECT path FROM duckdb_databases() WHERE path IS NOT NULL"):
        assert not path.startswith("/") and disk not in path, path
    assert not run(s, "SELECT current_setting('temp_directory')")[0][0].startswith("/")
    refused(s, "SELECT current_setting('allowed_paths')", why="not shown on an OpenDuck server")
    assert run(s, "SELECT value FROM duckdb_settings() WHERE name = 'allowed_directories'") == [("(hidden)",)]
    # An error about a database file names it relatively too.
    message = refused(s, "SELECT * FROM read_text('mydb.duckdb')", token=ADMIN)
    assert disk not in message, message


# Keep this test last in the file: it restarts the module's server and adds a row.
def test_after_all_attacks_a_restart_and_disk_loss_keep_every_row(layered):
    """Runs last in this module: nothing above poisoned the sealed snapshots."""
    s = layered.server
    run(s, "INSERT INTO t VALUES (1000, 'last')", token=ADMIN)
    s.stop(signal.SIGKILL)
    s = layered.serve()
    assert run(s, "SELECT count(*) FROM t", token=ADMIN) == [(1001,)]
    s.stop()
    wipe(layered.disk)
    s = layered.serve()
    assert run(s, "SELECT count(*), max(id) FROM t", token=ADMIN) == [(1001, 1000)]
