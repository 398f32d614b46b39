"""CPU accounting from /proc: what the benchmark used, and what other work on the machine
stole from it (a shared 2-core machine often runs someone's test suite at the same time)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
# PostgreSQL's own background processes serve every database: counted as the benchmark's.
PG_AUX = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum",
    "logical replication",
    "stats collector",
    "archiver",
)


def system_busy_seconds() -> float:
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return (sum(parts[:8]) - idle) / CLK_TCK


@dataclass(frozen=True)
class ProcCpu:
    pid: int
    cmdline: str
    seconds: float


def process_cpu() -> dict[int, ProcCpu]:
    found: dict[int, ProcCpu] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        found[pid] = ProcCpu(pid, cmd or name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


class Window:
    """CPU used between ``start()`` and ``stop()``, split into ours and foreign."""

    def __init__(self, our_pids: Iterable[int], our_databases: Iterable[str]) -> None:
        self.our_pids = set(our_pids) | {os.getpid()}
        self.our_databases = tuple(our_databases)

    def ours(self, proc: ProcCpu) -> bool:
        if proc.pid in self.our_pids or proc.cmdline.startswith("pgbench"):
            return True
        if proc.cmdline.startswith("postgres"):
            return any(f" {db} " in proc.cmdline for db in self.our_databases) or any(
                aux in proc.cmdline for aux in PG_AUX
            )
        return False

    def start(self) -> None:
        self._busy0 = system_busy_seconds()
        self._wall0 = time.monotonic()
        self._procs0 = process_cpu()

    def stop(self) -> dict[str, float]:
        busy = system_busy_seconds() - self._busy0
        wall = time.monotonic() - self._wall0
        procs = process_cpu()
        foreign = ours = 0.0
        for pid, proc in procs.items():
            before = self._procs0.get(pid)
            used = proc.seconds - (before.seconds if before else 0.0)
            if used <= 0:
                continue
            if self.ours(proc):
                ours += used
            else:
                foreign += used
        return {
            "busy_cores": busy / wall,
            "foreign_cores": foreign / wall,
            "own_cores": ours / wall,
            "busy_s": busy,
            "wall_s": wall,
        }


class QuietBudget:
    """Seconds the whole run may spend waiting for other work on the machine to stop."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def wait(self, log: Callable[[str], None], threshold: float = 0.3) -> float:
        started = time.monotonic()
        busy = wait_for_quiet(log, threshold=threshold, max_wait=self.left)
        self.left = max(0.0, self.left - (time.monotonic() - started))
        return busy


def wait_for_quiet(
    log: Callable[[str], None], *, threshold: float = 0.3, max_wait: float = 180.0
) -> float:
    """Wait (bounded) until the machine's CPU use drops under ``threshold`` cores."""
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        b0 = system_busy_seconds()
        time.sleep(1.0)
        busy = system_busy_seconds() - b0
        if busy < threshold or time.monotonic() >= deadline:
            if busy >= threshold:
                log(f"machine still busy ({busy:.2f} cores); quiet-wait budget spent: measuring")
            return busy
        if not warned:
            log(f"machine busy with other work ({busy:.2f} cores): waiting for it to calm")
            warned = True
