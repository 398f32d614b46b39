"""Migrations 0019 to 0022 on a database of their own: the ledger functions look member
accounts up by member id (0019) and update the balance row (0021) and the burnt lots (0022)
by their addresses, the movement index by lot goes (0019), the members' (tenant, id) index
gains the status (0020), and a downgrade puts everything back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.schema import alembic_config, upgrade
from tests.conftest import scratch_pg_database


@pytest.fixture
def fresh_engine(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of its own, migrated to head, on the backend of `engine`."""
    with contextlib.ExitStack() as stack:
        if engine.dialect.name == "postgresql":
            url = stack.enter_context(scratch_pg_database("kopilka_mig"))
        else:
            url = f"sqlite:///{tmp_path / 'mig.db'}"
        fresh = create_db_engine(url)
        upgrade(fresh)
        yield fresh
        fresh.dispose()


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _indexes(engine: Engine, table: str) -> set[str]:
    return {ix["name"] or "" for ix in sa.inspect(engine).get_indexes(table)}


def _function_sources(engine: Engine) -> dict[str, str]:
    """The ledger functions' bodies by name (PostgreSQL only)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'kopilka_ledger_%'")
        )
        return {str(name): str(source) for name, source in rows}


def _account_lookups(engine: Engine) -> set[str]:
    """How the ledger functions find the member's accounts."""
    return {
        "member_id"
        if "x.member_id = p_member" in source
        else "owner"
        if "x.owner = 'member:' || p_member" in source
        else "none"
        for source in _function_sources(engine).values()
        if "FROM accounts x" in source
    }


def _balance_updates(engine: Engine) -> set[str]:
    """How the ledger functions find the balance row they update."""
    return {
        "address" if "WHERE ctid = v_" in source else "key"
        for source in _function_sources(engine).values()
        if "UPDATE accounts SET balance" in source
    }


def _burns_by_address(engine: Engine) -> bool:
    return "l.ctid = ANY (v_lot_tids)" in _function_sources(engine)["kopilka_ledger_redeem"]


def test_0019_to_0022_upgrade_and_downgrade(fresh_engine: Engine) -> None:
    postgres = fresh_engine.dialect.name == "postgresql"
    if postgres:
        assert _burns_by_address(fresh_engine)
        _downgrade(fresh_engine, "0021")
        assert not _burns_by_address(fresh_engine)
        assert _balance_updates(fresh_engine) == {"address"}
        _downgrade(fresh_engine, "0020")
        assert _balance_updates(fresh_engine) == {"key"}
    assert "ix_members_tenant_id_id_status" in _indexes(fresh_engine, "members")
    assert "ix_members_tenant_id_id" not in _indexes(fresh_engine, "members")
    _downgrade(fresh_engine, "0019")
    assert "ix_members_tenant_id_id" in _indexes(fresh_engine, "members")
    assert "ix_members_tenant_id_id_status" not in _indexes(fresh_engine, "members")
    assert "ix_lot_movements_lot_id" not in _indexes(fresh_engine, "lot_movements")
    if postgres:
        assert _account_lookups(fresh_engine) == {"member_id"}

    _downgrade(fresh_engine, "0018")
    assert "ix_lot_movements_lot_id" in _indexes(fresh_engine, "lot_movements")
    if postgres:
        assert _account_lookups(fresh_engine) == {"owner"}

    upgrade(fresh_engine)
    assert "ix_lot_movements_lot_id" not in _indexes(fresh_engine, "lot_movements")
    assert "ix_members_tenant_id_id_status" in _indexes(fresh_engine, "members")
    if postgres:
        assert _account_lookups(fresh_engine) == {"member_id"}
        assert _balance_updates(fresh_engine) == {"address"}
        assert _burns_by_address(fresh_engine)
