"""a catalogue version per tenant, so products stay cached until the catalogue changes

Every product write bumps ``tenants.catalogue_version`` in its own transaction. Processes
cache products tagged with the version they knew when they read them, and drop an entry
once the tenant row (itself cached for a few seconds) shows a newer version: a product
change reaches other processes as fast as before, while unchanged products are no longer
read again every few seconds (see docs/caching.md).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(
            sa.Column(
                "catalogue_version", sa.BigInteger, nullable=False, server_default=sa.text("0")
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("catalogue_version")
