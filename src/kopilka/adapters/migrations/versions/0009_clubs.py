"""closed clubs and paid memberships

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "club_memberships",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("club", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "joined_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "status_changed_at",
            kopilka.adapters.db.types.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("invitation_code", sa.String(length=32), nullable=True),
        sa.Column(
            "paid_until", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "grace_until", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "cancelled_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_club_memberships_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_club_memberships")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "club",
            name=op.f("uq_club_memberships_tenant_id_member_id_club"),
        ),
    )
    op.create_index(
        op.f("ix_club_memberships_tenant_id_club_status"),
        "club_memberships",
        ["tenant_id", "club", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_club_memberships_status_grace_until"),
        "club_memberships",
        ["status", "grace_until"],
        unique=False,
    )
    op.create_table(
        "club_invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("club", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column(
            "expires_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_club_invitations_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_club_invitations")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_club_invitations_tenant_id_code")),
    )
    op.create_table(
        "club_payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("club", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("paid_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "period_start", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "period_end", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "recorded_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_club_payments_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_club_payments")),
        sa.UniqueConstraint(
            "tenant_id", "payment_id", name=op.f("uq_club_payments_tenant_id_payment_id")
        ),
    )
    op.create_index(
        op.f("ix_club_payments_tenant_id_club_member_id"),
        "club_payments",
        ["tenant_id", "club", "member_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_club_payments_tenant_id_club_member_id"), table_name="club_payments")
    op.drop_table("club_payments")
    op.drop_table("club_invitations")
    op.drop_index(op.f("ix_club_memberships_status_grace_until"), table_name="club_memberships")
    op.drop_index(op.f("ix_club_memberships_tenant_id_club_status"), table_name="club_memberships")
    op.drop_table("club_memberships")
