"""tiers: member statuses, qualification, history

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import kopilka.adapters.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_tiers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("since", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("pending_tier", sa.String(length=32), nullable=True),
        sa.Column("pending_value", sa.BigInteger(), nullable=True),
        sa.Column("grace_until", sa.Date(), nullable=True),
        sa.Column("locked_until", sa.Date(), nullable=True),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_member_tiers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "program", "member_id", name=op.f("pk_member_tiers")),
    )
    op.create_table(
        "tier_qualification",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tier_qualification_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "member_id", "day", name=op.f("pk_tier_qualification")
        ),
    )
    op.create_index(
        op.f("ix_tier_qualification_tenant_id_day"),
        "tier_qualification",
        ["tenant_id", "day"],
        unique=False,
    )
    op.create_table(
        "tier_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=False),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=True),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("needed", sa.BigInteger(), nullable=True),
        sa.Column("grace_until", sa.Date(), nullable=True),
        sa.Column("locked_until", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tier_history_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
    )
    op.create_index(
        op.f("ix_tier_history_tenant_id_member_id_id"),
        "tier_history",
        ["tenant_id", "member_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_tier_history_tenant_id_run_id"),
        "tier_history",
        ["tenant_id", "run_id"],
        unique=False,
    )
    op.create_table(
        "tier_runs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tier_runs_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "program", "kind", "period", name=op.f("pk_tier_runs")
        ),
    )


def downgrade() -> None:
    op.drop_table("tier_runs")
    op.drop_index(op.f("ix_tier_history_tenant_id_run_id"), table_name="tier_history")
    op.drop_index(op.f("ix_tier_history_tenant_id_member_id_id"), table_name="tier_history")
    op.drop_table("tier_history")
    op.drop_index(op.f("ix_tier_qualification_tenant_id_day"), table_name="tier_qualification")
    op.drop_table("tier_qualification")
    op.drop_table("member_tiers")
