"""life-cycle rewards and member events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "occurred_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "recorded_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=True),
        sa.Column(
            "reward",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("capped", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_member_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_events")),
        sa.UniqueConstraint(
            "tenant_id", "event_id", name=op.f("uq_member_events_tenant_id_event_id")
        ),
    )
    op.create_index(
        op.f("ix_member_events_tenant_id_member_id_id"),
        "member_events",
        ["tenant_id", "member_id", "id"],
        unique=False,
    )
    # The life-cycle jobs select members by birthday and by enrolment date, set-based.
    op.create_index(
        op.f("ix_members_tenant_id_birth_month_birth_day"),
        "members",
        ["tenant_id", "birth_month", "birth_day"],
        unique=False,
    )
    op.create_index(
        op.f("ix_members_tenant_id_created_at"),
        "members",
        ["tenant_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_members_tenant_id_created_at"), table_name="members")
    op.drop_index(op.f("ix_members_tenant_id_birth_month_birth_day"), table_name="members")
    op.drop_index(op.f("ix_member_events_tenant_id_member_id_id"), table_name="member_events")
    op.drop_table("member_events")
