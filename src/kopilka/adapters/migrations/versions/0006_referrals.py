"""referral codes and attributions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "referral_codes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_referral_codes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "member_id", name=op.f("pk_referral_codes")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_referral_codes_tenant_id_code")),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("referrer_id", sa.Uuid(), nullable=False),
        sa.Column("referee_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("program", sa.String(length=64), nullable=True),
        sa.Column("program_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("fingerprints", _json(), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=True),
        sa.Column("referrer_points", sa.BigInteger(), nullable=False),
        sa.Column("referee_points", sa.BigInteger(), nullable=False),
        sa.Column("awards", _json(), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "rewarded_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "pending_until", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("voided_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_referrals_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint(
            "tenant_id", "referee_id", name=op.f("uq_referrals_tenant_id_referee_id")
        ),
    )
    op.create_index(
        op.f("ix_referrals_tenant_id_referrer_id_created_at"),
        "referrals",
        ["tenant_id", "referrer_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_referrals_status_pending_until"),
        "referrals",
        ["status", "pending_until"],
        unique=False,
    )
    op.create_table(
        "member_fingerprints",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_member_fingerprints_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "member_id", "kind", "digest", name=op.f("pk_member_fingerprints")
        ),
    )
    op.create_index(
        op.f("ix_member_fingerprints_tenant_id_kind_digest"),
        "member_fingerprints",
        ["tenant_id", "kind", "digest"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_member_fingerprints_tenant_id_kind_digest"), table_name="member_fingerprints"
    )
    op.drop_table("member_fingerprints")
    op.drop_index(op.f("ix_referrals_status_pending_until"), table_name="referrals")
    op.drop_index(op.f("ix_referrals_tenant_id_referrer_id_created_at"), table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
