"""Remote SQL cannot touch server files, extensions or the settings that guard them."""

import os

import pytest
from adbc_driver_manager import DatabaseError, OperationalError, ProgrammingError

ERRORS = (ProgrammingError, OperationalError, DatabaseError)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('/tmp/anything.parquet')",
        "COPY (SELECT 1) TO '/tmp/openduck-lockdown-probe.csv'",
        "EXPORT DATABASE '/tmp/openduck-lockdown-export'",
        "ATTACH '/tmp/openduck-lockdown-probe.duckdb' AS other_file",
        "ATTACH ':memory:' AS mem",
        "INSTALL httpfs",
        "LOAD httpfs",
        "LOAD '/tmp/evil.duckdb_extension'",
        "SET enable_external_access = true",
        "SET autoinstall_known_extensions = true",
        "SET autoload_known_extensions = true",
        "SET allow_unsigned_extensions = true",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET memory_limit = '1TB'",
        "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
    ],
)
def test_refused(conn, sql):
    with pytest.raises(ERRORS) as e:
        cur = conn.cursor()
        cur.execute(sql)
        cur.fetchall()
    message = str(e.value)
    assert any(
        word in message
        for word in ("disabled", "locked", "Permission", "not allowed", "Cannot", "does not exist", "not supported")
    ), message


def test_no_file_was_written():
    assert not os.path.exists("/tmp/openduck-lockdown-probe.csv")
    assert not os.path.exists("/tmp/openduck-lockdown-probe.duckdb")
    assert not os.path.exists("/tmp/openduck-lockdown-export/load.sql")


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
