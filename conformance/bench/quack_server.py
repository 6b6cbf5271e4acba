"""Serve one DuckDB database file over DuckDB's own Quack protocol until terminated.

bench.py starts this as a separate process so that the Quack server, like OpenDuck,
runs outside the client's process. It prints READY once the server listens and
stops cleanly on SIGTERM or SIGINT.

The database is opened read-only unless --read-write is given (bench.py's insert mode
serves a scratch database that way, so that clients can write to it through ATTACH).

Usage: python quack_server.py --db FILE --port PORT --token TOKEN [--read-write] --load EXT [--load EXT ...]
"""

import argparse
import signal
import sys
import time

import duckdb


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database file, opened read-only unless --read-write")
    parser.add_argument("--read-write", action="store_true", help="open the database read-write")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--load", action="append", default=[], help="extension file to LOAD (repeatable)")
    args = parser.parse_args()

    con = duckdb.connect(args.db, read_only=not args.read_write)
    # The server needs httpfs too: without it, the first request fails with
    # "DuckDB currently has a read-only crypto module loaded".
    for ext in args.load:
        con.execute(f"LOAD {sql_string(ext)}")
    uri = f"quack:localhost:{args.port}"
    con.execute(f"CALL quack_serve({sql_string(uri)}, token := {sql_string(args.token)})").fetchall()
    print("READY", uri, flush=True)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            time.sleep(3600)
    finally:
        con.execute(f"CALL quack_stop({sql_string(uri)})").fetchall()
        con.close()


if __name__ == "__main__":
    sys.exit(main())
