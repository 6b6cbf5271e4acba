"""Hybrid plans benchmark: queries over local and remote tables, split between a local DuckDB
(with the OpenDuck extension) and `openduck serve`, against the same query with hybrid plans off
(remote scans with pushed filters) and all-local DuckDB. Prints markdown tables.

  join   local `products` (10k rows) ⋈ remote `sales` (--rows, default 10M) grouped by category:
         wall time and bytes the server sent, hybrid vs off vs all-local, and the bytes of pulling
         the two columns the query reads whole (the reference the issue's "2%" is measured to)
  tpch   TPC-H (--sf, default 1) with lineitem and orders remote, the rest local: per query time
         and bytes, hybrid vs off, and whether the answers match all-local

Bytes are counted by the server (`result_bytes_sent` in /health: Arrow IPC bytes of every
result it sent). Every timing is the median of --runs runs after one warm-up run.

Usage: conformance/bench/hybrid.sh [--rows N] [--sf F] [--runs R] [--only join,tpch]
"""

import argparse
import decimal
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).parent))
from bench import TOKEN, attach_openduck, log, openduck_server, pick_binary, pick_extension  # noqa: E402


def sent(port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())["result_bytes_sent"]


def timed(con, sql: str, runs: int):
    """(median seconds, rows of the last run) after one warm-up run."""
    con.execute(sql).fetchall()
    times, rows = [], None
    for _ in range(runs):
        start = time.perf_counter()
        rows = con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def bytes_of(con, port: int, sql: str) -> int:
    before = sent(port)
    con.execute(sql).fetchall()
    return sent(port) - before


def mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def normalized(rows):
    def value(v):
        return round(float(v), 6) if isinstance(v, (float, decimal.Decimal)) else v

    return [tuple(value(v) for v in row) for row in rows]


JOIN = (
    "SELECT p.category, sum(s.amount) AS revenue, count(*) AS n "
    "FROM products p JOIN {sales} s ON p.id = s.product_id GROUP BY p.category ORDER BY revenue DESC"
)


def bench_join(binary, extension, rows: int, runs: int, logs: Path) -> str:
    data = Path(tempfile.mkdtemp(prefix="hybrid-join-"))
    sales = (
        f"SELECT i % 20000 AS product_id, (i % 997) / 10.0 AS amount, 'r' || (i % 50) AS region, "
        f"i AS seq FROM range({rows}) t(i)"
    )
    products = "SELECT i AS id, 'category ' || (i % 40) AS category, i * 1.5 AS price FROM range(10000) t(i)"
    local = duckdb.connect()
    local.execute(f"CREATE TABLE products AS {products}")
    local.execute(f"CREATE TABLE sales AS {sales}")
    t_local, expected = timed(local, JOIN.format(sales="sales"), runs)
    local.close()
    with openduck_server(binary, data, logs, "hybrid-join") as server:
        con = attach_openduck(extension, server.port)
        log(f"  creating {rows} sales rows on the server")
        import adbc_driver_flightsql.dbapi as flightsql

        with flightsql.connect(
            f"grpc://127.0.0.1:{server.port}",
            db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"},
            autocommit=True,
        ) as adbc:
            with adbc.cursor() as cur:
                cur.execute(f"CREATE TABLE sales AS {sales}")
        con.execute(f"CREATE TABLE products AS {products}")
        query = JOIN.format(sales="cloud.sales")
        con.execute("SET openduck_hybrid = 'auto'")
        t_hybrid, got = timed(con, query, runs)
        b_hybrid = bytes_of(con, server.port, query)
        con.execute("SET openduck_hybrid = 'off'")
        t_off, got_off = timed(con, query, runs)
        b_off = bytes_of(con, server.port, query)
        b_pull = bytes_of(con, server.port, "SELECT product_id, amount FROM cloud.sales")
        con.close()
    same = normalized(got) == normalized(expected) and normalized(got_off) == normalized(expected)
    return "\n".join(
        [
            f"### local products (10k) ⋈ remote sales ({rows:,}) grouped by category",
            "",
            "| mode | wall time | vs all-local | bytes sent by the server | vs pulling the 2 columns |",
            "|---|---|---|---|---|",
            f"| all-local DuckDB | {t_local:.3f} s | 1.00× | — | — |",
            f"| hybrid (`openduck_hybrid = 'auto'`) | {t_hybrid:.3f} s | {t_hybrid / t_local:.2f}× | {mb(b_hybrid)} | {100 * b_hybrid / b_pull:.2f}% |",
            f"| hybrid off (remote scan + pushed filters) | {t_off:.3f} s | {t_off / t_local:.2f}× | {mb(b_off)} | {100 * b_off / b_pull:.2f}% |",
            f"| pull `product_id, amount` whole | — | — | {mb(b_pull)} | 100% |",
            "",
            f"Answers equal to all-local: {'yes' if same else 'NO'}.",
        ]
    )


def tpch_extension() -> str:
    import duckdb_extension_tpch

    return str(next(Path(duckdb_extension_tpch.__file__).parent.rglob("tpch.duckdb_extension")))


def bench_tpch(binary, extension, sf: float, runs: int, logs: Path) -> str:
    data = Path(tempfile.mkdtemp(prefix="hybrid-tpch-"))
    remote = {"lineitem", "orders"}
    with openduck_server(binary, data, logs, "hybrid-tpch") as server:
        con = attach_openduck(extension, server.port)
        con.execute(f"LOAD '{tpch_extension()}'")
        log(f"  generating TPC-H sf {sf} and loading lineitem, orders into the server")
        con.execute(f"CALL dbgen(sf={sf})")
        queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
        expected = {nr: normalized(con.execute(q).fetchall()) for nr, q in queries}
        for t in sorted(remote):
            con.execute(f"CREATE TABLE cloud.main.{t} AS SELECT * FROM memory.main.{t}")
        con.execute("CREATE SCHEMA memory.mix")
        for t in ["customer", "part", "partsupp", "supplier", "nation", "region"]:
            con.execute(f"CREATE TABLE memory.mix.{t} AS SELECT * FROM memory.main.{t}")
        con.execute("SET search_path = 'memory.mix,cloud.main'")
        lines = [
            f"### TPC-H sf {sf}, lineitem and orders remote, the other six tables local",
            "",
            "| query | hybrid time | hybrid bytes | off time | off bytes | split? | answers |",
            "|---|---|---|---|---|---|---|",
        ]
        totals = [0.0, 0, 0.0, 0]
        equal = 0
        for nr, sql in queries:
            con.execute("SET openduck_hybrid = 'auto'")
            plan = "\n".join(r[1] for r in con.execute("EXPLAIN " + sql).fetchall())
            split = "REMOTE→LOCAL" in plan
            t_h, got = timed(con, sql, runs)
            b_h = bytes_of(con, server.port, sql)
            con.execute("SET openduck_hybrid = 'off'")
            t_o, _ = timed(con, sql, runs)
            b_o = bytes_of(con, server.port, sql)
            ok = normalized(got) == expected[nr]
            equal += ok
            for i, v in enumerate((t_h, b_h, t_o, b_o)):
                totals[i] += v
            lines.append(
                f"| q{nr:02d} | {t_h:.3f} s | {mb(b_h)} | {t_o:.3f} s | {mb(b_o)} | {'yes' if split else 'no'} | {'equal' if ok else 'DIFFERENT'} |"
            )
        lines.append(
            f"| **all 22** | {totals[0]:.2f} s | {mb(totals[1])} | {totals[2]:.2f} s | {mb(totals[3])} | | {equal}/22 equal |"
        )
        con.close()
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sf", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="join,tpch")
    args = parser.parse_args()
    binary, binary_desc = pick_binary()
    extension, extension_desc = pick_extension()
    logs = Path(tempfile.mkdtemp(prefix="hybrid-logs-"))
    print(f"OpenDuck server: {binary_desc}\nExtension: {extension_desc}\nDuckDB {duckdb.__version__}\n")
    for part in args.only.split(","):
        log(f"running {part}")
        print(bench_join(binary, extension, args.rows, args.runs, logs) if part == "join" else bench_tpch(binary, extension, args.sf, args.runs, logs))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
