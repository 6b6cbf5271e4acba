"""OpenDuck throughput benchmark: bulk scans, the DuckDB extension, remote INSERT, filters.

Bulk scan, `SELECT * FROM lineitem` into a pyarrow Table:
  inprocess  DuckDB in this Python process (the ceiling: no network, no server)
  openduck   OpenDuck (`openduck serve`) over Arrow Flight SQL, through the ADBC driver
  quack      DuckDB's own Quack protocol: a DuckDB server process, the client ATTACHes it
  attach     the OpenDuck DuckDB extension: `ATTACH 'openduck:bench?...' AS cloud`, then
             `SELECT * FROM cloud.lineitem` in a local DuckDB

Writes and filters:
  insert     `INSERT INTO <t> SELECT range, range * 0.5, 'row' || (range % 1000) FROM range(N)`
             into a local in-memory table (the ceiling), a local file-backed table, a remote
             table through the extension (Flight SQL bulk ingest) and a table of a read-write
             Quack server
  filter     a selective filter on lineitem (default `l_quantity = 7`, about 2% of the rows)
             in-process, through ADBC, and through the extension: the query shipped whole
             (its default), a remote scan with filter pushdown (`openduck_ship_queries =
             false`) and one without (`disabled_optimizers = 'filter_pushdown'` too); the
             remote SQL the server logged for each is reported and checked for the WHERE

The TPC-H `lineitem` table is generated once into <data>/bench.duckdb and reused while
the scale factor stays the same. Every mode opens its connection once and then times
`--runs` runs (query + fetching every row into Arrow, or the whole INSERT statement);
connection setup is not timed. Modes run one after another so they never compete for
the machine's cores. Writes go to scratch databases that are deleted afterwards, never
to the cached bench.duckdb.

The extension is $OPENDUCK_EXTENSION_PATH, else the optimized build in
$OPENDUCK_CACHE/extension-release/v1.5.5 if present, else $OPENDUCK_EXTENSION_DIR's.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow

HERE = Path(__file__).resolve().parent
QUERY = "SELECT * FROM lineitem"
TOKEN = "bench-token"
SCAN_MODES = ("inprocess", "openduck", "quack", "attach")
MODES = SCAN_MODES + ("insert", "filter")
LABELS = {
    "inprocess": "DuckDB in-process",
    "openduck": "OpenDuck (Flight SQL, ADBC)",
    "quack": "DuckDB Quack (ATTACH)",
    "attach": "OpenDuck extension (ATTACH)",
}
# The rows the insert mode writes; `{n}` is --insert-rows.
INSERT_SELECT = "SELECT range, range * 0.5, 'row' || (range % 1000) FROM range({n})"
INSERT_TABLE = "bench_insert (id BIGINT, a DOUBLE, s VARCHAR)"
INSERT_TARGETS = {
    "memory": "DuckDB in-process, in-memory table",
    "file": "DuckDB in-process, file-backed table",
    "attach": "OpenDuck extension (ATTACH, Flight SQL ingest)",
    "quack": "DuckDB Quack (ATTACH, read-write server)",
}
FILTER_MODES = {
    "inprocess": "DuckDB in-process",
    "openduck": "OpenDuck (Flight SQL, ADBC)",
    "shipped": "OpenDuck extension, default (whole query shipped)",
    "pushdown": "OpenDuck extension, scan with filter pushdown",
    "no_pushdown": "OpenDuck extension, scan without filter pushdown",
}
# Session settings of each extension variant. Extensions with the `openduck_ship_queries`
# setting run a query that reads only the attached database whole on the server (WHERE and
# all); turning it off leaves the hybrid plan, whose remote scan gets the filter only
# through DuckDB's filter pushdown.
FILTER_SETTINGS = {
    "shipped": [],
    "pushdown": ["SET openduck_ship_queries = false"],
    "no_pushdown": ["SET openduck_ship_queries = false", "SET disabled_optimizers = 'filter_pushdown'"],
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
    remote_sql: str = ""  # what the OpenDuck server logged for the timed queries

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


@dataclass
class Server:
    port: int
    log_path: Path
    proc: subprocess.Popen
    offset: int = 0  # how much of the log `new_sql()` has already read

    def new_sql(self) -> list:
        """What the server logged since the last call, in order: the SQL of each query or
        statement (its JSON log's `sql` fields) and a `<bulk ingest …>` line per ingest."""
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        # Only whole lines; a line still being written is read next time.
        data = data[: data.rfind(b"\n") + 1]
        self.offset += len(data)
        found = []
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if not isinstance(fields, dict):
                continue
            if "sql" in fields:
                found.append(fields["sql"])
            elif fields.get("message") == "ingest":
                found.append(f"<Flight SQL bulk ingest into {fields.get('table')}, mode {fields.get('mode')}>")
        return found


@contextmanager
def openduck_server(binary: str, data_dir: Path, logs: Path, name: str, extra=(), stop_timeout: float = 30):
    """Run `openduck serve` for database `bench` in `data_dir` (with `extra` arguments) while
    the block runs. The server logs JSON so that the remote SQL of every query can be read back."""
    port = free_port()
    log_path = logs / f"{name}.log"
    args = [binary, "serve", "-d", "bench", "-t", TOKEN, "--data-dir", str(data_dir),
            "--port", str(port), "--host", "127.0.0.1", "--log-format", "json", *extra]
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
        server = Server(port, log_path, proc)
        server.new_sql()  # skip start-up
        yield server
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
        stop_process(proc, stop_timeout)


def adbc_connect(port: int):
    import adbc_driver_flightsql.dbapi as flightsql

    db_kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}
    return flightsql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=db_kwargs, autocommit=True)


def bench_openduck(binary: str, data_dir: Path, runs: int, rows: int, logs: Path) -> Result:
    result = Result("openduck")
    with openduck_server(binary, data_dir, logs, "openduck") as server:
        with adbc_connect(server.port) as conn:
            with conn.cursor() as cur:
                def fetch():
                    cur.execute(QUERY)
                    return cur.fetch_arrow_table()

                time_scans(result, runs, fetch, rows)
    return result


@contextmanager
def quack_server(db: Path, logs: Path, name: str, read_write: bool = False):
    """Run quack_server.py on `db` while the block runs; yields (port, extension paths)."""
    extensions = [extension_path("httpfs"), extension_path("quack")]
    port = free_port()
    log_path = logs / f"{name}.log"
    args = [sys.executable, str(HERE / "quack_server.py"), "--db", str(db), "--port", str(port),
            "--token", TOKEN]
    if read_write:
        args.append("--read-write")
    for ext in extensions:
        args += ["--load", ext]
    with open(log_path, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "READY" in log_path.read_text(), proc, "Quack server", log_path)
        yield port, extensions
    finally:
        stop_process(proc)


def quack_client(port: int, extensions: list) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for ext in extensions:  # the client needs httpfs for the HTTP transport
        con.execute(f"LOAD {sql_string(ext)}")
    con.execute(f"ATTACH {sql_string(f'quack:localhost:{port}')} AS q (TOKEN {sql_string(TOKEN)})")
    return con


def bench_quack(db: Path, runs: int, rows: int, logs: Path) -> Result:
    result = Result("quack")
    with quack_server(db, logs, "quack-server") as (port, extensions):
        with quack_client(port, extensions) as con:
            time_scans(result, runs, lambda: to_arrow(con.sql("SELECT * FROM q.lineitem")), rows)
    return result


# --- the OpenDuck DuckDB extension ---------------------------------------------------------

def pick_extension() -> tuple[str, str]:
    """The openduck.duckdb_extension to load and a description of where it came from."""
    if os.environ.get("OPENDUCK_EXTENSION_PATH"):
        path = os.environ["OPENDUCK_EXTENSION_PATH"]
        source = "from OPENDUCK_EXTENSION_PATH"
    else:
        cache = Path(os.environ.get("OPENDUCK_CACHE", Path.home() / ".cache" / "openduck"))
        release = cache / "extension-release" / f"v{duckdb.__version__}" / "openduck.duckdb_extension"
        default_dir = Path(os.environ.get("OPENDUCK_EXTENSION_DIR", cache / "extension" / f"v{duckdb.__version__}"))
        path = str(release if release.exists() else default_dir / "openduck.duckdb_extension")
        source = "default: extension-release build if present, else $OPENDUCK_EXTENSION_DIR"
    if "extension-release" in Path(path).parts:
        profile = "release (optimized Rust client)"
    elif Path(path).parent == Path(os.environ.get("OPENDUCK_EXTENSION_DIR", "/nonexistent")):
        profile = "$OPENDUCK_EXTENSION_DIR, debug build unless built with OPENDUCK_PROFILE=release"
    else:
        profile = "unknown profile"
    return path, f"{path} [{profile}; {source}]"


def attach_openduck(extension: str, port: int) -> duckdb.DuckDBPyConnection:
    """A local in-memory DuckDB with the extension loaded and the server's `bench`
    database attached as `cloud`."""
    if not Path(extension).exists():
        raise RuntimeError(f"no OpenDuck extension at {extension} (build it with scripts/build-extension.sh "
                           "or set OPENDUCK_EXTENSION_PATH)")
    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD {sql_string(extension)}")
    con.execute(f"ATTACH {sql_string(f'openduck:bench?endpoint=http://127.0.0.1:{port}&token={TOKEN}')} AS cloud")
    return con


def remote_sql_note(sqls: list) -> str:
    unique = list(dict.fromkeys(sqls))
    if not unique:
        return "no query in the server log"
    return " ; ".join(unique)


def bench_attach(binary: str, extension: str, data_dir: Path, runs: int, rows: int, logs: Path) -> Result:
    result = Result("attach")
    with openduck_server(binary, data_dir, logs, "attach") as server:
        with attach_openduck(extension, server.port) as con:
            time_scans(result, runs, lambda: to_arrow(con.sql("SELECT * FROM cloud.lineitem")), rows)
            result.remote_sql = remote_sql_note(server.new_sql())
    return result


# --- insert ----------------------------------------------------------------------------------

def time_inserts(result: Result, runs: int, con, catalog: str, n: int, nbytes: int) -> None:
    """`runs` times: (re)create `<catalog>bench_insert` untimed, time `INSERT INTO ... SELECT`
    of `n` rows, then check (untimed) that the table holds `n` rows."""
    select = INSERT_SELECT.format(n=n)
    table = f"{catalog}bench_insert"
    for i in range(runs):
        con.execute(f"CREATE OR REPLACE TABLE {catalog}{INSERT_TABLE}")
        gc.collect()
        started = time.perf_counter()
        con.execute(f"INSERT INTO {table} {select}").fetchall()
        elapsed = time.perf_counter() - started
        count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if count != n:
            raise RuntimeError(f"{table} holds {count:,} rows after the INSERT, expected {n:,}")
        result.rows, result.nbytes = n, nbytes
        result.times.append(elapsed)
        log(f"  insert into {table} run {i + 1}/{runs}: {elapsed:.3f} s, {n:,} rows")


def measure(result: Result, fn) -> Result:
    """Run fn(result); a failure is recorded in the result instead of raised."""
    try:
        fn(result)
    except Exception as e:
        log(f"  {result.mode} failed: {type(e).__name__}: {e}")
        result.error = f"{type(e).__name__}: {e}".strip()
    return result


def bench_insert(binary: str, extension: str, runs: int, n: int, logs: Path) -> dict:
    results = {key: Result(key) for key in INSERT_TARGETS}
    select = INSERT_SELECT.format(n=n)
    with duckdb.connect() as con:
        table = to_arrow(con.sql(select))
        nbytes = table.nbytes
        del table
    log(f"  the {n:,} rows are {nbytes / 1e6:.0f} MB as Arrow")
    # Scratch databases, deleted afterwards: the OpenDuck server and the Quack server write
    # to files, so the local file-backed table is their fair comparison.
    with tempfile.TemporaryDirectory(prefix="openduck-bench-insert-") as scratch:
        scratch = Path(scratch)

        def memory(r):
            with duckdb.connect() as con:
                time_inserts(r, runs, con, "", n, nbytes)

        def file(r):
            with duckdb.connect(str(scratch / "local.duckdb")) as con:
                time_inserts(r, runs, con, "", n, nbytes)

        def attach(r):
            data = scratch / "openduck"
            data.mkdir()
            with openduck_server(binary, data, logs, "insert") as server:
                with attach_openduck(extension, server.port) as con:
                    time_inserts(r, runs, con, "cloud.", n, nbytes)
                    seen = server.new_sql()
                    r.remote_sql = remote_sql_note(seen)
                    ingests = sum(s.startswith("<Flight SQL bulk ingest") for s in seen)
                    r.note = (f"server logged {ingests} bulk ingest(s) for {runs} INSERT(s)" if ingests
                              else "the server logged no bulk ingest")

        def quack(r):
            with quack_server(scratch / "quack.duckdb", logs, "quack-insert", read_write=True) as (port, exts):
                with quack_client(port, exts) as con:
                    time_inserts(r, runs, con, "q.", n, nbytes)

        for key, fn in (("memory", memory), ("file", file), ("attach", attach), ("quack", quack)):
            log(f"  {INSERT_TARGETS[key]} ...")
            measure(results[key], fn)
            gc.collect()
    return results


# --- filter ----------------------------------------------------------------------------------

def bench_filter(binary: str, extension: str, data_dir: Path, runs: int, rows: int, predicate: str,
                 logs: Path) -> dict:
    results = {key: Result(key) for key in FILTER_MODES}
    query = f"SELECT * FROM lineitem WHERE {predicate}"
    db = data_dir / "bench.duckdb"
    # In-process first: the server holds the database file open while it runs.
    with duckdb.connect(str(db), read_only=True) as con:
        matches = con.execute(f"SELECT count(*) FROM lineitem WHERE {predicate}").fetchone()[0]
        log(f"  {predicate}: {matches:,} of {rows:,} rows ({100 * matches / rows:.2f}%)")
        if matches == 0:
            raise RuntimeError(f"the predicate {predicate!r} matches no rows")
        measure(results["inprocess"], lambda r: time_scans(r, runs, lambda: to_arrow(con.sql(query)), matches))
    for r in results.values():
        r.rows = matches

    def adbc(r):
        with adbc_connect(server.port) as conn:
            with conn.cursor() as cur:
                def fetch():
                    cur.execute(query)
                    return cur.fetch_arrow_table()

                time_scans(r, runs, fetch, matches)
                r.remote_sql = remote_sql_note(server.new_sql())

    def extension_scan(r, key: str):
        with attach_openduck(extension, server.port) as con:
            for statement in FILTER_SETTINGS[key]:
                if "openduck_ship_queries" in statement and not ship_setting:
                    continue  # an extension without whole-query shipping
                con.execute(statement)
            r.note = "; ".join(f"`{st[4:]}`" for st in FILTER_SETTINGS[key]
                               if ship_setting or "openduck_ship_queries" not in st)
            server.new_sql()
            cloud_query = f"SELECT * FROM cloud.lineitem WHERE {predicate}"
            time_scans(r, runs, lambda: to_arrow(con.sql(cloud_query)), matches)
            sqls = server.new_sql()
            r.remote_sql = remote_sql_note(sqls)
            has_where = [" WHERE " in sql.upper() for sql in sqls]
            if not sqls:
                check = "NOT verified: the server logged no query"
            elif key != "no_pushdown":
                check = ("verified: the remote SQL has the WHERE" if all(has_where)
                         else "NOT pushed down: the remote SQL has no WHERE")
            else:
                check = ("verified: the remote SQL has no WHERE" if not any(has_where)
                         else "NOT disabled: the remote SQL still has a WHERE")
            r.note = f"{r.note}; {check}" if r.note else check

    ship_setting = False
    try:
        with openduck_server(binary, data_dir, logs, "filter") as server:
            try:
                with attach_openduck(extension, server.port) as con:
                    ship_setting = bool(con.execute(
                        "SELECT count(*) FROM duckdb_settings() WHERE name = 'openduck_ship_queries'").fetchone()[0])
                if not ship_setting:
                    # Older builds have no whole-query shipping: their default is the scan with
                    # filter pushdown, measured below.
                    log("  this extension has no openduck_ship_queries setting: no whole-query shipping to measure")
                    del results["shipped"]
            except Exception as e:  # each extension variant below reports it
                log(f"  the extension does not attach: {type(e).__name__}: {e}")
            for key, fn in (("openduck", adbc), ("shipped", lambda r: extension_scan(r, "shipped")),
                            ("pushdown", lambda r: extension_scan(r, "pushdown")),
                            ("no_pushdown", lambda r: extension_scan(r, "no_pushdown"))):
                if key not in results:
                    continue
                log(f"  {FILTER_MODES[key]} ...")
                measure(results[key], fn)
                gc.collect()
    except Exception as e:  # the server did not start or went away
        for key, r in results.items():
            if key != "inprocess" and not r.error and not r.ok:
                r.error = f"{type(e).__name__}: {e}".strip()
    return results


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


def cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def runs_note(r: Result) -> str:
    return f"runs: {', '.join(f'{t:.3f}' for t in r.times)}{'; ' + r.note if r.note else ''}"


def flatten(results: dict) -> list:
    """Every Result of a run: a mode's own, or each of a grouped mode's (insert, filter)."""
    out = []
    for r in results.values():
        out.extend(r.values() if isinstance(r, dict) else [r])
    return out


def group_failure(results: dict, mode: str) -> list:
    """Lines for a grouped mode that failed as a whole (e.g. its server did not start)."""
    r = results[mode]
    return ["", f"## {mode}: FAILED", "", cell(r.error)]


def report_scan(results: dict, args, rows: int) -> list:
    inproc, openduck, quack = (results.get(m) for m in ("inprocess", "openduck", "quack"))
    lines = [
        f"## Bulk scan: `{QUERY}` → pyarrow Table (TPC-H sf={args.sf}, {rows:,} rows, {args.runs} run(s) per mode)",
        "",
        "| Mode | Best (s) | Median (s) | Rows/s (best) | MB/s (best) | Arrow MB | vs in-process | vs ADBC | vs Quack | Notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for mode in SCAN_MODES:
        r = results.get(mode)
        if r is None:
            continue
        if r.ok:
            mb = r.nbytes / 1e6
            lines.append(
                f"| {LABELS[mode]} | {r.best:.3f} | {r.median:.3f} | {r.rows / r.best:,.0f} | "
                f"{mb / r.best:,.0f} | {mb:,.0f} | {ratio(r, inproc)} | {ratio(r, openduck)} | {ratio(r, quack)} | "
                f"{runs_note(r)} |"
            )
        else:
            lines.append(f"| {LABELS[mode]} | n/a | n/a | n/a | n/a | n/a | – | – | – | FAILED: {cell(r.error)} |")
    lines += [
        "",
        "`vs …` columns are throughput ratios of the best runs (higher is faster; 1.00× = same speed);"
        " `vs ADBC` compares with OpenDuck through the ADBC Flight SQL driver.",
        "MB = 10^6 bytes of the resulting Arrow table (`Table.nbytes`); each mode's own table size is used for its MB/s.",
    ]
    if openduck and quack and openduck.ok and quack.ok:
        faster = quack.best / openduck.best
        word = "faster" if faster >= 1 else "slower"
        lines.append(f"OpenDuck / Quack: OpenDuck's throughput is {faster:.2f}× Quack's ({word}).")
    attach = results.get("attach")
    if attach and attach.remote_sql:
        lines.append(f"Remote SQL the server logged for the extension's scan: `{attach.remote_sql}`")
    return lines


def report_insert(results: dict, args) -> list:
    group = results["insert"]
    if isinstance(group, Result):
        return group_failure(results, "insert")
    n = args.insert_rows
    memory, file, quack = group["memory"], group["file"], group["quack"]
    nbytes = next((r.nbytes for r in group.values() if r.nbytes), 0)
    lines = [
        "",
        f"## INSERT … SELECT: `INSERT INTO <t> {INSERT_SELECT.format(n=n)}` ({n:,} rows, "
        f"{nbytes / 1e6:,.0f} MB as Arrow, {args.runs} run(s) per target)",
        "",
        "| Target | Best (s) | Median (s) | Rows/s (best) | MB/s (best) | vs in-memory | vs file-backed | vs Quack | Notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, label in INSERT_TARGETS.items():
        r = group[key]
        if r.ok:
            lines.append(
                f"| {label} | {r.best:.3f} | {r.median:.3f} | {r.rows / r.best:,.0f} | "
                f"{r.nbytes / 1e6 / r.best:,.0f} | {ratio(r, memory)} | {ratio(r, file)} | {ratio(r, quack)} | "
                f"{runs_note(r)} |"
            )
        else:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | – | – | – | FAILED: {cell(r.error)} |")
    lines += [
        "",
        f"The target is `{INSERT_TABLE}`, recreated (untimed) before every run with `CREATE OR REPLACE TABLE`;"
        " the time is the whole INSERT statement, committed (autocommit). Every run is checked with `count(*)`.",
        "MB = 10^6 bytes of the same rows as an Arrow table made locally (`Table.nbytes`, computed once, untimed).",
        "The in-memory table is the ceiling; the OpenDuck and Quack servers write to database files, like the"
        " file-backed local table. Scratch databases are deleted afterwards.",
    ]
    if group["attach"].remote_sql:
        lines.append(f"Statements the OpenDuck server logged during the extension's runs: `{group['attach'].remote_sql}`")
    return lines


def report_filter(results: dict, args, rows: int) -> list:
    group = results["filter"]
    if isinstance(group, Result):
        return group_failure(results, "filter")
    inproc, adbc = group["inprocess"], group["openduck"]
    matches = next((r.rows for r in group.values() if r.rows), 0)
    lines = [
        "",
        f"## Filter: `SELECT * FROM lineitem WHERE {args.filter}` → pyarrow Table "
        f"({matches:,} of {rows:,} rows match: selectivity {100 * matches / rows:.2f}%, {args.runs} run(s) per mode)",
        "",
        "| Mode | Best (s) | Median (s) | lineitem rows/s (best) | Result MB | Result MB/s (best) | vs in-process | vs ADBC | Notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, label in FILTER_MODES.items():
        r = group.get(key)
        if r is None:
            continue
        if r.ok:
            mb = r.nbytes / 1e6
            lines.append(
                f"| {label} | {r.best:.3f} | {r.median:.3f} | {rows / r.best:,.0f} | {mb:,.1f} | "
                f"{mb / r.best:,.0f} | {ratio(r, inproc)} | {ratio(r, adbc)} | {runs_note(r)} |"
            )
        else:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | n/a | – | – | FAILED: {cell(r.error)} |")
    lines += [
        "",
        "`lineitem rows/s` is the whole table's row count over the time: how fast the table is filtered.",
        "The extension queries `cloud.lineitem` with the same WHERE; ADBC sends the query itself to the server.",
        "By default the extension ships a query that reads only the attached database whole to the server;"
        " with `openduck_ship_queries = false` DuckDB plans it locally and the remote scan gets projections and,"
        " through DuckDB's filter pushdown, the filter. `disabled_optimizers = 'filter_pushdown'` stops that, so the"
        " whole table crosses the wire and DuckDB filters it locally.",
    ]
    if "shipped" not in group:
        lines.append("This extension build has no `openduck_ship_queries` setting (no whole-query shipping).")
    lines.append("Remote SQL the OpenDuck server logged:")
    for key in ("openduck", "shipped", "pushdown", "no_pushdown"):
        if key in group and group[key].remote_sql:
            lines.append(f"- {FILTER_MODES[key]}: `{group[key].remote_sql}`")
    return lines


def report(results: dict, args, rows: int, binary_desc: str, extension_desc: str, load_before: str) -> str:
    lines = []
    if any(m in results for m in SCAN_MODES):
        lines += report_scan(results, args, rows)
    if "insert" in results:
        lines += report_insert(results, args)
    if "filter" in results:
        lines += report_filter(results, args, rows)
    lines += [
        "",
        "Machine:",
        f"- CPU: {os.cpu_count()} cores ({cpu_model()}), memory {memory_gib()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, DuckDB {duckdb.__version__}, pyarrow {pyarrow.__version__}"
        + adbc_version(),
    ]
    if any(m in results for m in ("openduck", "attach", "insert", "filter")):
        lines.append(f"- OpenDuck binary: {binary_desc}")
        if "debug" in binary_desc and "release" not in binary_desc:
            lines.append("  - note: this is a debug build; the OpenDuck server is unoptimized, so its numbers understate a release build.")
    if any(m in results for m in ("attach", "insert", "filter")):
        lines.append(f"- OpenDuck extension: {extension_desc}")
        if "release" not in extension_desc:
            lines.append("  - note: probably a debug build of the extension; its numbers understate an optimized build.")
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
    parser.add_argument("--runs", type=int, default=3, help="timed runs per mode (default: 3)")
    parser.add_argument("--data", type=Path, default=cache / "bench-data",
                        help="directory caching the generated bench.duckdb (default: $OPENDUCK_CACHE/bench-data)")
    parser.add_argument("--only", default=",".join(MODES),
                        help=f"comma-separated modes to run (default: all of {','.join(MODES)})")
    parser.add_argument("--insert-rows", type=int, default=10_000_000,
                        help="rows the insert mode writes per run (default: 10000000)")
    parser.add_argument("--filter", default="l_quantity = 7",
                        help="the filter mode's predicate on lineitem (default: 'l_quantity = 7', about 2%% of the rows)")
    args = parser.parse_args()
    if args.sf == int(args.sf):
        args.sf = int(args.sf)  # so that dbgen and the cache key see 2, not 2.0
    modes = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.insert_rows < 1:
        parser.error("--insert-rows must be at least 1")

    binary, binary_desc = pick_binary()
    extension, extension_desc = pick_extension()
    if any(m in modes for m in ("openduck", "attach", "insert", "filter")):
        log(f"OpenDuck binary: {binary_desc}")
    if any(m in modes for m in ("attach", "insert", "filter")):
        log(f"OpenDuck extension: {extension_desc}")
    data_dir = args.data.resolve()
    rows = prepare_data(data_dir, args.sf)
    db = data_dir / "bench.duckdb"
    logs = Path(tempfile.mkdtemp(prefix="openduck-bench-"))

    load_before = load_average()
    results = {}
    for mode in MODES:
        if mode not in modes:
            continue
        log(f"measuring {LABELS.get(mode, mode)} ...")
        try:
            if mode in ("openduck", "attach", "insert", "filter") and not Path(binary).exists():
                raise RuntimeError(f"no OpenDuck binary at {binary} (build it or set OPENDUCK_BIN)")
            if mode == "inprocess":
                results[mode] = bench_inprocess(db, args.runs, rows)
            elif mode == "openduck":
                results[mode] = bench_openduck(binary, data_dir, args.runs, rows, logs)
            elif mode == "quack":
                results[mode] = bench_quack(db, args.runs, rows, logs)
            elif mode == "attach":
                results[mode] = bench_attach(binary, extension, data_dir, args.runs, rows, logs)
            elif mode == "insert":
                results[mode] = bench_insert(binary, extension, args.runs, args.insert_rows, logs)
            else:
                results[mode] = bench_filter(binary, extension, data_dir, args.runs, rows, args.filter, logs)
        except Exception as e:  # keep going: report the failure in the table
            log(f"  {mode} failed: {type(e).__name__}: {e}")
            results[mode] = Result(mode, error=f"{type(e).__name__}: {e}".strip())
        gc.collect()

    print()
    print(report(results, args, rows, binary_desc, extension_desc, load_before))
    failed = [r for r in flatten(results) if not r.ok]
    if failed:
        print(f"\nServer logs kept in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
