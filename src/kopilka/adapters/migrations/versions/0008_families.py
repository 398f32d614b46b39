"""families, transfers and donations

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import kopilka.adapters.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "family_members",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "joined_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_family_members_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "member_id", name=op.f("pk_family_members")),
    )
    op.create_index(
        op.f("ix_family_members_tenant_id_family_id"),
        "family_members",
        ["tenant_id", "family_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_family_members_tenant_id_family_id"), table_name="family_members")
    op.drop_table("family_members")
