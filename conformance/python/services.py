"""Real services for the layered-storage tests: a private PostgreSQL (Debian's package) and an
S3-compatible server (s3s-fs), each on a random loopback port in a temporary directory."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import free_port

S3_KEY = "openduck-test-key"
S3_SECRET = "openduck-test-secret"
S3_BUCKET = "openduck-layers"


def _pg_bin() -> Path:
    if os.environ.get("OPENDUCK_PG_BIN"):
        return Path(os.environ["OPENDUCK_PG_BIN"])
    candidates = sorted(p / "bin" for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "initdb").exists())
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql (scripts/setup.sh does)")
    return candidates[-1]


class Postgres:
    """A throwaway PostgreSQL cluster; `url` is what `openduck serve --metadata` takes."""

    def __init__(self):
        # Under /tmp itself: the server runs as the postgres user, which must reach the directory.
        root = Path(tempfile.mkdtemp(prefix="openduck-pg-"))
        self.root = root
        os.chmod(root, 0o777)
        self.data = root / "pgdata"
        self.bin = _pg_bin()
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool, *args):
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed: {out.stderr}")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self):
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def remove(self):
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class S3:
    """An S3-compatible server over a directory; `env` holds the AWS_* variables a client needs."""

    def __init__(self, root: Path, port: int = 0):
        binary = os.environ.get("OPENDUCK_S3_TEST_SERVER")
        if not binary:
            raise RuntimeError("OPENDUCK_S3_TEST_SERVER is not set (scripts/test.sh builds and sets it)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, str(root), str(port), S3_KEY, S3_SECRET, S3_BUCKET], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            raise RuntimeError(f"S3 test server did not start (exit {self.proc.poll()})")
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def url(self, prefix: str) -> str:
        return f"s3://{S3_BUCKET}/{prefix}"

    @property
    def env(self) -> dict:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_REGION": "us-east-1",
        }

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        """Starts again on the same port and directory (after `stop`)."""
        deadline = time.time() + 10
        while True:
            try:
                self.__init__(self.root, self.port)
                return
            except RuntimeError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)


def wipe(path: Path):
    """Loses a local disk: removes the directory and everything in it."""
    shutil.rmtree(path, ignore_errors=True)


def createdb(pg: "Postgres", name: str) -> str:
    """Creates a database in the cluster; returns its URL."""
    pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", name)
    return f"postgres://postgres@127.0.0.1:{pg.port}/{name}"
