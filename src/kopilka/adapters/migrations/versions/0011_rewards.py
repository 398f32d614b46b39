"""reward catalogue: rewards, stock, orders, partner code pools

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The outbox (shared by every feature that raises events).
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "delivered_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_outbox_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    op.create_index(
        op.f("ix_outbox_events_tenant_id_type_id"),
        "outbox_events",
        ["tenant_id", "type", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_outbox_events_delivered_at"), "outbox_events", ["delivered_at"], unique=False
    )
    # The reward catalogue.


def downgrade() -> None:
    # The reward catalogue.
    op.drop_index(op.f("ix_outbox_events_delivered_at"), table_name="outbox_events")
    op.drop_index(op.f("ix_outbox_events_tenant_id_type_id"), table_name="outbox_events")
    op.drop_table("outbox_events")
