"""The ledger's PostgreSQL fast path: an accrual or a redemption as ONE call of a PL/pgSQL
function (migration 0010) on an autocommit connection of a small private pool.

The function's statements are one implicit transaction and the write costs one round trip:
no BEGIN, no COMMIT, no SQLAlchemy. The statement is prepared once per connection and run
through libpq directly with text parameters (psycopg's adaptation layer costs more than the
call). The service layer builds the arguments and reads the outcome; see
services/ledger_fast.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import select
import threading
import time
import uuid
import weakref
from collections import deque
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from kopilka.adapters.db.engine import POOL_RECYCLE_SECONDS
from kopilka.adapters.db.inflight import advisory_key
from kopilka.adapters.db.ttl_cache import TtlCache
from kopilka.adapters.db.types import compact_json
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


class LedgerCall(NamedTuple):
    """One call of a ledger function, ready to run (``PgLedgerFunctions.run`` / ``run_async``)."""

    sql: bytes
    params: tuple[Any, ...]


def _outcome(row: list[bytes | None]) -> Outcome:
    outcome, body, balance_after, balance = row
    assert outcome is not None
    return (
        outcome.decode(),
        None if body is None else json.loads(body),
        None if balance_after is None else int(balance_after),
        None if balance is None else json.loads(balance),
    )


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
    return compact_json(value)


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


class _Call:
    """One caller's statement, queued for a flusher; ``finished`` is held until it ran."""

    __slots__ = ("error", "finished", "order", "params", "row", "sql")

    def __init__(self, sql: bytes, params: list[bytes | None], order: bytes) -> None:
        self.sql = sql
        self.params = params
        self.order = order
        self.row: list[bytes | None] | None = None
        self.error: BaseException | None = None
        self.finished = threading.Lock()
        self.finished.acquire()


class _PipelineReader:
    """The results of ``count`` pipelined statements up to their sync, read as they come."""

    __slots__ = ("count", "ended", "error", "rows")

    def __init__(self, count: int) -> None:
        self.count = count
        self.rows: list[list[bytes | None]] = []
        self.error: BaseException | None = None  # the first statement's error, if any
        self.ended = False

    @property
    def failed(self) -> bool:
        """Whether anything failed (a statement, or the commit at the sync): the server
        rolled the whole pipeline back."""
        return self.error is not None or len(self.rows) != self.count

    def feed(self, pgconn: psycopg.pq.abc.PGconn) -> bool:
        """Take every result the connection has without waiting; True once the sync came,
        False when the caller must wait for the socket to be readable and call again."""
        while True:
            if pgconn.is_busy():
                pgconn.consume_input()
                if pgconn.is_busy():
                    return False
            result = pgconn.get_result()
            if result is None:  # the end of one statement's results
                if self.ended:  # twice in a row: nothing more is coming
                    raise psycopg.OperationalError("the connection closed inside a pipeline")
                self.ended = True
                continue
            self.ended = False
            status = result.status
            if status == psycopg.pq.ExecStatus.PIPELINE_SYNC:
                return True
            if status == _TUPLES_OK:
                self.rows.append([result.get_value(0, column) for column in range(result.nfields)])
            elif self.error is None:  # the first failure; the rest were skipped (aborted)
                self.error = psycopg.errors.error_from_result(result)


class CallPool:
    """A small pool of autocommit connections for the one-call writes, with group commit.

    Why not the engine's pool: a SQLAlchemy checkout and check-in (with its reset) cost more
    Python time than the write itself. Here a checkout is a semaphore and a deque pop, the
    call goes straight to libpq (which releases the GIL while it waits), and the connection
    never leaves autocommit. At most ``size`` connections are open; a caller waits for one
    (``timeout``), like the engine's pool. Connections are recycled as the engine's are,
    and the idle ones closed when the engine is disposed.

    Group commit (``batch_max`` > 1): callers queue their call and wait; flusher threads,
    one per connection at most, each take everything queued (up to ``batch_max`` calls) and
    send it as one pipeline, one implicit transaction. So concurrent writes of one process
    share one round trip and one commit (one WAL flush) instead of paying for their own; a
    lone call still goes alone, as a plain call.
    The calls of a batch run in ``order`` (the member), so two batches take their row
    locks in the same order and cannot deadlock each other. If any statement of a batch
    fails, the server rolls the whole batch back and each call is run again on its own, so
    one call's error never becomes its neighbours'."""

    def __init__(
        self,
        engine: sa.Engine,
        size: int,
        *,
        timeout: float = 30.0,
        recycle: float = 1800.0,
        batch_max: int = 1,
    ) -> None:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        cparams.pop("context", None)  # SQLAlchemy's adapters: the calls encode their own
        self._connect_args = (tuple(cargs), dict(cparams))
        self._slots = threading.BoundedSemaphore(size)
        self._idle: deque[_Connection] = deque()
        self._timeout = timeout
        self._recycle = recycle
        self.batch_max = batch_max
        self._size = size
        self._queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._flushers: list[threading.Thread] = []
        self._flushers_pid = os.getpid()
        self._flushers_lock = threading.Lock()
        self._loop_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatcher] = (
            weakref.WeakKeyDictionary()
        )
        # What group commit did (the benchmark reports it): batches of two or more calls
        # sent, the calls in them, and batches run again call by call after an error.
        self.batches = 0
        self.batched_calls = 0
        self.batches_retried = 0

    def _checkout(self) -> _Connection:
        if not self._slots.acquire(timeout=self._timeout):
            raise TimeoutError("no database connection free for the ledger call")
        try:
            held = self._take_idle()
            if held is not None:
                return held
            cargs, cparams = self._connect_args
            return _Connection(
                psycopg.connect(*cargs, autocommit=True, options=_SESSION_OPTIONS, **cparams)
            )
        except BaseException:
            self._slots.release()
            raise

    def _take_idle(self) -> _Connection | None:
        """A healthy idle connection (the caller holds a slot), or None."""
        while True:
            try:
                held = self._idle.pop()  # LIFO: the warmest connection
            except IndexError:
                return None
            if (
                held.conn.pgconn.status == _CONNECTION_OK
                and time.monotonic() - held.born < self._recycle
            ):
                return held
            held.conn.close()

    async def _checkout_async(self) -> _Connection:
        """``_checkout`` for an event loop: an idle connection at once when there is one,
        otherwise the wait (or the connect) in a thread."""
        if self._slots.acquire(blocking=False):
            held = self._take_idle()
            if held is not None:
                return held
            self._slots.release()
        checkout = asyncio.ensure_future(asyncio.to_thread(self._checkout))
        try:
            return await asyncio.shield(checkout)
        except asyncio.CancelledError:  # the thread goes on: give back what it gets
            checkout.add_done_callback(self._checkin_abandoned)
            raise

    def _checkin_abandoned(self, checkout: asyncio.Future[_Connection]) -> None:
        if not checkout.cancelled() and checkout.exception() is None:
            self._checkin(checkout.result(), True)

    def _checkin(self, held: _Connection, healthy: bool) -> None:
        if healthy:
            self._idle.append(held)
        else:
            held.conn.close()
        self._slots.release()

    def call(
        self, sql: bytes, params: list[bytes | None], order: bytes = b""
    ) -> list[bytes | None]:
        """Run one prepared statement (alone or in a batch); its single row, as text."""
        mine = _Call(sql, params, order)
        if self.batch_max <= 1:
            held = self._checkout()
            try:
                self._run_alone(held, mine)
            finally:
                self._checkin(held, held.conn.pgconn.status == _CONNECTION_OK)
            return self._result(mine)
        self._ensure_flushers()
        self._queue.put(mine)
        mine.finished.acquire()  # released by the flusher that ran it
        return self._result(mine)

    async def call_async(
        self, sql: bytes, params: list[bytes | None], order: bytes = b""
    ) -> list[bytes | None]:
        """``call`` for coroutines: the calls of one event loop share pipelines and commits
        (up to ``batch_max`` at a time)."""
        return await self._batcher().call(_Call(sql, params, order))

    def _batcher(self) -> _LoopBatcher:
        loop = asyncio.get_running_loop()
        batcher = self._loop_batchers.get(loop)
        if batcher is None:
            batcher = self._loop_batchers[loop] = _LoopBatcher(self, loop)
        return batcher

    def _ensure_flushers(self) -> None:
        """Start the flusher threads once per process (a forked child has none)."""
        if self._flushers and self._flushers_pid == os.getpid():
            return
        with self._flushers_lock:
            if self._flushers_pid != os.getpid():
                self._flushers, self._flushers_pid = [], os.getpid()
                self._queue = queue.SimpleQueue()
            while len(self._flushers) < self._size:
                flusher = threading.Thread(
                    target=self._flush_forever, name="kopilka-ledger-flusher", daemon=True
                )
                flusher.start()
                self._flushers.append(flusher)

    def _flush_forever(self) -> None:
        """Wait for a call, take what else is queued, run it all as one batch."""
        work = self._queue
        while True:
            batch = [work.get()]
            while len(batch) < self.batch_max:
                try:
                    batch.append(work.get_nowait())
                except queue.Empty:
                    break
            try:
                held = self._checkout()
            except BaseException as exc:  # no connection: these calls never ran
                for call in batch:
                    call.error = exc
                    call.finished.release()
                continue
            try:
                self._run(held, batch)
            finally:
                self._checkin(held, held.conn.pgconn.status == _CONNECTION_OK)
                for call in batch:
                    call.finished.release()

    @staticmethod
    def _result(done: _Call) -> list[bytes | None]:
        if done.error is not None:
            raise done.error
        assert done.row is not None
        return done.row

    def _prepare(self, held: _Connection, sql: bytes) -> bytes:
        name = _PREPARED[sql]
        if name not in held.prepared:
            result = held.conn.pgconn.prepare(name, sql)
            if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                raise psycopg.errors.error_from_result(result)
            held.prepared.add(name)
        return name

    def _run_alone(self, held: _Connection, call: _Call) -> None:
        """One call, its own implicit transaction; the row or the error go on ``call``."""
        try:
            result = held.conn.pgconn.exec_prepared(self._prepare(held, call.sql), call.params)  # type: ignore[arg-type]
            if result.status != _TUPLES_OK:
                raise psycopg.errors.error_from_result(result)
            call.row = [result.get_value(0, column) for column in range(result.nfields)]
        except BaseException as exc:  # handed to the caller, whose call it is
            call.error = exc

    def _run(self, held: _Connection, batch: list[_Call]) -> None:
        """The calls of ``batch`` as one pipeline: one round trip, one transaction."""
        if len(batch) == 1:
            self._run_alone(held, batch[0])
            return
        batch.sort(key=lambda call: call.order)  # stable: one member's calls keep their order
        pgconn = held.conn.pgconn
        try:
            try:
                reader = self._send(held, batch)
                # psycopg's get_result keeps the GIL while it blocks: wait in select()
                # instead, so the process's other threads build the next batch meanwhile.
                while not reader.feed(pgconn):
                    select.select([pgconn.socket], [], [])
            finally:
                _leave_pipeline(held)
        except BaseException as exc:  # the connection failed: the outcome is unknown
            for call in batch:
                call.error = exc
            held.conn.close()  # it may hold unread results: never reuse it
            return
        if self._settle(batch, reader):
            for call in batch:
                self._run_alone(held, call)

    def _send(self, held: _Connection, batch: list[_Call]) -> _PipelineReader:
        """Send ``batch`` as one pipeline ending in one sync (one implicit transaction);
        the caller reads it with the reader returned, then leaves pipeline mode."""
        pgconn = held.conn.pgconn
        names = [self._prepare(held, call.sql) for call in batch]
        pgconn.enter_pipeline_mode()
        for call, name in zip(batch, names, strict=True):
            pgconn.send_query_prepared(name, call.params)
        pgconn.pipeline_sync()
        return _PipelineReader(len(batch))

    def _settle(self, batch: list[_Call], reader: _PipelineReader) -> bool:
        """Hand out the rows of a batch that went through; True when the server rolled it
        back and its calls must run again, each on its own."""
        if reader.failed:
            if len(batch) > 1:
                self.batches_retried += 1
            return True
        for call, row in zip(batch, reader.rows, strict=True):
            call.row = row
        if len(batch) > 1:
            self.batches += 1
            self.batched_calls += len(batch)
        return False

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


def _leave_pipeline(held: _Connection) -> None:
    """Leave pipeline mode; a connection still busy with results (an interrupted wait) is
    closed instead, so that the error being raised is the one the caller sees."""
    pgconn = held.conn.pgconn
    if pgconn.status != _CONNECTION_OK or pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF:
        return
    try:
        pgconn.exit_pipeline_mode()
    except psycopg.Error:
        held.conn.close()


def _cancelled() -> psycopg.OperationalError:
    return psycopg.OperationalError(
        "The ledger call was cancelled while the database had it; its outcome is unknown "
        "(a retry with the same Idempotency-Key is safe)."
    )


class _LoopBatcher:
    """Group commit for the coroutines of one event loop: the calls queued while the loop
    was busy go out as one pipeline on a connection of the pool, and the loop waits for the
    answer with a reader callback, never blocking. One batch at a time per loop: the next
    one gathers while this one is out."""

    def __init__(self, pool: CallPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.queue: list[tuple[_Call, asyncio.Future[None]]] = []
        self.flushing: asyncio.Task[None] | None = None

    async def call(self, call: _Call) -> list[bytes | None]:
        done: asyncio.Future[None] = self.loop.create_future()
        self.queue.append((call, done))
        if self.flushing is None:
            self.flushing = self.loop.create_task(self._flush())
        await done
        return CallPool._result(call)

    async def _flush(self) -> None:
        try:
            while self.queue:
                batch = self.queue[: self.pool.batch_max]
                del self.queue[: self.pool.batch_max]
                try:
                    await self._run([call for call, _ in batch])
                finally:
                    for call, done in batch:
                        if call.row is None and call.error is None:  # cut short by a cancel
                            call.error = _cancelled()
                        if not done.done():
                            done.set_result(None)
        except asyncio.CancelledError:  # the loop is shutting down: fail what still waits
            for call, done in self.queue:
                call.error = _cancelled()
                if not done.done():
                    done.set_result(None)
            self.queue.clear()
            raise
        finally:
            self.flushing = None

    async def _readable(self, fd: int) -> None:
        ready: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            self.loop.remove_reader(fd)

    async def _run(self, batch: list[_Call]) -> None:
        """As ``CallPool._run``: one pipeline, one transaction; a failed batch of several
        calls runs again call by call."""
        batch.sort(key=lambda call: call.order)  # stable: one member's calls keep their order
        try:
            held = await self.pool._checkout_async()
        except BaseException as exc:  # no connection: these calls never ran
            for call in batch:
                call.error = exc
            return
        pgconn = held.conn.pgconn
        try:
            try:
                reader = self.pool._send(held, batch)
                while not reader.feed(pgconn):
                    await self._readable(pgconn.socket)
            finally:
                _leave_pipeline(held)
        except BaseException as exc:  # the connection failed: the outcome is unknown
            cancelled = isinstance(exc, asyncio.CancelledError)
            for call in batch:
                call.error = _cancelled() if cancelled else exc
            held.conn.close()  # it may hold unread results (a cancelled wait): never reuse
            if cancelled:
                raise
            return
        finally:
            self.pool._checkin(held, pgconn.status == _CONNECTION_OK)
        if not self.pool._settle(batch, reader):
            return
        if len(batch) == 1:  # it ran alone: its error is its own
            batch[0].error = reader.error or psycopg.OperationalError("no result")
            return
        for call in batch:
            await self._run([call])


_pools: weakref.WeakKeyDictionary[sa.Engine, CallPool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def call_pool(engine: sa.Engine, batch_max: int = 1) -> CallPool:
    """The engine's companion pool, made on first use and emptied when the engine is
    disposed. Half the engine's steady size: it serves only the one-call writes."""
    with _pools_lock:
        pool = _pools.get(engine)
        if pool is None:
            size = getattr(engine.pool, "size", None)
            steady = int(size()) if callable(size) else 10
            pool = _pools[engine] = CallPool(
                engine, max(1, steady // 2), recycle=POOL_RECYCLE_SECONDS, batch_max=batch_max
            )
            event.listen(engine, "engine_disposed", lambda _engine: pool.dispose())
        pool.batch_max = batch_max
        return pool


class PgLedgerFunctions:
    """Calls the ledger functions, each call on a connection of the private pool; also lends
    the service the process caches it needs on that path (no unit of work is opened)."""

    def __init__(
        self,
        engine: sa.Engine,
        account_cache: dict[Any, uuid.UUID],
        cache: TtlCache,
        *,
        batch_max: int = 1,
    ) -> None:
        self._pool = call_pool(engine, batch_max)
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

    @property
    def pool(self) -> CallPool:
        return self._pool

    def run(self, call: LedgerCall) -> Outcome:
        """Make a call built by ``accrual`` or ``redemption`` (group commit with the
        process's concurrent calls)."""
        encoded = [_encode(value) for value in call.params]
        # Both functions take the member second: a batch locks its members in that order.
        return _outcome(self._pool.call(call.sql, encoded, encoded[1] or b""))

    async def run_async(self, call: LedgerCall) -> Outcome:
        """``run`` for coroutines (group commit with the event loop's concurrent calls)."""
        encoded = [_encode(value) for value in call.params]
        return _outcome(await self._pool.call_async(call.sql, encoded, encoded[1] or b""))

    def accrual_call(
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
    ) -> LedgerCall:
        """Credit a lot; the call's outcome is ("ok" | "replay", answer), ("fallback", None)
        or an error code with its details."""
        return LedgerCall(
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

    def redemption_call(
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
    ) -> LedgerCall:
        """Spend points across lots; outcomes as for :meth:`accrual_call`."""
        return LedgerCall(
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
