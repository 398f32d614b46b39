"""lots are found by index: by the transaction that made them, and open ones apart from spent

- ``ix_lots_source_transaction_id``: reversing an accrual (a refund or cancel of a receipt
  that earned points, a reversal through the ledger API) looks its lots up by
  ``source_transaction_id``, which nothing indexed: PostgreSQL read every tenant's lots (or
  walked ``pk_lots`` whole) on each such refund.
- ``lots.is_open``, a generated column (stored on PostgreSQL, virtual on SQLite): pending,
  or active with points left. A lot spent to 0 stays ``active`` (refunds give points back
  to it), so the member's open lots were found among all the lots the member ever had, and
  the expiry job walked every spent lot past its expiry date on each run. The member index
  ``(member_id, currency, status)`` becomes ``(member_id, currency, is_open)`` and the expiry
  index ``(status, expires_at)`` becomes ``(is_open, expires_at)``. A lot's update that only
  changes ``remaining`` (and not whether it is open) stays a HOT update on PostgreSQL, which
  a partial index over ``remaining`` would have prevented.
- The ledger functions (migration 0010) read open lots by ``l.is_open``.

Found by ``tests/integration/test_till_query_plans.py``.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-24 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kopilka.adapters.db.pg_function_edits import rewrite_function

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

OPEN_LOT = "status = 'pending' OR (status = 'active' AND remaining > 0)"
_OLD_OPEN = "AND (l.status = 'pending' OR (l.status = 'active' AND l.remaining > 0))"
_FUNCTION_CHANGES = {
    "kopilka_ledger_accrue": [(_OLD_OPEN, "AND l.is_open")],
    "kopilka_ledger_redeem": [
        (_OLD_OPEN + ";", "AND l.is_open;"),
        (_OLD_OPEN + ") AS o", "AND l.is_open) AS o"),
    ],
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # PostgreSQL 15 has stored generated columns only; SQLite adds only virtual ones.
    computed = sa.Computed(OPEN_LOT, persisted=postgres)
    op.add_column("lots", sa.Column("is_open", sa.Boolean(), computed, nullable=False))
    op.create_index("ix_lots_source_transaction_id", "lots", ["source_transaction_id"])
    op.create_index(
        "ix_lots_member_id_currency_is_open", "lots", ["member_id", "currency", "is_open"]
    )
    op.create_index("ix_lots_is_open_expires_at", "lots", ["is_open", "expires_at"])
    op.drop_index("ix_lots_member_id_currency_status", table_name="lots")
    op.drop_index("ix_lots_status_expires_at", table_name="lots")
    if postgres:
        for name, changes in _FUNCTION_CHANGES.items():
            rewrite_function(name, changes)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, changes in _FUNCTION_CHANGES.items():
            rewrite_function(name, changes, forward=False)
    op.create_index("ix_lots_status_expires_at", "lots", ["status", "expires_at"])
    op.create_index(
        "ix_lots_member_id_currency_status", "lots", ["member_id", "currency", "status"]
    )
    op.drop_index("ix_lots_is_open_expires_at", table_name="lots")
    op.drop_index("ix_lots_member_id_currency_is_open", table_name="lots")
    op.drop_index("ix_lots_source_transaction_id", table_name="lots")
    op.drop_column("lots", "is_open")
