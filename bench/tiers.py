"""The nightly tier evaluation of 1,000,000 members on PostgreSQL, against a plain full UPDATE
of as many rows on the same server.

    .venv/bin/python bench/tiers.py                    # 1,000,000 members
    .venv/bin/python bench/tiers.py --members 100000   # a quick run

Seeds a dedicated database (``kopilka_bench_tiers``, rebuilt on every run: the evaluation
changes it; dropped at the end unless ``--keep``) with set-based SQL: members, their tier rows
(65% Silver, 25% Gold, 10% Platinum, all reached in 2025) and four qualification days each in
2026 (spending spread so that some keep their level, some fall short, some qualify higher).
Then it times ``TierService.evaluate`` at 1 January 2027 (the yearly evaluation: every member
judged, history rows for every kept, grace and upgrade, the audit trail for the changes), the
same call again (nothing to do), and at 1 February (the graces end: the downgrades). The
baseline is ``UPDATE bench_baseline SET v = v + 1`` over as many rows (id, v, 60 bytes of
padding). Prints one JSON line per figure on stdout; progress goes to stderr.
Target: the evaluation of 1M members in under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

import _pg
from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.schema import upgrade
from kopilka.bootstrap import bootstrap
from kopilka.services.context import Actor, Role
from kopilka.services.jobs import FixedClock
from kopilka.settings import Settings

DATABASE = "kopilka_bench_tiers"
TARGET_SECONDS = 60.0
MSK = ZoneInfo("Europe/Moscow")
SEEDED_AT = datetime(2026, 1, 1, 0, 5, tzinfo=MSK)
EVALUATION = datetime(2027, 1, 1, 3, 0, tzinfo=MSK)
GRACE_OVER = datetime(2027, 2, 1, 3, 0, tzinfo=MSK)
PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "name": {"ru": "Бонусы", "en": "Bonus"},
    "rules": [
        {"id": "base", "effects": [{"points_percent": 5}]},
        {
            "id": "gold",
            "when": {"tier_in": ["gold", "platinum"]},
            "effects": [{"points_multiplier": 2}],
        },
    ],
    "tiers": {
        "metric": "spent",
        "window": {"kind": "calendar", "period": "year"},
        "levels": [
            {"code": "silver", "name": {"ru": "Серебро", "en": "Silver"}, "threshold": 0},
            {"code": "gold", "threshold": 4_000_000, "keep_threshold": 3_000_000},
            {"code": "platinum", "threshold": 10_000_000, "keep_threshold": 8_000_000},
        ],
        "downgrade": {"policy": "one_level", "grace_days": 30},
    },
}


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seed(engine: sa.Engine, members: int) -> uuid.UUID:
    """A tenant, the program, and members with tier rows and qualification days."""
    container = bootstrap(
        Settings(database_url=str(engine.url), db_pool_size=2),
        clock=FixedClock(SEEDED_AT),
        engine=engine,
    )
    tenant = container.tenants.create_tenant("Bench Tiers", timezone="Europe/Moscow")
    tenant_id: uuid.UUID = tenant["id"]
    actor = Actor(tenant_id=tenant_id, name="bench", role=Role.ADMIN)
    container.programs.publish(actor, "main", PROGRAM, starts_at=SEEDED_AT)
    params = {"t": tenant_id, "n": members, "at": datetime(2025, 6, 1, tzinfo=MSK)}
    # Member n: its id is n in hex (ordered like the application's UUIDv7s); its level by
    # n % 100; its yearly spending in kopecks: the level's typical sum times a factor of the
    # member (0 to 2) times four random shares (0 to 1/2 each).
    statements = [
        (
            "members",
            """
            INSERT INTO members (id, tenant_id, phone, email, name, birth_year, birth_month,
                                 birth_day, external_id, attributes, consents, status,
                                 block_reason, merged_into_id, erased_at, created_at, updated_at)
            SELECT lpad(to_hex(n), 32, '0')::uuid, :t, NULL, NULL, NULL, NULL, NULL, NULL,
                   'bench-' || n, '{}'::jsonb, '{}'::jsonb, 'active', NULL, NULL, NULL, :at, :at
            FROM generate_series(1, :n) AS n
            """,
        ),
        (
            "member_tiers",
            """
            INSERT INTO member_tiers (tenant_id, program, member_id, tier, since, source,
                                      pending_tier, pending_value, grace_until, locked_until,
                                      updated_at)
            SELECT :t, 'main', lpad(to_hex(n), 32, '0')::uuid,
                   CASE WHEN n % 100 < 65 THEN 'silver' WHEN n % 100 < 90 THEN 'gold'
                        ELSE 'platinum' END,
                   :at, 'auto', NULL, NULL, NULL, NULL, :at
            FROM generate_series(1, :n) AS n
            """,
        ),
        (
            "tier_qualification",
            """
            INSERT INTO tier_qualification (tenant_id, member_id, day, spent, purchases, points)
            SELECT :t, lpad(to_hex(n), 32, '0')::uuid,
                   DATE '2026-01-10' + (k * 90 + n % 80)::int,
                   CASE WHEN n % 100 < 65 THEN 2200000 WHEN n % 100 < 90 THEN 4500000
                        ELSE 12000000 END::bigint
                   * (abs(hashtext(n::text)::bigint) % 1000) / 500
                   * (abs(hashtext(n || ':' || k)::bigint) % 1000) / 2000,
                   1, 0
            FROM generate_series(1::bigint, :n) AS n CROSS JOIN generate_series(0::bigint, 3) AS k
            ORDER BY n, k
            """,
        ),
    ]
    # Bulk-load settings on a connection of its own, closed (not pooled) afterwards: the
    # measured runs must see the server's defaults.
    loader = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    with loader.connect() as conn:
        conn.execute(sa.text("SET synchronous_commit = off"))
        conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        conn.execute(sa.text("SET session_replication_role = replica"))
        for name, sql in statements:
            t0 = time.monotonic()
            conn.execute(sa.text(sql), params)
            conn.commit()
            log(f"{name}: seeded in {time.monotonic() - t0:.1f} s")
        conn.execute(
            sa.text(
                "CREATE TABLE bench_baseline AS SELECT n AS id, n AS v, repeat('x', 60) AS pad "
                "FROM generate_series(1, :n) AS n"
            ),
            params,
        )
        conn.execute(sa.text("ALTER TABLE bench_baseline ADD PRIMARY KEY (id)"))
        conn.commit()
    loader.dispose()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM (ANALYZE)"))
    return tenant_id


def timed_evaluation(
    engine: sa.Engine, tenant_id: uuid.UUID, moment: datetime
) -> tuple[float, int]:
    """The ``tiers_evaluated`` job step, as the job runner calls it, at ``moment``."""
    container = bootstrap(
        Settings(database_url=str(engine.url), db_pool_size=2),
        clock=FixedClock(moment),
        engine=engine,
    )
    _pg.checkpoint(engine)
    t0 = time.monotonic()
    written = container.tiers.evaluate(moment, tenant_id)
    return time.monotonic() - t0, written


def baseline(engine: sa.Engine) -> float:
    _pg.checkpoint(engine)
    with engine.connect() as conn:
        t0 = time.monotonic()
        conn.execute(sa.text("UPDATE bench_baseline SET v = v + 1"))
        conn.commit()
        return time.monotonic() - t0


def tier_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT tier || CASE WHEN pending_tier IS NULL THEN '' ELSE ' (grace)' END, "
                "count(*) FROM member_tiers GROUP BY 1 ORDER BY 1"
            )
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    members: int = args.members
    log(f"seeding {members} members into {DATABASE}")
    _pg.recreate_database(DATABASE)
    url = _pg.database_url(DATABASE).render_as_string(hide_password=False)
    engine = create_db_engine(url, pool_size=2)
    try:
        upgrade(engine)
        t0 = time.monotonic()
        tenant_id = seed(engine, members)
        # The machine is shared: the load average shows whether others ran meanwhile.
        load_before = os.getloadavg()[0]
        log(f"seeded in {time.monotonic() - t0:.1f} s; tiers {tier_counts(engine)}")
        seconds, written = timed_evaluation(engine, tenant_id, EVALUATION)
        load_after = os.getloadavg()[0]
        after_evaluation = tier_counts(engine)
        log(f"evaluation: {seconds:.1f} s, {written} history rows; tiers {after_evaluation}")
        again, again_written = timed_evaluation(engine, tenant_id, EVALUATION)
        log(f"the same again: {again:.1f} s, {again_written} rows")
        grace, grace_written = timed_evaluation(engine, tenant_id, GRACE_OVER)
        log(f"graces over: {grace:.1f} s, {grace_written} rows; tiers {tier_counts(engine)}")
        base = baseline(engine)
        log(f"baseline full UPDATE of {members} rows: {base:.1f} s")
        emit(
            {
                "figure": "tiers_nightly_evaluation",
                "members": members,
                "seconds": round(seconds, 2),
                "members_per_s": round(members / seconds),
                "history_rows": written,
                "tiers_after": after_evaluation,
                "second_run_seconds": round(again, 2),
                "second_run_rows": again_written,
                "grace_expiry_seconds": round(grace, 2),
                "grace_expiry_rows": grace_written,
                "baseline_full_update_seconds": round(base, 2),
                "ratio_to_baseline": round(seconds / base, 2),
                "target_seconds": TARGET_SECONDS,
                "meets_target": seconds < TARGET_SECONDS,
                "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
                "cpus": os.cpu_count(),
                "server": _pg.server_settings(engine),
            }
        )
    finally:
        engine.dispose()
        if not args.keep:
            admin = _pg.admin_engine()
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
            finally:
                admin.dispose()


if __name__ == "__main__":
    main()
