"""PostgreSQL plumbing for the benchmarks: URLs, dedicated databases, pgbench.

Everything here talks to one server on the loopback interface only; ``check_local`` refuses
any other host so a mistyped URL can never send benchmark traffic elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from subprocess import Popen

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def server_url() -> URL:
    """The maintenance database URL (``KOPILKA_BENCH_PG_URL`` or the local default)."""
    url = make_url(os.environ.get("KOPILKA_BENCH_PG_URL", DEFAULT_SERVER_URL))
    check_local(url)
    return url


def check_local(url: URL) -> None:
    host = url.host or "127.0.0.1"
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        raise SystemExit(f"benchmarks only talk to a local server; refusing host {host!r}")


def database_url(name: str) -> URL:
    return server_url().set(database=name)


def admin_engine() -> Engine:
    """An AUTOCOMMIT engine on the maintenance database (CREATE/DROP DATABASE)."""
    return sa.create_engine(server_url(), isolation_level="AUTOCOMMIT", pool_size=1)


def database_exists(name: str) -> bool:
    engine = admin_engine()
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
        return found is not None
    finally:
        engine.dispose()


def _safe_name(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"unsafe database name {name!r}")
    return name


def recreate_database(name: str, *, template: str | None = None) -> None:
    """Drop ``name`` and create it afresh, empty or as a copy of ``template``."""
    copy_of = f' TEMPLATE "{_safe_name(template)}"' if template else ""
    engine = admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_safe_name(name)}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy_of}'))
    finally:
        engine.dispose()


def drop_database(name: str) -> None:
    engine = admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_safe_name(name)}" WITH (FORCE)'))
    finally:
        engine.dispose()


def checkpoint(engine: Engine) -> None:
    """Flush dirty pages so a measured phase does not inherit the previous one's checkpoint."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("CHECKPOINT"))


def server_settings(engine: Engine) -> dict[str, str]:
    names = (
        "server_version",
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "max_wal_size",
        "checkpoint_timeout",
        "max_connections",
    )
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(:n)"),
            {"n": list(names)},
        ).all()
    return {r[0]: r[1] for r in rows}


# ---- pgbench -------------------------------------------------------------------------
@dataclass(frozen=True)
class PgbenchResult:
    clients: int
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    duration_s: int


def _pgbench_args(url: URL) -> list[str]:
    exe = shutil.which("pgbench")
    if exe is None:
        raise SystemExit("pgbench is not on PATH (Debian: postgresql-client)")
    args = [exe, "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432)]
    if url.username:
        args += ["-U", url.username]
    return args


def _pgbench_env(url: URL) -> dict[str, str]:
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    return env


def pgbench_init(name: str, scale: int, *, force: bool = False) -> float | None:
    """Create and fill ``name`` with pgbench's tables unless they are there at ``scale``.

    Returns the seconds it took, or None when the database was already initialised.
    """
    if not force and database_exists(name):
        engine = sa.create_engine(database_url(name), pool_size=1)
        try:
            with engine.connect() as conn:
                branches = conn.execute(
                    sa.text(
                        "SELECT CASE WHEN to_regclass('pgbench_branches') IS NULL THEN -1 "
                        "ELSE (SELECT count(*) FROM pgbench_branches) END"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        if branches == scale:
            return None
    recreate_database(name)
    url = database_url(name)
    started = time.monotonic()
    subprocess.run(
        [*_pgbench_args(url), "-i", "-q", "-s", str(scale), name],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
        env=_pgbench_env(url),
    )
    return time.monotonic() - started


_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_LAT = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
_TXNS = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def parse_pgbench(output: str) -> tuple[float, float, int, int]:
    """(tps, average latency ms, transactions, failed) from pgbench's report."""
    tps = _TPS.search(output)
    if tps is None:
        raise RuntimeError(f"no tps in pgbench output:\n{output}")
    lat = _LAT.search(output)
    txns = _TXNS.search(output)
    failed = _FAILED.search(output)
    return (
        float(tps.group(1)),
        float(lat.group(1)) if lat else float("nan"),
        int(txns.group(1)) if txns else 0,
        int(failed.group(1)) if failed else 0,
    )


def pgbench_start(name: str, clients: int, duration: int, *, threads: int = 2) -> Popen[str]:
    """Start ``pgbench -b tpcb-like -c clients -j threads -T duration``."""
    url = database_url(name)
    args = [
        *_pgbench_args(url),
        "-b",
        "tpcb-like",
        "-c",
        str(clients),
        "-j",
        str(min(threads, clients)),
        "-T",
        str(duration),
        name,
    ]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_pgbench_env(url)
    )


def pgbench_finish(proc: Popen[str], clients: int, duration: int) -> PgbenchResult:
    """Wait (bounded) for a pgbench started by :func:`pgbench_start` and parse its report."""
    try:
        output, _ = proc.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}):\n{output}")
    tps, latency, txns, failed = parse_pgbench(output)
    return PgbenchResult(clients, tps, latency, txns, failed, duration)
