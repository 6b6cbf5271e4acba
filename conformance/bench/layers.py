"""OpenDuck layered-storage benchmark: commit cost, snapshot reads, single-row write throughput.

  commit    a database of about --db-mib MiB on layered storage (a directory store, SQLite
            metadata); then about --change-mib MiB of new rows are committed and sealed. Reports
            the bytes shipped for the commit (write-ahead log pieces) and for the seal (the
            layer), and the seal's time, from the server's own log; the target is bytes
            proportional to the change, not to the database.
  snapshot  the first query of an old snapshot (cold: the snapshot is materialised from the
            object store and opened) and the next ones (warm), against the same query on the head
  inserts   single-row INSERT transactions (autocommit, one row each) per second with 1 and 8
            concurrent clients for --seconds each: OpenDuck on layered storage (every commit
            made durable in the stores before it is acknowledged), OpenDuck with --plain (local
            disk only), and DuckDB's Quack protocol (a read-write Quack server, the client
            ATTACHes it)

Client and server share this machine's cores; numbers are best of --runs. Run it through
layers.sh, which uses the project's Python environment.
"""

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (shared helpers: servers, Quack, logging)

TOKEN = bench.TOKEN


@contextmanager
def server(binary: str, data: Path, logs: Path, name: str, extra=()):
    """`openduck serve` for database `bench`, logging JSON (seal events are read back); shutdown
    seals, which may take long for a large database."""
    with bench.openduck_server(binary, data, logs, name, extra=extra, stop_timeout=600) as s:
        yield s.port, s.log_path


def events(log_path: Path, message: str) -> list:
    out = []
    for line in log_path.read_text().splitlines():
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if fields.get("message") == message:
            out.append(fields)
    return out


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def connect(port: int, snapshot=None):
    import adbc_driver_flightsql.dbapi as flightsql

    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}
    if snapshot is not None:
        kwargs["adbc.flight.sql.rpc.call_header.x-openduck-snapshot"] = str(snapshot)
    return flightsql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=kwargs, autocommit=True)


def run(cur, sql):
    cur.execute(sql)
    return cur.fetchall()


def bench_commit_and_snapshots(binary, root, logs, db_mib, change_mib, runs, fuse_heads=False):
    data = root / "commit"
    db_rows_per_mib = 38_000  # rows of (BIGINT, 48 hex chars) per MiB of database file, measured
    change_rows_per_mib = 16_000  # random strings compress less: rows per MiB of change
    results = {}
    extra = ["--seal-interval", "1h", "--seal-log-mib", "100000"] + (["--fuse-heads"] if fuse_heads else [])
    newest_file = "SELECT file_bytes FROM openduck_snapshots() ORDER BY snapshot_id DESC LIMIT 1"
    with server(binary, data, logs, "commit-fuse" if fuse_heads else "commit", extra=extra) as (port, log_path):
        with connect(port) as c, c.cursor() as cur:
            bench.log(f"building a ~{db_mib} MiB database")
            run(cur, f"CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) || md5((range * 7)::VARCHAR)[:16] AS s "
                     f"FROM range({db_mib * db_rows_per_mib})")
            run(cur, "CHECKPOINT")
            file_len = run(cur, newest_file)[0][0]
            snapshot_before = run(cur, "SELECT max(snapshot_id) FROM openduck_snapshots()")[0][0]
            best = None
            for i in range(runs):
                seals_before = len(events(log_path, "sealed snapshot"))
                wal_before = dir_bytes(data / "store" / "bench" / "wal") if (data / "store" / "bench" / "wal").exists() else 0
                n = change_mib * change_rows_per_mib
                start = time.perf_counter()
                run(cur, f"INSERT INTO big SELECT range + {10**12 * (i + 1)}, md5(random()::VARCHAR) || md5(random()::VARCHAR)[:16] FROM range({n})")
                commit_s = time.perf_counter() - start
                wal_dir = data / "store" / "bench" / "wal"
                wal_bytes = (dir_bytes(wal_dir) if wal_dir.exists() else 0) - wal_before
                start = time.perf_counter()
                run(cur, "CHECKPOINT")
                seal_call_s = time.perf_counter() - start
                seal = events(log_path, "sealed snapshot")[seals_before:]
                if not seal:
                    raise RuntimeError("the CHECKPOINT sealed nothing")
                seal = seal[-1]
                r = {"file_len": run(cur, newest_file)[0][0], "wal_bytes": max(wal_bytes, 0), "commit_s": commit_s,
                     "layer_bytes": int(seal["bytes"]), "seal_ms": int(seal["elapsed_ms"]), "checkpoint_and_seal_s": seal_call_s}
                if best is None or r["seal_ms"] < best["seal_ms"]:
                    best = r
            results["commit"] = dict(best, db_file_before=file_len)
            count = run(cur, "SELECT count(*) FROM big")[0][0]
        # Snapshot reads: cold (materialise + open), then warm.
        query = "SELECT count(*), sum(id) FROM big"
        with connect(port) as c, c.cursor() as cur:
            start = time.perf_counter()
            run(cur, query)
            head_s = time.perf_counter() - start
        with connect(port, snapshot_before) as c, c.cursor() as cur:
            start = time.perf_counter()
            cold_rows = run(cur, query)
            cold_s = time.perf_counter() - start
            warm = []
            for _ in range(max(runs, 2)):
                start = time.perf_counter()
                run(cur, query)
                warm.append(time.perf_counter() - start)
        results["snapshot"] = {"head_s": head_s, "cold_s": cold_s, "warm_s": min(warm), "snapshot_rows": cold_rows[0][0], "head_rows": count}
    shutil.rmtree(data, ignore_errors=True)
    return results


def insert_rate(connect_fn, make_sql, clients: int, seconds: float) -> float:
    """Single-row autocommit INSERTs per second over `clients` threads, each with its own connection."""
    counts = [0] * clients
    errors = []
    start_barrier = threading.Barrier(clients + 1)
    stop = threading.Event()

    def worker(k):
        try:
            con, execute = connect_fn()
            try:
                start_barrier.wait()
                i = 0
                while not stop.is_set():
                    execute(make_sql(k, i))
                    i += 1
                    counts[k] += 1
            finally:
                con.close()
        except Exception as e:  # reported after the run
            errors.append(e)
            try:
                start_barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start_barrier.wait()
    begin = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    if errors:
        raise RuntimeError(f"insert worker failed: {errors[0]}")
    return sum(counts) / elapsed


INSERT_MODES = {"layered": [], "fuse": ["--fuse-heads"], "plain": ["--plain"]}


def openduck_inserts(binary, root, logs, clients_list, seconds, mode: str):
    """`mode`: layered (local-file heads), fuse (heads through FUSE) or plain (no layers)."""
    data = root / mode
    out = {}
    with server(binary, data, logs, f"inserts-{mode}", extra=INSERT_MODES[mode]) as (port, _):
        with connect(port) as c, c.cursor() as cur:
            run(cur, "CREATE TABLE t (k INTEGER, i INTEGER)")

        def connect_fn():
            con = connect(port)
            cur = con.cursor()
            return con, lambda sql: cur.execute(sql)

        for clients in clients_list:
            out[clients] = insert_rate(connect_fn, lambda k, i: f"INSERT INTO t VALUES ({k}, {i})", clients, seconds)
    shutil.rmtree(data, ignore_errors=True)
    return out


def quack_inserts(root, logs, clients_list, seconds):
    import duckdb

    db = root / "quack.duckdb"
    duckdb.connect(str(db)).execute("CREATE TABLE t (k INTEGER, i INTEGER)").close()
    out = {}
    with bench.quack_server(db, logs, "quack-inserts", read_write=True) as (port, extensions):
        def connect_fn():
            con = bench.quack_client(port, extensions)
            return con, lambda sql: con.execute(sql)

        for clients in clients_list:
            out[clients] = insert_rate(connect_fn, lambda k, i: f"INSERT INTO q.t VALUES ({k}, {i})", clients, seconds)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db-mib", type=int, default=1024)
    p.add_argument("--change-mib", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", default="1,8")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="commit,inserts")
    p.add_argument("--no-quack", action="store_true", help="skip the Quack comparison")
    p.add_argument("--heads", default="local,fuse", help="head kinds for the commit benchmark: local files (diffed at each seal) and/or FUSE (--fuse-heads)")
    args = p.parse_args()
    binary, described = bench.pick_binary()
    bench.log(f"OpenDuck: {described}")
    clients_list = [int(c) for c in args.clients.split(",")]
    only = set(args.only.split(","))
    root = Path(tempfile.mkdtemp(prefix="openduck-layers-bench-"))
    logs = root / "logs"
    logs.mkdir()
    try:
        lines = []
        for heads in (args.heads.split(",") if "commit" in only else []):
            r = bench_commit_and_snapshots(binary, root, logs, args.db_mib, args.change_mib, args.runs, fuse_heads=heads == "fuse")
            c, s = r["commit"], r["snapshot"]
            kind = "heads through FUSE (--fuse-heads)" if heads == "fuse" else "local-file heads"
            lines += [
                "",
                f"Commit cost, {kind}: ~{args.change_mib} MiB of new rows into a {c['db_file_before'] / 2**20:.0f} MiB database (best of {args.runs})",
                "| what | value |",
                "|---|---|",
                f"| database file | {c['db_file_before']:,} bytes |",
                f"| commit: write-ahead log shipped before the ack | {c['wal_bytes']:,} bytes in {c['commit_s'] * 1000:.0f} ms (INSERT incl. durability) |",
                f"| seal: layer uploaded | {c['layer_bytes']:,} bytes ({c['layer_bytes'] / c['db_file_before'] * 100:.2f}% of the file) |",
                f"| seal: diff + upload + metadata commit | {c['seal_ms']} ms (CHECKPOINT + seal call: {c['checkpoint_and_seal_s'] * 1000:.0f} ms) |",
                "",
                f"Snapshot reads, {kind}: `SELECT count(*), sum(id) FROM big` ({s['snapshot_rows']:,} rows in the snapshot, {s['head_rows']:,} in the head)",
                "| read | seconds |",
                "|---|---|",
                f"| head | {s['head_s']:.3f} |",
                f"| old snapshot, cold (pages fetched through FUSE, or the file materialised without it; + open + query) | {s['cold_s']:.3f} |",
                f"| old snapshot, warm | {s['warm_s']:.3f} |",
            ]
        if "inserts" in only:
            layered = openduck_inserts(binary, root, logs, clients_list, args.seconds, "layered")
            fuse = openduck_inserts(binary, root, logs, clients_list, args.seconds, "fuse")
            plain = openduck_inserts(binary, root, logs, clients_list, args.seconds, "plain")
            quack = {} if args.no_quack else quack_inserts(root, logs, clients_list, args.seconds)
            lines += ["", f"Single-row INSERT transactions per second ({args.seconds:.0f} s each)",
                      "| clients | OpenDuck, layered (durable in the stores) | same, heads through FUSE | OpenDuck --plain (local disk) | DuckDB Quack |",
                      "|---|---|---|---|---|"]
            for k in clients_list:
                q = f"{quack[k]:,.0f}" if k in quack else "-"
                lines.append(f"| {k} | {layered[k]:,.0f} | {fuse[k]:,.0f} | {plain[k]:,.0f} | {q} |")
        print("\n".join(lines))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
