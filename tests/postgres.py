"""A throwaway PostgreSQL cluster for tests: initdb into a temporary folder, pg_ctl start on 127.0.0.1 and a free
port, stopped and removed at the end.

The server binaries are looked for in $NLBENCH_PG_BIN, /usr/lib/postgresql/<version>/bin (Debian, Ubuntu), then
PATH. initdb refuses to run as root, so as root (CI) the server runs as the ``postgres`` user
(``runuser -u postgres --``) in a folder that user owns. Without the binaries the tests that need a server are
skipped, unless NLBENCH_REQUIRE_POSTGRES=1 (CI), where that is an error.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def find_bin() -> Path | None:
    candidates = [os.environ.get("NLBENCH_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    bin: Path
    base: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://nlbench@127.0.0.1:{self.port}/{database}"

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *argv], check=True, capture_output=True, text=True, timeout=120)

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=nlbench dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.base, ignore_errors=True)


def start() -> Server:
    """Start a cluster (raises FileNotFoundError without the binaries, CalledProcessError when it fails)."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl); set NLBENCH_PG_BIN")
    # /tmp, not pytest's tmp_path: the postgres user must be able to reach the folder (root's is private).
    base = Path(tempfile.mkdtemp(prefix="nlbench-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Server(bin_dir, base, _free_port(), as_user)
    try:
        server.run(str(bin_dir / "initdb"), "-D", str(server.data), "-U", "nlbench", "--auth=trust", "-E", "UTF8",
                   "--no-sync")
        # fsync off: a throwaway cluster; the tests kill clients, not the server.
        options = f"-h 127.0.0.1 -p {server.port} -k {base} -c fsync=off -c max_connections=200"
        server.run(str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(base / "server.log"), "-o", options,
                   "-w", "-t", "60", "start")
    except BaseException:
        log = base / "server.log"
        if log.exists():
            print(log.read_text()[-2000:])
        server.stop()
        raise
    return server
