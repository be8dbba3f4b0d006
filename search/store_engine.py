"""Opening a store's database: an engine per backend, SQLite's pragmas, and its guard against a replaced file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from search.db_urls import redact_url, split_userinfo


class StoreError(RuntimeError):
    """The store is unreachable, read-only, or holds something unexpected."""


def _sqlite_pragmas(read_only: bool) -> Callable[..., None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        if read_only:
            cur.execute("PRAGMA query_only=ON")
        else:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


class _SameFile:
    """Refuses connections once a writer's SQLite file was replaced or removed under it.

    A new connection would write another database (or create an empty one), and SQLite would truncate the WAL
    index that this process's older connections still map: a SIGBUS at their next checkpoint.
    """

    def __init__(self, path: Path):
        self.path = path
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file the first connection opened

    def _current(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def check(self, *_: Any) -> None:
        """Before a connection reads the file (connect) and before each use (checkout)."""
        current = self._current()
        if self.identity is None:
            self.identity = current  # None until the first connection has created the file
        elif current != self.identity:
            raise StoreError(
                f"store file {self.path} was replaced or removed while this driver had it open; "
                "nothing more is written to it"
            )


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout, and its folder is created if missing."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"store URL {redact_url(url)!r} is not a database URL; "
            "use sqlite:///path/to.db or postgresql+psycopg://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if read_only:
                if not path.exists():
                    raise StoreError(f"store file {path} does not exist; run a study first or pass --db")
                # Read-only dashboards open the file with mode=ro so they can never take a write lock.
                url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        if database and database != ":memory:" and not read_only:
            same_file = _SameFile(Path(database))
            event.listen(engine, "connect", same_file.check)  # first: before a pragma reads the file
            event.listen(engine, "checkout", same_file.check)
        event.listen(engine, "connect", _sqlite_pragmas(read_only))
        return engine
    if backend == "postgresql":
        parts = split_userinfo(url)
        if parts is not None and "@" in parts[1]:
            raise StoreError(
                f"the user name or password in store URL {redact_url(url)} holds an unencoded '@', so the URL "
                "cannot be read; percent-encode it (@ as %40, / as %2F, : as %3A: urllib.parse.quote(password, "
                "safe='')), or leave the password out and let PostgreSQL read it from PGPASSWORD or ~/.pgpass"
            )
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800)
        if read_only:
            event.listen(engine, "connect", _pg_read_only)
        return engine
    raise StoreError(f"unsupported store backend {backend!r}; use sqlite:/// or postgresql://")


def _pg_read_only(dbapi_conn: Any, _record: Any) -> None:
    with dbapi_conn.cursor() as cur:
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    dbapi_conn.commit()
