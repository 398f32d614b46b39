"""Per-statement costs behind the ledger write path, on the seeded benchmark database.

    .venv/bin/python bench/micro_statements.py --database kopilka_bench_1000000

Each case runs one statement many times on one connection (inside one transaction per
call, as a unit of work does) and prints Python CPU, PostgreSQL backend CPU and wall time
per call:

* how the statement is issued: SQLAlchemy Core built per call (as the stores do today),
  Core prebuilt once with bindparam(), ``exec_driver_sql``, and the bare psycopg cursor;
* how the member's accounts are locked: by the ``owner`` string (today, through the 293 MB
  unique index at 1M members) or by ``member_id`` (the existing (tenant_id, member_id)
  index, 4x smaller).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

import _pg
import _seed
import _workload
from kopilka.adapters.db.tables import accounts, members


def measure(
    name: str, conn: sa.Connection, backend: int, calls: int, fn: Callable[[], Any]
) -> dict[str, Any]:
    raw = conn.connection.driver_connection
    assert raw is not None

    def end() -> None:
        # Both layers: the bare-cursor case opens its transaction behind SQLAlchemy's back.
        conn.rollback()
        raw.rollback()

    for _ in range(200):
        fn()
        end()
    cpu0, back0, wall0 = (
        time.process_time(),
        _workload.proc_cpu_seconds(backend),
        time.perf_counter(),
    )
    for _ in range(calls):
        fn()
        end()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    back = _workload.proc_cpu_seconds(backend) - back0
    return {
        "figure": "statement_cost",
        "case": name,
        "calls": calls,
        "python_cpu_us": round(cpu * 1e6 / calls, 1),
        "backend_cpu_us": round(back * 1e6 / calls, 1),
        "wall_us": round(wall * 1e6 / calls, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database", default="kopilka_bench_100000")
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args(argv)
    if not 100 <= args.calls <= 100_000:
        ap.error("--calls must be 100..100000")
    url = _pg.database_url(args.database)
    engine = sa.create_engine(url, pool_size=1)
    seed_meta = _seed.read_meta(engine)
    if seed_meta is None:
        raise SystemExit(f"{args.database} is not seeded: run bench/ledger.py first")
    seeded: _seed.Seeded = seed_meta
    rng = random.Random(5)
    tenant = seeded.tenant_id

    def member() -> uuid.UUID:
        return seeded.member_id(rng.randrange(seeded.members))

    prebuilt = sa.select(members).where(
        members.c.tenant_id == sa.bindparam("t"), members.c.id == sa.bindparam("m")
    )
    sql = "SELECT * FROM members WHERE tenant_id = %(t)s AND id = %(m)s"
    by_owner = (
        sa.select(accounts.c.id, accounts.c.kind, accounts.c.balance, accounts.c.allow_debt)
        .where(
            accounts.c.tenant_id == sa.bindparam("t"),
            accounts.c.owner == sa.bindparam("o"),
            accounts.c.currency == sa.bindparam("c"),
        )
        .order_by(accounts.c.id)
        .with_for_update()
    )
    by_member = (
        sa.select(accounts.c.id, accounts.c.kind, accounts.c.balance, accounts.c.allow_debt)
        .where(
            accounts.c.tenant_id == sa.bindparam("t"),
            accounts.c.member_id == sa.bindparam("m"),
            accounts.c.currency == sa.bindparam("c"),
        )
        .order_by(accounts.c.id)
        .with_for_update()
    )
    with engine.connect() as conn:
        backend = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        raw = conn.connection.driver_connection
        assert raw is not None

        def core_per_call() -> None:
            m = member()
            conn.execute(
                sa.select(members).where(members.c.tenant_id == tenant, members.c.id == m)
            ).first()

        def core_prebuilt() -> None:
            conn.execute(prebuilt, {"t": tenant, "m": member()}).first()

        def driver_sql() -> None:
            conn.exec_driver_sql(sql, {"t": tenant, "m": member()}).first()

        def bare_cursor() -> None:
            with raw.cursor() as cur:
                cur.execute(sql, {"t": tenant, "m": member()})
                cur.fetchone()

        def lock_by_owner() -> None:
            m = member()
            conn.execute(by_owner, {"t": tenant, "o": f"member:{m}", "c": seeded.currency}).all()

        def lock_by_member() -> None:
            conn.execute(by_member, {"t": tenant, "m": member(), "c": seeded.currency}).all()

        cases: list[tuple[str, Callable[[], Any]]] = [
            ("member select: Core built per call (today)", core_per_call),
            ("member select: Core prebuilt with bindparam", core_prebuilt),
            ("member select: exec_driver_sql", driver_sql),
            ("member select: bare psycopg cursor", bare_cursor),
            ("lock accounts by owner string (today)", lock_by_owner),
            ("lock accounts by member_id", lock_by_member),
        ]
        for name, fn in cases:
            print(json.dumps(measure(name, conn, backend, args.calls, fn)), flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
