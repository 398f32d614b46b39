"""The unit of work: one connection, one database transaction, all or nothing."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kopilka.adapters.db.commerce_store import SqlCommerceStore
from kopilka.adapters.db.directory_store import SqlDirectoryStore
from kopilka.adapters.db.engine import WRITE_OPTION, release_write_lock
from kopilka.adapters.db.inflight import LocalInflight, try_pg_lock
from kopilka.adapters.db.ledger_store import SqlLedgerStore
from kopilka.adapters.db.pg_ledger import PgLedgerFunctions, functions_installed
from kopilka.adapters.db.ttl_cache import ScopedCache, TtlCache


class SqlUnitOfWork:
    """Opened by ``with``; rolls back unless :meth:`commit` was called."""

    def __init__(
        self, factory: SqlUnitOfWorkFactory, *, write: bool, autocommit: bool = False
    ) -> None:
        self._factory = factory
        self._write = write
        self._autocommit = autocommit and not write
        self._conn: sa.Connection | None = None
        self._inflight: list[tuple[uuid.UUID, str]] = []
        self.committed = False

    def __enter__(self) -> SqlUnitOfWork:
        conn = self._factory.engine.connect()
        if self._write:
            conn = conn.execution_options(**{WRITE_OPTION: True})
        elif self._autocommit and conn.dialect.name == "postgresql":
            # No BEGIN and COMMIT round trips: under READ COMMITTED each statement sees its
            # own snapshot inside a transaction too, so reads without locks answer the same.
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        # No explicit begin: the first statement opens the transaction, so a SQLite twin
        # request is told "in progress" before it queues for the write lock.
        self._conn = conn
        # Outlets and products are cached per process; what this unit of work writes stays
        # out of the cache until it ends (see ttl_cache).
        self._scoped = ScopedCache(self._factory.cache)
        # Facts a read brought along for later look-ups in this unit of work (the till's
        # member read: family, referral); a write that could change them clears them.
        self.prefetched: dict[tuple[Any, ...], Any] = {}
        self.directory = SqlDirectoryStore(conn, self._scoped, self.prefetched)
        self.ledger = SqlLedgerStore(conn, self._factory.account_cache)
        self.commerce = SqlCommerceStore(conn, self._scoped)
        self.cache = self._factory.cache
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if not self.committed:
                if exc_type is None and not self._write:
                    # A read-only unit of work ends with COMMIT: psycopg forgets its prepared
                    # statements on every ROLLBACK (and deallocates them on the server).
                    self._conn.commit()
                    self.ledger.publish()
                else:
                    self._conn.rollback()
        finally:
            self._scoped.release()  # the commit or rollback is done: see ttl_cache
            release_write_lock(self._conn)
            self._conn.close()
            for tenant_id, key in self._inflight:
                self._factory.local_inflight.leave(tenant_id, key)
            self._inflight.clear()

    @property
    def dialect(self) -> str:
        return self._factory.engine.dialect.name

    def commit(self) -> None:
        assert self._conn is not None
        self._conn.commit()
        self.committed = True
        self.ledger.publish()
        release_write_lock(self._conn)  # SQLite: the next writer may go now

    def claim_key(self, tenant_id: uuid.UUID, key: str) -> bool:
        """Mark an idempotency key as in flight; False when a twin request holds it."""
        assert self._conn is not None
        if self.dialect == "postgresql":
            return try_pg_lock(self._conn, tenant_id, key)
        if not self._factory.local_inflight.try_enter(tenant_id, key):
            return False
        self._inflight.append((tenant_id, key))
        return True

    def execute(self, statement: Any, params: Any = None) -> Any:
        """Escape hatch for jobs and reports that run set-based SQL."""
        assert self._conn is not None
        return self._conn.execute(statement, params)


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine; shared caches live here, not in globals."""

    def __init__(self, engine: Engine, *, ledger_group_commit: int = 1) -> None:
        self.engine = engine
        self.ledger_group_commit = ledger_group_commit
        self.account_cache: dict[Any, uuid.UUID] = {}
        # Compiled program versions are immutable: cache them for the process's life.
        self.program_cache: dict[Any, Any] = {}
        self.cache = TtlCache()
        self.local_inflight = LocalInflight()
        # The ledger's PostgreSQL functions: None until checked, False when absent.
        self._ledger_functions: PgLedgerFunctions | Literal[False] | None = None

    def __call__(self, *, write: bool = True, autocommit: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self, write=write, autocommit=autocommit)

    def ledger_functions(self) -> PgLedgerFunctions | None:
        """The ledger's one-call PostgreSQL functions (the ledger's fast path, outside any
        unit of work); None on SQLite or on a schema without them."""
        if self._ledger_functions is None:
            installed = self.engine.dialect.name == "postgresql" and functions_installed(
                self.engine
            )
            self._ledger_functions = (
                PgLedgerFunctions(
                    self.engine,
                    self.account_cache,
                    self.cache,
                    batch_max=self.ledger_group_commit,
                )
                if installed
                else False
            )
        return self._ledger_functions or None
