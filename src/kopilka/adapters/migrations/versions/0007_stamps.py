"""stamp cards

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 06:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stamp_balances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("card_id", sa.String(length=64), nullable=False),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("debt", sa.Integer(), nullable=False),
        sa.Column("stamps_earned", sa.BigInteger(), nullable=False),
        sa.Column("rewards_redeemed", sa.BigInteger(), nullable=False),
        sa.Column(
            "last_stamp_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "expires_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_stamp_balances_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stamp_balances")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "card_id",
            name=op.f("uq_stamp_balances_tenant_id_member_id_card_id"),
        ),
    )
    op.create_index(
        op.f("ix_stamp_balances_expires_at"), "stamp_balances", ["expires_at"], unique=False
    )
    op.create_table(
        "stamp_movements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("card_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=255), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=True),
        sa.Column("program", sa.String(length=64), nullable=True),
        sa.Column("stamps", sa.Integer(), nullable=False),
        sa.Column("debt", sa.Integer(), nullable=False),
        sa.Column("earned", sa.Integer(), nullable=False),
        sa.Column("rewards", sa.Integer(), nullable=False),
        sa.Column("balance_after", sa.Integer(), nullable=False),
        sa.Column("debt_after", sa.Integer(), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_stamp_movements_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stamp_movements")),
        sa.UniqueConstraint(
            "tenant_id",
            "member_id",
            "card_id",
            "source_key",
            name=op.f("uq_stamp_movements_tenant_id_member_id_card_id_source_key"),
        ),
    )
    op.create_index(
        op.f("ix_stamp_movements_tenant_id_receipt_id"),
        "stamp_movements",
        ["tenant_id", "receipt_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_stamp_movements_tenant_id_receipt_id"), table_name="stamp_movements")
    op.drop_table("stamp_movements")
    op.drop_index(op.f("ix_stamp_balances_expires_at"), table_name="stamp_balances")
    op.drop_table("stamp_balances")
