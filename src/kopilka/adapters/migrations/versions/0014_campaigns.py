"""campaigns: schedules, audiences, budgets and limits

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24 06:30:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import kopilka.adapters.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _moment(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, kopilka.adapters.db.types.UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("seed", sa.String(length=32), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        _moment("status_changed_at"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_campaigns_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_campaigns_tenant_id_code")),
    )
    op.create_index(
        op.f("ix_campaigns_tenant_id_status"), "campaigns", ["tenant_id", "status"], unique=False
    )
    op.create_table(
        "campaign_members",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        _moment("added_at"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_campaign_members_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "campaign_id", "member_id", name=op.f("pk_campaign_members")
        ),
    )
    op.create_table(
        "campaign_budget_slots",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("cap", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "used >= 0 AND used <= cap", name=op.f("ck_campaign_budget_slots_used_within_cap")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaign_budget_slots_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "campaign_id",
            "kind",
            "scope",
            "slot",
            name=op.f("pk_campaign_budget_slots"),
        ),
    )
    op.create_table(
        "campaign_redemptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("receipt_id", sa.Uuid(), nullable=True),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("outlet_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("local_day", sa.Date(), nullable=False),
        _moment("occurred_at"),
        sa.Column("allocations", _json(), nullable=False),
        _moment("created_at"),
        _moment("closed_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_campaign_redemptions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_redemptions")),
    )
    op.create_index(
        op.f("ix_campaign_redemptions_tenant_id_campaign_id_member_id_local_day"),
        "campaign_redemptions",
        ["tenant_id", "campaign_id", "member_id", "local_day"],
        unique=False,
    )
    op.create_index(
        op.f("ix_campaign_redemptions_tenant_id_receipt_id"),
        "campaign_redemptions",
        ["tenant_id", "receipt_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_campaign_redemptions_status_created_at"),
        "campaign_redemptions",
        ["status", "created_at"],
        unique=False,
    )
    op.create_table(
        "campaign_control",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        _moment("assigned_at"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_campaign_control_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "campaign_id", "member_id", name=op.f("pk_campaign_control")
        ),
    )
    op.create_index(
        op.f("ix_campaign_control_tenant_id_campaign_id_arm"),
        "campaign_control",
        ["tenant_id", "campaign_id", "arm"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_campaign_control_tenant_id_campaign_id_arm"), table_name="campaign_control"
    )
    op.drop_table("campaign_control")
    op.drop_index(
        op.f("ix_campaign_redemptions_status_created_at"), table_name="campaign_redemptions"
    )
    op.drop_index(
        op.f("ix_campaign_redemptions_tenant_id_receipt_id"), table_name="campaign_redemptions"
    )
    op.drop_index(
        op.f("ix_campaign_redemptions_tenant_id_campaign_id_member_id_local_day"),
        table_name="campaign_redemptions",
    )
    op.drop_table("campaign_redemptions")
    op.drop_table("campaign_budget_slots")
    op.drop_table("campaign_members")
    op.drop_index(op.f("ix_campaigns_tenant_id_status"), table_name="campaigns")
    op.drop_table("campaigns")
