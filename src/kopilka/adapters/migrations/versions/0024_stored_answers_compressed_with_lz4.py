"""the stored answers of receipts, refunds and ledger writes are compressed with LZ4

A confirmed receipt keeps its whole answer (``receipts.result``, about 3.5 kB of JSON for ten
lines with their explanations) for replays; PostgreSQL compresses values that large, by
default with pglz, which cost about 50 microseconds of the database's CPU per receipt
(5,000 rows inserted as jsonb: pglz 100 us a row, LZ4 50 us; bench/README.md). LZ4
compresses about as well here and several times faster. Only new values are written with
it; PostgreSQL reads either. Skipped where the server lacks LZ4 (it is a build option) or
predates PostgreSQL 14; SQLite does not compress.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-24 23:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

COLUMNS = (("receipts", "result"), ("refunds", "result"), ("idempotency_keys", "response"))


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.exec_driver_sql(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
        " AND 'lz4' = ANY(enumvals)"
    ).first()
    return found is not None


def upgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default")
