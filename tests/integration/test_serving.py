"""``kopilka serve --workers N``: one listening socket per worker (SO_REUSEPORT), so the
kernel spreads connections over the workers; a dead worker is replaced; SIGTERM stops all."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from kopilka.api.serving import check_address_free, listening_socket, reuse_port_supported

pytestmark = pytest.mark.skipif(not reuse_port_supported(), reason="needs SO_REUSEPORT")

KOPILKA = Path(sys.executable).with_name("kopilka")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sockets_of_one_group_each_get_connections() -> None:
    first = listening_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port, reuse_port=True)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    try:
        accepted = []
        for server in (first, second):
            server.setblocking(False)
            count = 0
            while True:
                try:
                    conn, _ = server.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        assert sum(accepted) == 64
        assert min(accepted) > 0  # all on one socket: 2 ** -63
    finally:
        for client in clients:
            client.close()
        first.close()
        second.close()


def test_a_taken_address_is_refused_before_any_worker_starts() -> None:
    taken = listening_socket("127.0.0.1", 0, reuse_port=False)
    try:
        with pytest.raises(OSError, match="in use"):
            check_address_free("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(pid: int) -> set[int]:
    """The supervisor's worker processes (spawned interpreters running the worker main)."""
    return {child for child in _children(pid) if "spawn_main" in _cmdline(child)}


def _established_on(port: int) -> dict[int, int]:
    """inode -> 1 for each accepted connection on ``port`` (server side)."""
    inodes: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":
                inodes[int(fields[9])] = 1
    return inodes


def _connections_per_worker(workers: set[int], port: int) -> dict[int, int]:
    accepted = _established_on(port)
    counts = {}
    for pid in workers:
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in accepted:
                count += 1
        counts[pid] = count
    return counts


def _get(port: int, conn: http.client.HTTPConnection | None = None) -> int:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    return response.status


def _wait_serving(port: int, deadline: float) -> None:
    while True:
        try:
            if _get(port) == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the server did not answer in time")
        time.sleep(0.2)


@pytest.fixture
def served(pg_engine: Engine, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = {
        **os.environ,
        "KOPILKA_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
        "KOPILKA_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own installed command
        [str(KOPILKA), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_serving(port, time.monotonic() + 60)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_serve_spreads_connections_replaces_a_dead_worker_and_stops_on_sigterm(
    served: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = served
    deadline = time.monotonic() + 60
    while len(_workers(proc.pid)) < 2:
        assert time.monotonic() < deadline, "two workers did not start"
        time.sleep(0.2)
    workers = _workers(proc.pid)

    # A burst of keep-alive connections, as tills opening at once: both workers get some.
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(32)]
    try:
        assert all(_get(port, conn) == 200 for conn in conns)
        counts = _connections_per_worker(workers, port)
        assert sum(counts.values()) == 32
        assert min(counts.values()) > 0, counts
    finally:
        for conn in conns:
            conn.close()

    # A worker killed outright is replaced, and the service keeps answering.
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    while True:
        now = _workers(proc.pid)
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline + 30, "the dead worker was not replaced"
        time.sleep(0.2)
    _wait_serving(port, time.monotonic() + 60)
    assert all(_get(port) == 200 for _ in range(8))

    # SIGTERM: the workers stop and the supervisor exits cleanly.
    last = _workers(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0
    assert not any(Path(f"/proc/{pid}").exists() and _cmdline(pid) for pid in last)
