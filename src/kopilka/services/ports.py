"""What services need from the outside world, as Protocols; adapters implement them."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # The stores' method sets are wide; services are typed against the SQL adapters' shapes.
    from kopilka.adapters.db.commerce_store import SqlCommerceStore as CommerceStore
    from kopilka.adapters.db.directory_store import SqlDirectoryStore as DirectoryStore
    from kopilka.adapters.db.ledger_store import SqlLedgerStore as LedgerStore
    from kopilka.adapters.db.pg_ledger import PgLedgerFunctions as LedgerFunctions
    from kopilka.adapters.db.ttl_cache import TtlCache as Cache


class UnitOfWork(Protocol):
    directory: DirectoryStore
    ledger: LedgerStore
    commerce: CommerceStore
    cache: Cache
    # Facts a read brought along for later look-ups in this unit of work (see
    # SqlDirectoryStore.card_with_member); a write that could change them clears them.
    prefetched: dict[tuple[Any, ...], Any]

    @property
    def dialect(self) -> str: ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def claim_key(self, tenant_id: uuid.UUID, key: str) -> bool: ...

    def execute(self, statement: Any, params: Any = None) -> Any: ...


class UnitOfWorkFactory(Protocol):
    # The process's TTL cache, also lent to each unit of work (``UnitOfWork.cache``).
    cache: Cache

    def __call__(self, *, write: bool = True, autocommit: bool = False) -> UnitOfWork:
        """A unit of work; ``autocommit`` (read-only, no locks taken) runs each statement
        on its own where that saves round trips (PostgreSQL: no BEGIN and COMMIT)."""
        ...

    def ledger_functions(self) -> LedgerFunctions | None: ...
