"""the member's status in the (tenant, id) index, so a ledger write checks it without the heap

Every ledger write checks the member's status (blocked, merged or erased members neither
earn nor spend). With ``status`` as the index's last column that check is an index-only scan
and does not read a random page of ``members`` (112 MB with 1M members; members are
rarely updated, so their pages stay all-visible). The index still serves every
``(tenant_id, id)`` look-up and the members' cursor pagination.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-24 15:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_members_tenant_id_id_status", "members", ["tenant_id", "id", "status"])
    op.drop_index("ix_members_tenant_id_id", table_name="members")


def downgrade() -> None:
    op.create_index("ix_members_tenant_id_id", "members", ["tenant_id", "id"])
    op.drop_index("ix_members_tenant_id_id_status", table_name="members")
