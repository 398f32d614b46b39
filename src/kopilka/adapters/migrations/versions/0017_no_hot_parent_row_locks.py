"""no foreign keys from the till's hot tables to the tenant's and the outlet's rows

Every row a purchase writes (the receipt, its ~10 lines, the ledger transaction, its
postings, lots and lot movements, the idempotency record) checked its foreign key to the
one ``tenants`` row, and the receipt its ``outlets`` row: ~17 ``SELECT ... FOR KEY SHARE``
of the same row per purchase. Concurrent purchases then share those row locks through
MultiXacts, which PostgreSQL rebuilds for every new locker: measured as thousands of
MultiXact members per minute of till traffic. Tenants and outlets are never deleted, every
row is written with the tenant of the caller's credential, and ``ledger verify`` now checks
that no row names an unknown tenant (``rows_of_unknown_tenants``).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 10:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# (table, constraint, column, parent table)
DROPPED = (
    ("receipts", "fk_receipts_tenant_id_tenants", "tenant_id", "tenants"),
    ("receipts", "fk_receipts_outlet_id_outlets", "outlet_id", "outlets"),
    ("receipt_lines", "fk_receipt_lines_tenant_id_tenants", "tenant_id", "tenants"),
    ("ledger_transactions", "fk_ledger_transactions_tenant_id_tenants", "tenant_id", "tenants"),
    ("postings", "fk_postings_tenant_id_tenants", "tenant_id", "tenants"),
    ("lots", "fk_lots_tenant_id_tenants", "tenant_id", "tenants"),
    ("lot_movements", "fk_lot_movements_tenant_id_tenants", "tenant_id", "tenants"),
    ("idempotency_keys", "fk_idempotency_keys_tenant_id_tenants", "tenant_id", "tenants"),
)


def upgrade() -> None:
    # SQLite cannot drop a constraint in place: batch mode rebuilds the table.
    for table, name, _column, _parent in DROPPED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table, name, column, parent in DROPPED:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(name, parent, [column], ["id"])
