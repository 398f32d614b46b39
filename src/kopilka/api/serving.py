"""Serving the HTTP API from several worker processes, each with its own listening socket.

Why not uvicorn's ``--workers``: there the workers share one listening socket, every worker
wakes on a new connection and the first awake accepts all that are queued. Tills keep their
connections open, so a burst of connections (a shop opening, a load balancer reconnecting)
can leave one worker with nearly all of them while the other idles: measured with
``bench/purchases.py``, 15 of 16 connections on one worker and an open-loop p99 of 1.8 s.
Here each worker binds its own socket to the same address with ``SO_REUSEPORT``, and the
kernel spreads connections over the sockets by a hash of their addresses.

The supervisor restarts a worker that dies, stops when workers keep dying at start-up, and
on SIGINT or SIGTERM stops the workers (uvicorn's graceful shutdown) and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

logger = logging.getLogger("kopilka.serving")

APP = "kopilka.api.asgi:app"
# A worker that dies sooner than this after its start counts as failing to start.
STARTUP_GRACE_S = 10.0
# Consecutive start-up failures after which the supervisor gives up.
MAX_STARTUP_FAILURES = 3
STOP_TIMEOUT_S = 30.0
BACKLOG = 2048


def reuse_port_supported() -> bool:
    """Linux balances connections over the sockets of a SO_REUSEPORT group; BSD and macOS
    accept the option but hand every connection to one socket, so they keep uvicorn's
    shared socket."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def check_address_free(host: str, port: int) -> None:
    """Fail early, with the OS's message, when another program holds the address (the
    workers' shared binding would otherwise join a stranger's socket group or fail one by
    one)."""
    listening_socket(host, port, reuse_port=False).close()


def _uvicorn_config(log_level: str) -> dict[str, Any]:
    return {
        "app": APP,
        "factory": True,
        "log_level": log_level,
        "access_log": False,
    }


def _worker_main(host: str, port: int, log_level: str) -> None:
    """A worker process: its own socket in the shared group, then uvicorn on it."""
    sock = listening_socket(host, port, reuse_port=True)
    server = uvicorn.Server(uvicorn.Config(**_uvicorn_config(log_level)))
    server.run(sockets=[sock])


@dataclass
class _Worker:
    process: BaseProcess
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Keeps ``workers`` worker processes serving ``host:port``."""

    def __init__(self, host: str, port: int, workers: int, log_level: str) -> None:
        self.host, self.port, self.log_level = host, port, log_level
        self.size = workers
        self.stopping = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._failures = 0
        self.exit_code = 0

    def _spawn(self) -> _Worker:
        process = self._context.Process(
            target=_worker_main,
            args=(self.host, self.port, self.log_level),
            name="kopilka-worker",
            daemon=False,
        )
        process.start()
        logger.info("worker %s started", process.pid)
        return _Worker(process)

    def start(self) -> None:
        check_address_free(self.host, self.port)
        self._workers = [self._spawn() for _ in range(self.size)]

    def check(self) -> None:
        """Replace the workers that died; give up when they keep dying at start-up."""
        for index, worker in enumerate(self._workers):
            if worker.process.is_alive() or self.stopping.is_set():
                continue
            worker.process.join()
            lived = time.monotonic() - worker.started
            logger.warning(
                "worker %s exited with %s after %.1f s",
                worker.process.pid,
                worker.process.exitcode,
                lived,
            )
            self._failures = self._failures + 1 if lived < STARTUP_GRACE_S else 0
            if self._failures >= MAX_STARTUP_FAILURES:
                logger.error("workers keep failing at start-up; stopping")
                self.exit_code = 1
                self.stopping.set()
                return
            self._workers[index] = self._spawn()

    def stop(self) -> None:
        """SIGTERM to every worker (uvicorn finishes the requests in flight), then SIGKILL
        to those still running after the timeout."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()

    def run(self) -> int:
        def _request_stop(signum: int, _frame: Any) -> None:
            logger.info("signal %s: stopping the workers", signum)
            self.stopping.set()

        previous = {
            sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            while not self.stopping.wait(0.5):
                self.check()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code


def serve(host: str, port: int, workers: int, log_level: str) -> int:
    """Serve the API: in this process for one worker, else under a :class:`Supervisor`."""
    if workers <= 1 or not reuse_port_supported():
        # Not Linux: uvicorn's own shared socket is the fallback.
        uvicorn.run(host=host, port=port, workers=max(1, workers), **_uvicorn_config(log_level))
        return 0
    return Supervisor(host, port, workers, log_level).run()
