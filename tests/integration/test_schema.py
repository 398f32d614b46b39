"""The migrations build exactly the schema the code's table definitions describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

import kopilka.adapters.db.mechanics  # noqa: F401 - registers the mechanics' tables
from kopilka.adapters.db.tables import metadata


def test_migrations_match_the_table_definitions(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_stored_answers_are_compressed_with_lz4_where_the_server_has_it(engine: Engine) -> None:
    """Migration 0024: a receipt's stored answer (3.5 kB) is compressed with LZ4, not pglz."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite does not compress")
    with engine.connect() as conn:
        has_lz4 = conn.exec_driver_sql(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).scalar()
        methods: dict[str, str] = dict(
            conn.exec_driver_sql(
                "SELECT attrelid::regclass::text || '.' || attname, attcompression"
                " FROM pg_attribute"
                " WHERE (attrelid, attname) IN (('receipts'::regclass, 'result'),"
                " ('refunds'::regclass, 'result'), ('idempotency_keys'::regclass, 'response'))"
            ).all()
        )
    expected = "l" if has_lz4 else ""
    assert methods == {
        "receipts.result": expected,
        "refunds.result": expected,
        "idempotency_keys.response": expected,
    }
