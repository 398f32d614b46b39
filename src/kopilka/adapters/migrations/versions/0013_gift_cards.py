"""gift cards: stored value, PINs, sales and activations

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gift_cards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=False),
        sa.Column("wallet_account_id", sa.Uuid(), nullable=False),
        sa.Column("sale_outlet_id", sa.Uuid(), nullable=False),
        sa.Column("sale_receipt_number", sa.String(length=64), nullable=False),
        sa.Column("sold_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "activated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("activated_outlet_id", sa.Uuid(), nullable=True),
        sa.Column(
            "expires_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("replaces_id", sa.Uuid(), nullable=True),
        sa.Column("replaced_by_id", sa.Uuid(), nullable=True),
        sa.Column("blocked_reason", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_gift_cards_positive_amount")),
        sa.ForeignKeyConstraint(
            ["activated_outlet_id"],
            ["outlets.id"],
            name=op.f("fk_gift_cards_activated_outlet_id_outlets"),
        ),
        sa.ForeignKeyConstraint(
            ["sale_outlet_id"], ["outlets.id"], name=op.f("fk_gift_cards_sale_outlet_id_outlets")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gift_cards_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gift_cards")),
        sa.UniqueConstraint("tenant_id", "number", name=op.f("uq_gift_cards_tenant_id_number")),
    )
    op.create_index(
        op.f("ix_gift_cards_status_expires_at"),
        "gift_cards",
        ["status", "expires_at"],
        unique=False,
    )
    op.create_table(
        "gift_card_payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=False),
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint(
            "refunded >= 0 AND refunded <= amount",
            name=op.f("ck_gift_card_payments_refunded_in_range"),
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["gift_cards.id"], name=op.f("fk_gift_card_payments_card_id_gift_cards")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gift_card_payments_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gift_card_payments")),
        sa.UniqueConstraint(
            "tenant_id",
            "receipt_id",
            "card_id",
            name=op.f("uq_gift_card_payments_tenant_id_receipt_id_card_id"),
        ),
    )
    op.create_index(
        op.f("ix_gift_card_payments_tenant_id_card_id"),
        "gift_card_payments",
        ["tenant_id", "card_id"],
        unique=False,
    )
    op.create_table(
        "gift_card_policies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gift_card_policies_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_gift_card_policies")),
    )
    op.create_table(
        "gift_card_attempts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column(
            "window_start", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_gift_card_attempts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "scope", "subject", "window_start", name=op.f("pk_gift_card_attempts")
        ),
    )
    op.create_index(
        op.f("ix_gift_card_attempts_window_start"),
        "gift_card_attempts",
        ["window_start"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_gift_card_attempts_window_start"), table_name="gift_card_attempts")
    op.drop_table("gift_card_attempts")
    op.drop_table("gift_card_policies")
    op.drop_index(op.f("ix_gift_card_payments_tenant_id_card_id"), table_name="gift_card_payments")
    op.drop_table("gift_card_payments")
    op.drop_index(op.f("ix_gift_cards_status_expires_at"), table_name="gift_cards")
    op.drop_table("gift_cards")
