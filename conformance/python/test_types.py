"""Every DuckDB type maps to Arrow and back: query results match local DuckDB exactly, and
ingesting a result recreates the same values."""

import pyarrow as pa
import pytest

TYPES = {
    "tinyint": "(-128)::TINYINT",
    "smallint": "32767::SMALLINT",
    "integer": "(-2147483648)::INTEGER",
    "bigint": "9223372036854775807::BIGINT",
    "hugeint": "170141183460469231731687303715884105727::HUGEINT",
    "hugeint_small": "-12345678901234567890::HUGEINT",
    "uhugeint": "12345678901234567890123::UHUGEINT",
    "utinyint": "255::UTINYINT",
    "usmallint": "65535::USMALLINT",
    "uinteger": "4294967295::UINTEGER",
    "ubigint": "18446744073709551615::UBIGINT",
    "float": "1.5::FLOAT",
    "double": "-2.25e300::DOUBLE",
    "decimal_4": "12.34::DECIMAL(4,2)",
    "decimal_18": "1234567890123.12345::DECIMAL(18,5)",
    "decimal_38": "12345678901234567890123456789.123456789::DECIMAL(38,9)",
    "boolean": "true",
    "varchar": "'héllo, wörld'",
    "blob": "'\\xAA\\xBB'::BLOB",
    "date": "'2024-02-29'::DATE",
    "time": "'13:45:59.123456'::TIME",
    "timetz": "'13:45:59+02'::TIMETZ",
    "timestamp": "'2024-02-29 13:45:59.123456'::TIMESTAMP",
    "timestamp_s": "'2024-02-29 13:45:59'::TIMESTAMP_S",
    "timestamp_ms": "'2024-02-29 13:45:59.123'::TIMESTAMP_MS",
    "timestamp_ns": "'2024-02-29 13:45:59.123456789'::TIMESTAMP_NS",
    "timestamptz": "'2024-02-29 13:45:59.123456+00'::TIMESTAMPTZ",
    "interval": "INTERVAL '1 year 2 months 3 days 04:05:06.789'",
    "uuid": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID",
    "enum": "'b'::ENUM('a', 'b', 'c')",
    "list": "[1, 2, NULL, 4]",
    "nested_list": "[[1], [], NULL, [2, 3]]",
    "array": "[1.5, 2.5, 3.5]::DOUBLE[3]",
    "struct": "{'a': 1, 'b': 'x', 'c': [true, false]}",
    "map": "MAP {'k1': 10, 'k2': NULL}",
    "union": "union_value(num := 2)::UNION(num INTEGER, str VARCHAR)",
    "bit": "'101010'::BIT",
    "varint": "12345678901234567890123456789::VARINT",
    "json_like": "'{\"a\": 1}'",
}


def assert_same(remote: pa.Table, expected: pa.Table):
    """Same names, types and values; dictionaries (DuckDB ENUM) arrive expanded to their values."""
    assert remote.schema.names == expected.schema.names
    for name in expected.schema.names:
        want = expected.column(name)
        if pa.types.is_dictionary(want.type):
            want = want.cast(want.type.value_type)
        got = remote.column(name)
        assert got.type == want.type, name
        assert got.equals(want), name


def _select(with_nulls: bool) -> str:
    parts = [f"{expr} AS {name}" for name, expr in TYPES.items()]
    select = "SELECT " + ", ".join(parts)
    if with_nulls:
        nulls = ", ".join(f"NULL::{_type_of(expr)} AS {name}" for name, expr in TYPES.items())
        return f"{select} UNION ALL SELECT {nulls}"
    return select


def _type_of(expr: str) -> str:
    import duckdb

    return duckdb.sql(f"SELECT typeof({expr})").fetchone()[0]


@pytest.mark.parametrize("name", list(TYPES))
def test_each_type_matches_local(conn, local, name):
    sql = f"SELECT {TYPES[name]} AS v UNION ALL SELECT NULL"
    cur = conn.cursor()
    cur.execute(sql)
    remote = cur.fetch_arrow_table()
    expected = local.sql(sql).to_arrow_table()
    assert_same(remote, expected)


def test_all_types_in_one_result_with_nulls(conn, local):
    sql = _select(with_nulls=True)
    cur = conn.cursor()
    cur.execute(sql)
    remote = cur.fetch_arrow_table()
    expected = local.sql(sql).to_arrow_table()
    assert_same(remote, expected)


INGESTIBLE = [n for n in TYPES if n not in ("timetz", "union", "bit", "varint", "enum", "hugeint", "uhugeint")]


@pytest.mark.parametrize("name", INGESTIBLE)
def test_ingest_round_trip(conn, local, name):
    """A result read through Flight SQL, ingested back, reads back the same."""
    sql = f"SELECT {TYPES[name]} AS v UNION ALL SELECT NULL"
    cur = conn.cursor()
    cur.execute(sql)
    original = cur.fetch_arrow_table()
    table = f"rt_{name}"
    cur.adbc_ingest(table, original, mode="replace")
    cur.execute(f"SELECT * FROM {table}")
    back = cur.fetch_arrow_table()
    assert back.column("v").equals(original.column("v"))


def test_ingest_arrow_only_types(conn):
    """Arrow types a client may send that DuckDB stores in its own types."""
    data = pa.table(
        {
            "u8": pa.array([1, None], pa.uint8()),
            "large_s": pa.array(["a", None], pa.large_string()),
            "dict": pa.array(["x", "y"]).dictionary_encode(),
            "ts_tz": pa.array([1_700_000_000_000_000, None], pa.timestamp("us", tz="UTC")),
            "t32": pa.array([3600, None], pa.time32("s")),
            "fixed": pa.array([b"ab", b"cd"], pa.binary(2)),
            "lst": pa.array([[1, 2], None], pa.list_(pa.int64())),
            "strct": pa.array([{"a": 1}, None], pa.struct([("a", pa.int32())])),
        }
    )
    cur = conn.cursor()
    cur.adbc_ingest("arrow_only", data, mode="replace")
    cur.execute("SELECT u8, large_s, dict, epoch_us(ts_tz), t32::VARCHAR, fixed, lst, strct FROM arrow_only")
    assert cur.fetchall() == [
        (1, "a", "x", 1_700_000_000_000_000, "01:00:00", b"ab", [1, 2], {"a": 1}),
        (None, None, "y", None, None, b"cd", None, None),
    ]


def test_unsupported_arrow_type_is_a_clear_error(conn):
    from adbc_driver_manager import ProgrammingError

    data = pa.table({"d": pa.array([1], pa.decimal256(60, 2))})
    with pytest.raises(ProgrammingError, match="column 'd'"):
        conn.cursor().adbc_ingest("bad_types", data, mode="replace")
