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
