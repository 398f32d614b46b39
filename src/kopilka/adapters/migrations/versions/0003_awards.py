"""mechanic awards (shared by the loyalty mechanics)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mechanic_awards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("mechanic", sa.String(length=32), nullable=False),
        sa.Column("award_key", sa.String(length=255), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("voided_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_mechanic_awards_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mechanic_awards")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "award_key",
            name=op.f("uq_mechanic_awards_tenant_id_member_id_award_key"),
        ),
    )
    op.create_index(
        op.f("ix_mechanic_awards_tenant_id_member_id_mechanic_created_at"),
        "mechanic_awards",
        ["tenant_id", "member_id", "mechanic", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_mechanic_awards_tenant_id_member_id_mechanic_created_at"),
        table_name="mechanic_awards",
    )
    op.drop_table("mechanic_awards")
