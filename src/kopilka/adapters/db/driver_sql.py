"""The till's hot statements straight on the unit of work's psycopg connection.

Measured on one member read (``bench``-sized database, CPU of the Python process): about
30-50 µs through psycopg with a prepared statement, about 140-150 µs through SQLAlchemy,
which builds a cursor, an execution context and a result per statement. A purchase sends
five such statements. The statements stay inside the unit of work's transaction: SQLAlchemy
is told the transaction has begun, so its commit or rollback ends it, and errors come out as
SQLAlchemy's exceptions, as from any other statement (a lost connection is invalidated).
The engine's ``before_cursor_execute`` listeners still see each statement (tests count them).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
# One reusable cursor per driver connection (a connection serves one unit of work at once).
_CURSORS: weakref.WeakKeyDictionary[psycopg.Connection[Any], psycopg.Cursor[Any]] = (
    weakref.WeakKeyDictionary()
)


class DriverStatement:
    """A SQLAlchemy statement compiled once for psycopg, with its fixed parameters."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self.fixed = {k: v for k, v in compiled.params.items() if v is not None}


def driver_rows(
    conn: sa.Connection, statement: DriverStatement | str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of a statement run on the driver connection (PostgreSQL only)."""
    cursor = _execute(conn, statement, params)
    # Not ``cursor.description``: that builds a column object per column (30 for a card
    # and its member) only to be thrown away.
    result = cursor.pgresult
    return cursor.fetchall() if result is not None and result.status == _TUPLES_OK else []


def driver_rowcount(conn: sa.Connection, statement: str, params: Mapping[str, Any]) -> int:
    """Run a write on the driver connection; the rows it touched."""
    return _execute(conn, statement, params).rowcount


def _execute(
    conn: sa.Connection, statement: DriverStatement | str, params: Mapping[str, Any]
) -> psycopg.Cursor[Any]:
    if isinstance(statement, DriverStatement):
        sql = statement.sql
        params = {**statement.fixed, **params} if statement.fixed else params
    else:
        sql = statement
    if not conn.in_transaction():
        conn.begin()  # psycopg sends BEGIN just before the statement; SQLAlchemy ends it
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    cursor = _CURSORS.get(driver)
    if cursor is None or cursor.closed:
        cursor = _CURSORS[driver] = driver.cursor()
    # Only when someone listens for statements: the engine has other listeners (its
    # connect, begin and checkin events), and calling the empty collection costs too.
    if conn.dispatch.before_cursor_execute:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
    try:
        cursor.execute(sql, params, prepare=True)
    except psycopg.Error as exc:
        lost = driver.closed or driver.broken
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, params, exc, psycopg.Error, connection_invalidated=lost
        ) from exc
    return cursor
