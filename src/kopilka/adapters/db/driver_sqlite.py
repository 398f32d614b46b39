"""The till's statements straight on the unit of work's sqlite3 connection.

On SQLite a purchase reads its member, accounts and lots, then writes its ledger (accounts,
transaction, postings, lots, movements) and its receipt (the receipt, its lines): about ten
statements. Through SQLAlchemy each cost some 70 µs of Python beyond SQLite's own work (an
execution context, a result, and for a statement built with ``.values(row)`` a new statement
and its cache key): a quarter of a purchase's CPU in SQLite mode. Here each statement is
compiled once per shape (for a write, the names of the values given) for the engine's own
dialect. Values go through the very bind processors SQLAlchemy applies (UUIDs as hex,
timestamps as text, JSON by the engine's serializer), so the stored bytes are the same, and
a read's columns come back through its result processors. The statements run in the unit
of work's transaction, on its connection; errors come out as SQLAlchemy's exceptions, and
the engine's ``before_cursor_execute`` listeners still see each statement (tests count them).
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

_MISSING: Any = object()
# Compiled statements per dialect (each engine has its own, with its JSON serializer).
_COMPILED: weakref.WeakKeyDictionary[Dialect, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


class SqliteStatement:
    """A statement compiled once for sqlite3, fed rows of named values."""

    def __init__(
        self, statement: sa.ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None
    ) -> None:
        compiled = statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
        )
        self.compiled = compiled
        self.sql = str(compiled)
        # SQLAlchemy's own converters for each parameter (private, but the same functions
        # its execution applies: tests/integration/test_driver_sqlite.py compares the rows).
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors  # type: ignore[attr-defined]
        # A parameter with a value of its own in the statement (``status == 'held'``) keeps
        # it when a row has none; the others must come with every row.
        values = compiled.params
        binds: Mapping[str, sa.BindParameter[Any]] = compiled.binds  # type: ignore[attr-defined]
        fixed = {
            name: values[name]
            for name, bind in binds.items()
            if name in values and not bind.required
        }
        names: Sequence[str] = compiled.positiontup or ()  # type: ignore[attr-defined]
        self._slots = tuple(
            (name, processors.get(name), fixed.get(name, _MISSING)) for name in names
        )

    def parameters(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row's values in the statement's order, converted for sqlite3."""
        out = []
        for name, process, default in self._slots:
            value = row.get(name, default)
            if value is _MISSING:
                raise KeyError(f"no value for {name!r}")
            out.append(value if process is None else process(value))
        return tuple(out)


class SqliteRead(SqliteStatement):
    """A SELECT compiled once for sqlite3, its columns converted as SQLAlchemy would."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        super().__init__(statement, dialect, None)
        # SQLAlchemy's own converters per column (private, like the bind processors).
        entries: list[Any] = getattr(self.compiled, "_result_columns", None) or []
        self._columns = tuple(
            entry.type._cached_result_processor(dialect, None) for entry in entries
        )
        self._plain = all(process is None for process in self._columns)

    def convert(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if self._plain:
            return rows
        columns = self._columns
        return [
            tuple(
                value if process is None else process(value)
                for process, value in zip(columns, row, strict=True)
            )
            for row in rows
        ]


def _compiled_for(conn: sa.Connection) -> dict[Hashable, Any]:
    per_dialect = _COMPILED.get(conn.dialect)
    if per_dialect is None:
        per_dialect = _COMPILED[conn.dialect] = {}
    return per_dialect


def compiled_read(conn: sa.Connection, statement: sa.Select[Any]) -> SqliteRead:
    """``statement`` (built once, at import) compiled for ``conn``'s dialect, once."""
    per_dialect = _compiled_for(conn)
    found = per_dialect.get(statement)
    if found is None:
        found = per_dialect[statement] = SqliteRead(statement, conn.dialect)
    assert isinstance(found, SqliteRead)
    return found


def sqlite_rows(
    conn: sa.Connection, statement: sa.Select[Any], params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of a read run on the sqlite3 connection, in ``conn``'s transaction."""
    read = compiled_read(conn, statement)
    cursor = sqlite_execute(conn, read, [params])
    return read.convert(cursor.fetchall())


def compiled_write(
    conn: sa.Connection,
    shape: Hashable,
    build: Callable[[], sa.ClauseElement],
    column_keys: Sequence[str] | None = None,
) -> SqliteStatement:
    """The statement ``build()`` compiled for ``conn``'s dialect, once per ``shape``."""
    per_dialect = _compiled_for(conn)
    found = per_dialect.get(shape)
    if found is None:
        found = per_dialect[shape] = SqliteStatement(build(), conn.dialect, column_keys)
    assert isinstance(found, SqliteStatement)
    return found


def sqlite_execute(
    conn: sa.Connection, statement: SqliteStatement, rows: Sequence[Mapping[str, Any]]
) -> sqlite3.Cursor:
    """Run ``statement`` once per row (one ``executemany``) in ``conn``'s transaction."""
    if not conn.in_transaction():
        conn.begin()  # the engine's begin listener sends BEGIN (a writer's takes the lock)
    driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    params = [statement.parameters(row) for row in rows]
    cursor = driver.cursor()
    many = len(params) != 1
    if conn.dispatch.before_cursor_execute:  # someone listens (see driver_sql)
        conn.dispatch.before_cursor_execute(
            conn, cursor, statement.sql, params if many else params[0], None, many
        )
    try:
        if many:
            cursor.executemany(statement.sql, params)
        else:
            cursor.execute(statement.sql, params[0])
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(statement.sql, params, exc, sqlite3.Error) from exc
    return cursor
