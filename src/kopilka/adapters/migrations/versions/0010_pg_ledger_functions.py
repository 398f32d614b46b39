"""PostgreSQL ledger functions (the fast path of the ledger write)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
