"""Where one ledger write spends its time: a single client, in one process, on the seeded
benchmark database (run bench/ledger.py first).

    .venv/bin/python bench/profile_ledger.py --op accrual --seconds 10
    .venv/bin/python bench/profile_ledger.py --op redeem --pre-ping
    KOPILKA_LEDGER_FAST_PATH=0 .venv/bin/python bench/profile_ledger.py --op accrual
    .venv/bin/python bench/profile_ledger.py --op accrual --variant raw-pipeline

Prints JSON lines: per-transaction wall time, Python CPU, PostgreSQL backend CPU, network
round trips (counted from libpq's protocol trace) and statements, the cProfile breakdown by
package, and the top functions. ``--variant raw`` / ``raw-pipeline`` run the same accrual
statements through bare psycopg (one round trip each / pipelined into three), and
``raw-function`` as one PL/pgSQL call (one round trip): bounds on what trimming the Python
layers and the round trips could give.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.pq import Trace
from psycopg.types.json import Jsonb
from sqlalchemy import event

import _pg
import _seed
import _workload
from _cpu import CLK_TCK
from kopilka.adapters.db.engine import create_db_engine
from kopilka.bootstrap import bootstrap
from kopilka.services.context import Actor, Role
from kopilka.settings import Settings

CATEGORIES = (
    ("sqlalchemy", "/sqlalchemy/"),
    ("psycopg", "/psycopg"),
    ("pydantic", "/pydantic"),
    ("kopilka.services", "/kopilka/services/"),
    ("kopilka.domain", "/kopilka/domain/"),
    ("kopilka.adapters", "/kopilka/adapters/"),
    ("kopilka.other", "/kopilka/"),
    ("bench", "/bench/"),
    ("json", "/json/"),
    ("uuid", "/uuid.py"),
    ("zoneinfo", "zoneinfo"),
    ("enum", "/enum.py"),
    ("stdlib.other", "/lib/python3"),
)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


def category(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    for name, needle in CATEGORIES:
        if needle in filename:
            return name
    return "other"


class Tracer:
    """libpq protocol trace of every connection: counts round trips and messages."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="kopilka-pqtrace-", suffix=".txt")
        self.file = os.fdopen(fd, "w")

    def attach(self, pgconn: Any) -> None:
        pgconn.trace(self.file.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

    def counts(self) -> Counter[str]:
        self.file.flush()
        found: Counter[str] = Counter()
        with open(self.path) as fh:
            for line in fh:
                parts = line.split("\t")
                if len(parts) >= 3:
                    found[f"{parts[0]}:{parts[2].split()[0]}"] += 1
        return found

    def reset(self) -> None:
        self.file.flush()
        self.file.truncate(0)
        self.file.seek(0)

    def close(self) -> None:
        self.file.close()
        os.unlink(self.path)


def fast_path_state(variant: str) -> bool | None:
    """Whether the service ran LedgerService's one-call fast path (the default)."""
    return Settings().ledger_fast_path if variant == "service" else None


def backend_cpu(pid: int) -> float:
    return _workload.proc_cpu_seconds(pid)


def load_seed(database: str) -> tuple[str, _seed.Seeded]:
    url = _pg.database_url(database).render_as_string(hide_password=False)
    engine = sa.create_engine(url, pool_size=1)
    try:
        seeded = _seed.read_meta(engine)
    finally:
        engine.dispose()
    if seeded is None:
        raise SystemExit(f"{database} is not seeded: run bench/ledger.py first")
    return url, seeded


# ---- the service path -----------------------------------------------------------------
def service_ops(
    url: str, seeded: _seed.Seeded, op: str, pre_ping: bool, tracer: Tracer
) -> tuple[Callable[[], None], int, Callable[[], Counter[str]], Callable[[], None]]:
    # The application's engine (pool_recycle, no ping), or with the ping of older versions.
    engine = (
        sa.create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True)
        if pre_ping
        else create_db_engine(url, pool_size=1)
    )
    statements: Counter[str] = Counter()

    @event.listens_for(engine, "connect")
    def _trace(dbapi_conn: Any, _record: Any) -> None:
        tracer.attach(dbapi_conn.pgconn)

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements[" ".join(statement.split())[:90]] += 1

    container = bootstrap(Settings(database_url=url, db_pool_size=1), engine=engine)
    cfg = _workload.WorkerConfig(
        url, seeded.tenant_id, seeded.members, seeded.base_ms, uuid.uuid4().hex[:8]
    )
    client = _workload.Client.__new__(_workload.Client)
    client.index, client.cfg, client.seq = 0, cfg, 0
    client.rng = random.Random()  # fresh members each run: repeated runs must not pile lots
    client.nonce, client.container = uuid.uuid4().hex[:6], container
    client.actor = Actor(seeded.tenant_id, "apikey:kp_bench", Role.POS)
    with engine.connect() as conn:
        client.backend_pid = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
    functions = container.uow_factory.ledger_functions()
    if functions is not None and os.environ.get("KOPILKA_LEDGER_FAST_PATH", "1") != "0":
        # The fast path runs on the functions' own connection: profile that backend.
        client.backend_pid = functions.backend_pids()[0]
        tracer.attach(functions._pool._idle[0].conn.pgconn)
    client.pool = [[m, b] for m, b in _seed.pool_balances(engine, seeded)]

    def run() -> None:
        if op == "accrual":
            client.accrue()
        elif not client.redeem():
            raise SystemExit("redemption pool exhausted: run bench/ledger.py to top it up")

    return run, client.backend_pid, lambda: statements, container.close


# ---- the same accrual through bare psycopg ---------------------------------------------
def raw_accrual(
    url: str, seeded: _seed.Seeded, pipeline: bool, tracer: Tracer
) -> tuple[Callable[[], None], int, Callable[[], Counter[str]], Callable[[], None]]:
    """The statements the service path sends for one accrual, minus SQLAlchemy, pydantic
    and the plan objects; ``pipeline`` sends reads and writes in three flights."""
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn, prepare_threshold=0)
    tracer.attach(conn.pgconn)
    backend = conn.info.backend_pid
    tenant = seeded.tenant_id
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM accounts WHERE tenant_id=%s AND owner='tenant' AND kind='issued'",
            (tenant,),
        )
        row = cur.fetchone()
        assert row is not None
        issued = row[0]
    conn.commit()
    rng = random.Random()
    nonce = uuid.uuid4().hex[:8]
    seq = [0]
    statements: Counter[str] = Counter()

    def run() -> None:
        seq[0] += 1
        key = f"raw-{nonce}-{seq[0]}"
        member = _seed.bench_id(seeded.base_ms, rng.randrange(seeded.members))
        points = rng.randint(*_workload.ACCRUE_POINTS)
        now = datetime.now(UTC)
        txn_id, lot_id = uuid.uuid4(), uuid.uuid4()
        reads = [
            ("SELECT pg_try_advisory_xact_lock(%s)", (rng.getrandbits(63),)),
            ("SELECT * FROM idempotency_keys WHERE tenant_id=%s AND key=%s", (tenant, key)),
            ("SELECT * FROM tenants WHERE id=%s", (tenant,)),
            ("SELECT * FROM members WHERE tenant_id=%s AND id=%s", (tenant, member)),
            (
                "SELECT id, kind, balance, allow_debt FROM accounts WHERE tenant_id=%s "
                "AND owner=%s AND currency=%s ORDER BY id FOR UPDATE",
                (tenant, f"member:{member}", seeded.currency),
            ),
        ]
        with conn.cursor() as cur:
            if pipeline:
                with conn.pipeline():
                    for sql, params in reads:
                        cur.execute(sql, params)
                # (the results of the earlier statements are discarded in this sketch)
                accounts = cur.fetchall()
            else:
                for sql, params in reads:
                    cur.execute(sql, params)
                accounts = cur.fetchall()
            wallet = next(a for a in accounts if a[1] == "wallet")
            balance = wallet[2] + points
            writes = [
                ("UPDATE accounts SET balance=%s WHERE id=%s", (balance, wallet[0])),
                (
                    "INSERT INTO ledger_transactions (id, tenant_id, member_id, kind, currency, "
                    "amount, actor, source_type, source_id, params, occurred_at, recorded_at) "
                    "VALUES (%s,%s,%s,'accrual',%s,%s,'raw','pos',%s,%s,%s,%s)",
                    (
                        txn_id,
                        tenant,
                        member,
                        seeded.currency,
                        points,
                        key,
                        Jsonb({"expires_on": None}),
                        now,
                        now,
                    ),
                ),
                (
                    "INSERT INTO postings (tenant_id, transaction_id, account_id, amount, "
                    "balance_after) VALUES (%s,%s,%s,%s,NULL),(%s,%s,%s,%s,%s)",
                    (tenant, txn_id, issued, -points, tenant, txn_id, wallet[0], points, balance),
                ),
                (
                    "INSERT INTO lots (id, tenant_id, member_id, currency, amount, remaining, "
                    "status, available_at, expires_at, source_transaction_id, created_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s,'active',%s,NULL,%s,%s)",
                    (lot_id, tenant, member, seeded.currency, points, points, now, txn_id, now),
                ),
                (
                    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, "
                    "created_at) VALUES (%s,%s,%s,%s,%s)",
                    (tenant, key, "0" * 64, Jsonb({"transactions": [], "balance": None}), now),
                ),
            ]
            if pipeline:
                with conn.pipeline():
                    for sql, params in writes:
                        cur.execute(sql, params)
            else:
                for sql, params in writes:
                    cur.execute(sql, params)
        for sql, _ in reads + writes:
            statements[" ".join(sql.split())[:90]] += 1
        conn.commit()

    return run, backend, lambda: statements, conn.close


_ACCRUE_FUNCTION = """
CREATE FUNCTION pg_temp.bench_accrue(
    p_tenant uuid, p_member uuid, p_cur text, p_points bigint, p_key text, p_issued uuid,
    p_txn uuid, p_lot uuid, p_now timestamptz, p_lock bigint, p_response jsonb
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    w_id uuid;
    w_balance bigint;
    m_status text;
BEGIN
    IF NOT pg_try_advisory_xact_lock(p_lock) THEN
        RAISE EXCEPTION 'idempotency key in progress';
    END IF;
    IF EXISTS (SELECT 1 FROM idempotency_keys WHERE tenant_id = p_tenant AND key = p_key) THEN
        RETURN NULL;  -- a replay: the caller reads the stored response
    END IF;
    SELECT status INTO m_status FROM members WHERE tenant_id = p_tenant AND id = p_member;
    IF m_status IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'member cannot transact';
    END IF;
    PERFORM 1 FROM accounts WHERE tenant_id = p_tenant AND owner = 'member:' || p_member
        AND currency = p_cur ORDER BY id FOR UPDATE;
    UPDATE accounts SET balance = balance + p_points
        WHERE tenant_id = p_tenant AND owner = 'member:' || p_member AND kind = 'wallet'
          AND currency = p_cur
        RETURNING id, balance INTO w_id, w_balance;
    INSERT INTO ledger_transactions (id, tenant_id, member_id, kind, currency, amount, actor,
        source_type, source_id, params, occurred_at, recorded_at)
        VALUES (p_txn, p_tenant, p_member, 'accrual', p_cur, p_points, 'raw', 'pos', p_key,
                '{"expires_on": null}', p_now, p_now);
    INSERT INTO postings (tenant_id, transaction_id, account_id, amount, balance_after)
        VALUES (p_tenant, p_txn, p_issued, -p_points, NULL),
               (p_tenant, p_txn, w_id, p_points, w_balance);
    INSERT INTO lots (id, tenant_id, member_id, currency, amount, remaining, status,
        available_at, expires_at, source_transaction_id, created_at)
        VALUES (p_lot, p_tenant, p_member, p_cur, p_points, p_points, 'active', p_now, NULL,
                p_txn, p_now);
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, created_at)
        VALUES (p_tenant, p_key, repeat('0', 64), p_response, p_now);
    RETURN w_balance;
END $$
"""


def function_accrual(
    url: str, seeded: _seed.Seeded, tracer: Tracer
) -> tuple[Callable[[], None], int, Callable[[], Counter[str]], Callable[[], None]]:
    """The accrual's statements as one PL/pgSQL call: one round trip per transaction
    (autocommit wraps the call). A bound for moving the write path into the database."""
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
    tracer.attach(conn.pgconn)
    conn.execute(_ACCRUE_FUNCTION)
    row = conn.execute(
        "SELECT id FROM accounts WHERE tenant_id=%s AND owner='tenant' AND kind='issued'",
        (seeded.tenant_id,),
    ).fetchone()
    assert row is not None
    issued = row[0]
    rng = random.Random()
    nonce = uuid.uuid4().hex[:8]
    seq = [0]
    statements: Counter[str] = Counter()
    # A stored response of the size the service stores (about 1 kB of JSON).
    response = Jsonb({"transactions": [{"description": "x" * 800}], "balance": None})

    def run() -> None:
        seq[0] += 1
        key = f"fn-{nonce}-{seq[0]}"
        member = _seed.bench_id(seeded.base_ms, rng.randrange(seeded.members))
        conn.execute(
            "SELECT pg_temp.bench_accrue(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (
                seeded.tenant_id,
                member,
                seeded.currency,
                rng.randint(*_workload.ACCRUE_POINTS),
                key,
                issued,
                uuid.uuid4(),
                uuid.uuid4(),
                datetime.now(UTC),
                rng.getrandbits(63),
                response,
            ),
        )
        statements["SELECT pg_temp.bench_accrue(...)"] += 1

    return run, conn.info.backend_pid, lambda: statements, conn.close


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database", default="kopilka_bench_100000")
    ap.add_argument("--op", choices=("accrual", "redeem"), default="accrual")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--variant",
        choices=("service", "raw", "raw-pipeline", "raw-function"),
        default="service",
    )
    ap.add_argument(
        "--pre-ping", action="store_true", help="engine with pool_pre_ping (before 0010)"
    )
    ap.add_argument("--no-cprofile", action="store_true", help="time only, no profiler")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    if not 1 <= args.seconds <= 300:
        ap.error("--seconds must be 1..300")
    url, seeded = load_seed(args.database)
    tracer = Tracer()
    if args.variant == "service":
        run, backend, statements, close = service_ops(url, seeded, args.op, args.pre_ping, tracer)
    else:
        if args.op != "accrual":
            ap.error("the raw variants replay an accrual only")
        if args.variant == "raw-function":
            run, backend, statements, close = function_accrual(url, seeded, tracer)
        else:
            run, backend, statements, close = raw_accrual(
                url, seeded, args.variant == "raw-pipeline", tracer
            )
    for _ in range(50):  # warm caches: compiled SQL, tenant accounts, prepared statements
        run()
    tracer.reset()
    statements().clear()
    # CPU time, not wall time: waiting on the server would otherwise land on psycopg.
    profiler = None if args.no_cprofile else cProfile.Profile(time.process_time)
    n = 0
    cpu0, back0, wall0 = time.process_time(), backend_cpu(backend), time.perf_counter()
    deadline = time.monotonic() + args.seconds
    if profiler:
        profiler.enable()
    while time.monotonic() < deadline:
        run()
        n += 1
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - wall0
    cpu, back = time.process_time() - cpu0, backend_cpu(backend) - back0
    counts = tracer.counts()
    emit(
        {
            "figure": "profile",
            "op": args.op,
            "variant": args.variant,
            "pre_ping": args.pre_ping if args.variant == "service" else None,
            "fast_path": fast_path_state(args.variant),
            "cprofile": profiler is not None,
            "txns": n,
            "tps_one_client": round(n / wall, 1),
            "wall_ms_per_txn": round(wall * 1000 / n, 3),
            "python_cpu_ms_per_txn": round(cpu * 1000 / n, 3),
            "backend_cpu_ms_per_txn": round(back * 1000 / n, 3),
            "other_wait_ms_per_txn": round((wall - cpu - back) * 1000 / n, 3),
            "round_trips_per_txn": round(counts["B:ReadyForQuery"] / n, 2),
            "frontend_messages_per_txn": {
                k[2:]: round(v / n, 2) for k, v in sorted(counts.items()) if k.startswith("F:")
            },
            "clk_tck": CLK_TCK,
        }
    )
    emit(
        {
            "figure": "statements_per_txn",
            "statements": {k: round(v / n, 2) for k, v in statements().most_common()},
        }
    )
    if profiler:
        stats = pstats.Stats(profiler)
        by_cat: Counter[str] = Counter()
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        total = 0.0
        for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
            by_cat[category(filename)] += tottime
            total += tottime
        emit(
            {
                "figure": "self_time_by_package",
                "note": "cProfile self CPU time (process_time); profiling overhead inflates it",
                "ms_per_txn": {k: round(v * 1000 / n, 3) for k, v in by_cat.most_common()},
                "share": {k: round(v / total, 3) for k, v in by_cat.most_common()},
            }
        )
        rows = sorted(raw.items(), key=lambda kv: kv[1][3], reverse=True)
        top = []
        for (filename, line, name), (_cc, nc, tottime, cumtime, _c) in rows[: args.top * 3]:
            if "/kopilka/" not in filename and "/sqlalchemy/" not in filename:
                continue
            short = filename.split("site-packages/")[-1].split("/src/")[-1]
            top.append(
                {
                    "fn": f"{short}:{line}:{name}",
                    "calls_per_txn": round(nc / n, 2),
                    "cum_ms_per_txn": round(cumtime * 1000 / n, 3),
                    "self_ms_per_txn": round(tottime * 1000 / n, 3),
                }
            )
        emit({"figure": "top_cumulative", "functions": top[: args.top]})
    close()
    tracer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
