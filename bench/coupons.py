"""Coupon batch generation: 100,000 unique codes through the service, against a baseline on
the same server.

Creates its own database (``kopilka_bench_coupons``, dropped at the end unless ``--keep``),
then, ``--runs`` times each:

* ``service``: ``CouponService.create_batch`` of ``--codes`` codes (draw with ``secrets``,
  COPY into a scratch table, ``INSERT ... ON CONFLICT DO NOTHING`` into ``coupons``, commit),
  timed end to end as the admin API calls it;
* ``baseline``: one plain ``COPY`` of the same number of rows, of the same width, straight
  into a copy of the ``coupons`` table with its indexes, committed: what the server itself
  needs to take the rows in.

    .venv/bin/python bench/coupons.py                  # 100,000 codes, 3 runs
    .venv/bin/python bench/coupons.py --codes 1000000  # the largest batch the API accepts

Prints one JSON line per run and a summary line (best of each side, their ratio, and the
target: under 10 seconds for 100,000 codes) on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

import _pg
from kopilka.adapters.db.mechanics.coupons import CODE_COLUMNS
from kopilka.adapters.db.schema import upgrade
from kopilka.bootstrap import bootstrap
from kopilka.domain.coupons import codes as coupon_codes
from kopilka.domain.coupons.terms import BatchInput
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

DATABASE = "kopilka_bench_coupons"
TARGET_SECONDS = 10.0
TARGET_CODES = 100_000


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def baseline_rows(tenant_id: uuid.UUID, n: int) -> list[tuple[Any, ...]]:
    """Rows shaped like a batch's codes (same columns, same values but the codes)."""
    now = datetime.now(UTC)
    batch_id = new_id()
    fixed: dict[str, Any] = {
        "tenant_id": tenant_id,
        "member_id": None,
        "benefit": json.dumps({"discount_percent": 10}),
        "min_basket": 0,
        "valid_from": now,
        "valid_until": None,
        "uses_left": 1,
        "status": "active",
        "source_type": "batch",
        "source_id": str(batch_id),
        "created_at": now,
        "kind": "batch",
        "batch_id": batch_id,
        "uses_total": 1,
        "per_member": None,
        "terms": None,
        "voided_at": None,
    }
    rows = []
    for code in coupon_codes.generate(n, coupon_codes.DEFAULT_LENGTH):
        values = {**fixed, "id": new_id(), "code": code}
        rows.append(tuple(values[c] for c in CODE_COLUMNS))
    return rows


def copy_baseline(engine: sa.Engine, rows: list[tuple[Any, ...]]) -> float:
    """Seconds for one COPY of ``rows`` into an indexed copy of ``coupons``, committed."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_coupons_copy"))
        conn.execute(sa.text("CREATE TABLE bench_coupons_copy (LIKE coupons INCLUDING ALL)"))
    names = ", ".join(CODE_COLUMNS)
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        started = time.monotonic()
        with (
            driver.cursor() as cur,
            cur.copy(f"COPY bench_coupons_copy ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=TARGET_CODES)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    _pg.recreate_database(DATABASE)
    url = _pg.database_url(DATABASE).render_as_string(hide_password=False)
    container = bootstrap(Settings(database_url=url))
    try:
        upgrade(container.engine)
        tenant = container.tenants.create_tenant("Bench Coupons", timezone="Europe/Moscow")
        actor = Actor(tenant_id=tenant["id"], name="bench", role=Role.ADMIN)
        log(f"database {DATABASE} ready; {args.runs} runs of {args.codes:,} codes")
        service: list[float] = []
        baseline: list[float] = []
        for run in range(1, args.runs + 1):
            _pg.checkpoint(container.engine)
            body = BatchInput.model_validate(
                {
                    "code": f"bench-{run}",
                    "count": args.codes,
                    "benefit": {"discount_percent": 10},
                }
            )
            started = time.monotonic()
            made = container.coupons.create_batch(actor, body)
            seconds = time.monotonic() - started
            assert made.counts is not None
            assert made.counts.codes == args.codes
            service.append(seconds)
            rows = baseline_rows(tenant["id"], args.codes)
            _pg.checkpoint(container.engine)
            base = copy_baseline(container.engine, rows)
            baseline.append(base)
            emit(
                {
                    "figure": "coupon_batch_run",
                    "run": run,
                    "codes": args.codes,
                    "service_seconds": round(seconds, 3),
                    "baseline_copy_seconds": round(base, 3),
                    "codes_per_second": round(args.codes / seconds),
                }
            )
        best, base = min(service), min(baseline)
        target = TARGET_SECONDS * args.codes / TARGET_CODES
        emit(
            {
                "figure": "coupon_batch",
                "codes": args.codes,
                "service_seconds": round(best, 3),
                "baseline_copy_seconds": round(base, 3),
                "ratio_to_baseline": round(best / base, 2),
                "target_seconds": target,
                "met": best < target,
                "server": _pg.server_settings(container.engine).get("server_version"),
                "load_average": round(os.getloadavg()[0], 1),  # 2 cores: above 2 is busy
            }
        )
    finally:
        container.close()
        if not args.keep:
            engine = _pg.admin_engine()
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
            engine.dispose()


if __name__ == "__main__":
    main()
