"""Bulk-scan throughput: `SELECT * FROM lineitem` into a pyarrow Table, three ways.

  inprocess  DuckDB in this Python process (the ceiling: no network, no server)
  openduck   OpenDuck (`openduck serve`) over Arrow Flight SQL, through the ADBC driver
  quack      DuckDB's own Quack protocol: a DuckDB server process, the client ATTACHes it

The TPC-H `lineitem` table is generated once into <data>/bench.duckdb and reused while
the scale factor stays the same. Every mode opens its connection once and then times
`--runs` full scans (query + fetching every row into Arrow); connection setup is not
timed. Modes run one after another so they never compete for the machine's cores.

Run it through run.sh, which uses the project's Python environment.
"""

import argparse
import gc
import importlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow

HERE = Path(__file__).resolve().parent
QUERY = "SELECT * FROM lineitem"
TOKEN = "bench-token"
MODES = ("inprocess", "openduck", "quack")
LABELS = {
    "inprocess": "DuckDB in-process",
    "openduck": "OpenDuck (Flight SQL, ADBC)",
    "quack": "DuckDB Quack (ATTACH)",
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_arrow(relation) -> pyarrow.Table:
    """A DuckDB relation's full result as an Arrow table (to_arrow_table is the newer name)."""
    if hasattr(relation, "to_arrow_table"):
        return relation.to_arrow_table()
    return relation.fetch_arrow_table()


# --- DuckDB extensions from their Python packages ---------------------------------------

def extension_path(name: str) -> str:
    """Path of the official `<name>.duckdb_extension` that matches this DuckDB, installing
    the `duckdb-extension-<name>` package into this environment if it is missing."""
    module = f"duckdb_extension_{name}"
    version = duckdb.__version__
    if importlib.util.find_spec(module) is None:
        package = f"duckdb-extension-{name}=={version}"
        log(f"installing {package} into {sys.prefix}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", package],
            check=True,
        )
        importlib.invalidate_caches()
    root = Path(importlib.import_module(module).__file__).parent / "extensions"
    exact = root / f"v{version}" / f"{name}.duckdb_extension"
    if exact.exists():
        return str(exact)
    found = sorted(root.glob(f"*/{name}.duckdb_extension"))
    if not found:
        raise RuntimeError(f"{module} ships no {name}.duckdb_extension under {root}")
    return str(found[-1])


# --- test data ---------------------------------------------------------------------------

def prepare_data(data_dir: Path, sf: float) -> int:
    """Make sure <data_dir>/bench.duckdb holds TPC-H lineitem at this scale factor.
    Returns its row count."""
    db = data_dir / "bench.duckdb"
    meta_path = data_dir / "bench.json"
    if db.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("sf") == sf:
            with duckdb.connect(str(db), read_only=True) as con:
                rows = con.execute("SELECT count(*) FROM lineitem").fetchone()[0]
            if rows == meta.get("rows"):
                log(f"reusing {db} (sf={sf}, {rows:,} rows)")
                return rows
        log(f"{db} holds other data ({meta}); regenerating")

    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("bench.duckdb*"):
        stale.unlink()
    meta_path.unlink(missing_ok=True)
    tmp = data_dir / "bench.duckdb.tmp"
    log(f"generating TPC-H lineitem at sf={sf} into {db} ...")
    started = time.perf_counter()
    # dbgen makes all eight tables; build them in memory and copy only lineitem to the file,
    # so the file carries no space left over from dropped tables.
    with duckdb.connect() as con:
        con.execute(f"LOAD {sql_string(extension_path('tpch'))}")
        con.execute(f"CALL dbgen(sf={sf})")
        con.execute(f"ATTACH {sql_string(str(tmp))} AS out")
        con.execute("CREATE TABLE out.lineitem AS FROM memory.lineitem")
        rows = con.execute("SELECT count(*) FROM out.lineitem").fetchone()[0]
        con.execute("DETACH out")
    tmp.rename(db)
    meta_path.write_text(json.dumps({"sf": sf, "rows": rows}) + "\n")
    log(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s ({db.stat().st_size / 1e6:.0f} MB file)")
    return rows


# --- measurements ------------------------------------------------------------------------

@dataclass
class Result:
    mode: str
    times: list = field(default_factory=list)  # seconds per run
    rows: int = 0
    nbytes: int = 0  # Arrow table size of the last run
    error: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.times) and not self.error

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_scans(result: Result, runs: int, fetch, expected_rows: int) -> None:
    """Run `fetch()` (returns a pyarrow Table) `runs` times, recording the time of each."""
    for i in range(runs):
        gc.collect()
        started = time.perf_counter()
        table = fetch()
        elapsed = time.perf_counter() - started
        result.rows, result.nbytes = table.num_rows, table.nbytes
        del table
        if result.rows != expected_rows:
            raise RuntimeError(f"got {result.rows:,} rows, expected {expected_rows:,}")
        result.times.append(elapsed)
        log(f"  {result.mode} run {i + 1}/{runs}: {elapsed:.3f} s, {result.rows:,} rows, {result.nbytes / 1e6:.0f} MB Arrow")


def bench_inprocess(db: Path, runs: int, rows: int) -> Result:
    result = Result("inprocess")
    with duckdb.connect(str(db), read_only=True) as con:
        time_scans(result, runs, lambda: to_arrow(con.sql(QUERY)), rows)
    return result


def wait_for(check, proc: subprocess.Popen, what: str, log_path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s: {log_path.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_openduck(binary: str, data_dir: Path, runs: int, rows: int, logs: Path) -> Result:
    import adbc_driver_flightsql.dbapi as flightsql

    result = Result("openduck")
    port = free_port()
    log_path = logs / "openduck.log"
    args = [binary, "serve", "-d", "bench", "-t", TOKEN, "--data-dir", str(data_dir),
            "--port", str(port), "--host", "127.0.0.1"]
    env = {k: v for k, v in os.environ.items() if k != "OPENDUCK_TOKEN"}
    with open(log_path, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(healthy, proc, "openduck serve", log_path)
        db_kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}
        with flightsql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=db_kwargs, autocommit=True) as conn:
            with conn.cursor() as cur:
                def fetch():
                    cur.execute(QUERY)
                    return cur.fetch_arrow_table()

                time_scans(result, runs, fetch, rows)
    except Exception as e:
        # Tell a server that went away (e.g. something else on the machine signalled it)
        # apart from a failing query.
        server_log = log_path.read_text()
        if proc.poll() is not None or "received SIG" in server_log:
            raise RuntimeError(
                f"{type(e).__name__}: {e} -- the OpenDuck server was stopped from outside the benchmark "
                f"during the measurement (exit code {proc.poll()}; its log says "
                f"{'received SIGTERM' if 'received SIGTERM' in server_log else 'nothing about a signal'})"
            ) from e
        raise
    finally:
        stop_process(proc)
    return result


def bench_quack(db: Path, runs: int, rows: int, logs: Path) -> Result:
    result = Result("quack")
    extensions = [extension_path("httpfs"), extension_path("quack")]
    port = free_port()
    log_path = logs / "quack-server.log"
    args = [sys.executable, str(HERE / "quack_server.py"), "--db", str(db), "--port", str(port),
            "--token", TOKEN]
    for ext in extensions:
        args += ["--load", ext]
    with open(log_path, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "READY" in log_path.read_text(), proc, "Quack server", log_path)
        with duckdb.connect() as con:
            for ext in extensions:  # the client needs httpfs for the HTTP transport
                con.execute(f"LOAD {sql_string(ext)}")
            con.execute(f"ATTACH {sql_string(f'quack:localhost:{port}')} AS q (TOKEN {sql_string(TOKEN)})")
            time_scans(result, runs, lambda: to_arrow(con.sql("SELECT * FROM q.lineitem")), rows)
    finally:
        stop_process(proc)
    return result


# --- reporting ---------------------------------------------------------------------------

def pick_binary() -> tuple[str, str]:
    """The OpenDuck binary (OPENDUCK_BIN, else the release build, else the debug build)
    and a description of where it came from."""
    if os.environ.get("OPENDUCK_BIN"):
        binary = os.environ["OPENDUCK_BIN"]
        source = "from OPENDUCK_BIN"
    else:
        cache = Path(os.environ.get("OPENDUCK_CACHE", Path.home() / ".cache" / "openduck"))
        target = Path(os.environ.get("CARGO_TARGET_DIR", cache / "target"))
        release, debug = target / "release" / "openduck", target / "debug" / "openduck"
        binary = str(release if release.exists() else debug)
        source = "default: release build if present, else debug"
    parts = Path(binary).parts
    profile = "release" if "release" in parts else "debug (unoptimized)" if "debug" in parts else "unknown profile"
    return binary, f"{binary} [{profile}; {source}]"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def ratio(a: Result | None, b: Result | None) -> str:
    """Throughput of `a` relative to `b` (best runs): 1.00× means as fast."""
    if not a or not b or not a.ok or not b.ok:
        return "–"
    return f"{b.best / a.best:.2f}×"


def report(results: dict, args, rows: int, binary_desc: str, load_before: str) -> str:
    inproc, openduck, quack = (results.get(m) for m in MODES)
    lines = [
        f"## Bulk scan: `{QUERY}` → pyarrow Table (TPC-H sf={args.sf}, {rows:,} rows, {args.runs} run(s) per mode)",
        "",
        "| Mode | Best (s) | Median (s) | Rows/s (best) | MB/s (best) | Arrow MB | vs in-process | vs Quack | Notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for mode in MODES:
        r = results.get(mode)
        if r is None:
            continue
        if r.ok:
            mb = r.nbytes / 1e6
            lines.append(
                f"| {LABELS[mode]} | {r.best:.3f} | {r.median:.3f} | {r.rows / r.best:,.0f} | "
                f"{mb / r.best:,.0f} | {mb:,.0f} | {ratio(r, inproc)} | {ratio(r, quack)} | "
                f"runs: {', '.join(f'{t:.3f}' for t in r.times)}{'; ' + r.note if r.note else ''} |"
            )
        else:
            error = r.error.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {LABELS[mode]} | n/a | n/a | n/a | n/a | n/a | – | – | FAILED: {error} |")
    lines += [
        "",
        "`vs in-process` and `vs Quack` are throughput ratios of the best runs (higher is faster; 1.00× = same speed).",
        "MB = 10^6 bytes of the resulting Arrow table (`Table.nbytes`); each mode's own table size is used for its MB/s.",
    ]
    if openduck and quack and openduck.ok and quack.ok:
        faster = quack.best / openduck.best
        word = "faster" if faster >= 1 else "slower"
        lines.append(f"OpenDuck / Quack: OpenDuck's throughput is {faster:.2f}× Quack's ({word}).")
    lines += [
        "",
        "Machine:",
        f"- CPU: {os.cpu_count()} cores ({cpu_model()}), memory {memory_gib()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, DuckDB {duckdb.__version__}, pyarrow {pyarrow.__version__}"
        + adbc_version(),
    ]
    if "openduck" in results:
        lines.append(f"- OpenDuck binary: {binary_desc}")
        if "debug" in binary_desc and "release" not in binary_desc:
            lines.append("  - note: this is a debug build; the OpenDuck server is unoptimized, so its numbers understate a release build.")
    lines.append("- Client and server share the same machine (loopback); modes ran one after another.")
    lines.append(f"- Load average (1/5/15 min) before measuring: {load_before}; after: {load_average()}"
                 " (other work on the machine makes the numbers noisier)")
    return "\n".join(lines)


def adbc_version() -> str:
    try:
        from importlib.metadata import version

        return f", adbc-driver-flightsql {version('adbc-driver-flightsql')}"
    except Exception:
        return ""


def main() -> int:
    cache = Path(os.environ.get("OPENDUCK_CACHE", Path.home() / ".cache" / "openduck"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sf", type=float, default=2, help="TPC-H scale factor (default: 2, about 12M rows)")
    parser.add_argument("--runs", type=int, default=3, help="timed scans per mode (default: 3)")
    parser.add_argument("--data", type=Path, default=cache / "bench-data",
                        help="directory caching the generated bench.duckdb (default: $OPENDUCK_CACHE/bench-data)")
    parser.add_argument("--only", default=",".join(MODES),
                        help=f"comma-separated modes to run (default: all of {','.join(MODES)})")
    args = parser.parse_args()
    if args.sf == int(args.sf):
        args.sf = int(args.sf)  # so that dbgen and the cache key see 2, not 2.0
    modes = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    binary, binary_desc = pick_binary()
    if "openduck" in modes:
        log(f"OpenDuck binary: {binary_desc}")
    data_dir = args.data.resolve()
    rows = prepare_data(data_dir, args.sf)
    db = data_dir / "bench.duckdb"
    logs = Path(tempfile.mkdtemp(prefix="openduck-bench-"))

    load_before = load_average()
    results = {}
    for mode in MODES:
        if mode not in modes:
            continue
        log(f"measuring {LABELS[mode]} ...")
        try:
            if mode == "inprocess":
                results[mode] = bench_inprocess(db, args.runs, rows)
            elif mode == "openduck":
                if not Path(binary).exists():
                    raise RuntimeError(f"no OpenDuck binary at {binary} (build it or set OPENDUCK_BIN)")
                results[mode] = bench_openduck(binary, data_dir, args.runs, rows, logs)
            else:
                results[mode] = bench_quack(db, args.runs, rows, logs)
        except Exception as e:  # keep going: report the failure in the table
            log(f"  {mode} failed: {type(e).__name__}: {e}")
            results[mode] = Result(mode, error=f"{type(e).__name__}: {e}".strip())
        gc.collect()

    print()
    print(report(results, args, rows, binary_desc, load_before))
    failed = [m for m, r in results.items() if not r.ok]
    if failed:
        print(f"\nServer logs kept in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
