"""The `openduck` Python package: openduck.connect() returns DuckDB with the database attached."""

import pytest

import openduck
from conftest import TOKEN, adbc_connect


@pytest.fixture
def table(server):
    c = adbc_connect(server)
    c.cursor().execute("CREATE OR REPLACE TABLE py_client_t AS SELECT range AS id FROM range(10)")
    c.close()


@pytest.mark.parametrize("target", ["mydb", "od:mydb", "openduck:mydb"])
def test_connect_forms(server, table, monkeypatch, target):
    monkeypatch.setenv("OPENDUCK_ENDPOINT", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("OPENDUCK_TOKEN", TOKEN)
    con = openduck.connect(target)
    assert con.execute("SELECT sum(id) FROM cloud.py_client_t").fetchall()[0] == (45,)
    con.close()


def test_explicit_string_and_token(server, table, monkeypatch):
    monkeypatch.delenv("OPENDUCK_TOKEN", raising=False)
    con = openduck.connect(f"openduck:mydb?endpoint=http://127.0.0.1:{server.port}", token=TOKEN, alias="remote")
    assert con.execute("SELECT count(*) FROM remote.py_client_t").fetchall()[0] == (10,)
    con.close()


def test_errors(server, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="not a database name"):
        openduck.connect("postgres://x")
    monkeypatch.setenv("OPENDUCK_EXTENSION_PATH", str(tmp_path / "missing.duckdb_extension"))
    with pytest.raises(openduck.ExtensionNotFound):
        openduck.connect("mydb")
