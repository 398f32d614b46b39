"""Seeding the benchmark database with set-based SQL: members, accounts, opening lots.

Member ids are deterministic UUIDv7-shaped values built from the member's number, so every
worker process computes any member's id without fetching a million rows:

    ms (48 bits) = base_ms + n // 4096,  version 7,  counter (12 bits) = n % 4096,
    variant 0b10, then a 4-bit tag (0 member, 1 account, 2 transaction, 3 lot) and n.

The ids sort by ``n`` (as the application's own UUIDv7s sort by creation), and a member's
accounts are numbered hold < pending < wallet exactly as ``create_member_accounts`` creates
them, so lock order is the same as for members enrolled through the service.

A subset of members (the *pool*, every ``stride``-th member) gets an opening balance of
several lots with staggered expiry dates, so a redemption burns across 2-3 lots. All rows
keep the ledger's invariants (balanced postings, cached balance = postings = active lots),
checked by ``kopilka.services.verify.verify_ledger`` at the end of a run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

import _pg
from kopilka.adapters.db.engine import create_db_engine
from kopilka.adapters.db.schema import upgrade
from kopilka.bootstrap import bootstrap
from kopilka.settings import Settings

TENANT_NAME = "Bench Coffee"
LOTS_PER_MEMBER = 6
POINTS_PER_LOT = 50
LOT_SPACING_DAYS = 90  # lot k expires (k + 1) * 90 days after seeding: burn order is stable

TAG_MEMBER, TAG_ACCOUNT, TAG_TXN, TAG_LOT = 0, 1, 2, 3

_V7_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.bench_id(ms bigint, n bigint, tag int) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
  SELECT (lpad(to_hex(ms + n / 4096), 12, '0') || '7' || lpad(to_hex(n % 4096), 3, '0')
          || '8' || to_hex(tag) || lpad(to_hex(n), 14, '0'))::uuid
$$
"""


def bench_id(base_ms: int, n: int, tag: int = TAG_MEMBER) -> uuid.UUID:
    """The Python twin of ``pg_temp.bench_id``."""
    return uuid.UUID(f"{base_ms + n // 4096:012x}7{n % 4096:03x}8{tag:x}{n:014x}")


@dataclass(frozen=True)
class Seeded:
    database: str
    tenant_id: uuid.UUID
    currency: str
    members: int
    pool: int
    stride: int
    base_ms: int
    seconds: float | None  # None: the database was already seeded and was reused

    def member_id(self, n: int) -> uuid.UUID:
        return bench_id(self.base_ms, n)


Log = Callable[[str], None]


def read_meta(engine: Engine) -> Seeded | None:
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('bench_seed')")).scalar_one() is None:
            return None
        row = conn.execute(
            sa.text(
                "SELECT tenant_id, currency, members, pool, stride, base_ms FROM bench_seed "
                "WHERE complete"
            )
        ).first()
    if row is None:
        return None
    return Seeded(
        database=engine.url.database or "",
        tenant_id=row.tenant_id,
        currency=row.currency,
        members=row.members,
        pool=row.pool,
        stride=row.stride,
        base_ms=row.base_ms,
        seconds=None,
    )


def ensure_seeded(database: str, members: int, pool: int, *, reseed: bool, log: Log) -> Seeded:
    """Reuse ``database`` if it holds a complete seed of ``members``; else build it anew."""
    if not reseed and _pg.database_exists(database):
        engine = sa.create_engine(_pg.database_url(database), pool_size=1)
        try:
            found = read_meta(engine)
        finally:
            engine.dispose()
        if found is not None and found.members == members and found.pool == pool:
            log(f"reusing seeded database {database} ({members} members, pool {pool})")
            # Later migrations (e.g. 0010's ledger functions) reach a database seeded before.
            engine = sa.create_engine(_pg.database_url(database), pool_size=1)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            return found
        log(f"database {database} holds another or an incomplete seed: rebuilding it")
    return _seed(database, members, pool, log)


def _seed(database: str, members: int, pool: int, log: Log) -> Seeded:
    started = time.monotonic()
    _pg.recreate_database(database)
    engine = create_db_engine(
        _pg.database_url(database).render_as_string(hide_password=False), pool_size=2
    )
    try:
        upgrade(engine)
        container = bootstrap(Settings(database_url=str(engine.url), db_pool_size=2), engine=engine)
        tenant = container.tenants.create_tenant(TENANT_NAME, pending_days=0)
        tenant_id: uuid.UUID = tenant["id"]
        currency: str = tenant["points_currency"]
        base_ms = time.time_ns() // 1_000_000 - 86_400_000  # a day back: older than any txn
        stride = max(1, members // pool)
        pool = min(pool, members)
        with engine.connect() as conn:
            _session_for_bulk_load(conn)
            t0 = time.monotonic()
            _insert_members(conn, tenant_id, members, base_ms)
            conn.commit()
            log(f"members: {members} rows in {time.monotonic() - t0:.1f} s")
            t0 = time.monotonic()
            _insert_accounts(conn, tenant_id, currency, members, base_ms)
            conn.commit()
            log(f"accounts: {3 * members} rows in {time.monotonic() - t0:.1f} s")
            t0 = time.monotonic()
            conn.execute(sa.text("CREATE TABLE bench_pool (member_id uuid PRIMARY KEY)"))
            conn.execute(
                sa.text(
                    "INSERT INTO bench_pool SELECT pg_temp.bench_id(:base, j * :stride, 0) "
                    "FROM generate_series(0, :pool - 1) AS j"
                ),
                {"base": base_ms, "stride": stride, "pool": pool},
            )
            add_pool_lots(conn, tenant_id, currency)
            conn.commit()
            log(
                f"opening balances: {pool} members x {LOTS_PER_MEMBER} lots "
                f"in {time.monotonic() - t0:.1f} s"
            )
            conn.execute(
                sa.text(
                    "CREATE TABLE bench_seed (tenant_id uuid, currency text, members bigint, "
                    "pool bigint, stride bigint, base_ms bigint, seeded_at timestamptz, "
                    "seconds double precision, complete boolean)"
                )
            )
            conn.commit()
        t0 = time.monotonic()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM (ANALYZE)"))
            conn.execute(sa.text("CHECKPOINT"))
        log(f"vacuum analyze + checkpoint in {time.monotonic() - t0:.1f} s")
        seconds = time.monotonic() - started
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO bench_seed VALUES (:t, :c, :m, :p, :s, :b, now(), :sec, true)"
                ),
                {
                    "t": tenant_id,
                    "c": currency,
                    "m": members,
                    "p": pool,
                    "s": stride,
                    "b": base_ms,
                    "sec": seconds,
                },
            )
    finally:
        engine.dispose()
    return Seeded(database, tenant_id, currency, members, pool, stride, base_ms, seconds)


def _session_for_bulk_load(conn: Connection) -> None:
    conn.execute(sa.text("SET synchronous_commit = off"))
    conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
    conn.execute(sa.text("SET work_mem = '256MB'"))
    conn.execute(sa.text("SET statement_timeout = '15min'"))
    # Skip the per-row foreign-key triggers: the rows are built consistent by construction.
    conn.execute(sa.text("SET session_replication_role = replica"))
    conn.execute(sa.text(_V7_SQL))


def _insert_members(conn: Connection, tenant_id: uuid.UUID, members: int, base_ms: int) -> None:
    conn.execute(
        sa.text(
            """
            INSERT INTO members (id, tenant_id, phone, email, name, birth_year, birth_month,
                                 birth_day, external_id, attributes, consents, status,
                                 block_reason, merged_into_id, erased_at, created_at, updated_at)
            SELECT pg_temp.bench_id(:base, n, 0), :tenant, NULL, NULL, NULL, NULL, NULL, NULL,
                   'bench-' || n, '{}'::jsonb, '{}'::jsonb, 'active', NULL, NULL, NULL,
                   :now, :now
            FROM generate_series(0, :members - 1) AS n
            """
        ),
        {"base": base_ms, "tenant": tenant_id, "members": members, "now": _now()},
    )


def _insert_accounts(
    conn: Connection, tenant_id: uuid.UUID, currency: str, members: int, base_ms: int
) -> None:
    # Kinds in the order create_member_accounts uses (sorted: hold, pending, wallet).
    conn.execute(
        sa.text(
            """
            INSERT INTO accounts (id, tenant_id, owner, member_id, kind, currency, balance,
                                  allow_debt, created_at)
            SELECT pg_temp.bench_id(:base, 3 * n + k.i, 1), :tenant,
                   'member:' || pg_temp.bench_id(:base, n, 0)::text,
                   pg_temp.bench_id(:base, n, 0), k.kind, :currency, 0, false, :now
            FROM generate_series(0, :members - 1) AS n
            CROSS JOIN (VALUES (0, 'hold'), (1, 'pending'), (2, 'wallet')) AS k(i, kind)
            ORDER BY n, k.i
            """
        ),
        {
            "base": base_ms,
            "tenant": tenant_id,
            "currency": currency,
            "members": members,
            "now": _now(),
        },
    )


def add_pool_lots(conn: Connection, tenant_id: uuid.UUID, currency: str) -> int:
    """Give every pool member one opening-balance transaction of LOTS_PER_MEMBER lots.

    Used for the first seed and to top the pool up when runs have spent it. Must run on a
    connection where ``pg_temp.bench_id`` exists (see ``_session_for_bulk_load``).
    """
    ms = time.time_ns() // 1_000_000
    total = LOTS_PER_MEMBER * POINTS_PER_LOT
    params = {
        "ms": ms,
        "tenant": tenant_id,
        "cur": currency,
        "total": total,
        "now": _now(),
        "lots": LOTS_PER_MEMBER,
        "pts": POINTS_PER_LOT,
        "days": LOT_SPACING_DAYS,
    }
    conn.execute(
        sa.text(
            """
            CREATE TEMP TABLE bench_topup AS
            SELECT row_number() OVER (ORDER BY p.member_id) - 1 AS j, p.member_id,
                   a.id AS wallet_id, a.balance
            FROM bench_pool p
            JOIN accounts a ON a.tenant_id = :tenant AND a.kind = 'wallet'
                 AND a.currency = :cur AND a.owner = 'member:' || p.member_id::text
            """
        ),
        params,
    )
    issued = conn.execute(
        sa.text(
            "SELECT id FROM accounts WHERE tenant_id = :tenant AND owner = 'tenant' "
            "AND kind = 'issued' AND currency = :cur"
        ),
        params,
    ).scalar_one()
    conn.execute(
        sa.text(
            """
            INSERT INTO ledger_transactions (id, tenant_id, member_id, counterparty_member_id,
                kind, currency, amount, reason, actor, source_type, source_id, reverses_id,
                params, occurred_at, recorded_at)
            SELECT pg_temp.bench_id(:ms, j, 2), :tenant, member_id, NULL, 'opening_balance',
                   :cur, :total, NULL, 'bench', 'import', NULL, NULL, '{}'::jsonb, :now, :now
            FROM bench_topup ORDER BY j
            """
        ),
        params,
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO postings (tenant_id, transaction_id, account_id, amount, balance_after)
            SELECT :tenant, pg_temp.bench_id(:ms, j, 2),
                   CASE side WHEN 0 THEN CAST(:issued AS uuid) ELSE wallet_id END,
                   CASE side WHEN 0 THEN -:total ELSE :total END,
                   CASE side WHEN 0 THEN NULL ELSE balance + :total END
            FROM bench_topup CROSS JOIN (VALUES (0), (1)) AS s(side)
            ORDER BY j, side
            """
        ),
        {**params, "issued": issued},
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO lots (id, tenant_id, member_id, currency, amount, remaining, status,
                              available_at, expires_at, source_transaction_id, created_at)
            SELECT pg_temp.bench_id(:ms, j * :lots + k, 3), :tenant, member_id, :cur, :pts,
                   :pts, 'active', :now - interval '1 day',
                   :now + (k + 1) * :days * interval '1 day', pg_temp.bench_id(:ms, j, 2), :now
            FROM bench_topup CROSS JOIN generate_series(0, :lots - 1) AS k
            ORDER BY j, k
            """
        ),
        params,
    )
    updated = conn.execute(
        sa.text(
            "UPDATE accounts a SET balance = a.balance + :total FROM bench_topup t "
            "WHERE a.id = t.wallet_id"
        ),
        params,
    ).rowcount
    conn.execute(sa.text("DROP TABLE bench_topup"))
    return int(updated)


def top_up(engine: Engine, seeded: Seeded) -> int:
    """Add another opening balance to every pool member (in one transaction)."""
    with engine.connect() as conn:
        conn.execute(sa.text("SET synchronous_commit = off"))
        conn.execute(sa.text(_V7_SQL))
        n = add_pool_lots(conn, seeded.tenant_id, seeded.currency)
        conn.commit()
    return n


def pool_balances(engine: Engine, seeded: Seeded) -> list[tuple[uuid.UUID, int]]:
    """Every pool member with its current wallet balance."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                SELECT p.member_id, a.balance FROM bench_pool p
                JOIN accounts a ON a.tenant_id = :tenant AND a.kind = 'wallet'
                     AND a.currency = :cur AND a.owner = 'member:' || p.member_id::text
                """
            ),
            {"tenant": seeded.tenant_id, "cur": seeded.currency},
        ).all()
    return [(r.member_id, int(r.balance)) for r in rows]


def _now() -> datetime:
    return datetime.now(UTC)
