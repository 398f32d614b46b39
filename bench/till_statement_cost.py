"""PostgreSQL CPU per statement of one till confirm, replayed on a seeded bench database.

Runs one confirm in process against a database that ``bench/purchases.py --keep`` left
(``kopilka_bench_http``), records the statements it sends, rolls it back, then replays each
statement ``--iterations`` times on one backend, each time in its own transaction that is
rolled back, and reads that backend's CPU time from /proc. A ``BEGIN; ROLLBACK`` loop is
the baseline subtracted from each. This is how session 12 found the ledger write reading
all of a tenant's lots (1.4 ms of the purchase's 2 ms of database CPU).

    .venv/bin/python bench/purchases.py --quick --duration 3 --members 2000 --rules 20 \\
        --workers 2 --clients 8 --skip-sqlite --skip-round-trips --skip-pgbench --keep
    .venv/bin/python bench/till_statement_cost.py            # then this
    .venv/bin/python bench/till_statement_cost.py --explain  # and the plans

Loopback PostgreSQL only (``KOPILKA_BENCH_PG_URL`` as in the other benches). Prints one JSON
line per statement and a total.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.unit_of_work import SqlUnitOfWork
from kopilka.bootstrap import Container, bootstrap
from kopilka.services.context import Actor, Role
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.settings import Settings

SERVER_URL = os.environ.get(
    "KOPILKA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def captured_confirm(
    url: str, redeem: int, *, member: int = 0, receipt_number: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The statements of one confirm (the ``member``-th member's card, 10 lines, ``redeem``
    points), rolled back so that they can be replayed."""
    return capture_confirm(url, redeem, member=member, receipt_number=receipt_number)[0]


def bench_container(url: str) -> Container:
    engine = create_db_engine(url, pool_size=2)
    return bootstrap(Settings(database_url=url, db_pool_size=2, log_level="WARNING"), engine=engine)


def capture_confirm(
    url: str,
    redeem: int,
    *,
    member: int = 0,
    receipt_number: str | None = None,
    container: Container | None = None,
    warm: bool = True,
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """:func:`captured_confirm`, and the Unix millisecond at which the recorded confirm
    started (the ids it minted, UUIDv7, are from that millisecond on). A ``container``
    given is reused (and kept); ``warm`` first commits one purchase of the member's, which
    fills the caches."""
    c = container or bench_container(url)
    engine = c.engine
    with engine.connect() as conn:
        tenant_id, outlet = conn.execute(
            sa.text(
                "SELECT t.id, o.code FROM tenants t JOIN outlets o ON o.tenant_id = t.id"
                " WHERE t.name LIKE 'Bench 20%' ORDER BY o.code LIMIT 1"
            )
        ).one()
        card = conn.execute(
            sa.text(
                "SELECT number FROM cards WHERE tenant_id = :t AND member_id IS NOT NULL"
                " ORDER BY number OFFSET :n LIMIT 1"
            ),
            {"t": tenant_id, "n": member},
        ).scalar_one()
        skus = conn.execute(
            sa.text("SELECT sku FROM products WHERE tenant_id = :t ORDER BY sku LIMIT 10"),
            {"t": tenant_id},
        ).scalars()
        lines = tuple(LineInput(sku=s, qty=Decimal(1), price=10_000) for s in skus)
    actor = Actor(tenant_id=tenant_id, name="bench", role=Role.ADMIN)
    receipt = ReceiptInput(
        lines=lines, member=MemberRef(card=card), redeem_points=redeem, outlet=outlet
    )
    if warm:
        c.purchases.confirm(actor, receipt, f"warm-{uuid.uuid4().hex}")  # caches, plans
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(_c: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        if isinstance(params, dict):
            seen.append((statement, dict(params)))

    real_commit = SqlUnitOfWork.commit
    SqlUnitOfWork.commit = lambda self: None  # type: ignore[method-assign]
    event.listen(engine, "before_cursor_execute", record)
    started_ms = time.time_ns() // 1_000_000
    try:
        c.purchases.confirm(actor, receipt, receipt_number or f"replay-{uuid.uuid4().hex}")
    finally:
        event.remove(engine, "before_cursor_execute", record)
        SqlUnitOfWork.commit = real_commit  # type: ignore[method-assign]
        if container is None:
            engine.dispose()
    return seen, started_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="kopilka_bench_http")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--redeem", type=int, default=100, help="points the receipt spends")
    parser.add_argument("--explain", action="store_true", help="print each statement's plan")
    args = parser.parse_args()
    url = make_url(SERVER_URL).set(database=args.database)
    if url.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"loopback PostgreSQL only, not {url.host!r}")
    statements = captured_confirm(url.render_as_string(hide_password=False), args.redeem)
    raw = psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
        password=url.password, autocommit=True, options="-c timezone=UTC",
    )  # fmt: skip
    pid = raw.info.backend_pid

    def cost(statement: str | None, params: dict[str, Any]) -> float:
        for warm in (True, False):
            started = backend_cpu(pid)
            for _ in range(30 if warm else args.iterations):
                raw.execute("BEGIN")
                if statement is not None:
                    raw.execute(statement, params, prepare=True)
                raw.execute("ROLLBACK")
        return (backend_cpu(pid) - started) * 1000 / args.iterations

    baseline = cost(None, {})
    total = 0.0
    for statement, params in statements:
        ms = max(0.0, cost(statement, params) - baseline)
        total += ms
        print(
            json.dumps({"statement": " ".join(statement.split())[:90], "backend_ms": round(ms, 3)})
        )
        if args.explain:
            raw.execute("BEGIN")
            for (line,) in raw.execute("EXPLAIN " + statement, params):
                print("    " + line)
            raw.execute("ROLLBACK")
    print(
        json.dumps(
            {
                "figure": "till_confirm_backend_ms",
                "value": round(total, 3),
                "statements": len(statements),
                "baseline_begin_rollback_ms": round(baseline, 3),
                "iterations": args.iterations,
                "resolution_ms": round(1000 / TICKS / args.iterations, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
