"""Just enough protobuf encoding to build Flight SQL commands for raw pyarrow.flight calls.

pyarrow ships Flight, not the Flight SQL messages, so the tests encode the few they need by hand
(field numbers from the Flight SQL specification, FlightSql.proto).
"""

SQL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def any_message(type_name: str, payload: bytes) -> bytes:
    """google.protobuf.Any wrapping a Flight SQL message."""
    return field_bytes(1, (SQL_PREFIX + type_name).encode()) + field_bytes(2, payload)


def statement_query(sql: str, transaction_id: bytes = b"") -> bytes:
    """CommandStatementQuery { query = 1; transaction_id = 2 } wrapped in Any."""
    payload = field_bytes(1, sql.encode())
    if transaction_id:
        payload += field_bytes(2, transaction_id)
    return any_message("CommandStatementQuery", payload)


def statement_update(sql: str) -> bytes:
    """CommandStatementUpdate { query = 1 } wrapped in Any."""
    return any_message("CommandStatementUpdate", field_bytes(1, sql.encode()))


def get_catalogs() -> bytes:
    return any_message("CommandGetCatalogs", b"")


def get_sql_info(*ids: int) -> bytes:
    return any_message("CommandGetSqlInfo", b"".join(field_varint(1, i) for i in ids))


def cancel_flight_info_request(serialized_flight_info: bytes) -> bytes:
    """CancelFlightInfoRequest { FlightInfo info = 1 } (a Flight, not Flight SQL, message)."""
    return field_bytes(1, serialized_flight_info)


def read_varint(data: bytes, pos: int = 0):
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


# OpenDuck's own messages (proto/openduck/v1/hybrid.proto).
SPLIT_ACTION = "openduck.v1.split"
LOCAL, REMOTE = 1, 2


def relation(reference, location, schema="", table="", catalog="", arrow_schema=b"") -> bytes:
    """openduck.v1.Relation."""
    out = b"".join(field_bytes(1, part.encode()) for part in reference)
    out += field_varint(2, location)
    for number, text in ((3, catalog), (4, schema), (5, table)):
        if text:
            out += field_bytes(number, text.encode())
    if arrow_schema:
        out += field_bytes(6, arrow_schema)
    return out


def split_request(sql: str, relations, settings=None, transaction: bytes = b"") -> bytes:
    """openduck.v1.SplitRequest."""
    out = field_bytes(1, sql.encode()) + b"".join(field_bytes(2, r) for r in relations)
    for key, value in (settings or {}).items():
        out += field_bytes(3, field_bytes(1, key.encode()) + field_bytes(2, value.encode()))
    if transaction:
        out += field_bytes(4, transaction)
    return out


def fragment_command(plan: bytes = b"", sql: str = "", transaction: bytes = b"") -> bytes:
    """openduck.v1.FragmentCommand."""
    out = b""
    if plan:
        out += field_bytes(1, plan)
    if sql:
        out += field_bytes(2, sql.encode())
    if transaction:
        out += field_bytes(3, transaction)
    return out


def decode(data: bytes) -> dict:
    """Any protobuf message as {field number: [values]} (bytes or int)."""
    out, i = {}, 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            n = varint()
            value, i = data[i : i + n], i + n
        else:
            raise ValueError(f"wire type {wire} not handled")
        out.setdefault(number, []).append(value)
    return out


def split_response(data: bytes) -> dict:
    """openduck.v1.SplitResponse as a dict."""
    m = decode(data)
    text = lambda v, n: v.get(n, [b""])[0].decode()  # noqa: E731
    fragments = []
    for raw in m.get(2, []):
        f = decode(raw)
        fragments.append(
            {
                "id": f.get(1, [0])[0],
                "plan": f.get(2, [b""])[0],
                "sql": text(f, 3),
                "column_count": f.get(4, [0])[0],
                "explain": text(f, 6),
                "arrow_schema": f.get(7, [b""])[0],
            }
        )
    return {"local_sql": text(m, 1), "fragments": fragments, "fallback_reason": text(m, 3), "explain": text(m, 4)}
