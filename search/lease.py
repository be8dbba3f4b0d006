"""One driver per study: a lease row in the store that the running driver renews, on SQLite and PostgreSQL alike.

A row rather than PostgreSQL advisory locks: SQLite has no such locks, a row reads the same on both backends, and
it names its holder (host, pid, since when), which a refused driver prints and the dashboard can show. A claim is
one compare-and-swap on the row's token, so two drivers racing for a study cannot both win.

A driver that died is detected two ways: its lease expires LEASE_SECONDS after its last renewal (from anywhere), and
on its own machine its process is seen to be gone at once (so a resume right after a crash or a SIGKILL takes over
without waiting). Expiry compares the clocks of the machines that share a store: keep them in sync (NTP).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evaluators.vocabulary import StudyStatus
from search.store import Store, StoreError
from search.tables import LeaseRow, StudyRow, utcnow

# A driver that stops renewing is presumed dead this long after its last renewal.
LEASE_SECONDS = 30.0
# How often the running driver renews (from a background thread: nothing on the dispatch loop).
RENEW_SECONDS = 5.0


class StudyBusyError(StoreError):
    """Another live driver runs the study (or took it over from this one)."""


@functools.cache
def this_machine() -> str:
    """Where a pid means the same process: the host name, plus on Linux its boot and this PID namespace."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return " ".join(parts)


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), or "" where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def process_alive(pid: int, started: str) -> bool:
    """Whether process ``pid`` of this machine runs and is the one that started at ``started``."""
    if not Path("/proc/self/stat").exists():  # no /proc here: only whether the pid exists can be told
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and (not started or fields[19] == started)  # a zombie is dead


@dataclass(frozen=True)
class Holder:
    """A driver process, as its lease names it."""

    host: str
    pid: int
    machine: str
    process_start: str

    @classmethod
    def this_process(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), this_machine(), process_start(os.getpid()))


def driver_alive(lease: LeaseRow, now: datetime | None = None) -> bool:
    """Whether the lease's driver still holds it: not expired and, on this machine, its process still running."""
    if lease.expires_at <= (now or utcnow()):
        return False
    return lease.machine != this_machine() or process_alive(lease.pid, lease.process_start)


def describe(lease: LeaseRow) -> str:
    return f"pid {lease.pid} on host {lease.host} since {lease.acquired_at:%Y-%m-%d %H:%M:%S} UTC"


def busy_message(study: str, lease: LeaseRow, now: datetime | None = None) -> str:
    renewed = ((now or utcnow()) - lease.renewed_at).total_seconds()
    return (
        f"study {study!r} is already being run by {describe(lease)} (lease renewed {max(renewed, 0):.0f} s ago); "
        f"stop that driver first, or if it is gone, resume once its lease expires "
        f"at {lease.expires_at:%H:%M:%S} UTC"
    )


def shown_status(study: StudyRow, lease: LeaseRow | None, now: datetime | None = None) -> StudyStatus:
    """The status to show: a study stored as running whose driver no longer holds its lease was interrupted.

    A running study with no lease row at all was written by a driver older than leases, which cannot be told
    alive or dead; it shows as stored.
    """
    if study.status == StudyStatus.RUNNING and lease is not None and not driver_alive(lease, now):
        return StudyStatus.INTERRUPTED
    return study.status


def leases(store: Store) -> dict[int, LeaseRow]:
    """Every study's lease by study id; none in a store written before leases existed (read-only: no table)."""
    if not store.read(lambda s: inspect(s.connection()).has_table(LeaseRow.__tablename__)):
        return {}
    return store.read(lambda s: {row.study_id: row for row in s.scalars(select(LeaseRow))})


class StudyLease:
    """A driver's claim on one study: taken before it touches the study, renewed while it runs, released at the end."""

    def __init__(self, store: Store, study: StudyRow, holder: Holder | None = None):
        self.store = store
        self.study = study
        self.holder = holder or Holder.this_process()
        self.token = secrets.token_hex(16)
        self.lease_seconds = LEASE_SECONDS
        self.renew_seconds = RENEW_SECONDS
        self.lost = False  # another driver took the study over: this one must write nothing more
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> LeaseRow | None:
        """Claim the study; returns the previous holder's lease (ended or dead), if there was one.

        Raises StudyBusyError naming the holder while another live driver holds it.
        """
        for _ in range(3):
            try:
                claimed, previous = self.store.write(self._claim)
            except IntegrityError:  # another driver inserted the first lease at the same moment
                continue
            if claimed:
                return previous
        raise StudyBusyError(f"study {self.study.name!r} is being claimed by other drivers right now; try again")

    def _claim(self, s: Session) -> tuple[bool, LeaseRow | None]:
        now = utcnow()
        current = s.get(LeaseRow, self.study.id)
        holder = self.holder
        mine = {
            "token": self.token,
            "host": holder.host,
            "pid": holder.pid,
            "machine": holder.machine,
            "process_start": holder.process_start,
            "acquired_at": now,
            "renewed_at": now,
            "expires_at": now + timedelta(seconds=self.lease_seconds),
        }
        if current is None:
            s.execute(insert(LeaseRow).values(study_id=self.study.id, **mine))
            return True, None
        if current.token == self.token:  # a retry after a lost connection: the first try had committed
            return True, None
        if driver_alive(current, now):
            raise StudyBusyError(busy_message(self.study.name, current, now))
        s.expunge(current)  # kept as it was: the previous holder
        # Compare-and-swap on the token seen: of two drivers taking over the same dead lease, one wins.
        taken = s.execute(
            update(LeaseRow).where(LeaseRow.study_id == self.study.id, LeaseRow.token == current.token).values(**mine)
        )
        return taken.rowcount == 1, current

    def renew(self) -> bool:
        """Push the expiry forward; False when the lease is no longer this driver's."""
        now = utcnow()
        mine = (LeaseRow.study_id == self.study.id, LeaseRow.token == self.token)
        values = {"renewed_at": now, "expires_at": now + timedelta(seconds=self.lease_seconds)}
        return self.store.write(lambda s: s.execute(update(LeaseRow).where(*mine).values(**values)).rowcount) == 1

    def keep_renewed(self, on_lost: Callable[[str], None]) -> None:
        """Renew from a background thread until released; ``on_lost`` hears who took the study over."""
        self._renewer = threading.Thread(target=self._renew_loop, args=(on_lost,), name="study-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self, on_lost: Callable[[str], None]) -> None:
        while not self._stop.wait(self.renew_seconds):
            try:
                if self.renew():
                    continue
            except StoreError:
                continue  # the store is unreachable: the driver's own writes report it; try again
            self.lost = True
            on_lost(self._taker())
            return

    def _taker(self) -> str:
        try:
            current = self.store.read(lambda s: s.get(LeaseRow, self.study.id))
        except StoreError:
            current = None
        return describe(current) if current is not None else "another driver"

    def release(self) -> None:
        """End the claim (its row stays, expired, naming the last driver); best effort: an unwritable store lets it
        expire on its own."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        if self.lost:
            return
        mine = (LeaseRow.study_id == self.study.id, LeaseRow.token == self.token)
        try:
            self.store.write(lambda s: s.execute(update(LeaseRow).where(*mine).values(expires_at=utcnow())))
        except StoreError:
            pass
