"""A regular customer's purchase: how its cost grows with the member's open lots.

Every accrual is a lot, and lots stay open until spent or expired, so a customer who buys
daily under a one-year expiry carries hundreds. Since session 14 a calculation reads those
pending or expiring within 30 days and only the sum of the rest; a confirm reads them all
only when it pays with points, else only those due to activate or expire. The confirms
here pay none.

    .venv/bin/python bench/regular_customer.py                 # 0, 100, 300, 600 open lots
    .venv/bin/python bench/regular_customer.py --lots 0,1000
    .venv/bin/python bench/regular_customer.py --lots 0 --spent 3000   # and lots spent to 0

A lot spent to 0 stays ``active`` (a refund refills it); ``--spent N`` gives the member N
of those first, to show that they do not slow the purchase (``lots.is_open``, migration
0023).

In process, on PostgreSQL (database ``kopilka_bench_http``, created afresh and dropped):
one member of the 20-rule tenant of bench/purchases.py makes purchases until it holds N
open lots, then 100 confirms and 100 calculates are timed (process CPU, the database
backends' CPU, and wall). The
baseline is the same member with no open lots, in the same run: each figure carries its
ratio to it. Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import uuid
from typing import Any

import sqlalchemy as sa

import _cpu
import purchases as bench
from kopilka.bootstrap import bootstrap
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

SAMPLES = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", default="0,100,300,600", help="open lots to measure at")
    parser.add_argument(
        "--spent",
        type=int,
        default=0,
        help="lots the member spent to 0 in the past, added before measuring",
    )
    parser.add_argument("--samples", type=int, default=SAMPLES, help="confirms and calculations")
    args = parser.parse_args()
    samples = args.samples
    targets = sorted({int(n) for n in args.lots.split(",")} | {0})
    url = bench.db_url(bench.HTTP_DB)
    bench.recreate_database(bench.HTTP_DB)
    try:
        seed = bench.seed_database(url, [20], 50)[20]
        bodies = bench.body_pool(seed, bench.BODY_POOL)
        container = bootstrap(Settings(database_url=url, db_pool_size=2, log_level="WARNING"))
        gc.collect()
        gc.freeze()  # as the server's processes do after start-up (kopilka.api.asgi)
        outlet_id, _ = seed.outlets[0]
        actor = Actor(
            tenant_id=seed.tenant_id, name="apikey:bench", role=Role.POS, outlet_id=outlet_id
        )
        member = bodies[0]["member"]
        # The same member on every receipt, earning and never paying with points.
        receipts = [{**body, "member": member, "redeem_points": None} for body in bodies]
        tag = uuid.uuid4().hex[:8]
        made = 0
        baseline: dict[str, float] = {}

        def confirm() -> dict[str, Any]:
            nonlocal made
            made += 1
            receipt = bench.to_input(receipts[made % len(receipts)])
            return container.purchases.confirm(actor, receipt, f"regular-{tag}-{made}")

        if args.spent:
            add_spent_lots(container.engine, confirm()["member_id"], args.spent)

        for target in targets:
            while made < target:
                confirm()
            open_lots = made
            figures: dict[str, Any] = {
                "figure": "regular_customer",
                "open_lots": open_lots,
                "spent_lots": args.spent,
            }
            cpu, wall, db = time.process_time(), time.perf_counter(), database_cpu()
            for _ in range(samples):
                confirm()
            figures["confirm_cpu_ms"] = round((time.process_time() - cpu) * 1000 / samples, 2)
            figures["confirm_wall_ms"] = round((time.perf_counter() - wall) * 1000 / samples, 2)
            figures["confirm_db_cpu_ms"] = round((database_cpu() - db) * 1000 / samples, 2)
            cpu, db = time.process_time(), database_cpu()
            for i in range(samples):
                container.purchases.calculate(actor, bench.to_input(receipts[i % len(receipts)]))
            figures["calculate_cpu_ms"] = round((time.process_time() - cpu) * 1000 / samples, 2)
            figures["calculate_db_cpu_ms"] = round((database_cpu() - db) * 1000 / samples, 2)
            for key in ("confirm_cpu_ms", "calculate_cpu_ms"):
                baseline.setdefault(key, figures[key])
                figures[f"{key}_vs_no_lots"] = round(figures[key] / baseline[key], 2)
            print(json.dumps(figures), flush=True)
        container.close()
    finally:
        bench.recreate_database(bench.HTTP_DB, create=False)


def database_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL backends serving the bench database (10 ms
    ticks: time enough operations for the figure to mean something)."""
    return sum(
        p.seconds
        for p in _cpu.process_cpu().values()
        if p.cmdline.startswith("postgres") and f" {bench.HTTP_DB} " in p.cmdline
    )


def add_spent_lots(engine: sa.Engine, member_id: str, count: int) -> None:
    """``count`` lots of the member spent to 0 (as a regular customer who pays with points
    leaves behind: they stay ``active`` for refunds to refill), then fresh statistics."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lots (id, tenant_id, member_id, currency, amount, remaining, status,"
                " available_at, expires_at, source_transaction_id, created_at)"
                " SELECT gen_random_uuid(), m.tenant_id, m.id, a.currency, 100, 0, 'active',"
                " now() - g * interval '1 day', now() + interval '300 days', gen_random_uuid(),"
                " now() - g * interval '1 day'"
                " FROM members m JOIN accounts a ON a.member_id = m.id AND a.kind = 'wallet',"
                " generate_series(1, :n) AS g WHERE m.id = :m"
            ),
            {"m": member_id, "n": count},
        )
        conn.execute(sa.text("ANALYZE lots"))


if __name__ == "__main__":
    main()
