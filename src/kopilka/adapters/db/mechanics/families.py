"""Tables and store of the families mechanic (pooled balances, transfers, donations)."""

from __future__ import annotations

import sqlalchemy as sa

from kopilka.adapters.db.tables import metadata
from kopilka.adapters.db.types import UtcDateTime

# Contract shared with the ledger: while a member's row here is ``active``, the member's
# points live in the family's pool, whose ledger accounts carry ``member_id = family_id``.
family_members = sa.Table(
    "family_members",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("family_id", sa.Uuid, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active or left
    sa.Column("joined_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    sa.Index(None, "tenant_id", "family_id"),
)
