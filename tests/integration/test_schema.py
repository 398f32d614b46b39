"""The migrations build exactly the schema the code's table definitions describe."""

from __future__ import annotations

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
