"""tenants.backdate_days: how many days back a till may date a receipt (default 30)

A till's ``occurred_at`` chooses the program versions and the time conditions a receipt is
evaluated with, so dating a receipt back into a past promotion was a way to claim it.
Receipts older than the window are history, for ``kopilka import receipts``.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-25 00:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column("backdate_days", sa.Integer(), nullable=False, server_default=sa.text("30")),
    )


def downgrade() -> None:
    op.drop_column("tenants", "backdate_days")
