"""Worker processes: each bootstraps its own container (engine, pool, services) exactly as
the API process does, then calls LedgerService.accrue / redeem in a closed loop.

One process is one client (one database connection): on a 2-core machine Python CPU is the
bottleneck, so threads inside a process would only queue on the GIL.
"""

from __future__ import annotations

import os
import random
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


@dataclass(frozen=True)
class PhaseOrder:
    name: str
    start_at: float  # time.monotonic() (CLOCK_MONOTONIC: one clock for every process)
    measure_from: float
    end_at: float
    pool: list[tuple[uuid.UUID, int]]  # this worker's share of redeemable members


@dataclass
class PhaseResult:
    worker: int
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


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of any local process (the PostgreSQL backend runs on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Client:
    """One closed-loop client: the service calls a till would make, with fresh keys."""

    def __init__(self, index: int, cfg: WorkerConfig) -> None:
        self.index = index
        self.cfg = cfg
        self.rng = random.Random(f"{cfg.run_id}:{index}")
        self.seq = 0
        self.nonce = uuid.uuid4().hex[:6]  # keys stay unique across fleets and runs
        self.container: Container = bootstrap(
            Settings(database_url=cfg.url, db_pool_size=1, log_json=False)
        )
        self.actor = Actor(cfg.tenant_id, "apikey:kp_bench", Role.POS)
        self.pool: list[list[Any]] = []
        with self.container.engine.connect() as conn:
            self.backend_pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        # The fast path's own connection (services/ledger_fast.py), counted with the engine's.
        functions = self.container.uow_factory.ledger_functions()
        self.backend_pids = [self.backend_pid] + (functions.backend_pids() if functions else [])

    def _key(self) -> str:
        self.seq += 1
        return f"bench-{self.cfg.run_id}-{self.nonce}-{self.index}-{self.seq}"

    def accrue(self) -> None:
        n = self.rng.randrange(self.cfg.members)
        key = self._key()
        self.container.ledger.accrue(
            self.actor,
            _seed.bench_id(self.cfg.base_ms, n),
            self.rng.randint(*ACCRUE_POINTS),
            source_type="pos",
            source_id=f"receipt-{key}",
            idempotency_key=key,
        )

    def redeem(self) -> bool:
        """Spend from a pool member that still has the points; False when none has."""
        amount = self.rng.randint(*REDEEM_POINTS)
        while self.pool:
            i = self.rng.randrange(len(self.pool))
            entry = self.pool[i]
            if entry[1] >= amount:
                break
            self.pool[i] = self.pool[-1]
            self.pool.pop()
        else:
            return False
        key = self._key()
        self.container.ledger.redeem(
            self.actor,
            entry[0],
            amount,
            source_type="pos",
            source_id=f"receipt-{key}",
            idempotency_key=key,
        )
        entry[1] -= amount
        return True

    def run(self, order: PhaseOrder) -> PhaseResult:
        result = PhaseResult(self.index, order.name)
        self.pool = [[m, b] for m, b in order.pool]
        ops = {"accrual": 0, "redeem": 0}
        lat: dict[str, list[float]] = {"accrual": [], "redeem": []}
        while time.monotonic() < order.start_at:
            time.sleep(0.001)
        measuring = False
        cpu0 = backend0 = 0.0
        fast = self.container.ledger.fast
        calls0 = fast.calls if fast else 0
        fallbacks0 = dict(fast.fallbacks) if fast else {}
        while True:
            now = time.monotonic()
            if not measuring and now >= order.measure_from:
                measuring = True
                cpu0 = time.process_time()
                backend0 = sum(map(proc_cpu_seconds, self.backend_pids))
            if now >= order.end_at:
                break
            kind = order.name
            if kind == "mix":
                kind = "accrual" if self.rng.random() < 0.5 else "redeem"
            t0 = time.perf_counter()
            try:
                if kind == "accrual":
                    self.accrue()
                elif not self.redeem():
                    result.exhausted = True
                    if order.name == "redeem":
                        break
                    continue
            except Exception as exc:  # counted and reported, the loop goes on
                name = type(exc).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                if result.first_error is None:
                    result.first_error = "".join(traceback.format_exception_only(exc)).strip()
                if sum(result.errors.values()) > 1000:
                    break
                continue
            done = time.monotonic()
            if order.measure_from <= done <= order.end_at:
                ops[kind] += 1
                lat[kind].append(time.perf_counter() - t0)
        if measuring:
            result.python_cpu_s = time.process_time() - cpu0
            result.backend_cpu_s = sum(map(proc_cpu_seconds, self.backend_pids)) - backend0
        result.ops = ops
        result.latencies = lat
        if fast is not None:
            result.fast_calls = fast.calls - calls0
            result.fallbacks = {
                k: v - fallbacks0.get(k, 0)
                for k, v in fast.fallbacks.items()
                if v - fallbacks0.get(k, 0)
            }
        return result


def worker_main(index: int, cfg: WorkerConfig, orders: Queue[Any], results: Queue[Any]) -> None:
    """Process entry point: ready, then one PhaseOrder at a time until None."""
    try:
        client = Client(index, cfg)
        results.put(("ready", index, (os.getpid(), client.backend_pids)))
        while True:
            order = orders.get()
            if order is None:
                break
            results.put(("result", index, client.run(order)))
        client.container.close()
    except BaseException:
        results.put(("error", index, traceback.format_exc()))
        raise
