"""reward catalogue: rewards, stock, orders, partner code pools

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The outbox (shared by every feature that raises events).
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "delivered_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_outbox_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    op.create_index(
        op.f("ix_outbox_events_tenant_id_type_id"),
        "outbox_events",
        ["tenant_id", "type", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_outbox_events_delivered_at"), "outbox_events", ["delivered_at"], unique=False
    )
    # The reward catalogue.
    op.create_table(
        "rewards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("limit_total", sa.BigInteger(), nullable=True),
        sa.Column("redeemed", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint(
            "redeemed >= 0 AND (limit_total IS NULL OR redeemed <= limit_total)",
            name=op.f("ck_rewards_redeemed_within_limit"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_rewards_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_rewards_tenant_id_code")),
        sa.UniqueConstraint("tenant_id", "sku", name=op.f("uq_rewards_tenant_id_sku")),
    )
    op.create_table(
        "reward_stock",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("low_stock_threshold", sa.BigInteger(), nullable=True),
        sa.Column("low_stock_alerted", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_reward_stock_quantity_not_negative")),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_stock_reward_id_rewards")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reward_stock_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_stock")),
        sa.UniqueConstraint(
            "tenant_id",
            "reward_id",
            "location",
            name=op.f("uq_reward_stock_tenant_id_reward_id_location"),
        ),
    )
    op.create_table(
        "reward_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("issued_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_codes_reward_id_rewards")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reward_codes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_codes")),
        sa.UniqueConstraint(
            "tenant_id", "reward_id", "code", name=op.f("uq_reward_codes_tenant_id_reward_id_code")
        ),
    )
    op.create_index(
        op.f("ix_reward_codes_tenant_id_reward_id_order_id"),
        "reward_codes",
        ["tenant_id", "reward_id", "order_id"],
        unique=False,
    )
    op.create_table(
        "reward_orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("reward_code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=True),
        sa.Column("pickup_outlet", sa.String(length=64), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("refund_transaction_id", sa.Uuid(), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "valid_until", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("ready_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("issued_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "cancelled_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_orders_reward_id_rewards")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reward_orders_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_orders")),
    )
    op.create_index(
        op.f("ix_reward_orders_tenant_id_member_id_reward_id_created_at"),
        "reward_orders",
        ["tenant_id", "member_id", "reward_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_reward_orders_tenant_id_member_id_id"),
        "reward_orders",
        ["tenant_id", "member_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_reward_orders_tenant_id_status_id"),
        "reward_orders",
        ["tenant_id", "status", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_reward_orders_tenant_id_reward_id_status"),
        "reward_orders",
        ["tenant_id", "reward_id", "status"],
        unique=False,
    )


def downgrade() -> None:
    # The reward catalogue.
    op.drop_index(op.f("ix_reward_orders_tenant_id_reward_id_status"), table_name="reward_orders")
    op.drop_index(op.f("ix_reward_orders_tenant_id_status_id"), table_name="reward_orders")
    op.drop_index(op.f("ix_reward_orders_tenant_id_member_id_id"), table_name="reward_orders")
    op.drop_index(
        op.f("ix_reward_orders_tenant_id_member_id_reward_id_created_at"),
        table_name="reward_orders",
    )
    op.drop_table("reward_orders")
    op.drop_index(op.f("ix_reward_codes_tenant_id_reward_id_order_id"), table_name="reward_codes")
    op.drop_table("reward_codes")
    op.drop_table("reward_stock")
    op.drop_table("rewards")
    op.drop_index(op.f("ix_outbox_events_delivered_at"), table_name="outbox_events")
    op.drop_index(op.f("ix_outbox_events_tenant_id_type_id"), table_name="outbox_events")
    op.drop_table("outbox_events")
