"""Migrations 0019 to 0022 on a database of their own: the ledger functions look member
accounts up by member id (0019) and update the balance row (0021) and the burnt lots (0022)
by their addresses, the
movement index by lot goes (0019), the members' (tenant, id) index gains the status (0020),
and a downgrade puts everything back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine, make_url

from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.schema import alembic_config, upgrade
from tests.conftest import PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(
    request: pytest.FixtureRequest, tmp_path: Path, engine: Engine
) -> Iterator[Engine]:
    """An empty database migrated to head (the `engine` fixture only decides the backend
    and skips PostgreSQL when it is unreachable)."""
    if engine.dialect.name != request.param:
        pytest.skip("one run per backend")
    if request.param == "sqlite":
        fresh = create_db_engine(f"sqlite:///{tmp_path / 'mig.db'}")
        upgrade(fresh)
        yield fresh
        fresh.dispose()
        return
    name = f"kopilka_mig_{os.getpid()}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    fresh = create_db_engine(make_url(PG_URL).set(database=name).render_as_string(False))
    upgrade(fresh)
    yield fresh
    fresh.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _movement_indexes(engine: Engine) -> set[str]:
    return {ix["name"] or "" for ix in sa.inspect(engine).get_indexes("lot_movements")}


def _member_indexes(engine: Engine) -> set[str]:
    return {ix["name"] or "" for ix in sa.inspect(engine).get_indexes("members")}


def _account_lookups(engine: Engine) -> set[str]:
    """How the ledger functions find the member's accounts (PostgreSQL only)."""
    with engine.connect() as conn:
        sources = conn.execute(
            sa.text("SELECT prosrc FROM pg_proc WHERE proname LIKE 'kopilka_ledger_%'")
        ).scalars()
        return {
            "member_id"
            if "x.member_id = p_member" in source
            else "owner"
            if "x.owner = 'member:' || p_member" in source
            else "none"
            for source in sources
            if "FROM accounts x" in source
        }


def _balance_updates(engine: Engine) -> set[str]:
    """How the ledger functions find the balance row they update (PostgreSQL only)."""
    with engine.connect() as conn:
        sources = conn.execute(
            sa.text("SELECT prosrc FROM pg_proc WHERE proname LIKE 'kopilka_ledger_%'")
        ).scalars()
        return {
            "address" if "WHERE ctid = v_" in source else "key"
            for source in sources
            if "UPDATE accounts SET balance" in source
        }


def _burns_by_address(engine: Engine) -> bool:
    with engine.connect() as conn:
        source = conn.execute(
            sa.text("SELECT prosrc FROM pg_proc WHERE proname = 'kopilka_ledger_redeem'")
        ).scalar_one()
    return "l.ctid = ANY (v_lot_tids)" in str(source)


def test_0019_to_0022_upgrade_and_downgrade(fresh_engine: Engine) -> None:
    postgres = fresh_engine.dialect.name == "postgresql"
    if postgres:
        assert _burns_by_address(fresh_engine)
        _downgrade(fresh_engine, "0021")
        assert not _burns_by_address(fresh_engine)
        assert _balance_updates(fresh_engine) == {"address"}
        _downgrade(fresh_engine, "0020")
        assert _balance_updates(fresh_engine) == {"key"}
    assert "ix_members_tenant_id_id_status" in _member_indexes(fresh_engine)
    assert "ix_members_tenant_id_id" not in _member_indexes(fresh_engine)
    _downgrade(fresh_engine, "0019")
    assert "ix_members_tenant_id_id" in _member_indexes(fresh_engine)
    assert "ix_members_tenant_id_id_status" not in _member_indexes(fresh_engine)
    assert "ix_lot_movements_lot_id" not in _movement_indexes(fresh_engine)
    if postgres:
        assert _account_lookups(fresh_engine) == {"member_id"}

    _downgrade(fresh_engine, "0018")
    assert "ix_lot_movements_lot_id" in _movement_indexes(fresh_engine)
    if postgres:
        assert _account_lookups(fresh_engine) == {"owner"}

    upgrade(fresh_engine)
    assert "ix_lot_movements_lot_id" not in _movement_indexes(fresh_engine)
    assert "ix_members_tenant_id_id_status" in _member_indexes(fresh_engine)
    if postgres:
        assert _account_lookups(fresh_engine) == {"member_id"}
        assert _balance_updates(fresh_engine) == {"address"}
        assert _burns_by_address(fresh_engine)
