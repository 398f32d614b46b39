"""coupons and promo codes: batches, public codes, redemptions

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # The coupons table of 0002 gains what public codes and batches need; rows already there
    # are personal single-use coupons with the default terms.
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="personal")
        )
        batch_op.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("uses_total", sa.Integer(), nullable=True, server_default="1")
        )
        batch_op.add_column(sa.Column("per_member", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("terms", _json(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "voided_at",
                kopilka.adapters.db.types.UtcDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_coupons_tenant_id_batch_id_code"),
            ["tenant_id", "batch_id", "code"],
            unique=False,
        )

    op.create_table(
        "coupon_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("alphabet", sa.String(length=36), nullable=False),
        sa.Column("benefit", _json(), nullable=False),
        sa.Column("min_basket", sa.BigInteger(), nullable=False),
        sa.Column("terms", _json(), nullable=False),
        sa.Column(
            "valid_from", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "valid_until", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("voided_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_coupon_batches_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_batches")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_coupon_batches_tenant_id_code")),
    )

    op.create_table(
        "coupon_redemptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("coupon_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("outlet_id", sa.Uuid(), nullable=True),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "redeemed_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "restored_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_coupon_redemptions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupon_redemptions")),
        sa.UniqueConstraint(
            "tenant_id",
            "coupon_id",
            "receipt_id",
            name=op.f("uq_coupon_redemptions_tenant_id_coupon_id_receipt_id"),
        ),
    )
    op.create_index(
        op.f("ix_coupon_redemptions_tenant_id_coupon_id_member_id"),
        "coupon_redemptions",
        ["tenant_id", "coupon_id", "member_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_coupon_redemptions_tenant_id_receipt_id"),
        "coupon_redemptions",
        ["tenant_id", "receipt_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_coupon_redemptions_tenant_id_receipt_id"), table_name="coupon_redemptions"
    )
    op.drop_index(
        op.f("ix_coupon_redemptions_tenant_id_coupon_id_member_id"),
        table_name="coupon_redemptions",
    )
    op.drop_table("coupon_redemptions")
    op.drop_table("coupon_batches")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coupons_tenant_id_batch_id_code"))
        batch_op.drop_column("voided_at")
        batch_op.drop_column("terms")
        batch_op.drop_column("per_member")
        batch_op.drop_column("uses_total")
        batch_op.drop_column("batch_id")
        batch_op.drop_column("kind")
