"""Fixtures that start real `openduck serve` processes for the conformance tests.

The binary comes from OPENDUCK_BIN (the test script sets it to the freshly built one).
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

TOKEN = "conformance-admin-token"
READER = "conformance-reader-token"
SCOPED = "conformance-other-only-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `openduck serve` process."""

    def __init__(self, data_dir: Path, database: str = "mydb", extra=(), tokens=None, port=None, env=None, wait=True):
        self.data_dir = data_dir
        self.database = database
        self.port = port or free_port()
        self.uri = f"grpc://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        binary = os.environ.get("OPENDUCK_BIN", "openduck")
        args = [binary, "serve", "-d", database, "--data-dir", str(data_dir), "--port", str(self.port)]
        self.token = tokens[0]["token"] if tokens else TOKEN
        if tokens is not None:
            tokens_file = data_dir.parent / f"tokens-{self.port}.json"
            tokens_file.write_text(json.dumps({"tokens": tokens}))
            args += ["--tokens-file", str(tokens_file)]
        else:
            args += ["-t", TOKEN]
        args += list(extra)
        self.log = open(self.log_path, "a")
        full_env = dict(os.environ, OPENDUCK_LOG=os.environ.get("OPENDUCK_LOG", "info"))
        full_env.pop("OPENDUCK_TOKEN", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        if wait:
            self.wait_healthy()

    def health(self, token: "str | None" = "default") -> dict:
        """GET /health, with the server's first token (names and reasons are shown only to a
        token), or with `token` (None: anonymous)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/health")
        if token == "default":
            token = self.token
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=2) as r:
            return json.loads(r.read())

    def wait_healthy(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                self.health()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy: {self.log_path.read_text()}")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=30, clean_mounts=True) -> int:
        """Stops the server. With `clean_mounts`, FUSE mounts a killed server left behind are
        cleared too; tests of the server's (or its watchdog's) own unmounting pass False."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self.log.close()
        if not clean_mounts:
            return self.proc.returncode
        # A killed server leaves its FUSE mount behind (its next start clears it too).
        for mount in (".fuse", ".heads"):
            fuse = self.data_dir / mount
            if os.path.ismount(fuse) or fuse_stale(fuse):
                subprocess.run(["umount", "-l", str(fuse)], capture_output=True)
        return self.proc.returncode


def fuse_stale(path: Path) -> bool:
    try:
        os.stat(path)
        return False
    except FileNotFoundError:
        return False
    except OSError:
        return True  # "Transport endpoint is not connected"


def adbc_connect(server: Server, token: str = TOKEN, autocommit=True, database=None, **kwargs):
    import adbc_driver_flightsql.dbapi as flightsql

    db_kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    if database:
        db_kwargs["adbc.flight.sql.rpc.call_header.x-openduck-database"] = database
    db_kwargs.update(kwargs)
    return flightsql.connect(server.uri, db_kwargs=db_kwargs, autocommit=autocommit)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One shared server with scoped tokens and two databases, mydb (default) and other."""
    root = tmp_path_factory.mktemp("openduck")
    data = root / "data"
    data.mkdir()
    tokens = [
        {"token": TOKEN},
        {"token": READER, "read_only": True},
        {"token": SCOPED, "databases": ["other"]},
    ]
    # A second database file the server picks up at start.
    import duckdb

    # DuckDB 2.x writes a storage format the server's DuckDB 1.5 cannot read unless told otherwise.
    config = {} if duckdb.__version__.startswith("1.") else {"storage_compatibility_version": "v1.5.0"}
    duckdb.connect(str(data / "other.duckdb"), config=config).execute("CREATE TABLE other_t AS SELECT 7 AS x").close()
    s = Server(data, tokens=tokens)
    yield s
    s.stop()


@pytest.fixture
def conn(server):
    c = adbc_connect(server)
    yield c
    c.close()


@pytest.fixture
def local():
    """A local in-process DuckDB to compare results with."""
    import duckdb

    c = duckdb.connect()
    yield c
    c.close()


@pytest.fixture
def fresh_server(tmp_path):
    """A private server for tests that stop or strain it."""
    servers = []

    def start(**kwargs):
        data = tmp_path / f"data{len(servers)}"
        data.mkdir()
        s = Server(data, **kwargs)
        servers.append(s)
        return s

    yield start
    for s in servers:
        if s.proc.poll() is None:
            s.stop(signal.SIGKILL)


def extension_path() -> str:
    """The extension built for the running DuckDB (…/extension/v<version>/), unless
    OPENDUCK_EXTENSION_PATH or OPENDUCK_EXTENSION_DIR says otherwise."""
    import duckdb

    default_dir = os.path.expanduser(f"~/.cache/openduck/extension/v{duckdb.__version__}")
    path = os.environ.get("OPENDUCK_EXTENSION_PATH") or os.path.join(
        os.environ.get("OPENDUCK_EXTENSION_DIR", default_dir),
        "openduck.duckdb_extension",
    )
    if not os.path.exists(path):
        pytest.fail(
            f"extension not built at {path}: run OPENDUCK_DUCKDB_VERSION={duckdb.__version__} scripts/build-extension.sh"
        )
    return path


@pytest.fixture
def duck():
    """A local DuckDB (the Python package) with the OpenDuck extension loaded."""
    import duckdb

    c = duckdb.connect(config={"allow_unsigned_extensions": True})
    c.execute(f"LOAD '{extension_path()}'")
    yield c
    c.close()


def attach_sql(server, alias="cloud", token=TOKEN, database="mydb") -> str:
    return f"ATTACH 'openduck:{database}?endpoint=http://127.0.0.1:{server.port}&token={token}' AS {alias}"


def measure_in_fresh_process(server, statements, measured):
    """Runs `statements` and then `measured` in a new Python process with the extension loaded
    and the server attached as `cloud`; returns how much that process's peak RSS grew during
    `measured` (MiB) and its rows. A fresh process, because ru_maxrss is an all-time peak: in the
    test process, earlier tests would hide growth."""
    import subprocess
    import sys

    script = f"""
import duckdb, json, resource
c = duckdb.connect(config={{"allow_unsigned_extensions": True}})
c.execute({f"LOAD '{extension_path()}'"!r})
c.execute({attach_sql(server)!r})
for s in {list(statements)!r}:
    c.execute(s)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = c.execute({measured!r}).fetchall()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grown_mb": (after - before) / 1024, "rows": rows}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["grown_mb"], [tuple(r) for r in result["rows"]]
