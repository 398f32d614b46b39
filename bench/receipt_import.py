"""Historical receipt import: lines per second into a fresh PostgreSQL database.

Generates a CSV of receipt lines (by default 1,000,000 lines in 100,000 receipts, ~50,000
members known by external id, 5 outlets, two program versions over two years), imports it
with ``--create-missing`` into its own database (``kopilka_bench_import``, dropped at the
end unless ``--keep``), verifies the ledger and imports the file again (nothing to do).

    .venv/bin/python bench/receipt_import.py                 # 1,000,000 lines
    .venv/bin/python bench/receipt_import.py --lines 100000  # a quick run

Prints one JSON line per figure on stdout; progress goes to stderr. Target: 1M lines in
under 2 minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import _pg
from kopilka.adapters.db.schema import upgrade
from kopilka.bootstrap import bootstrap
from kopilka.services.context import Actor, Role
from kopilka.services.receipt_import import NoProgress, RichProgress, import_receipts
from kopilka.services.verify import verify_ledger
from kopilka.settings import Settings

DATABASE = "kopilka_bench_import"
TARGET_SECONDS_PER_MILLION = 120.0
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
CATEGORIES = [f"dept{d}/cat{c}" for d in range(8) for c in range(5)]
SKUS = [(f"SKU{i:05d}", CATEGORIES[i % len(CATEGORIES)], 50 * (1 + i % 400)) for i in range(2000)]


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def program(percent: int, multiplier: int) -> dict[str, Any]:
    """A plain program: base percent, a category multiplier, a threshold bonus, a first-purchase
    bonus and a category discount; a year's rolling expiry."""
    return {
        "type": "combined",
        "name": {"ru": f"Бонусы {percent}%"},
        "expiry": {"kind": "rolling", "days": 365},
        "rules": [
            {"id": "first", "when": {"first_purchase": True}, "effects": [{"points_fixed": 100}]},
            {
                "id": "dairy",
                "lines": {"category": "dept1"},
                "effects": [{"points_multiplier": multiplier}],
            },
            {"id": "big", "when": {"amount_gte": 300000}, "effects": [{"points_fixed": 50}]},
            {
                "id": "sale",
                "lines": {"category": "dept2/cat0"},
                "effects": [{"discount_percent": 10}],
            },
            {"id": "base", "priority": 1000, "effects": [{"points_percent": percent}]},
        ],
    }


def generate(path: Path, lines: int, members: int, outlets: int, seed: int) -> tuple[int, int]:
    """Write ``lines`` receipt lines (1 to 19 per receipt, 10 on average), in time order;
    returns (receipts, lines)."""
    rng = random.Random(seed)
    receipts = max(1, lines // 10)
    step = SPAN / receipts
    written = 0
    numbers = [0] * outlets
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "member_external_id",
                "receipt_number",
                "outlet",
                "occurred_at",
                "sku",
                "category",
                "qty",
                "amount",
            ]
        )
        for r in range(receipts):
            left = lines - written
            remaining_receipts = receipts - r
            if remaining_receipts == 1:
                count = left
            else:
                count = max(1, min(19, left - (remaining_receipts - 1), rng.randint(1, 19)))
            outlet = rng.randrange(outlets)
            numbers[outlet] += 1
            member = "" if rng.random() < 0.2 else f"EXT{rng.randrange(members):07d}"
            at = (START + step * r).astimezone(UTC).isoformat(timespec="seconds")
            number = f"{numbers[outlet]:08d}"
            code = f"SHOP-{outlet + 1}"
            for _ in range(count):
                sku, category, price = SKUS[rng.randrange(len(SKUS))]
                if rng.random() < 0.1:
                    qty = f"{rng.randint(100, 2500) / 1000:.3f}"
                    amount = round(price * float(qty))
                else:
                    qty = str(rng.randint(1, 3))
                    amount = price * int(qty)
                out.writerow([member, number, code, at, sku, category, qty, amount])
            written += count
    return receipts, written


def server_cpu(engine: sa.Engine, name: str) -> float:
    """CPU seconds used so far by the server processes connected to database ``name``
    (read from /proc: the server is local, see _pg.check_local)."""
    with engine.connect() as conn:
        pids = (
            conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
            .scalars()
            .all()
        )
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def drop_database(name: str) -> None:
    engine = _pg.admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=None, help="default: lines / 20")
    parser.add_argument("--outlets", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    members = args.members or max(1, args.lines // 20)

    with tempfile.TemporaryDirectory(prefix="kopilka-bench-") as tmp:
        path = Path(tmp) / "receipts.csv"
        started = time.monotonic()
        receipts, lines = generate(path, args.lines, members, args.outlets, args.seed)
        log(
            f"generated {lines} lines in {receipts} receipts ({path.stat().st_size >> 20} MiB) "
            f"in {time.monotonic() - started:.1f} s"
        )

        _pg.recreate_database(DATABASE)
        url = _pg.database_url(DATABASE).render_as_string(hide_password=False)
        container = bootstrap(Settings(database_url=url))
        try:
            upgrade(container.engine)
            tenant = container.tenants.create_tenant("Bench Import", timezone="Europe/Moscow")
            actor = Actor(tenant_id=tenant["id"], name="bench", role=Role.ADMIN)
            for i in range(args.outlets):
                container.tenants.create_outlet(actor, f"SHOP-{i + 1}")
            container.programs.publish(actor, "main", program(3, 2), starts_at=START)
            container.programs.publish(
                actor, "main", program(5, 3), starts_at=START + timedelta(days=365)
            )
            log(f"database {DATABASE} ready; importing")

            progress: Any = NoProgress() if args.no_progress else RichProgress()
            load_before = os.getloadavg()[0]
            cpu_before = time.process_time()
            started = time.monotonic()
            if isinstance(progress, RichProgress):
                with progress:
                    report = import_receipts(
                        container,
                        actor,
                        path,
                        create_missing=True,
                        batch_size=args.batch,
                        progress=progress,
                    )
            else:
                report = import_receipts(
                    container, actor, path, create_missing=True, batch_size=args.batch
                )
            seconds = time.monotonic() - started
            client_cpu = time.process_time() - cpu_before
            db_cpu = server_cpu(container.engine, DATABASE)  # its connections are still open
            if report.errors:
                raise SystemExit(f"import errors: {report.errors[:5]}")
            target = TARGET_SECONDS_PER_MILLION * lines / 1_000_000
            emit(
                {
                    "figure": "receipt_import",
                    "lines": report.lines,
                    "receipts": report.imported,
                    "members_created": report.members_created,
                    "points": report.points,
                    "batch": args.batch,
                    "seconds": round(seconds, 2),
                    "lines_per_second": round(lines / seconds),
                    "receipts_per_second": round(receipts / seconds),
                    "client_cpu_seconds": round(client_cpu, 1),
                    "server_cpu_seconds": round(db_cpu, 1),
                    "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                    "target_seconds": round(target, 1),
                    "met": seconds < target,
                }
            )

            started = time.monotonic()
            verified = verify_ledger(container.uow_factory, actor.tenant_id)
            emit(
                {
                    "figure": "receipt_import_verify",
                    "ok": verified.ok,
                    "seconds": round(time.monotonic() - started, 2),
                }
            )
            if not verified.ok:
                raise SystemExit(f"ledger verify failed: {verified.checks}")

            started = time.monotonic()
            again = import_receipts(
                container, actor, path, create_missing=True, batch_size=args.batch
            )
            emit(
                {
                    "figure": "receipt_import_again",
                    "imported": again.imported,
                    "skipped_existing": again.skipped_existing,
                    "seconds": round(time.monotonic() - started, 2),
                }
            )
        finally:
            container.close()
            if not args.keep:
                drop_database(DATABASE)


if __name__ == "__main__":
    main()
