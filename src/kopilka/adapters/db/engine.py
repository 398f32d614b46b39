"""Engine factory: SQLite tuned for a trustworthy ledger, PostgreSQL with a pool."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from kopilka.adapters.db.types import compact_json

WRITE_OPTION = "kopilka_write"
POOL_RECYCLE_SECONDS = 1800
# Where a SQLite connection keeps the process's write lock while it holds it.
_WRITE_LOCK_HELD = "kopilka_write_lock_held"
WRITE_LOCK_TIMEOUT_SECONDS = 30.0


class DatabaseBusy(sa.exc.OperationalError):
    """No write slot on the embedded database within the timeout."""


def release_write_lock(conn: sa.Connection) -> None:
    """Hand the SQLite write slot to the next writer (no-op elsewhere or when not held)."""
    lock = conn.info.pop(_WRITE_LOCK_HELD, None)
    if lock is not None:
        lock.release()


def create_db_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite files get their folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    # Sessions in UTC: every timestamp is stored and compared in UTC anyway (business days
    # go by the tenant's zone, named in the SQL), and psycopg then returns datetimes that
    # already carry Python's UTC, which UtcDateTime passes through without a conversion
    # (a member's open lots are read on every purchase, three timestamps each).
    options = parsed.query.get("options")
    session_options = (
        f"{options} -c timezone=UTC" if isinstance(options, str) else "-c timezone=UTC"
    )
    return sa.create_engine(
        url,
        connect_args={"options": session_options},
        pool_size=pool_size,
        max_overflow=pool_size,
        # Recycled, not pinged: a ping is one more round trip on every checkout (a ledger
        # write is one round trip on its fast path). A connection the server dropped fails
        # its request once and is then discarded by the pool (SQLAlchemy invalidates it).
        pool_recycle=POOL_RECYCLE_SECONDS,
        echo=echo,
        json_serializer=compact_json,
    )


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=compact_json,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE can be issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # the ledger must survive a power cut
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # One writer at a time per process, queued here: SQLite lets a blocked writer sleep in
    # its busy handler (1, 2, 5, 10 ... 100 ms steps), which under load cost more than the
    # writes themselves and made the tail latency seconds long. Other processes on the same
    # file still meet SQLite's own lock and busy timeout.
    write_lock = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front: no deadlock-prone lock upgrades mid-transaction.
        if conn.get_execution_options().get(WRITE_OPTION, False):
            if _WRITE_LOCK_HELD not in conn.info:  # a second transaction on one connection
                if not write_lock.acquire(timeout=WRITE_LOCK_TIMEOUT_SECONDS):
                    raise DatabaseBusy(
                        "BEGIN IMMEDIATE", None, Exception("database is locked"), False
                    )
                conn.info[_WRITE_LOCK_HELD] = write_lock
            try:
                _begin(conn, "BEGIN IMMEDIATE")
            except BaseException:
                release_write_lock(conn)
                raise
        else:
            _begin(conn, "BEGIN")

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # The safety net: whoever did not hand the slot on does so when the connection goes
        # back to the pool (a unit of work hands it on right after its COMMIT).
        lock = record.info.pop(_WRITE_LOCK_HELD, None)
        if lock is not None:
            lock.release()

    return engine


def _begin(conn: sa.Connection, statement: str) -> None:
    """Send BEGIN on the sqlite3 connection itself: it is the first statement of every unit
    of work, and SQLAlchemy's statement machinery cost more than SQLite's work on it."""
    try:
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc
