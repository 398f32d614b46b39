"""Alembic environment: runs on the connection the caller hands over."""

from __future__ import annotations

from alembic import context

from kopilka.adapters.db.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through kopilka.adapters.db.schema
    raise RuntimeError("Run migrations with `kopilka db upgrade`.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
