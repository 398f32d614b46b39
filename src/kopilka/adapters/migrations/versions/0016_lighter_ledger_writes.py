"""lighter ledger writes: two fewer index entries per write, no per-call settings

- ``ledger_transactions (tenant_id, reverses_id)`` keeps only reversals (the column is NULL
  on nearly every transaction, and only "reversals of X" is ever asked);
- ``lot_movements (transaction_id)`` goes: nothing looks movements up by transaction (refunds
  go by ``origin_id``, lot histories by ``lot_id``);
- the ledger functions lose their own ``SET`` clauses, which cost a settings save and
  restore on every call; the connections that call them set the same options per session
  (adapters/db/pg_ledger.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 09:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_FUNCTIONS = (
    "kopilka_ledger_accrue(uuid, uuid, text, text, bigint, text, timestamptz, uuid, uuid, text,"
    " bigint, text, text, text, text, jsonb, boolean, timestamptz, timestamptz, uuid, text,"
    " timestamptz, jsonb)",
    "kopilka_ledger_redeem(uuid, uuid, text, text, bigint, text, timestamptz, uuid, bigint, text,"
    " text, text, text, jsonb, uuid, text, timestamptz, jsonb)",
)
_REVERSALS = "ix_ledger_transactions_tenant_id_reverses_id"


def upgrade() -> None:
    op.drop_index(_REVERSALS, table_name="ledger_transactions")
    op.create_index(
        _REVERSALS,
        "ledger_transactions",
        ["tenant_id", "reverses_id"],
        postgresql_where=sa.text("reverses_id IS NOT NULL"),
        sqlite_where=sa.text("reverses_id IS NOT NULL"),
    )
    op.drop_index("ix_lot_movements_transaction_id", table_name="lot_movements")
    if op.get_bind().dialect.name == "postgresql":
        for function in _FUNCTIONS:
            op.execute(f"ALTER FUNCTION {function} RESET ALL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function in _FUNCTIONS:
            op.execute(f"ALTER FUNCTION {function} SET plan_cache_mode = force_generic_plan")
            op.execute(f"ALTER FUNCTION {function} SET enable_seqscan = off")
    op.create_index("ix_lot_movements_transaction_id", "lot_movements", ["transaction_id"])
    op.drop_index(_REVERSALS, table_name="ledger_transactions")
    op.create_index(_REVERSALS, "ledger_transactions", ["tenant_id", "reverses_id"])
