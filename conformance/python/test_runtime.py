"""Streaming in bounded memory, concurrency, cancellation, timeouts and shutdown."""

import signal
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import DatabaseError, OperationalError, ProgrammingError

import proto
from conftest import TOKEN, Server, adbc_connect

OPTIONS = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
ERRORS = (ProgrammingError, OperationalError, DatabaseError)
SLOW = "SELECT count(*) FROM range(1000000000000) a"


def wait_running(server, timeout=10):
    """Waits until the server runs at least one query (instead of sleeping and hoping)."""
    deadline = time.time() + timeout
    while server.health()["running_queries"] == 0:
        assert time.time() < deadline, "the query did not start"
        time.sleep(0.02)


def flight_info(client, sql):
    return client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query(sql)), OPTIONS)


def test_large_result_streams_in_bounded_memory(fresh_server):
    """A result far larger than the server's memory growth is streamed batch by batch."""
    server = fresh_server(extra=["--threads", "2"])
    client = flight.FlightClient(server.uri)
    rows = 100_000_000
    info = flight_info(client, f"SELECT range AS id FROM range({rows})")
    reader = client.do_get(info.endpoints[0].ticket, OPTIONS)
    baseline = server.rss_bytes()
    seen = peak = 0
    for chunk in reader:
        seen += chunk.data.num_rows
        if seen % (10 * 2048 * 100) < chunk.data.num_rows:
            peak = max(peak, server.rss_bytes())
    assert seen == rows
    # 100M BIGINTs are 800 MB; the server must not have held them.
    assert peak - baseline < 300 * 1024 * 1024, (baseline, peak)


def test_slow_query_does_not_block_others(server):
    client = flight.FlightClient(server.uri)
    info = flight_info(client, SLOW)
    result = {}

    def run():
        try:
            client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()
        except Exception as e:  # noqa: BLE001 - recorded for the assertion below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    wait_running(server)
    started = time.time()
    c = adbc_connect(server)
    cur = c.cursor()
    for i in range(5):
        cur.execute(f"SELECT {i} + 1")
        assert cur.fetchall() == [(i + 1,)]
    assert time.time() - started < 5
    # Cancel the slow one through the standard CancelFlightInfo action.
    body = proto.cancel_flight_info_request(info.serialize())
    results = list(client.do_action(flight.Action("CancelFlightInfo", body), OPTIONS))
    # CancelFlightInfoResult { status = 1 } -> CANCEL_STATUS_CANCELLED
    assert results[0].body.to_pybytes() == b"\x08\x01"
    t.join(10)
    assert not t.is_alive()
    assert "cancelled" in str(result.get("error", "")).lower()
    c.close()


def test_cancel_before_fetch(server):
    client = flight.FlightClient(server.uri)
    info = flight_info(client, SLOW)
    body = proto.cancel_flight_info_request(info.serialize())
    list(client.do_action(flight.Action("CancelFlightInfo", body), OPTIONS))
    with pytest.raises(flight.FlightCancelledError):
        client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()


def test_adbc_cancel(server):
    c = adbc_connect(server)
    cur = c.cursor()
    timer = threading.Timer(0.5, cur.adbc_cancel)
    timer.start()
    started = time.time()
    with pytest.raises(ERRORS) as e:
        cur.execute(SLOW)
        cur.fetchall()
    assert "CANCELLED" in str(e.value) or "cancelled" in str(e.value).lower(), e.value
    assert time.time() - started < 10
    # The server frees the query.
    deadline = time.time() + 10
    while server.health()["running_queries"] and time.time() < deadline:
        time.sleep(0.1)
    assert server.health()["running_queries"] == 0
    c.close()


def test_query_timeout(fresh_server):
    server = fresh_server(extra=["--query-timeout", "1s"])
    c = adbc_connect(server)
    cur = c.cursor()
    started = time.time()
    with pytest.raises(ERRORS, match="timeout"):
        cur.execute(SLOW)
        cur.fetchall()
    assert time.time() - started < 10
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    c.close()


def test_many_concurrent_clients(server):
    errors = []

    def worker(i):
        try:
            c = adbc_connect(server)
            cur = c.cursor()
            for j in range(5):
                cur.execute(f"SELECT sum(range) FROM range({1000 * (i + 1)})")
                assert cur.fetchall() == [(sum(range(1000 * (i + 1))),)]
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a client did not finish within 60 s"
    assert not errors


def test_graceful_shutdown_checkpoints(fresh_server):
    import duckdb

    server = fresh_server()
    c = adbc_connect(server)
    cur = c.cursor()
    cur.execute("CREATE TABLE kept AS SELECT range AS i FROM range(1000)")
    c.close()
    assert server.stop(signal.SIGTERM) == 0
    # The file is complete: no WAL left behind, and DuckDB reads it.
    assert not (server.data_dir / "mydb.duckdb.wal").exists()
    local = duckdb.connect(str(server.data_dir / "mydb.duckdb"), read_only=True)
    assert local.sql("SELECT count(*) FROM kept").fetchone() == (1000,)
    local.close()


def test_shutdown_interrupts_running_queries(fresh_server):
    server = fresh_server(extra=["--shutdown-grace", "1s"])
    client = flight.FlightClient(server.uri)
    info = flight_info(client, SLOW)
    outcome = {}

    def run():
        try:
            client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()
            outcome["ok"] = True
        except Exception as e:  # noqa: BLE001
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    wait_running(server)
    started = time.time()
    assert server.stop(signal.SIGTERM) == 0
    assert time.time() - started < 10
    t.join(10)
    # The stream ended with an error that says why, not with a short result.
    assert "error" in outcome, outcome
    assert isinstance(outcome["error"], (flight.FlightUnavailableError, flight.FlightCancelledError)), repr(outcome["error"])


def test_acknowledged_writes_survive_kill(fresh_server):
    server = fresh_server()
    c = adbc_connect(server)
    cur = c.cursor()
    cur.execute("CREATE TABLE durable (i INTEGER)")
    cur.execute("INSERT INTO durable SELECT range FROM range(500)")
    cur.adbc_ingest("durable", pa.table({"i": pa.array([1000, 1001], pa.int32())}), mode="append")
    c.close()
    server.stop(signal.SIGKILL)
    restarted = Server(server.data_dir)
    try:
        c = adbc_connect(restarted)
        cur = c.cursor()
        cur.execute("SELECT count(*), max(i) FROM durable")
        assert cur.fetchall() == [(502, 1001)]
        c.close()
    finally:
        restarted.stop()


def test_memory_limit_is_resource_exhausted(fresh_server):
    server = fresh_server(extra=["--memory-limit", "200MB"])
    client = flight.FlightClient(server.uri)
    info = flight_info(client, "SELECT current_setting('memory_limit') AS m")
    # One database: 7/8 of the server's budget (the rest is the server's own buffers).
    assert client.do_get(info.endpoints[0].ticket, OPTIONS).read_all().column("m")[0].as_py() == "166.8 MiB"
    # A single list of 300M integers cannot spill and does not fit.
    info = flight_info(client, "SELECT list(range) FROM range(300000000)")
    with pytest.raises(pa.ArrowException, match="resource exhausted.*Out of Memory Error"):
        client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()
    assert server.health()["status"] == "ok"


def test_an_idle_transaction_is_rolled_back(fresh_server):
    server = fresh_server(extra=["--transaction-idle-timeout", "1s"])
    with adbc_connect(server) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE idle_t (x INTEGER)")
    c = adbc_connect(server, autocommit=False)
    cur = c.cursor()
    cur.execute("INSERT INTO idle_t VALUES (1)")
    time.sleep(1.5)  # idle past the timeout (the condition itself: the time that passes)
    with pytest.raises(ERRORS) as e:
        c.commit()
    assert "unknown transaction" in str(e.value), e.value
    try:
        c.close()
    except Exception:  # noqa: BLE001 - the driver may complain about the transaction it lost
        pass
    with adbc_connect(server) as c2, c2.cursor() as cur2:
        cur2.execute("SELECT count(*) FROM idle_t")
        assert cur2.fetchall() == [(0,)]
