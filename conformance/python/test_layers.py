"""Layered storage through the server, with both metadata stores (SQLite, PostgreSQL) and both
object stores (a directory, S3): acknowledged writes survive `kill -9` and the loss of the local
disk; one writer per database; object or metadata store down; the management CLI; a crash loop.

"Local disk" is the server's --data-dir (the DuckDB files); the stores live elsewhere, as they
would on another machine."""

import os
import random
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from conftest import TOKEN, Server, adbc_connect, fuse_stale
from services import S3, Postgres, createdb, wipe

BIN = os.environ.get("OPENDUCK_BIN", "openduck")


@pytest.fixture(scope="module")
def pg():
    p = Postgres()
    yield p
    p.remove()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    s = S3(tmp_path_factory.mktemp("s3"))
    yield s
    s.stop()


# Servers started through a Layout; any a failing test left running are killed after it.
_started: list = []


@pytest.fixture(autouse=True)
def _kill_leftover_servers():
    yield
    while _started:
        s = _started.pop()
        if s.proc.poll() is None:
            s.stop(signal.SIGKILL)


class Layout:
    """Where one test's server keeps its heads (disk) and its stores."""

    def __init__(self, kind, tmp_path, pg=None, s3=None):
        self.kind = kind
        self.disk = tmp_path / "disk"
        self.pg, self.s3 = pg, s3
        if kind == "sqlite-file":
            durable = tmp_path / "durable"
            self.store = f"file://{durable / 'store'}"
            self.metadata = f"sqlite://{durable / 'metadata.sqlite'}"
            self.env = {}
        else:
            name = "t" + uuid.uuid4().hex[:12]
            self.store = s3.url(name)
            self.metadata = createdb(pg, name)
            self.env = s3.env

    @property
    def storage_args(self):
        return ["--data-dir", str(self.disk), "--store", self.store, "--metadata", self.metadata]

    def serve(self, node="server-a", lease_ttl="3s", extra=(), wait=True) -> Server:
        self.disk.mkdir(parents=True, exist_ok=True)
        args = ["--store", self.store, "--metadata", self.metadata, "--node", node, "--lease-ttl", lease_ttl, *extra]
        server = Server(self.disk, extra=args, env=self.env, wait=wait)
        _started.append(server)
        return server

    def objects(self, under: str) -> list:
        """Keys of the objects in the store under `under` (e.g. `mydb/layers/`)."""
        if self.kind == "sqlite-file":
            root = Path(self.store.removeprefix("file://"))
        else:
            bucket, prefix = self.store.removeprefix("s3://").split("/", 1)
            root = self.s3.root / bucket / prefix
        if not (root / under).exists():
            return []
        return sorted(str(p.relative_to(root)) for p in (root / under).rglob("*") if p.is_file() and not p.name.startswith("."))

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        env = dict(os.environ, **self.env)
        out = subprocess.run([BIN, *args, *self.storage_args], capture_output=True, text=True, env=env, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"openduck {' '.join(args)} failed: {out.stderr}")
        return out


@pytest.fixture(params=["sqlite-file", "postgres-s3"])
def layout(request, tmp_path):
    if request.param == "sqlite-file":
        return Layout("sqlite-file", tmp_path)
    return Layout("postgres-s3", tmp_path, request.getfixturevalue("pg"), request.getfixturevalue("s3"))


def rows(server, sql, database=None):
    with adbc_connect(server, database=database) as c, c.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_acknowledged_writes_survive_kill9_and_disk_loss(layout):
    import pyarrow as pa

    s = layout.serve()
    with adbc_connect(s) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE t (id INTEGER, payload VARCHAR)")
        for i in range(30):
            cur.execute(f"INSERT INTO t VALUES ({i}, 'row {i}')")
        cur.adbc_ingest("bulk", pa.table({"v": list(range(5000))}), mode="create")
    with adbc_connect(s, autocommit=False) as c, c.cursor() as cur:
        cur.execute("INSERT INTO t SELECT range + 100, 'txn' FROM range(10)")
        c.commit()
    s.stop(signal.SIGKILL)
    wipe(layout.disk)

    s = layout.serve()
    assert "Restored" in s.log_path.read_text(), "the head was rebuilt from the stores"
    assert rows(s, "SELECT count(*), sum(id) FROM t") == [(40, sum(range(30)) + sum(range(100, 110)))]
    assert rows(s, "SELECT count(*), sum(v) FROM bulk") == [(5000, sum(range(5000)))]
    # It goes on working, and a restart on the same disk keeps the local file.
    rows(s, "INSERT INTO t VALUES (1000, 'after')")
    s.stop(signal.SIGKILL)
    s = layout.serve()
    assert rows(s, "SELECT count(*) FROM t") == [(41,)]
    s.stop()


def wait_until(check, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            if time.time() > deadline:
                raise
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_second_server_follows_read_only_then_takes_over(layout, tmp_path):
    """One writer per database: a second server is refused the write lease (naming the holder)
    and serves the newest snapshot read-only, moving to newer ones as they are sealed; when the
    writer dies and its lease lapses, it takes over with every acknowledged commit."""
    a = layout.serve(node="server-a")
    rows(a, "CREATE TABLE t AS SELECT 1 AS x")
    rows(a, "CHECKPOINT")
    other = Layout.__new__(Layout)
    other.__dict__.update(layout.__dict__, disk=tmp_path / "disk-b")
    b = other.serve(node="server-b")
    assert rows(b, "SELECT * FROM t") == [(1,)]
    with pytest.raises(Exception) as err:
        rows(b, "INSERT INTO t VALUES (9)")
    assert "read-only on this server" in str(err.value) and "server-a" in str(err.value), err.value

    rows(a, "INSERT INTO t VALUES (2)")
    rows(a, "CHECKPOINT")
    wait_until(lambda: rows(b, "SELECT count(*) FROM t") == [(2,)], what="the follower to see the new snapshot")

    # Acknowledged but not yet sealed: only in the durable log.
    rows(a, "INSERT INTO t VALUES (3)")
    a.stop(signal.SIGKILL)
    wait_until(lambda: rows(b, "CREATE OR REPLACE TABLE probe AS SELECT 1 AS x") is not None, timeout=30, what="the takeover")
    rows(b, "INSERT INTO t VALUES (4)")
    assert rows(b, "SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,), (4,)]
    assert "took over writing" in b.log_path.read_text()
    b.stop()


def test_a_live_stale_writer_is_fenced(layout, tmp_path):
    """A writer that stalls (paused, not dead) past its lease loses the database to another
    server; when it wakes up, its writes are refused as not durable, and none of them reaches the
    database the new writer serves."""
    a = layout.serve(node="server-a", lease_ttl="2s")
    rows(a, "CREATE TABLE t (v VARCHAR)")
    rows(a, "INSERT INTO t VALUES ('a1')")
    other = Layout.__new__(Layout)
    other.__dict__.update(layout.__dict__, disk=tmp_path / "disk-b")
    b = other.serve(node="server-b", lease_ttl="2s")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: rows(b, "CREATE OR REPLACE TABLE probe AS SELECT 1 AS x") is not None, timeout=30, what="the takeover")
        rows(b, "INSERT INTO t VALUES ('b1')")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    with pytest.raises(Exception) as err:
        rows(a, "INSERT INTO t VALUES ('a2')")
    message = str(err.value)
    assert "could not be made durable" in message and ("fenced" in message or "lease" in message), message
    assert sorted(rows(b, "SELECT v FROM t")) == [("a1",), ("b1",)]
    a.stop()
    b.stop()
    # From the stores alone, too: the stale writer's write is nowhere.
    wipe(other.disk)
    c = other.serve(node="server-c")
    assert sorted(rows(c, "SELECT v FROM t")) == [("a1",), ("b1",)]
    c.stop()


def test_object_store_down_fails_writes_cleanly_and_recovers(pg, s3, tmp_path):
    layout = Layout("postgres-s3", tmp_path, pg, s3)
    s = layout.serve()
    rows(s, "CREATE TABLE t (id INTEGER)")
    rows(s, "INSERT INTO t VALUES (1)")
    s3.stop()
    try:
        started = time.time()
        with pytest.raises(Exception) as err:
            rows(s, "INSERT INTO t VALUES (2)")
        assert "could not be made durable" in str(err.value) and "(Unavailable;" in str(err.value), err.value
        assert time.time() - started < 60, "retried with backoff, then failed; never hung"
        assert rows(s, "SELECT count(*) FROM t") in ([(1,)], [(2,)]), "reads go on"
    finally:
        s3.restart()
    # The sealer makes the state certain again; writes are acknowledged once more.
    # Retry an idempotent write until writes are acknowledged again, then insert once.
    wait_until(lambda: rows(s, "CREATE OR REPLACE TABLE probe AS SELECT 1 AS x") is not None, timeout=30, what="writes to be acknowledged again")
    rows(s, "INSERT INTO t VALUES (3)")
    s.stop(signal.SIGKILL)
    wipe(layout.disk)
    s = layout.serve()
    ids = [r[0] for r in rows(s, "SELECT id FROM t ORDER BY id")]
    # Row 2 failed as not durable: a later seal may still have stored it. Nothing is doubled.
    assert ids in ([1, 3], [1, 2, 3]), ids
    s.stop()


def test_metadata_store_down_fails_writes_cleanly_reads_go_on(pg, s3, tmp_path):
    layout = Layout("postgres-s3", tmp_path, pg, s3)
    s = layout.serve(lease_ttl="60s")
    rows(s, "CREATE TABLE t AS SELECT 1 AS id")
    pg.stop()
    try:
        with pytest.raises(Exception) as err:
            rows(s, "INSERT INTO t VALUES (2)")
        assert "could not be made durable" in str(err.value) and "(Unavailable;" in str(err.value), err.value
        assert rows(s, "SELECT min(id) FROM t") == [(1,)]
    finally:
        pg.start()
    # Retry an idempotent write until writes are acknowledged again, then insert once.
    wait_until(lambda: rows(s, "CREATE OR REPLACE TABLE probe AS SELECT 1 AS x") is not None, timeout=30, what="writes to be acknowledged again")
    rows(s, "INSERT INTO t VALUES (3)")
    s.stop()


def test_cli_create_clone_snapshots_restore_gc(layout, tmp_path):
    s = layout.serve()
    rows(s, "CREATE TABLE t AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(1000)")
    rows(s, "CHECKPOINT")  # seals a snapshot now
    snapshot_rows = rows(s, "SELECT * FROM t ORDER BY id")
    listing = layout.cli("snapshot", "list", "mydb").stdout
    ids = [int(line.split()[0]) for line in listing.splitlines()[1:]]
    assert len(ids) >= 2, listing
    rows(s, "INSERT INTO t VALUES (5000, NULL)")

    layout.cli("db", "create", "fresh")
    layout.cli("db", "clone", "mydb", "copy", "--snapshot", str(ids[-1]))
    assert "already exists" in layout.cli("db", "create", "fresh", check=False).stderr
    assert "unknown database" in layout.cli("db", "clone", "nope", "x", check=False).stderr
    assert "invalid database name" in layout.cli("db", "create", "bad-name", check=False).stderr
    listing = layout.cli("db", "list").stdout
    assert all(name in listing for name in ("mydb", "fresh", "copy")), listing

    # The running server picks the new databases up; the clone holds the snapshot's data only.
    wait_until(lambda: {"copy", "fresh"} <= set(s.health()["databases"]), what="the server to open the new databases")
    assert rows(s, "SELECT * FROM t ORDER BY id", database="copy") == snapshot_rows
    assert rows(s, "SELECT * FROM t ORDER BY id") == snapshot_rows + [(5000, None)]
    rows(s, "CREATE TABLE f AS SELECT 1 AS one", database="fresh")

    out = tmp_path / "restored.duckdb"
    layout.cli("snapshot", "restore", "mydb", str(ids[-1]), str(out))
    with duckdb.connect(str(out), read_only=True) as local:
        assert local.execute("SELECT * FROM t ORDER BY id").fetchall() == snapshot_rows
    assert "exists already" in layout.cli("snapshot", "restore", "mydb", str(ids[-1]), str(out), check=False).stderr

    # Pruning mydb's history keeps the layers the clone shares with it.
    pruned = layout.cli("snapshot", "prune", "mydb", "--keep-last", "1", "--keep-for", "0s").stdout
    assert pruned.startswith("pruned ") and int(pruned.split()[1]) >= 1, pruned
    assert len(layout.cli("snapshot", "list", "mydb").stdout.splitlines()) == 2
    assert "unknown database" in layout.cli("snapshot", "prune", "nope", check=False).stderr
    gc = layout.cli("gc", "--grace", "0s").stdout
    assert gc.startswith("deleted"), gc
    s.stop()
    # After GC everything still restores from the stores alone.
    wipe(layout.disk)
    s = layout.serve()
    assert rows(s, "SELECT * FROM t ORDER BY id", database="copy") == snapshot_rows
    assert rows(s, "SELECT * FROM f", database="fresh") == [(1,)]
    s.stop()


# The ADBC driver complains when a connection dies under an open cursor; that is the point here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_crash_loop_keeps_every_acknowledged_commit(tmp_path):
    """Kills the server at random points during 200+ single-row commits, sometimes wiping its
    disk too; then every acknowledged row is there and every snapshot opens in DuckDB."""
    layout = Layout("sqlite-file", tmp_path)
    rng = random.Random(7878)
    acked = []
    next_id = 0
    cycles = 0
    s = layout.serve()
    rows(s, "CREATE TABLE t (id INTEGER)")
    while len(acked) < 220:
        cycles += 1
        assert cycles <= 200, f"only {len(acked)} commits acknowledged in 200 crash cycles"
        stop = threading.Event()

        def writer():
            nonlocal next_id
            try:
                with adbc_connect(s) as c, c.cursor() as cur:
                    while not stop.is_set():
                        i = next_id
                        next_id += 1
                        cur.execute(f"INSERT INTO t VALUES ({i})")
                        acked.append(i)
            except Exception:
                pass  # the kill: an unacknowledged commit may or may not be there

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(rng.uniform(0.1, 0.8))
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        stop.set()
        t.join()
        s.stop()
        if rng.random() < 0.3:
            wipe(layout.disk)
        s = layout.serve()
    present = [r[0] for r in rows(s, "SELECT id FROM t")]
    missing = sorted(set(acked) - set(present))
    assert not missing, f"{len(missing)} acknowledged commits lost after {cycles} crashes: {missing[:20]}"
    # Each id was written once: a log replayed twice, or a commit applied twice, would show.
    doubled = sorted(i for i in set(present) if present.count(i) > 1)
    assert not doubled, f"rows present more than once: {doubled[:20]}"
    s.stop()
    listing = layout.cli("snapshot", "list", "mydb").stdout
    ids = [int(line.split()[0]) for line in listing.splitlines()[1:]]
    assert len(ids) >= cycles
    counts = []
    for sid in ids:
        out = tmp_path / f"snap-{sid}.duckdb"
        layout.cli("snapshot", "restore", "mydb", str(sid), str(out))
        with duckdb.connect(str(out)) as local:
            tables = [r[0] for r in local.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
            for table in tables:
                local.execute(f'SELECT count(*) FROM "{table}"').fetchall()
            count = local.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() if "t" in tables else (0, 0)
            assert count[0] == count[1], f"snapshot {sid} holds a row twice: {count}"
            counts.append(count[0])
            local.execute("CHECKPOINT")
    # Snapshots only move forward: none holds fewer rows than the one before it.
    assert counts == sorted(counts), counts
    assert counts[-1] == len(present)


def newest_snapshot(layout, database="mydb") -> int:
    listing = layout.cli("snapshot", "list", database).stdout
    return int(listing.splitlines()[-1].split()[0])


@pytest.mark.parametrize("fuse", ["on", "off"])
def test_old_snapshots_are_readable_by_id(tmp_path, duck, fuse):
    """Both ways of serving a snapshot file: FUSE (pages fetched as DuckDB reads them) and
    materialising it into the data directory."""
    layout = Layout("sqlite-file", tmp_path)
    s = layout.serve(extra=["--fuse", fuse])
    assert ("serving snapshot files through FUSE" in s.log_path.read_text()) == (fuse == "on")
    rows(s, "CREATE TABLE t AS SELECT range AS id FROM range(10)")
    rows(s, "CHECKPOINT")
    old = newest_snapshot(layout)
    rows(s, "INSERT INTO t SELECT range + 10 FROM range(5)")

    # Any Flight SQL client: a header on every call.
    header = {"adbc.flight.sql.rpc.call_header.x-openduck-snapshot": str(old)}
    with adbc_connect(s, **header) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchall() == [(10,)]
        with pytest.raises(Exception, match="read-?only"):
            cur.execute("INSERT INTO t VALUES (99)")
    with adbc_connect(s, **{"adbc.flight.sql.rpc.call_header.x-openduck-snapshot": "999999"}) as c, c.cursor() as cur:
        with pytest.raises(Exception, match="has no snapshot 999999"):
            cur.execute("SELECT 1")

    # DuckDB with the extension: ATTACH a snapshot next to the head.
    base = f"openduck:mydb?endpoint=http://127.0.0.1:{s.port}&token={TOKEN}"
    duck.execute(f"ATTACH '{base}' AS head")
    duck.execute(f"ATTACH '{base}&snapshot={old}' AS old")
    assert duck.execute("SELECT (SELECT count(*) FROM head.t), (SELECT count(*) FROM old.t)").fetchall() == [(15, 10)]
    new_rows = duck.execute("SELECT id FROM head.t EXCEPT SELECT id FROM old.t ORDER BY id").fetchall()
    assert new_rows == [(i,) for i in range(10, 15)]
    with pytest.raises(Exception, match="read-?only"):
        duck.execute("INSERT INTO old.t VALUES (1)")
    # A hybrid plan's fragment reads the attached snapshot too.
    duck.execute("CREATE TABLE wanted AS SELECT range AS id FROM range(20)")
    split = "SELECT count(*), sum(t.id) FROM wanted w JOIN old.t t ON w.id = t.id"
    assert "REMOTE→LOCAL" in duck.execute("EXPLAIN " + split).fetchall()[0][1]
    assert duck.execute(split).fetchall() == [(10, 45)]
    s.stop()


def test_snapshots_are_listed_in_sql(tmp_path):
    layout = Layout("sqlite-file", tmp_path)
    s = layout.serve()
    rows(s, "CREATE TABLE t AS SELECT range AS id FROM range(1000)")
    rows(s, "CHECKPOINT")
    listed = rows(s, "SELECT snapshot_id, file_bytes, stored_bytes, layers, parent_id, created_at <= now() FROM openduck_snapshots() ORDER BY snapshot_id")
    cli = [line.split() for line in layout.cli("snapshot", "list", "mydb").stdout.splitlines()[1:]]
    assert [r[0] for r in listed] == [int(c[0]) for c in cli]
    first, newest = listed[0], listed[-1]
    assert first[4] is None and newest[4] == listed[-2][0], listed
    assert newest[1] >= 1000 * 8 and newest[3] == len(listed) and newest[5] is True, listed
    # The snapshot id from the list opens that snapshot.
    header = {"adbc.flight.sql.rpc.call_header.x-openduck-snapshot": str(first[0])}
    with adbc_connect(s, **header) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM duckdb_tables()")
        assert cur.fetchall() == [(0,)]
    s.stop()


def test_heads_through_fuse_seal_only_written_pages_and_survive_kill9(layout):
    """--fuse-heads: DuckDB reads and writes its file through the head filesystem. A small change
    in a larger database seals as a small layer (no whole-file diff), acknowledged writes survive
    kill -9 plus the loss of the disk, and the killed server's mounts are released by its
    watchdog instead of wedging it."""
    N = 10 * 122_880
    s = layout.serve(extra=["--fuse-heads"])
    assert "serving database heads through FUSE" in s.log_path.read_text()
    assert os.path.ismount(layout.disk / ".heads")
    with adbc_connect(s) as c, c.cursor() as cur:
        # Ten row groups: DuckDB's checkpoint rewrites the one an update touches.
        cur.execute(f"CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range({N})")
        cur.execute("CHECKPOINT")
        cur.execute("SELECT file_bytes, stored_bytes FROM openduck_snapshots() ORDER BY snapshot_id DESC LIMIT 1")
        file_bytes, before = cur.fetchone()
        cur.execute("UPDATE big SET h = 'changed' WHERE id < 100")
        cur.execute("CHECKPOINT")
        cur.execute("SELECT stored_bytes FROM openduck_snapshots() ORDER BY snapshot_id DESC LIMIT 1")
        (after,) = cur.fetchone()
    layer = after - before
    assert 0 < layer < file_bytes / 4, f"a 100-row change sealed {layer} bytes of a {file_bytes}-byte file"
    for i in range(5):
        rows(s, f"INSERT INTO big VALUES ({1_000_000 + i}, 'acked')")
    s.stop(signal.SIGKILL, clean_mounts=False)
    # Nobody but the killed server's watchdog releases its mounts.
    heads = layout.disk / ".heads"
    wait_until(lambda: not os.path.ismount(heads) and not fuse_stale(heads), what="the watchdog to release the killed server's mounts")
    wipe(layout.disk)

    s = layout.serve(extra=["--fuse-heads"])
    assert rows(s, "SELECT count(*), count(*) FILTER (h = 'changed'), count(*) FILTER (h = 'acked') FROM big") == [(N + 5, 100, 5)]
    rows(s, "INSERT INTO big VALUES (2000000, 'after')")
    s.stop()
    s = layout.serve(extra=["--fuse-heads"])
    assert rows(s, "SELECT count(*) FROM big") == [(N + 6,)]
    s.stop(clean_mounts=False)
    assert not os.path.ismount(layout.disk / ".heads"), "a clean stop unmounts"


@pytest.mark.parametrize("heads", ["local", "fuse"])
def test_compaction_retention_and_gc_bound_depth_history_and_storage(layout, heads):
    """The server compacts deep snapshots, prunes old ones and collects their layers, after each
    seal and on its GC timer; the database stays whole through it, also after kill -9 and the
    loss of the disk."""
    maintenance = ["--compact-layers", "3", "--keep-snapshots", "2", "--keep-snapshots-for", "0s", "--gc-interval", "1s", "--gc-grace", "1s"]
    extra = [*maintenance, *(["--fuse-heads"] if heads == "fuse" else [])]
    s = layout.serve(extra=extra)
    rows(s, "CREATE TABLE t (id INTEGER, v VARCHAR)")
    rows(s, "CHECKPOINT")
    first = rows(s, "SELECT min(snapshot_id) FROM openduck_snapshots()")[0][0]
    header = {"adbc.flight.sql.rpc.call_header.x-openduck-snapshot": str(first)}
    with adbc_connect(s, **header) as c, c.cursor() as cur:
        cur.execute("SELECT 42")  # the server now has this snapshot open
        assert cur.fetchall() == [(42,)]
    for i in range(10):
        rows(s, f"INSERT INTO t SELECT range + {i * 1000}, 'round {i}' FROM range(1000)")
        rows(s, "CHECKPOINT")
        listed = rows(s, "SELECT snapshot_id, layers FROM openduck_snapshots() ORDER BY snapshot_id")
        assert len(listed) <= 2 and listed[-1][1] <= 3, f"round {i}: {listed}"
    assert "compacted" in s.log_path.read_text()
    assert "pruned old snapshots" in s.log_path.read_text()
    with adbc_connect(s, **header) as c, c.cursor() as cur:
        with pytest.raises(Exception, match=f"has no snapshot {first}"):
            cur.execute("SELECT 1")

    # Released layers go once the grace has passed: about one snapshot's worth is left.
    newest_layers = rows(s, "SELECT layers FROM openduck_snapshots() ORDER BY snapshot_id DESC LIMIT 1")[0][0]
    wait_until(
        lambda: len(layout.objects("mydb/layers/")) <= newest_layers + 1 and "garbage collected" in s.log_path.read_text(),
        timeout=30,
        what="GC to delete released layers",
    )
    assert rows(s, "SELECT count(*), sum(id), count(DISTINCT v) FROM t") == [(10_000, sum(range(10_000)), 10)]

    # Acknowledged writes after all this survive kill -9 and the loss of the disk.
    rows(s, "INSERT INTO t VALUES (-1, 'acked')")
    s.stop(signal.SIGKILL)
    if heads == "fuse":
        pid = s.proc.pid
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the killed server to exit")
    wipe(layout.disk)
    s = layout.serve(extra=extra)
    assert rows(s, "SELECT count(*), sum(id) FROM t") == [(10_001, sum(range(10_000)) - 1)]
    s.stop()


@pytest.mark.parametrize("fuse", ["on", "off"])
def test_a_reader_of_a_pruned_snapshot_finishes(tmp_path, fuse):
    """A query streaming from an old snapshot goes on to the end while that snapshot is pruned
    and garbage is collected (released layers are kept for --gc-grace); a new query on it is
    refused; the database itself loses nothing."""
    import pyarrow.flight as flight

    import proto

    layout = Layout("sqlite-file", tmp_path)
    s = layout.serve(extra=["--fuse", fuse, "--keep-snapshots", "1", "--keep-snapshots-for", "0s"])
    rows(s, "CREATE TABLE t AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(2000000)")
    rows(s, "CHECKPOINT")
    old = newest_snapshot(layout)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode()), (b"x-openduck-snapshot", str(old).encode())])
    client = flight.FlightClient(s.uri)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT id, h FROM t")), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    seen = reader.read_chunk().data.num_rows
    # A new snapshot; retention prunes the old one right away, and GC runs with its usual grace.
    rows(s, "UPDATE t SET h = 'new' WHERE id < 10")
    rows(s, "CHECKPOINT")
    assert old not in [int(line.split()[0]) for line in layout.cli("snapshot", "list", "mydb").stdout.splitlines()[1:]]
    layout.cli("gc", "--grace", "1h")
    while True:
        try:
            seen += reader.read_chunk().data.num_rows
        except StopIteration:
            break
    assert seen == 2_000_000, "the reader of the pruned snapshot got every row"
    with pytest.raises(Exception, match=f"has no snapshot {old}"):
        client.get_flight_info(flight.FlightDescriptor.for_command(proto.statement_query("SELECT 1")), options)
    s.stop()
    # Collecting without grace keeps what the newest snapshot still shares with the pruned one.
    layout.cli("gc", "--grace", "0s")
    wipe(layout.disk)
    s = layout.serve()
    assert rows(s, "SELECT count(*), count(*) FILTER (h = 'new') FROM t") == [(2_000_000, 10)]
    s.stop()


# The ADBC driver complains when a connection dies under an open cursor; that is the point here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_concurrent_writers_lose_no_acknowledged_commit_in_a_crash(layout):
    """Eight writers commit at once (their commits share log shipments), the server is killed in
    the middle and its disk lost: every acknowledged row is back, once."""
    s = layout.serve()
    rows(s, "CREATE TABLE t (writer INTEGER, n INTEGER)")
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w):
        try:
            with adbc_connect(s) as c, c.cursor() as cur:
                n = 0
                while not stop.is_set():
                    cur.execute(f"INSERT INTO t VALUES ({w}, {n})")
                    with lock:
                        acked.append((w, n))
                    n += 1
        except Exception:
            pass  # the kill: an unacknowledged commit may or may not be there

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while len(acked) < 200 and time.time() < deadline:
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 200, f"only {len(acked)} commits acknowledged before the kill"
    s.stop()
    wipe(layout.disk)
    s = layout.serve()
    present = rows(s, "SELECT writer, n FROM t")
    assert len(present) == len(set(present)), "a commit is there twice"
    missing = sorted(set(acked) - set(present))
    assert not missing, f"{len(missing)} acknowledged commits lost: {missing[:10]}"
    s.stop()
