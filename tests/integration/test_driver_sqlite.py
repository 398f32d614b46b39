"""The till's statements on the sqlite3 connection (adapters/db/driver_sqlite.py): the same
stored values and the same rows read as through SQLAlchemy, inside the unit of work's
transaction, errors as SQLAlchemy's, and visible to the engine's statement listeners."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from kopilka.adapters.db import directory_store, ledger_store
from kopilka.adapters.db.driver_sqlite import compiled_write, sqlite_execute, sqlite_rows
from kopilka.adapters.db.tables import (
    accounts,
    ledger_transactions,
    lot_movements,
    lots,
    postings,
    receipt_lines,
    receipts,
    tenants,
)
from kopilka.adapters.db.types import UtcDateTime
from kopilka.bootstrap import Container
from kopilka.testing import FakeClock
from tests.conftest import Merchant, empty_tables

# Every table a purchase writes on SQLite, with the columns the till gives.
TILL_TABLES = (receipts, receipt_lines, ledger_transactions, postings, lots, lot_movements)
MOSCOW = timezone(timedelta(hours=3))


@pytest.fixture
def sqlite(sqlite_engine: Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that is rolled back; foreign keys checked only at a
    commit that never comes, so rows need no parents."""
    empty_tables(sqlite_engine)
    with sqlite_engine.connect() as conn:
        conn.begin()
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        yield conn
        conn.rollback()


def sample(column: sa.Column[Any], variant: int) -> Any:
    """A value for ``column``: variant 0 the plain case, 1 the awkward one (None where
    allowed, non-ASCII, another time zone)."""
    if variant == 1 and column.nullable:
        return None
    kind = column.type
    if isinstance(kind, sa.Uuid):
        return uuid.UUID(int=0xABC + variant)
    if isinstance(kind, UtcDateTime):
        return datetime(2026, 3, 8, 23, 59, 59, 123456, tzinfo=MOSCOW if variant else UTC)
    if isinstance(kind, sa.JSON):
        return {"ru": "Ёлка «x»", "n": None, "list": [1, 2, {"k": -3}]} if variant else []
    if isinstance(kind, sa.Numeric):
        return Decimal("0.734") if variant else Decimal(10)
    if isinstance(kind, sa.Boolean):
        return bool(variant)
    if isinstance(kind, sa.Integer):
        return 10**12 if variant else 0
    return "Кофе — латте" if variant else "x"


def stored(conn: sa.Connection, table: sa.Table, key: str, value: Any) -> list[tuple[Any, ...]]:
    """Each column's storage class and SQL literal, as SQLite holds them."""
    columns = [c.name for c in table.columns if c.name != "id"]
    probes = ", ".join(f"typeof({c}), quote({c})" for c in columns)
    found = conn.exec_driver_sql(
        f"SELECT {probes} FROM {table.name} WHERE {key} = ?",
        (value,),
    ).all()
    return [tuple(row) for row in found]


@pytest.mark.parametrize("table", TILL_TABLES, ids=lambda t: t.name)
@pytest.mark.parametrize("variant", [0, 1])
def test_rows_are_stored_exactly_as_sqlalchemy_stores_them(
    sqlite: sa.Connection, table: sa.Table, variant: int
) -> None:
    # Not the computed columns, nor the serial ids (the till gives neither).
    given = [
        c
        for c in table.columns
        if c.computed is None and not (c.name == "id" and isinstance(c.type, sa.Integer))
    ]
    # The two rows differ only in a column that tells them apart.
    marker = "tenant_id"
    row = {c.name: sample(c, variant) for c in given}
    by_sqlalchemy = {**row, marker: uuid.UUID(int=1)}
    by_driver = {**row, marker: uuid.UUID(int=2)}
    if "id" in row:
        by_driver["id"] = uuid.UUID(int=0xFFF)
    sqlite.execute(sa.insert(table), [by_sqlalchemy])
    keys = tuple(by_driver)
    write = compiled_write(sqlite, ("test", table.name, keys), lambda: sa.insert(table), keys)
    sqlite_execute(sqlite, write, [by_driver])

    ours = stored(sqlite, table, marker, uuid.UUID(int=2).hex)
    theirs = stored(sqlite, table, marker, uuid.UUID(int=1).hex)
    assert len(ours) == len(theirs) == 1
    differ = {"tenant_id", "id"}
    names = [c.name for c in table.columns if c.name != "id"]
    for index, name in enumerate(names):
        if name not in differ:
            assert ours[0][2 * index : 2 * index + 2] == theirs[0][2 * index : 2 * index + 2], name


def test_an_update_with_its_own_fixed_value_and_many_rows(sqlite: sa.Connection) -> None:
    tenant = uuid.UUID(int=7)
    made = [
        {
            "id": uuid.UUID(int=100 + i),
            "tenant_id": tenant,
            "owner": f"member:{i}",
            "member_id": None,
            "kind": "points",
            "currency": "PTS",
            "balance": 0,
            "allow_debt": False,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        for i in range(3)
    ]
    sqlite.execute(sa.insert(accounts), made)
    write = compiled_write(
        sqlite,
        ("test", "set balance of points"),
        lambda: (
            sa.update(accounts)
            .where(accounts.c.id == sa.bindparam("_id"), accounts.c.kind == "points")
            .values(balance=sa.bindparam("_balance"))
        ),
    )
    cursor = sqlite_execute(
        sqlite, write, [{"_id": uuid.UUID(int=100 + i), "_balance": 10 * i} for i in range(3)]
    )
    assert cursor.rowcount == 3  # one executemany
    balances = sqlite.execute(
        sa.select(accounts.c.balance).where(accounts.c.tenant_id == tenant).order_by(accounts.c.id)
    ).scalars()
    assert list(balances) == [0, 10, 20]
    with pytest.raises(KeyError, match="_balance"):
        sqlite_execute(sqlite, write, [{"_id": uuid.UUID(int=100)}])


def test_a_statement_is_compiled_once_per_shape(sqlite: sa.Connection) -> None:
    built: list[int] = []

    def build() -> sa.Update:
        built.append(1)
        return sa.update(tenants).values(name=sa.bindparam("_name"))

    first = compiled_write(sqlite, ("test", "once"), build)
    again = compiled_write(sqlite, ("test", "once"), build)
    assert first is again
    assert len(built) == 1


def test_errors_come_out_as_sqlalchemys(sqlite: sa.Connection) -> None:
    row = {c.name: sample(c, 0) for c in lot_movements.columns if c.name != "id"}
    write = compiled_write(
        sqlite, ("test", "movement with id"), lambda: sa.insert(lot_movements), ("id", *row)
    )
    sqlite_execute(sqlite, write, [{"id": 1, **row}])
    with pytest.raises(sa.exc.IntegrityError):
        sqlite_execute(sqlite, write, [{"id": 1, **row}])


def test_listeners_see_each_statement_in_the_transaction(sqlite_engine: Engine) -> None:
    empty_tables(sqlite_engine)
    seen: list[tuple[str, bool]] = []

    def record(*args: Any) -> None:
        seen.append((args[2], args[5]))

    row = {c.name: sample(c, 0) for c in postings.columns if c.name != "id"}
    keys = tuple(row)
    event.listen(sqlite_engine, "before_cursor_execute", record)
    try:
        with sqlite_engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            write = compiled_write(conn, ("test", "postings"), lambda: sa.insert(postings), keys)
            # The first statement of the transaction: SQLAlchemy must know it has begun.
            sqlite_execute(conn, write, [row, row])
            assert conn.in_transaction()
            conn.rollback()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", record)
    assert (write.sql, True) in seen
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(postings)).scalar() == 0


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_tills_reads_answer_as_through_sqlalchemy(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    member = c.members.enroll(
        m.actor,
        {
            "phone": "+79161234567",
            "name": "Анна",
            "birthday": "--02-29",
            "attributes": {"tier": "gold", "note": "Ёж", "n": None},
        },
    )
    c.ledger.accrue(m.actor, member.id, 500, reason="pending", pending_days=3)
    c.ledger.accrue(m.actor, member.id, 300, expires_at=clock.now() + timedelta(days=10))
    c.ledger.accrue(m.actor, member.id, 200)
    card = member.cards[0].number
    owner = f"member:{member.id}"
    cases: list[tuple[sa.Select[Any], dict[str, Any]]] = [
        (directory_store._CARD_AND_MEMBER, {"t": m.tenant_id, "n": card}),
        (directory_store._TILL_MEMBER, {"t": m.tenant_id, "m": member.id}),
        (ledger_store._READ_ACCOUNTS, {"t": m.tenant_id, "o": owner, "c": "points"}),
    ]
    at = {"t": m.tenant_id, "m": member.id, "c": "points"}
    later = clock.now() + timedelta(days=20)
    cases += [
        (ledger_store._OPEN_LOTS, at),
        (ledger_store._DUE_LOTS, {**at, "now": later}),
        (ledger_store._SHOWN_LOTS, {**at, "soon": later}),
        (ledger_store._LASTING_POINTS, {**at, "soon": clock.now()}),
    ]
    with c.engine.connect() as conn:
        for statement, params in cases:
            expected = [tuple(row) for row in conn.execute(statement, params)]
            assert expected, statement  # the case reads something
            assert sqlite_rows(conn, statement, params) == expected
