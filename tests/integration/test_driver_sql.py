"""The till's statements on the driver connection (adapters/db/driver_sql.py): inside the
unit of work's transaction, errors as SQLAlchemy's, a lost connection invalidated, and
visible to the engine's statement listeners."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from kopilka.adapters.db.driver_sql import DriverStatement, driver_rowcount, driver_rows
from kopilka.adapters.db.tables import tenants
from kopilka.adapters.db.unit_of_work import SqlUnitOfWork
from kopilka.bootstrap import Container
from tests.conftest import Merchant

pytestmark = pytest.mark.postgres_only

RENAME = "UPDATE tenants SET name = %(name)s WHERE id = %(id)s"


def conn_of(uow: Any) -> sa.Connection:
    assert isinstance(uow, SqlUnitOfWork)
    conn = uow._conn
    assert conn is not None
    return conn


def name_of(c: Container, m: Merchant) -> str:
    with c.engine.connect() as conn:
        return str(
            conn.execute(sa.select(tenants.c.name).where(tenants.c.id == m.tenant_id)).scalar()
        )


def test_a_write_commits_and_rolls_back_with_its_unit_of_work(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    before = name_of(c, m)
    with c.uow_factory() as uow:  # never committed
        assert driver_rowcount(conn_of(uow), RENAME, {"name": "rolled back", "id": m.tenant_id})
    assert name_of(c, m) == before
    with c.uow_factory() as uow:
        # The first statement of the transaction: SQLAlchemy must know it has begun.
        assert driver_rowcount(conn_of(uow), RENAME, {"name": "kept", "id": m.tenant_id}) == 1
        uow.commit()
    assert name_of(c, m) == "kept"


def test_a_compiled_statement_keeps_its_fixed_parameters(
    container: Container, merchant: Merchant
) -> None:
    statement = DriverStatement(
        sa.select(tenants.c.id).where(
            tenants.c.id == sa.bindparam("t"), tenants.c.currency == "RUB"
        )
    )
    assert statement.fixed == {"currency_1": "RUB"}
    with container.uow_factory(write=False) as uow:
        assert driver_rows(conn_of(uow), statement, {"t": merchant.tenant_id}) == [
            (merchant.tenant_id,)
        ]


def test_errors_are_sqlalchemys_and_listeners_see_the_statements(
    container: Container, merchant: Merchant
) -> None:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(container.engine, "before_cursor_execute", record)
    try:
        with container.uow_factory() as uow, pytest.raises(sa.exc.IntegrityError):
            driver_rowcount(conn_of(uow), RENAME, {"name": None, "id": merchant.tenant_id})
    finally:
        event.remove(container.engine, "before_cursor_execute", record)
    assert seen == [RENAME]
    with container.uow_factory(write=False) as uow:  # the pool's connection still works
        assert driver_rows(conn_of(uow), "SELECT 1", {}) == [(1,)]


def test_a_lost_connection_is_invalidated(container: Container, merchant: Merchant) -> None:
    with container.uow_factory() as uow:
        conn = conn_of(uow)
        pid = driver_rows(conn, "SELECT pg_backend_pid()", {})[0][0]
        with container.engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(sa.exc.DBAPIError) as caught:
            driver_rows(conn, "SELECT 1", {})
        assert caught.value.connection_invalidated
    with container.uow_factory(write=False) as uow:  # a fresh connection from the pool
        assert driver_rows(conn_of(uow), "SELECT 1", {}) == [(1,)]
