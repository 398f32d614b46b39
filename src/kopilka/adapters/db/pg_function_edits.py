"""Editing a stored PL/pgSQL function in a migration: exact text replacements applied to
its definition as PostgreSQL keeps it, so a migration states only what changes."""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

Replacement = tuple[str, str]  # (old text, new text)


def rewrite_function(name: str, changes: Sequence[Replacement], *, forward: bool = True) -> None:
    """Apply ``changes`` to function ``name`` (or undo them with ``forward=False``).

    Each text must occur exactly once, so a definition that is not the expected one stops
    the migration instead of being half-changed."""
    definition = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.proname = %(name)s AND p.pronamespace = current_schema()::regnamespace",
            {"name": name},
        )
        .scalar_one()
    )
    for old, new in changes:
        before, after = (old, new) if forward else (new, old)
        if definition.count(before) != 1:
            raise RuntimeError(f"{name}: expected one {before.strip()!r} in its definition")
        definition = definition.replace(before, after)
    op.execute(definition)
