"""Leader election for `steward worker`: one scheduler runs, the others stand by.

APScheduler 3 must not share a job store between two running schedulers (both would run
every job), so a worker starts its scheduler only while it holds the leader lock, and a
standby retries every STEWARD_LEADER_POLL_SECONDS.

* PostgreSQL: `pg_try_advisory_lock(key)` held on a dedicated connection (no pool, in
  autocommit so it is never idle in a transaction). The lock lives exactly as long as the
  database session: when the leader exits or is killed (SIGKILL included) its socket closes
  and the server releases the lock at once. TCP keepalives on both sides (libpq options,
  and the session's `tcp_keepalives_*`) bound how long a vanished host (power loss, network
  partition) keeps it to about a minute. The leader checks its connection every few
  seconds and steps down when it is gone. `application_name` shows the holder in
  `pg_stat_activity`. Advisory lock keys are per database, so deployments sharing a server
  do not collide.
* SQLite: an exclusive `flock` on a file next to the database (`<db>-<name>.lock`).
  SQLite already requires every process to be on one host with a local file system, and
  the kernel drops a flock when its process dies, however it dies: takeover is bounded by
  the standby's poll interval alone. A lease row renewed by a heartbeat thread would add
  a clock, a renewal thread and a window in which a stalled leader and its successor both
  run (a lease needs fencing; a flock cannot be held by a dead process). The file holds the
  holder id for humans; it is never deleted (deleting lock files races with lockers).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

DEFAULT_NAME = "scheduler"
# Routing cycles (`steward notify`, the worker's jobs) hold this lock while they run, so two
# cycles never send the same DM twice.
CAMPAIGN_LOCK = "campaign"


def holder_id() -> str:
    """Who holds a lock: host, process id, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLock(Protocol):
    holder: str

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks. True if this process now holds it."""

    def still_held(self) -> bool:
        """False when the lock was lost (PostgreSQL connection gone): stop scheduling."""

    def release(self) -> None:
        """Give the lock up (idempotent)."""


def leader_lock(url: str, *, name: str = DEFAULT_NAME, holder: str | None = None) -> LeaderLock:
    """The lock that fits the database at `url`."""
    parsed = make_url(url)
    holder = holder or holder_id()
    if parsed.get_backend_name() == "postgresql":
        return PostgresAdvisoryLock(url, name=name, holder=holder)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return ProcessLock(name=name, holder=holder)  # an in-memory database has one process
        return FileLock(Path(f"{database}-{name}.lock"), holder=holder)
    raise ValueError(f"no leader lock for {parsed.get_backend_name()} databases")


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock(bigint)`."""
    digest = hashlib.sha256(f"iam-steward:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresAdvisoryLock:
    """A session-level advisory lock on a connection of its own."""

    KEEPALIVE: ClassVar[dict[str, int]] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}

    def __init__(self, url: str, *, name: str = DEFAULT_NAME, holder: str | None = None):
        self.holder = holder or holder_id()
        self.key = advisory_key(name)
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                **self.KEEPALIVE,
                "application_name": f"steward-worker {self.holder}"[:63],
                "connect_timeout": 10,
            },
        )
        self._connection: Connection | None = None
        self._held = False

    def try_acquire(self) -> bool:
        if self._held:
            return True
        if self._connection is None:  # a standby keeps its connection between attempts
            connection = self._engine.connect()
            try:
                # Let the server notice a vanished client too (per-session settings).
                connection.execute(text("SET tcp_keepalives_idle = 10"))
                connection.execute(text("SET tcp_keepalives_interval = 5"))
                connection.execute(text("SET tcp_keepalives_count = 3"))
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        try:
            got = self._connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        except BaseException:
            self._drop()
            raise
        self._held = bool(got)
        return self._held

    def still_held(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar()
        except Exception as exc:  # the session (and with it the lock) is gone
            log.error("leader lock connection lost: %s", exc)
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._connection is None:
            return
        if self._held:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception as exc:  # closing the session below releases it anyway
                log.warning("could not unlock the leader lock cleanly: %s", exc)
        self._drop()

    def _drop(self) -> None:
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken
                connection.invalidate()
        self._engine.dispose()


class FileLock:
    """An exclusive, non-blocking `flock` on `path` (POSIX)."""

    def __init__(self, path: Path, *, holder: str | None = None):
        try:
            import fcntl  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "the SQLite leader lock needs a POSIX system (flock); use PostgreSQL here"
            ) from None
        self.path = Path(path)
        self.holder = holder or holder_id()
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.holder}\n".encode())
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def current_holder(self) -> str | None:
        """The id written by the last holder (informational; may be stale)."""
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


class ProcessLock:
    """For an in-memory SQLite database, which only one process can see anyway."""

    def __init__(self, *, name: str = DEFAULT_NAME, holder: str | None = None):
        self.holder = holder or holder_id()
        with _PROCESS_LOCKS_GUARD:
            self._lock = _PROCESS_LOCKS.setdefault(name, threading.Lock())
        self._held = False

    def try_acquire(self) -> bool:
        if not self._held:
            self._held = self._lock.acquire(blocking=False)
        return self._held

    def still_held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


# --- one cycle at a time: the campaign lock ----------------------------------------------------

_held_here = threading.local()


class LockBusy(RuntimeError):
    """Another process held the lock for longer than we were willing to wait."""


@contextmanager
def exclusive(url: str, *, name: str = CAMPAIGN_LOCK, wait: float = 600.0, poll: float = 0.5,
              on_wait: Callable[[str | None], None] | None = None) -> Iterator[None]:
    """Hold the named lock (the same kinds as the leader lock) for the block.

    Waits up to `wait` seconds while another process holds it (`on_wait` is told once, with
    the holder if known), then raises LockBusy. Re-entrant within a thread: a scan job that
    runs a routing cycle takes it once.
    """
    names = _held_here.__dict__.setdefault("names", set())
    if name in names:
        yield
        return
    lock = leader_lock(url, name=name)
    deadline = time.monotonic() + wait
    told = False
    while not lock.try_acquire():
        if not told and on_wait is not None:
            on_wait(lock.current_holder() if isinstance(lock, FileLock) else None)
            told = True
        if time.monotonic() >= deadline:
            raise LockBusy(f"another process held the {name} lock for more than {wait:.0f} s")
        time.sleep(poll)
    names.add(name)
    try:
        yield
    finally:
        names.discard(name)
        lock.release()


# --- leases: who is carrying out a remediation step ---------------------------------------------

_process_holder: tuple[int, str] | None = None
_process_holder_guard = threading.Lock()


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def process_holder() -> str:
    """This process's lease holder id: `host:pid-namespace:pid:random` (new after a fork)."""
    global _process_holder
    with _process_holder_guard:
        if _process_holder is None or _process_holder[0] != os.getpid():
            holder = f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            _process_holder = (os.getpid(), holder)
        return _process_holder[1]


def holder_gone(holder: str | None) -> bool:
    """True when `holder` is a process of this host (and pid namespace) that has ended.

    Only a definite answer counts: a holder on another host, or whose pid now belongs to
    some running process, is not known to be gone (its lease expiry decides instead).
    """
    if not holder:
        return True
    try:
        host, namespace, pid_text, _random = holder.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or namespace != _pid_namespace():
        return False
    if pid == os.getpid():
        return holder != process_holder()  # an earlier process that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process whose parent died too stays a zombie until something reaps it (a
    container without an init may never): it still answers signal 0, but runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux): only a definite answer counts
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])
