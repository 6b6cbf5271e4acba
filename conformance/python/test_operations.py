"""Behaviours the README promises that other tests never exercise on their own: sealing by time
and by log size (no CHECKPOINT anywhere), `--plain`, `openduck db drop`, the older CancelQuery
action, and JSON logs."""

import json
import signal
import subprocess
import threading
import time

import duckdb
import pyarrow.flight as flight
import pytest

import proto
from conftest import TOKEN, Server, adbc_connect
from test_layers import BIN, Layout, rows, wait_until

OPTIONS = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])


def snapshot_count(server):
    return rows(server, "SELECT count(*) FROM openduck_snapshots()")[0][0]


def test_a_changed_database_is_sealed_by_the_seal_interval(tmp_path):
    layout = Layout("sqlite-file", tmp_path)
    s = layout.serve(extra=["--seal-interval", "1s", "--seal-log-mib", "1024"])
    try:
        before = snapshot_count(s)
        time.sleep(2.5)
        assert snapshot_count(s) == before, "nothing changed: nothing to seal"
        rows(s, "CREATE TABLE t AS SELECT 1 AS x")
        wait_until(lambda: snapshot_count(s) > before, timeout=10, what="a seal after --seal-interval")
        assert "sealed snapshot" in s.log_path.read_text()
    finally:
        s.stop()


def test_a_growing_log_is_sealed_by_its_size(tmp_path):
    layout = Layout("sqlite-file", tmp_path)
    s = layout.serve(extra=["--seal-interval", "1h", "--seal-log-mib", "1"])
    try:
        rows(s, "CREATE TABLE t (id INTEGER, pad VARCHAR)")
        before = snapshot_count(s)
        with adbc_connect(s) as c, c.cursor() as cur:
            # Many small commits: the log grows past 1 MiB well before the hour is up.
            for i in range(60):
                cur.execute(f"INSERT INTO t SELECT range + {i * 1000}, md5(range::VARCHAR) FROM range(1000)")
        wait_until(lambda: snapshot_count(s) > before, timeout=15, what="a seal once the log passed --seal-log-mib")
    finally:
        s.stop()


def test_plain_serves_the_file_as_it_is(tmp_path):
    layout = Layout("sqlite-file", tmp_path)
    s = layout.serve(extra=["--plain"])
    rows(s, "CREATE TABLE t AS SELECT range AS id FROM range(10)")
    with pytest.raises(Exception, match="layered storage"):
        with adbc_connect(s, **{"adbc.flight.sql.rpc.call_header.x-openduck-snapshot": "1"}) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
    assert s.stop() == 0
    # No layers: the data is in the file itself, and no store was written.
    assert duckdb.connect(str(layout.disk / "mydb.duckdb"), read_only=True).execute("SELECT count(*) FROM t").fetchall() == [(10,)]
    assert not (tmp_path / "durable").exists()


def test_db_drop_forgets_the_database(tmp_path):
    layout = Layout("sqlite-file", tmp_path)
    layout.disk.mkdir(parents=True)
    layout.cli("db", "create", "gone")
    assert "gone" in layout.cli("db", "list").stdout
    layout.cli("db", "drop", "gone")
    assert "gone" not in layout.cli("db", "list").stdout
    missing = layout.cli("db", "drop", "gone", check=False)
    assert missing.returncode != 0 and "gone" in missing.stderr, missing.stderr


def test_the_older_cancel_query_action_cancels(server):
    """ActionCancelQueryRequest (deprecated in Flight SQL, still sent by older clients)."""
    client = flight.FlightClient(server.uri)
    slow = "SELECT count(*) FROM range(1000000000000) a"
    info = client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query(slow)), OPTIONS)
    outcome = []

    def fetch():
        try:
            client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()
            outcome.append("finished")
        except flight.FlightCancelledError:
            outcome.append("cancelled")

    fetcher = threading.Thread(target=fetch)
    fetcher.start()
    wait_until(lambda: server.health()["running_queries"] > 0, timeout=10, what="the query to start")
    body = proto.any_message("ActionCancelQueryRequest", proto.field_bytes(1, info.serialize()))
    result = list(client.do_action(flight.Action("CancelQuery", body), OPTIONS))[0].body.to_pybytes()
    fetcher.join(30)
    assert outcome == ["cancelled"]
    # ActionCancelQueryResult { result = 1 } (CANCEL_RESULT_CANCELLED), wrapped in Any.
    assert proto.field_varint(1, 1) in result, result


def test_json_logs_are_one_object_per_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    assert "--log-format" in subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
    s = Server(data, extra=["--plain", "--log-format", "json"])
    rows(s, "SELECT 42")
    s.stop(signal.SIGTERM)
    lines = [line for line in s.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r.get("fields", {}).get("message") == "query" and "SELECT 42" in r["fields"].get("sql", "") for r in records), records[-5:]
    assert all("timestamp" in r and "level" in r for r in records)
    assert any(r.get("fields", {}).get("message") == "openduck is serving" for r in records)
