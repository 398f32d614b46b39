"""The ledger's PostgreSQL fast path: an accrual or a redemption as ONE call of a PL/pgSQL
function (migration 0010) on an autocommit connection of a small private pool.

The function's statements are one implicit transaction and the write costs one round trip:
no BEGIN, no COMMIT, no SQLAlchemy. The statement is prepared once per connection and run
through libpq directly with text parameters (psycopg's adaptation layer costs more than the
call). The service layer builds the arguments and reads the outcome; see
services/ledger_fast.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import weakref
from collections import deque
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from kopilka.adapters.db.engine import POOL_RECYCLE_SECONDS
from kopilka.adapters.db.inflight import advisory_key
from kopilka.adapters.db.ttl_cache import TtlCache
from kopilka.domain.ledger.model import AccountKind

# The function contract this caller speaks (migration 0010's VERSION).
FUNCTIONS_VERSION = 1

_ACCRUE = (
    b"SELECT outcome, body, balance_after, balance FROM kopilka_ledger_accrue("
    b"$1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6::text, $7::timestamptz, $8::uuid,"
    b" $9::uuid, $10::text, $11::bigint, $12::text, $13::text, $14::text, $15::text, $16::jsonb,"
    b" $17::boolean, $18::timestamptz, $19::timestamptz, $20::uuid, $21::text, $22::timestamptz,"
    b" $23::jsonb)"
)
_REDEEM = (
    b"SELECT outcome, body, balance_after, balance FROM kopilka_ledger_redeem("
    b"$1::uuid, $2::uuid, $3::text, $4::text, $5::bigint, $6::text, $7::timestamptz, $8::uuid,"
    b" $9::bigint, $10::text, $11::text, $12::text, $13::text, $14::jsonb, $15::uuid, $16::text,"
    b" $17::timestamptz, $18::jsonb)"
)

# (outcome, details or the stored answer of a replay, the member posting's balance after,
# the balance figures): see FastLedger for the outcomes.
Outcome = tuple[str, Any, int | None, dict[str, Any] | None]

# Statement names, prepared once per connection of the private pool.
_PREPARED = {_ACCRUE: b"kopilka_ledger_accrue", _REDEEM: b"kopilka_ledger_redeem"}
_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK
# The pool's sessions only run the ledger functions, whose statements all go by key:
# - generic plans always: with the answer's CTEs and the array arguments the planner rates a
#   custom plan cheaper and would plan the statements again on every call;
# - no sequential scans: a plan made while a table was still empty (a new database's
#   idempotency_keys) would scan it for as long as the session keeps the plan.
# (Set per session, not on the functions: a function's own SET costs a settings save and
# restore on every call.)
_SESSION_OPTIONS = "-c plan_cache_mode=force_generic_plan -c enable_seqscan=off"
_CONNECTION_OK = psycopg.pq.ConnStatus.OK


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> bytes:
    return str(value).encode()


# Parameters in PostgreSQL's text format, by exact type (the statement casts each one).
_ENCODERS: dict[type, Any] = {
    str: str.encode,
    int: _text,
    uuid.UUID: _text,
    bool: lambda value: b"t" if value else b"f",
    datetime: lambda value: value.isoformat().encode(),
    dict: lambda value: _dumps(value).encode(),
}


def _encode(value: Any) -> bytes | None:
    if value is None:
        return None
    return _ENCODERS[type(value)](value)  # type: ignore[no-any-return]


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


class _Connection:
    """A private autocommit connection and the statements prepared on it."""

    __slots__ = ("born", "conn", "prepared")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.prepared: set[bytes] = set()
        self.born = time.monotonic()


class CallPool:
    """A small pool of autocommit connections for the one-call writes.

    Why not the engine's pool: a SQLAlchemy checkout and check-in (with its reset) cost more
    Python time than the write itself. Here a checkout is a semaphore and a deque pop, the
    call goes straight to libpq (which releases the GIL while it waits), and the connection
    never leaves autocommit. At most ``size`` connections are open; a caller waits for one
    (``timeout``), like the engine's pool. Connections are recycled as the engine's are,
    and the idle ones closed when the engine is disposed."""

    def __init__(
        self, engine: sa.Engine, size: int, *, timeout: float = 30.0, recycle: float = 1800.0
    ) -> None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        cparams.pop("context", None)  # SQLAlchemy's adapters: the calls encode their own
        self._connect_args = (tuple(cargs), dict(cparams))
        self._slots = threading.BoundedSemaphore(size)
        self._idle: deque[_Connection] = deque()
        self._timeout = timeout
        self._recycle = recycle

    def _checkout(self) -> _Connection:
        if not self._slots.acquire(timeout=self._timeout):
            raise TimeoutError("no database connection free for the ledger call")
        try:
            while True:
                try:
                    held = self._idle.pop()  # LIFO: the warmest connection
                except IndexError:
                    break
                if (
                    held.conn.pgconn.status == _CONNECTION_OK
                    and time.monotonic() - held.born < self._recycle
                ):
                    return held
                held.conn.close()
            cargs, cparams = self._connect_args
            return _Connection(
                psycopg.connect(*cargs, autocommit=True, options=_SESSION_OPTIONS, **cparams)
            )
        except BaseException:
            self._slots.release()
            raise

    def _checkin(self, held: _Connection, healthy: bool) -> None:
        if healthy:
            self._idle.append(held)
        else:
            held.conn.close()
        self._slots.release()

    def call(self, sql: bytes, params: list[bytes | None]) -> list[bytes | None]:
        """Run one prepared statement; its single row, as text values."""
        held = self._checkout()
        healthy = False
        try:
            pgconn = held.conn.pgconn
            name = _PREPARED[sql]
            if name not in held.prepared:
                result = pgconn.prepare(name, sql)
                if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                    raise psycopg.errors.error_from_result(result)
                held.prepared.add(name)
            result = pgconn.exec_prepared(name, params)  # type: ignore[arg-type]
            if result.status != _TUPLES_OK:
                raise psycopg.errors.error_from_result(result)
            row = [result.get_value(0, column) for column in range(result.nfields)]
            healthy = True
            return row
        finally:
            self._checkin(held, healthy or held.conn.pgconn.status == _CONNECTION_OK)

    def backend_pids(self) -> list[int]:
        """The server processes of the idle connections, one opened if none is (for the
        benchmark's CPU accounting)."""
        if not self._idle:
            self._checkin(self._checkout(), True)
        return [held.conn.info.backend_pid for held in self._idle]

    def dispose(self) -> None:
        """Close the idle connections (as the engine's pool does on dispose); those in use
        go back to the pool, which stays usable."""
        while self._idle:
            self._idle.pop().conn.close()


_pools: weakref.WeakKeyDictionary[sa.Engine, CallPool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def call_pool(engine: sa.Engine) -> CallPool:
    """The engine's companion pool, made on first use and emptied when the engine is
    disposed. Half the engine's steady size: it serves only the one-call writes."""
    with _pools_lock:
        pool = _pools.get(engine)
        if pool is None:
            size = getattr(engine.pool, "size", None)
            steady = int(size()) if callable(size) else 10
            pool = _pools[engine] = CallPool(
                engine, max(1, steady // 2), recycle=POOL_RECYCLE_SECONDS
            )
            event.listen(engine, "engine_disposed", lambda _engine: pool.dispose())
        return pool


class PgLedgerFunctions:
    """Calls the ledger functions, each call on a connection of the private pool; also lends
    the service the process caches it needs on that path (no unit of work is opened)."""

    def __init__(
        self,
        engine: sa.Engine,
        account_cache: dict[Any, uuid.UUID],
        cache: TtlCache,
    ) -> None:
        self._pool = call_pool(engine)
        self._account_cache = account_cache
        self.cache = cache  # the unit of work's TTL cache (tenants, see load_tenant)

    def backend_pids(self) -> list[int]:
        return self._pool.backend_pids()

    def cached_account(
        self, tenant_id: uuid.UUID, kind: AccountKind, currency: str
    ) -> uuid.UUID | None:
        """A tenant account's id if this process has seen it committed (SqlLedgerStore
        caches them); None sends the caller to the Python path, which opens and caches it."""
        return self._account_cache.get((tenant_id, kind, currency))

    def _call(self, sql: bytes, params: tuple[Any, ...]) -> Outcome:
        outcome, body, balance_after, balance = self._pool.call(
            sql, [_encode(value) for value in params]
        )
        assert outcome is not None
        return (
            outcome.decode(),
            None if body is None else json.loads(body),
            None if balance_after is None else int(balance_after),
            None if balance is None else json.loads(balance),
        )

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
