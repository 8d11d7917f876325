"""Engine and sessions. Built by the entry points, never at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class DatabaseURLError(ValueError):
    """STEWARD_DATABASE_URL names a database Steward does not support; the message says so."""


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for `url` (SQLite or PostgreSQL). Raises DatabaseURLError for another
    database and sqlalchemy.exc.ArgumentError for text that is not a URL.

    Exception texts never carry statement parameters (`hide_parameters`): they reach logs,
    and parameters are tokens, reasons and people's names.
    """
    kwargs.setdefault("hide_parameters", True)
    backend = make_url(url).get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise DatabaseURLError(
            f"STEWARD_DATABASE_URL: unsupported database {backend!r} "
            "(use postgresql+psycopg://user:password@host/name or sqlite:///path)"
        )
    if url.startswith("sqlite"):
        # Several processes (web, worker, CLI) share one file: wait for the write lock
        # instead of failing (30 s, or the URL's `?timeout=SECONDS`), and let readers run
        # beside a writer.
        timeout = float(make_url(url).query.get("timeout", 30))
        engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def write_scope(engine: Engine) -> Iterator[Session]:
    """A transaction that reads and then writes (a check, then a compare-and-set).

    On SQLite it starts with `BEGIN IMMEDIATE`: a deferred transaction that read first and
    then tries to write after another connection committed fails at once with "database is
    locked" (SQLITE_BUSY_SNAPSHOT; the busy timeout does not apply), which under 20
    simultaneous clicks left decisions half-made. Taking the write lock first makes writers
    queue (busy timeout) and read the newest state. PostgreSQL needs nothing: the
    compare-and-set's WHERE clause decides there.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            if engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
