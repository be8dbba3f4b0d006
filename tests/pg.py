"""A private PostgreSQL server for tests: initdb in a temp folder, a free loopback port, stopped at the end.

PostgreSQL refuses to run as root, so under root (as in CI) the server runs as the `postgres` system user
that Debian's package creates.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"


def find_postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian keeps one per major version), or None."""
    found = [Path(d) for d in glob.glob(POSTGRES_BIN_GLOB) if (Path(d) / "initdb").exists()]
    return max(found, key=lambda d: int(d.parent.name)) if found else None


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One server process; ``create_database`` gives each test an empty database of its own."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="lfpg", dir="/tmp"))  # short: the socket lives here
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(SUPERUSER)  # KeyError: install the postgresql package, which creates it
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._run_as = ["runuser", "-u", SUPERUSER, "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._run_as, *args], cwd=self.root, check=True, capture_output=True, text=True)

    def start(self, attempts: int = 3) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "--auth=trust", "-U", SUPERUSER, "--no-sync")
        for attempt in range(attempts):
            self.port = free_loopback_port()
            options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "start",
                )
                return
            except subprocess.CalledProcessError:  # the port was taken between choosing and binding it
                if attempt == attempts - 1:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}") from None

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True)

    def create_database(self) -> str:
        name = f"layerforge_test_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def terminate_connections(self, database: str) -> int:
        """Kill every server process serving ``database`` (what a restart or a network cut does to a client)."""
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return sum(1 for (killed,) in rows if killed)
