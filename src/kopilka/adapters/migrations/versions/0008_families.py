"""families, transfers and donations

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


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
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("can_spend", sa.Boolean(), nullable=False),
        sa.Column("brought", _json(), nullable=False),
        sa.Column("since_txn", sa.Uuid(), nullable=False),
        sa.Column("left_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
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
    op.create_table(
        "families",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "dissolved_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_families_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_families")),
    )
    op.create_table(
        "family_invitations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("invitee_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("used_by", sa.Uuid(), nullable=True),
        sa.Column("used_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_family_invitations_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "code", name=op.f("pk_family_invitations")),
    )
    op.create_index(
        op.f("ix_family_invitations_tenant_id_family_id"),
        "family_invitations",
        ["tenant_id", "family_id"],
        unique=False,
    )
    op.create_table(
        "point_transfers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("from_member_id", sa.Uuid(), nullable=False),
        sa.Column("to_member_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("out_transaction_id", sa.Uuid(), nullable=False),
        sa.Column("in_transaction_id", sa.Uuid(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_point_transfers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_transfers")),
    )
    op.create_index(
        op.f("ix_point_transfers_tenant_id_from_member_id_created_at"),
        "point_transfers",
        ["tenant_id", "from_member_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_point_transfers_tenant_id_to_member_id_created_at"),
        "point_transfers",
        ["tenant_id", "to_member_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "donations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("charity", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_donations_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_donations")),
    )
    op.create_index(
        op.f("ix_donations_tenant_id_charity"), "donations", ["tenant_id", "charity"], unique=False
    )
    op.create_index(
        op.f("ix_donations_tenant_id_member_id"),
        "donations",
        ["tenant_id", "member_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_donations_tenant_id_member_id"), table_name="donations")
    op.drop_index(op.f("ix_donations_tenant_id_charity"), table_name="donations")
    op.drop_table("donations")
    op.drop_index(
        op.f("ix_point_transfers_tenant_id_to_member_id_created_at"), table_name="point_transfers"
    )
    op.drop_index(
        op.f("ix_point_transfers_tenant_id_from_member_id_created_at"),
        table_name="point_transfers",
    )
    op.drop_table("point_transfers")
    op.drop_index(
        op.f("ix_family_invitations_tenant_id_family_id"), table_name="family_invitations"
    )
    op.drop_table("family_invitations")
    op.drop_table("families")
    op.drop_index(op.f("ix_family_members_tenant_id_family_id"), table_name="family_members")
    op.drop_table("family_members")
