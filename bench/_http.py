"""A small keep-alive HTTP/1.1 load generator on asyncio streams (loopback only).

Hand-written instead of httpx because the client shares two cores with the server and the
database: building the request bytes and reading a status line, a few headers and a
``Content-Length`` body costs a fraction of what a full-featured client does, so the load
generator steals less CPU from what it measures.

Two drivers:

* :func:`closed_loop` - C connections, each sends its next request when the previous answer
  arrived (peak throughput);
* :func:`open_loop` - requests start at a FIXED arrival rate on a precomputed schedule,
  whatever the answers do (latency at a given load; client latency is measured from the
  scheduled start, so a stalled server cannot hide its queue: no coordinated omission).

Every response's ``Server-Timing: app;dur=<ms>`` is recorded as the server-side time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
REQUEST_TIMEOUT_S = 30.0
MAX_ERROR_SAMPLES = 5

# (connection index, sequence number) -> the complete request bytes
RequestMaker = Callable[[int, int], bytes]


def check_local(host: str) -> None:
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        raise SystemExit(f"the load generator only talks to the loopback; refusing {host!r}")


class HttpError(Exception):
    """The server closed the connection or answered something this client cannot read."""


class Connection:
    """One keep-alive connection; requests on it are strictly sequential."""

    def __init__(self, host: str, port: int) -> None:
        check_local(host)
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, data: bytes) -> tuple[int, float | None, bytes]:
        """Send one request; return (status, server-side ms or None, body)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(data)
        reader = self.reader
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise HttpError("connection closed before a response") from exc
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise HttpError(f"bad status line {lines[0]!r}") from exc
        length = -1
        chunked = False
        server_ms: float | None = None
        keep_alive = True
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"server-timing":
                _, found, rest = value.partition(b"dur=")
                if found:
                    server_ms = float(rest.split(b",", 1)[0].split(b";", 1)[0])
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep_alive = b"close" not in value.lower()
        if chunked:
            body = await self._read_chunked()
        elif length >= 0:
            body = await reader.readexactly(length) if length else b""
        else:  # no length: the body runs to the end of the connection
            body = await reader.read()
            keep_alive = False
        if not keep_alive:
            self.close()
        return status, server_ms, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # trailers are not expected
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


async def simple_request(host: str, port: int, data: bytes) -> tuple[int, bytes]:
    """One request on a fresh connection (health checks, one-off calls)."""
    conn = Connection(host, port)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status, _, body = await conn.request(data)
    finally:
        conn.close()
    return status, body


@dataclass
class Stats:
    """What one phase measured; only completions inside the measurement window count."""

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    window_s: float = 0.0
    sent: int = 0
    client_cpu_s: float = 0.0
    max_lag_ms: float = 0.0  # open loop: how late the dispatcher started a request, at most
    max_connections: int = 0

    def record(self, status: int, client_ms: float, server_ms: float | None, body: bytes) -> None:
        if 200 <= status < 300:
            self.ok += 1
            self.client_ms.append(client_ms)
            if server_ms is not None:
                self.server_ms.append(server_ms)
        else:
            self.errors[str(status)] += 1
            if len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples.append(f"{status} {body[:300]!r}")

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(f"{kind} {detail[:300]}")

    @property
    def throughput(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": dict(self.errors),
            "window_s": round(self.window_s, 2),
            "client_ms": percentiles(self.client_ms),
            "server_ms": percentiles(self.server_ms),
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1], 2)

    return {
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": round(ordered[-1], 2),
        "mean": round(sum(ordered) / len(ordered), 2),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def closed_loop(
    host: str,
    port: int,
    clients: int,
    make: RequestMaker,
    warmup_s: float,
    duration_s: float,
    *,
    stagger_s: float = 0.01,
) -> Stats:
    """C connections in a loop; counts completions between warm-up end and the deadline.

    Connections open ``stagger_s`` apart, as tills come online one by one: opened all at
    once, they would all be accepted by whichever server worker woke first (an event loop
    accepts every pending connection in one go), leaving the other workers idle."""
    stats = Stats()
    loop_start = time.perf_counter()
    measure_from = loop_start + warmup_s
    end = measure_from + duration_s

    async def worker(index: int) -> None:
        await asyncio.sleep(index * stagger_s)
        conn = Connection(host, port)
        seq = 0
        try:
            while True:
                started = time.perf_counter()
                if started >= end:
                    return
                data = make(index, seq)
                seq += 1
                stats.sent += 1
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        status, server_ms, body = await conn.request(data)
                except (OSError, HttpError, TimeoutError) as exc:
                    conn.close()
                    if time.perf_counter() >= measure_from:
                        stats.error(type(exc).__name__, str(exc))
                    await asyncio.sleep(0.05)
                    continue
                done = time.perf_counter()
                if measure_from <= done <= end:
                    stats.record(status, (done - started) * 1000, server_ms, body)
        finally:
            conn.close()

    cpu0 = _cpu_seconds()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    stats.client_cpu_s = _cpu_seconds() - cpu0
    stats.window_s = duration_s
    stats.max_connections = clients
    return stats


async def open_loop(
    host: str,
    port: int,
    rate: float,
    make: RequestMaker,
    warmup_s: float,
    duration_s: float,
    *,
    max_connections: int = 256,
    preopen: int = 16,
) -> Stats:
    """Start requests at ``rate`` per second on a fixed schedule, whether or not earlier
    answers have come back. Client latency runs from the scheduled start (so waiting for a
    free connection or a late dispatcher counts); requests scheduled in the warm-up are sent
    but not recorded."""
    stats = Stats()
    interval = 1.0 / rate
    total = int(rate * (warmup_s + duration_s))
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0
    for _ in range(min(preopen, max_connections)):
        conn = Connection(host, port)
        await conn.open()
        idle.put_nowait(conn)
        opened += 1
        await asyncio.sleep(0.01)  # spread over the workers (see closed_loop)
    tasks: set[asyncio.Task[None]] = set()

    async def acquire() -> Connection:
        nonlocal opened
        with contextlib.suppress(asyncio.QueueEmpty):
            return idle.get_nowait()
        if opened < max_connections:
            opened += 1
            return Connection(host, port)  # opened by its first request
        return await idle.get()

    async def one(index: int, scheduled: float, recorded: bool) -> None:
        conn = await acquire()
        data = make(index % 1024, index)
        stats.sent += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, server_ms, body = await conn.request(data)
        except (OSError, HttpError, TimeoutError) as exc:
            conn.close()
            idle.put_nowait(conn)
            if recorded:
                stats.error(type(exc).__name__, str(exc))
            return
        done = time.perf_counter()
        idle.put_nowait(conn)
        if recorded:
            stats.record(status, (done - scheduled) * 1000, server_ms, body)

    cpu0 = _cpu_seconds()
    start = time.perf_counter() + 0.05
    warm_n = int(rate * warmup_s)
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            stats.max_lag_ms = max(stats.max_lag_ms, -delay * 1000)
        task = asyncio.create_task(one(i, scheduled, i >= warm_n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            idle.get_nowait().close()
    stats.client_cpu_s = _cpu_seconds() - cpu0
    stats.window_s = duration_s
    stats.max_connections = max(stats.max_connections, opened)
    return stats


def run(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (cheaper per request), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
