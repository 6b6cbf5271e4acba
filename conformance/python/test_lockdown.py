"""Remote SQL cannot touch server files, extensions or the settings that guard them.

Every statement here runs on a stock, in-process DuckDB first: it must succeed there, so a refusal
by the server is the lockdown's doing (not DuckDB's own rules, nor a missing network). Then the
server must refuse it, for the reason named."""

import os
from pathlib import Path

import duckdb
import pytest
from adbc_driver_manager import DatabaseError, OperationalError, ProgrammingError

ERRORS = (ProgrammingError, OperationalError, DatabaseError)
GUARD = "not allowed on an OpenDuck server"
LOCKED = "the configuration has been locked"
# DuckDB's own external-access switch (part of the lockdown) refuses writes outside the database.
FILES = "file system operations are disabled by configuration"


def tpch_extension() -> str:
    import duckdb_extension_tpch

    root = Path(duckdb_extension_tpch.__file__).parent
    return str(next(root.glob(f"extensions/v{duckdb.__version__}/tpch.duckdb_extension")))


# (statement, the reason the server gives); {tmp} is a scratch directory, {ext} an official
# (signed) extension file.
REFUSED = [
    ("SELECT * FROM read_csv('/etc/hostname', header = false)", GUARD),
    ("SELECT * FROM read_text('/etc/hostname')", GUARD),
    ("SELECT * FROM read_blob('/etc/hostname')", GUARD),
    ("SELECT * FROM glob('/etc/*')", GUARD),
    ("SELECT * FROM sniff_csv('/etc/hostname')", GUARD),
    ("SELECT count(*) FROM '{tmp}/data.csv'", GUARD),
    ("COPY (SELECT 1 AS x) TO '{tmp}/out.csv'", FILES),
    ("COPY (SELECT 1 AS x) TO '{tmp}/out.parquet' (FORMAT parquet)", FILES),
    ("EXPORT DATABASE '{tmp}/export'", FILES),
    ("ATTACH ':memory:' AS mem", GUARD),
    ("ATTACH '{tmp}/other.duckdb' AS other_file", GUARD),
    ("LOAD '{ext}'", GUARD),
    ("CREATE SECRET s (TYPE http, BEARER_TOKEN 'b')", GUARD),
    ("CALL enable_logging()", GUARD),
    ("PRAGMA enable_profiling", GUARD),
    ("SET memory_limit = '1TB'", LOCKED),
    ("SET threads = 1", LOCKED),
    ("SET autoload_known_extensions = true", LOCKED),
    ("SET enable_progress_bar = true", LOCKED),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lockdown")
    (tmp / "data.csv").write_text("a,b\n1,2\n")
    return tmp


@pytest.mark.parametrize("sql,reason", REFUSED, ids=[s for s, _ in REFUSED])
def test_refused(conn, scratch, sql, reason):
    local_dir = scratch / "local"
    local_dir.mkdir(exist_ok=True)
    (local_dir / "data.csv").write_text("a,b\n1,2\n")
    # Stock DuckDB runs it: nothing but the lockdown stops it on the server.
    stock = duckdb.connect()
    stock.execute(sql.format(tmp=local_dir, ext=tpch_extension())).fetchall()
    stock.close()
    remote_dir = scratch / "remote"
    remote_dir.mkdir(exist_ok=True)
    (remote_dir / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ERRORS) as e:
        cur = conn.cursor()
        cur.execute(sql.format(tmp=remote_dir, ext=tpch_extension()))
        cur.fetchall()
    assert reason in str(e.value), str(e.value)
    assert sorted(os.listdir(remote_dir)) == ["data.csv"], "the server wrote a file"


def test_settings_still_locked(conn):
    cur = conn.cursor()
    cur.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('enable_external_access', 'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions') ORDER BY name"
    )
    assert cur.fetchall() == [
        ("autoinstall_known_extensions", "false"),
        ("autoload_known_extensions", "false"),
        ("enable_external_access", "false"),
        ("lock_configuration", "true"),
    ]
