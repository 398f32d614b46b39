"""A regular customer's purchase: how its cost grows with the member's open lots.

Every accrual is a lot, and lots stay open until spent or expired, so a customer who buys
daily under a one-year expiry carries hundreds. The till reads a member's open lots on
every purchase (balance, points that may be spent), so their count is on the hot path.

    .venv/bin/python bench/regular_customer.py                 # 0, 100, 300, 600 open lots
    .venv/bin/python bench/regular_customer.py --lots 0,1000

In process, on PostgreSQL (database ``kopilka_bench_http``, created afresh and dropped):
one member of the 20-rule tenant of bench/purchases.py makes purchases until it holds N
open lots, then 100 confirms and 100 calculates are timed (process CPU and wall). The
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

import purchases as bench
from kopilka.bootstrap import bootstrap
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

SAMPLES = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lots", default="0,100,300,600", help="open lots to measure at")
    args = parser.parse_args()
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

        def confirm() -> None:
            nonlocal made
            made += 1
            receipt = bench.to_input(receipts[made % len(receipts)])
            container.purchases.confirm(actor, receipt, f"regular-{tag}-{made}")

        for target in targets:
            while made < target:
                confirm()
            open_lots = made
            figures: dict[str, Any] = {"figure": "regular_customer", "open_lots": open_lots}
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(SAMPLES):
                confirm()
            figures["confirm_cpu_ms"] = round((time.process_time() - cpu) * 1000 / SAMPLES, 2)
            figures["confirm_wall_ms"] = round((time.perf_counter() - wall) * 1000 / SAMPLES, 2)
            cpu = time.process_time()
            for i in range(SAMPLES):
                container.purchases.calculate(actor, bench.to_input(receipts[i % len(receipts)]))
            figures["calculate_cpu_ms"] = round((time.process_time() - cpu) * 1000 / SAMPLES, 2)
            for key in ("confirm_cpu_ms", "calculate_cpu_ms"):
                baseline.setdefault(key, figures[key])
                figures[f"{key}_vs_no_lots"] = round(figures[key] / baseline[key], 2)
            print(json.dumps(figures), flush=True)
        container.close()
    finally:
        bench.recreate_database(bench.HTTP_DB, create=False)


if __name__ == "__main__":
    main()
