"""The ledger's PostgreSQL fast path: an accrual or a redemption as ONE call of a PL/pgSQL
function (migration 0010) on a psycopg connection from the engine's pool.

The call runs in autocommit on a pooled connection checked out for it, so the function's
statements are one implicit transaction and the write costs one round trip: no BEGIN, no
COMMIT, no SQLAlchemy per statement. The statement is prepared once per connection (psycopg
keeps it while the connection lives). The service layer builds the arguments and reads the
outcome; see services/ledger_fast.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from kopilka.adapters.db.inflight import advisory_key
from kopilka.adapters.db.ttl_cache import TtlCache
from kopilka.domain.ledger.model import AccountKind

# The function contract this caller speaks (migration 0010's VERSION).
FUNCTIONS_VERSION = 1

_ACCRUE = (
    b"SELECT outcome, body, balance_after, balance FROM kopilka_ledger_accrue("
    b"%s::uuid, %s::uuid, %s::text, %s::text, %s::bigint, %s::text, %s::timestamptz, %s::uuid,"
    b" %s::uuid, %s::text, %s::bigint, %s::text, %s::text, %s::text, %s::text, %s::jsonb,"
    b" %s::boolean, %s::timestamptz, %s::timestamptz, %s::uuid, %s::text, %s::timestamptz,"
    b" %s::jsonb)"
)
_REDEEM = (
    b"SELECT outcome, body, balance_after, balance FROM kopilka_ledger_redeem("
    b"%s::uuid, %s::uuid, %s::text, %s::text, %s::bigint, %s::text, %s::timestamptz, %s::uuid,"
    b" %s::bigint, %s::text, %s::text, %s::text, %s::text, %s::jsonb, %s::uuid, %s::text,"
    b" %s::timestamptz, %s::jsonb)"
)

# (outcome, details or the stored answer of a replay, the member posting's balance after,
# the balance figures): see FastLedger for the outcomes.
Outcome = tuple[str, Any, int | None, dict[str, Any] | None]
_CURSOR = "kopilka_ledger_cursor"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def functions_installed(engine: sa.Engine) -> bool:
    """Whether the database has the functions this caller expects (an older schema does
    not: the service then stays on the Python path)."""
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT to_regproc('kopilka_ledger_functions_version') IS NOT NULL"
        ).scalar_one()
        if not found:
            return False
        version = conn.exec_driver_sql("SELECT kopilka_ledger_functions_version()").scalar_one()
        return bool(version == FUNCTIONS_VERSION)


class PgLedgerFunctions:
    """Calls the ledger functions, each call on a pooled connection of its own; also lends
    the service the process caches it needs on that path (no unit of work is opened)."""

    def __init__(
        self, engine: sa.Engine, account_cache: dict[Any, uuid.UUID], cache: TtlCache
    ) -> None:
        self._engine = engine
        self._account_cache = account_cache
        self.cache = cache  # the unit of work's TTL cache (tenants, see load_tenant)

    def cached_account(
        self, tenant_id: uuid.UUID, kind: AccountKind, currency: str
    ) -> uuid.UUID | None:
        """A tenant account's id if this process has seen it committed (SqlLedgerStore
        caches them); None sends the caller to the Python path, which opens and caches it."""
        return self._account_cache.get((tenant_id, kind, currency))

    def _call(self, sql: bytes, params: tuple[Any, ...]) -> Outcome:
        # A bare pool checkout: a unit of work's SQLAlchemy connection costs more Python
        # time than the call itself, and nothing else runs in this transaction.
        pooled = self._engine.raw_connection()
        raw: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            # One cursor per pooled connection, kept with it (the pool's record outlives
            # checkouts and is cleared when the connection is replaced).
            cursor: psycopg.Cursor[Any] | None = pooled.info.get(_CURSOR)
            if cursor is None or cursor.closed:
                cursor = pooled.info[_CURSOR] = raw.cursor()
            # Autocommit for this one statement: the function's statements are one
            # implicit transaction, and the write is one round trip (no BEGIN, no COMMIT).
            raw.autocommit = True
            try:
                row = cursor.execute(sql, params, prepare=True).fetchone()
            finally:
                if not raw.closed:
                    raw.autocommit = False
        except psycopg.Error:
            if raw.broken:
                pooled.invalidate()  # a dead connection must not go back to the pool
            raise
        finally:
            pooled.close()
        assert row is not None
        return row[0], row[1], row[2], row[3]

    def accrue(
        self,
        *,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        currency: str,
        key: str | None,
        request_hash: str | None,
        now: datetime,
        txn_id: uuid.UUID,
        lot_id: uuid.UUID,
        kind: str,
        points: int,
        actor: str,
        source_type: str,
        source_id: str | None,
        reason: str | None,
        params: dict[str, Any],
        pending: bool,
        available_at: datetime,
        expires_at: datetime | None,
        counter_account: uuid.UUID,
        timezone: str,
        soon: datetime,
        response: dict[str, Any],
    ) -> Outcome:
        """Credit a lot; the outcome is ("ok" | "replay", answer), ("fallback", None) or an
        error code with its details."""
        return self._call(
            _ACCRUE,
            (
                tenant_id,
                member_id,
                currency,
                key,
                advisory_key(tenant_id, key) if key is not None else None,
                request_hash,
                now,
                txn_id,
                lot_id,
                kind,
                points,
                actor,
                source_type,
                source_id,
                reason,
                _dumps(params),
                pending,
                available_at,
                expires_at,
                counter_account,
                timezone,
                soon,
                _dumps(response) if key is not None else None,  # stored for replays
            ),
        )

    def redeem(
        self,
        *,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        currency: str,
        key: str | None,
        request_hash: str | None,
        now: datetime,
        txn_id: uuid.UUID,
        points: int,
        actor: str,
        source_type: str,
        source_id: str | None,
        reason: str | None,
        params: dict[str, Any],
        counter_account: uuid.UUID,
        timezone: str,
        soon: datetime,
        response: dict[str, Any],
    ) -> Outcome:
        """Spend points across lots; outcomes as for :meth:`accrue`."""
        return self._call(
            _REDEEM,
            (
                tenant_id,
                member_id,
                currency,
                key,
                advisory_key(tenant_id, key) if key is not None else None,
                request_hash,
                now,
                txn_id,
                points,
                actor,
                source_type,
                source_id,
                reason,
                _dumps(params),
                counter_account,
                timezone,
                soon,
                _dumps(response) if key is not None else None,  # stored for replays
            ),
        )
