"""Detecting a request whose twin is still running, so the twin answers 409 at once."""

from __future__ import annotations

import hashlib
import threading
import uuid

import sqlalchemy as sa


def advisory_key(tenant_id: uuid.UUID, key: str) -> int:
    """A signed 64-bit number for PostgreSQL's advisory locks."""
    digest = hashlib.blake2b(f"{tenant_id}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LocalInflight:
    """In-process registry used with SQLite, where one process holds the database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[uuid.UUID, str]] = set()

    def try_enter(self, tenant_id: uuid.UUID, key: str) -> bool:
        with self._lock:
            if (tenant_id, key) in self._keys:
                return False
            self._keys.add((tenant_id, key))
            return True

    def leave(self, tenant_id: uuid.UUID, key: str) -> None:
        with self._lock:
            self._keys.discard((tenant_id, key))


_TRY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:k)")


def try_pg_lock(conn: sa.Connection, tenant_id: uuid.UUID, key: str) -> bool:
    """Take a transaction-scoped advisory lock; released by commit or rollback."""
    return bool(conn.execute(_TRY_LOCK, {"k": advisory_key(tenant_id, key)}).scalar_one())
