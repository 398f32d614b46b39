"""Worker processes: each bootstraps its own container (engine, pool, services) exactly as
the API process does, then runs its share of the clients, one thread each, calling
LedgerService.accrue / redeem in a closed loop.

The clients of one process share its services, as an API process's request threads do:
their concurrent writes share a commit (group commit, adapters/db/pg_ledger.py). One client
per process (``--processes`` equal to the clients) is the layout where nothing is shared.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import Any

import sqlalchemy as sa

import _seed
from _cpu import CLK_TCK
from kopilka.bootstrap import Container, bootstrap
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

ACCRUE_POINTS = (10, 500)
REDEEM_POINTS = (60, 100)  # lots hold 50 points: a redemption burns 2-3 of them
PHASES = ("accrual", "redeem", "mix")


@dataclass(frozen=True)
class WorkerConfig:
    url: str
    tenant_id: uuid.UUID
    members: int
    base_ms: int
    run_id: str
    group_commit: int = 32  # Settings.ledger_group_commit of the worker processes
    db_pool_size: int = 1  # Settings.db_pool_size of the worker processes
    # "threads": each client a thread calling accrue / redeem; "async": each client a
    # coroutine on the process's event loop calling accrue_async / redeem_async.
    mode: str = "threads"


@dataclass(frozen=True)
class PhaseOrder:
    name: str
    start_at: float  # time.monotonic() (CLOCK_MONOTONIC: one clock for every process)
    measure_from: float
    end_at: float
    pool: list[tuple[uuid.UUID, int]]  # this worker's share of redeemable members


@dataclass
class PhaseResult:
    worker: int  # the process: its clients' figures are summed
    name: str
    ops: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    python_cpu_s: float = 0.0  # this process, inside the measured window
    backend_cpu_s: float = 0.0  # its PostgreSQL backend, inside the measured window
    exhausted: bool = False
    # LedgerService's PostgreSQL fast path over the whole phase (warm-up included): calls
    # made, and calls that fell back to the Python path, by reason.
    fast_calls: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    # Group commit over the phase: batches of 2+ calls and the calls in them.
    batches: int = 0
    batched_calls: int = 0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of any local process (the PostgreSQL backend runs on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Process:
    """One worker process: the container (engine, pools, services) its clients share."""

    def __init__(self, index: int, cfg: WorkerConfig, clients: int) -> None:
        self.index = index
        self.cfg = cfg
        self.container: Container = bootstrap(
            Settings(
                database_url=cfg.url,
                # db_pool_size 2k: k fast-path connections, so k group-commit flushers
                db_pool_size=cfg.db_pool_size,
                log_json=False,
                ledger_group_commit=cfg.group_commit,
            )
        )
        self.clients = [Client(self, index * 1000 + i) for i in range(clients)]
        with self.container.engine.connect() as conn:
            backend = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        # The fast path's own connection (services/ledger_fast.py), counted with the engine's.
        functions = self.container.uow_factory.ledger_functions()
        self.loop = asyncio.new_event_loop()  # async mode: one loop for the whole run
        if cfg.mode == "async":
            threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.backend_pids = [backend] + (functions.backend_pids() if functions else [])

    def run(self, order: PhaseOrder) -> PhaseResult:
        """The phase on every client thread; one result for the process."""
        result = PhaseResult(self.index, order.name)
        for i, client in enumerate(self.clients):
            client.pool = [[m, b] for m, b in order.pool[i :: len(self.clients)]]
        fast = self.container.ledger.fast
        functions = self.container.uow_factory.ledger_functions()
        calls0 = fast.calls if fast else 0
        fallbacks0 = dict(fast.fallbacks) if fast else {}
        pool = functions.pool if functions else None
        batches0 = (pool.batches, pool.batched_calls) if pool else (0, 0)
        parts: list[PhaseResult] = []

        async def together() -> None:
            parts.extend(await asyncio.gather(*(c.run_async(order) for c in self.clients)))

        threads: list[threading.Thread] = []
        if self.cfg.mode == "async":
            running = asyncio.run_coroutine_threadsafe(together(), self.loop)
        else:
            threads = [
                threading.Thread(target=lambda c=client: parts.append(c.run(order)))
                for client in self.clients
            ]
        for thread in threads:
            thread.start()
        while time.monotonic() < order.measure_from:
            time.sleep(0.001)
        cpu0 = time.process_time()
        backend0 = sum(map(proc_cpu_seconds, self.backend_pids))
        while time.monotonic() < order.end_at:
            time.sleep(0.001)
        result.python_cpu_s = time.process_time() - cpu0
        result.backend_cpu_s = sum(map(proc_cpu_seconds, self.backend_pids)) - backend0
        for thread in threads:
            thread.join()
        if self.cfg.mode == "async":
            running.result(timeout=120)
        result.ops = {k: sum(p.ops.get(k, 0) for p in parts) for k in ("accrual", "redeem")}
        result.latencies = {
            k: [x for p in parts for x in p.latencies.get(k, [])] for k in ("accrual", "redeem")
        }
        for part in parts:
            for k, v in part.errors.items():
                result.errors[k] = result.errors.get(k, 0) + v
            result.first_error = result.first_error or part.first_error
            result.exhausted = result.exhausted or part.exhausted
        if fast is not None:
            result.fast_calls = fast.calls - calls0
            result.fallbacks = {
                k: v - fallbacks0.get(k, 0)
                for k, v in fast.fallbacks.items()
                if v - fallbacks0.get(k, 0)
            }
        if pool is not None:
            result.batches = pool.batches - batches0[0]
            result.batched_calls = pool.batched_calls - batches0[1]
        return result


class Client:
    """One closed-loop client (a thread of its process): the service calls a till would
    make, with fresh keys."""

    def __init__(self, process: Process, index: int) -> None:
        self.index = index
        self.cfg = process.cfg
        self.container = process.container
        self.rng = random.Random(f"{self.cfg.run_id}:{index}")
        self.seq = 0
        self.nonce = uuid.uuid4().hex[:6]  # keys stay unique across fleets and runs
        self.actor = Actor(self.cfg.tenant_id, "apikey:kp_bench", Role.POS)
        self.pool: list[list[Any]] = []

    def _key(self) -> str:
        self.seq += 1
        return f"bench-{self.cfg.run_id}-{self.nonce}-{self.index}-{self.seq}"

    def _accrual(self) -> tuple[uuid.UUID, int, str]:
        n = self.rng.randrange(self.cfg.members)
        return _seed.bench_id(self.cfg.base_ms, n), self.rng.randint(*ACCRUE_POINTS), self._key()

    def _redemption(self) -> tuple[list[Any], int, str] | None:
        """A pool member that still has the points, and the amount; None when none has."""
        amount = self.rng.randint(*REDEEM_POINTS)
        while self.pool:
            i = self.rng.randrange(len(self.pool))
            entry = self.pool[i]
            if entry[1] >= amount:
                entry[1] -= amount
                return entry, amount, self._key()
            self.pool[i] = self.pool[-1]
            self.pool.pop()
        return None

    def accrue(self) -> bool:
        member, points, key = self._accrual()
        self.container.ledger.accrue(
            self.actor,
            member,
            points,
            source_type="pos",
            source_id=f"receipt-{key}",
            idempotency_key=key,
        )
        return True

    def redeem(self) -> bool:
        """Spend from a pool member that still has the points; False when none has."""
        spend = self._redemption()
        if spend is None:
            return False
        entry, amount, key = spend
        self.container.ledger.redeem(
            self.actor,
            entry[0],
            amount,
            source_type="pos",
            source_id=f"receipt-{key}",
            idempotency_key=key,
        )
        return True

    async def accrue_async(self) -> None:
        member, points, key = self._accrual()
        await self.container.ledger.accrue_async(
            self.actor,
            member,
            points,
            source_type="pos",
            source_id=f"receipt-{key}",
            idempotency_key=key,
        )

    async def redeem_async(self) -> bool:
        spend = self._redemption()
        if spend is None:
            return False
        entry, amount, key = spend
        await self.container.ledger.redeem_async(
            self.actor,
            entry[0],
            amount,
            source_type="pos",
            source_id=f"receipt-{key}",
            idempotency_key=key,
        )
        return True

    def run(self, order: PhaseOrder) -> PhaseResult:
        """The closed loop on this thread; CPU is measured by the process, not per client."""
        loop = _Loop(self, order)
        while time.monotonic() < order.start_at:
            time.sleep(0.001)
        while (kind := loop.next_kind()) is not None:
            t0 = time.perf_counter()
            try:
                went = self.accrue() if kind == "accrual" else self.redeem()
            except Exception as exc:  # counted and reported, the loop goes on
                loop.failed(exc)
                continue
            loop.done(kind, went, t0)
        return loop.result

    async def run_async(self, order: PhaseOrder) -> PhaseResult:
        """The closed loop as a coroutine of the process's event loop."""
        loop = _Loop(self, order)
        while time.monotonic() < order.start_at:
            await asyncio.sleep(0.001)
        while (kind := loop.next_kind()) is not None:
            t0 = time.perf_counter()
            try:
                if kind == "accrual":
                    await self.accrue_async()
                    went = True
                else:
                    went = await self.redeem_async()
            except Exception as exc:  # counted and reported, the loop goes on
                loop.failed(exc)
                continue
            loop.done(kind, went, t0)
        return loop.result


class _Loop:
    """One client's closed loop over a phase: what to do next, and the counts."""

    def __init__(self, client: Client, order: PhaseOrder) -> None:
        self.client = client
        self.order = order
        self.result = PhaseResult(client.index, order.name)
        self.result.ops = {"accrual": 0, "redeem": 0}
        self.result.latencies = {"accrual": [], "redeem": []}
        self.stopped = False

    def next_kind(self) -> str | None:
        if self.stopped or time.monotonic() >= self.order.end_at:
            return None
        if self.order.name == "mix":
            return "accrual" if self.client.rng.random() < 0.5 else "redeem"
        return "accrual" if self.order.name == "accrual" else "redeem"

    def done(self, kind: str, went: bool, t0: float) -> None:
        if not went:  # the redemption pool ran dry for this client
            self.result.exhausted = True
            self.stopped = self.order.name == "redeem"
            return
        finished = time.monotonic()
        if self.order.measure_from <= finished <= self.order.end_at:
            self.result.ops[kind] += 1
            self.result.latencies[kind].append(time.perf_counter() - t0)

    def failed(self, exc: Exception) -> None:
        errors = self.result.errors
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        if self.result.first_error is None:
            self.result.first_error = "".join(traceback.format_exception_only(exc)).strip()
        self.stopped = sum(errors.values()) > 1000


def worker_main(
    index: int, cfg: WorkerConfig, clients: int, orders: Queue[Any], results: Queue[Any]
) -> None:
    """Process entry point: ready, then one PhaseOrder at a time until None."""
    try:
        process = Process(index, cfg, clients)
        results.put(("ready", index, (os.getpid(), process.backend_pids)))
        while True:
            order = orders.get()
            if order is None:
                break
            results.put(("result", index, process.run(order)))
        process.container.close()
    except BaseException:
        results.put(("error", index, traceback.format_exc()))
        raise
