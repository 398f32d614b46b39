"""contests and prize draws

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "draws",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("draw_on", sa.Date(), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=True),
        sa.Column("seed_hash", sa.String(length=64), nullable=True),
        sa.Column("pseudonym_key", sa.String(length=64), nullable=True),
        sa.Column("entries_hash", sa.String(length=64), nullable=True),
        sa.Column("entries_count", sa.BigInteger(), nullable=False),
        sa.Column("entrants", sa.BigInteger(), nullable=False),
        sa.Column("total_weight", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("opened_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("frozen_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("drawn_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_draws_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draws")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_draws_tenant_id_code")),
    )
    op.create_index(op.f("ix_draws_status_draw_on"), "draws", ["status", "draw_on"], unique=False)
    op.create_table(
        "draw_entries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("draw_id", sa.Uuid(), nullable=False),
        sa.Column("entry_no", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("pseudonym", sa.String(length=32), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=False),
        sa.Column(
            "occurred_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["draw_id"], ["draws.id"], name=op.f("fk_draw_entries_draw_id_draws")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_draw_entries_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "draw_id", "entry_no", name=op.f("pk_draw_entries")),
        sa.UniqueConstraint(
            "tenant_id",
            "draw_id",
            "receipt_id",
            name=op.f("uq_draw_entries_tenant_id_draw_id_receipt_id"),
        ),
    )
    op.create_index(
        op.f("ix_draw_entries_tenant_id_member_id_draw_id"),
        "draw_entries",
        ["tenant_id", "member_id", "draw_id"],
        unique=False,
    )
    op.create_table(
        "draw_winners",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("draw_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("entry_no", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("pseudonym", sa.String(length=32), nullable=False),
        sa.Column("prize", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("paid_to", sa.Uuid(), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["draw_id"], ["draws.id"], name=op.f("fk_draw_winners_draw_id_draws")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_draw_winners_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "draw_id", "slot", name=op.f("pk_draw_winners")),
    )
    op.create_index(
        op.f("ix_draw_winners_tenant_id_member_id"),
        "draw_winners",
        ["tenant_id", "member_id"],
        unique=False,
    )
    op.create_index(op.f("ix_draw_winners_status"), "draw_winners", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_draw_winners_status"), table_name="draw_winners")
    op.drop_index(op.f("ix_draw_winners_tenant_id_member_id"), table_name="draw_winners")
    op.drop_table("draw_winners")
    op.drop_index(op.f("ix_draw_entries_tenant_id_member_id_draw_id"), table_name="draw_entries")
    op.drop_table("draw_entries")
    op.drop_index(op.f("ix_draws_status_draw_on"), table_name="draws")
    op.drop_table("draws")
