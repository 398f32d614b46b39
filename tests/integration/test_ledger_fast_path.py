"""The PostgreSQL fast path of accrue/redeem (one PL/pgSQL call) against the Python path:
the same operations give the same answers and the same rows, each fallback hands over to
the Python path, each error keeps its code and message, and concurrency stays exact."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kopilka.adapters.db.inflight import advisory_key
from kopilka.adapters.db.mechanics.families import family_members
from kopilka.adapters.db.tables import (
    accounts,
    holds,
    idempotency_keys,
    ledger_transactions,
    lot_movements,
    lots,
    postings,
)
from kopilka.bootstrap import Container, bootstrap
from kopilka.domain.errors import InsufficientPoints, KopilkaError
from kopilka.domain.ledger.model import TxnKind
from kopilka.services.ledger import ShortfallPolicy
from kopilka.services.ledger_fast import FastLedger
from kopilka.services.verify import verify_ledger
from kopilka.services.views import OperationResult, View
from kopilka.settings import Settings
from kopilka.testing import FakeClock
from tests.conftest import Merchant, empty_tables, make_merchant
from tests.integration.test_concurrency import run_together

pytestmark = pytest.mark.postgres_only

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ---- helpers -----------------------------------------------------------------------------
def fresh(engine: Engine, clock: FakeClock, *, fast: bool) -> Container:
    """A container on an emptied database, with the fast path on or off."""
    empty_tables(engine)
    clock.set(START)
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False), ledger_fast_path=fast
    )
    return bootstrap(settings, clock=clock, engine=engine)


def fast_of(c: Container) -> FastLedger:
    assert c.ledger.fast is not None
    return c.ledger.fast


def outcome(call: Callable[[], View]) -> tuple[Any, ...]:
    """An answer as JSON, or the error as (type, code, detail, extra)."""
    try:
        return ("ok", call().to_json())
    except KopilkaError as exc:
        return ("error", type(exc).__name__, exc.code, exc.detail, exc.extra)


def dump_rows(c: Container) -> dict[str, list[dict[str, Any]]]:
    """Every ledger row in creation order; serial ids and key hashes (which hash member ids)
    are left out."""
    tables: list[tuple[sa.Table, list[str], Any]] = [
        (accounts, [], accounts.c.id),
        (ledger_transactions, [], ledger_transactions.c.id),
        (postings, ["id"], postings.c.id),
        (lots, [], lots.c.id),
        (lot_movements, ["id"], lot_movements.c.id),
        (holds, [], holds.c.id),
        (idempotency_keys, ["request_hash"], idempotency_keys.c.key),
    ]
    found: dict[str, list[dict[str, Any]]] = {}
    with c.engine.connect() as conn:
        for table, skip, order in tables:
            rows = conn.execute(sa.select(table).order_by(order)).mappings()
            found[table.name] = [{k: v for k, v in r.items() if k not in skip} for r in rows]
    return found


def canonical(value: Any) -> Any:
    """The structure with every UUID replaced by its order of first appearance."""
    names: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"<id{len(names)}>")

    def walk(item: Any) -> Any:
        if isinstance(item, uuid.UUID):
            return names.setdefault(str(item), f"<id{len(names)}>")
        if isinstance(item, str):
            return UUID_RE.sub(name, item)
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def wallet_balance(c: Container, member: uuid.UUID) -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(accounts.c.balance).where(
                    accounts.c.member_id == member, accounts.c.kind == "wallet"
                )
            ).scalar_one()
        )


# ---- the same operations, both paths -----------------------------------------------------
def random_sequence(c: Container, clock: FakeClock, seed: int, steps: int) -> list[Any]:
    """A seeded mix of everything that meets the fast path: accruals (pending, bonus, with
    keys, replays, reused keys), redemptions (some too large), holds, debts, blocked and
    unknown members, the clock moving lots due and holds stale, and the job."""
    rng = random.Random(seed)
    m = make_merchant(
        c, "Fast Path Coffee", expiry_policy={"kind": "rolling", "days": 40}, allow_debt=True
    )
    actor = m.actor
    members = [c.members.enroll(actor, {"phone": f"+7916100{i:04d}"}).id for i in range(4)]
    used: list[tuple[str, Callable[..., OperationResult]]] = []
    credits: list[uuid.UUID] = []
    log: list[Any] = []
    for step in range(steps):
        roll = rng.random()
        member = rng.choice(members)
        key = f"key-{step}" if rng.random() < 0.6 else None
        result: tuple[Any, ...]
        if roll < 0.30:
            accrue = partial(
                c.ledger.accrue,
                actor,
                member,
                rng.randint(1, 300),
                reason=rng.choice([None, "", "Покупка", "Coffee"]),
                pending_days=rng.choice([None, None, 0, 2, 5]),
                kind=rng.choice([TxnKind.ACCRUAL, TxnKind.ACCRUAL, TxnKind.BONUS]),
                source_type="pos",
                source_id=f"receipt-{step}",
            )
            result = outcome(partial(accrue, idempotency_key=key))
            if result[0] == "ok":
                credits.append(uuid.UUID(result[1]["transactions"][0]["id"]))
            if key is not None:
                used.append((key, accrue))
        elif roll < 0.55:
            redeem = partial(
                c.ledger.redeem,
                actor,
                member,
                rng.randint(1, 250),
                reason=rng.choice([None, "Оплата"]),
            )
            result = outcome(partial(redeem, idempotency_key=key))
            if key is not None:
                used.append((key, redeem))
        elif roll < 0.62 and used:
            # The same key again: with the same body it replays, with another it is refused.
            old_key, call = rng.choice(used)
            result = outcome(partial(call, idempotency_key=old_key))
            other = c.ledger.redeem if rng.random() < 0.5 else c.ledger.accrue
            log.append(outcome(partial(other, actor, member, 999_999, idempotency_key=old_key)))
        elif roll < 0.68:
            points = rng.randint(1, 80)
            result = outcome(partial(c.ledger.hold, actor, member, points, ttl_seconds=3600))
        elif roll < 0.74 and credits:
            # Take an accrual back even if spent: the wallet may go into debt.
            original = rng.choice(credits)
            debt = ShortfallPolicy.DEBT
            result = outcome(partial(c.ledger.reverse, actor, original, on_shortfall=debt))
        elif roll < 0.80:
            clock.advance(hours=rng.choice([1, 6, 30, 24 * 6]))
            result = ("clock", clock.now().isoformat())
        elif roll < 0.83:
            report = c.jobs.run()
            result = ("job", report.transactions, report.holds_released)
        elif roll < 0.86:
            blocked = rng.random() < 0.5
            c.members.set_blocked(actor, members[3], blocked, reason="check")
            result = ("blocked", blocked)
        elif roll < 0.89:
            unknown = uuid.UUID(int=rng.getrandbits(128))
            result = outcome(partial(c.ledger.redeem, actor, unknown, 5, idempotency_key=key))
        elif roll < 0.92:
            expires = clock.now() + timedelta(days=rng.randint(1, 60))
            result = outcome(partial(c.ledger.accrue, actor, member, 50, expires_at=expires))
        else:
            result = outcome(partial(c.ledger.balance, actor, member))
        log.append(result)
    return log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_and_python_paths_give_the_same_answers_and_rows(
    engine: Engine, clock: FakeClock, seed: int
) -> None:
    python = fresh(engine, clock, fast=False)
    assert python.ledger.fast is None
    python_log = random_sequence(python, clock, seed, 160)
    python_rows = dump_rows(python)
    assert_verified(python)

    fast = fresh(engine, clock, fast=True)
    fast_log = random_sequence(fast, clock, seed, 160)
    fast_rows = dump_rows(fast)
    assert_verified(fast)

    assert canonical(fast_log) == canonical(python_log)
    assert canonical(fast_rows) == canonical(python_rows)
    # The sequence really used both: one-call writes, and hand-overs to the Python path.
    used = fast_of(fast)
    assert used.calls > 60
    assert sum(used.fallbacks.values()) > 0
    assert used.calls > 2 * sum(used.fallbacks.values())


# ---- fallbacks -----------------------------------------------------------------------------
@pytest.fixture
def shop(container: Container) -> Merchant:
    return make_merchant(container, "Fast Shop", allow_debt=True)


def enroll(c: Container, m: Merchant, phone: str = "+79161234567") -> uuid.UUID:
    return c.members.enroll(m.actor, {"phone": phone}).id


def test_plain_accrual_and_redemption_take_one_call(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop)
    fast = fast_of(container)
    container.ledger.accrue(shop.actor, member, 100, idempotency_key="a")
    container.ledger.redeem(shop.actor, member, 40, idempotency_key="r")
    container.ledger.redeem(shop.actor, member, 40, idempotency_key="r")  # a replay
    assert (fast.calls, dict(fast.fallbacks)) == (3, {})
    assert wallet_balance(container, member) == 60
    assert_verified(container)


def test_a_member_in_debt_goes_the_python_way(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop)
    first = container.ledger.accrue(shop.actor, member, 100)
    container.ledger.redeem(shop.actor, member, 80)
    container.ledger.reverse(
        shop.actor, first.transactions[0].id, on_shortfall=ShortfallPolicy.DEBT
    )
    assert wallet_balance(container, member) == -80
    fast = fast_of(container)
    paid = container.ledger.accrue(shop.actor, member, 50)
    assert fast.fallbacks["debt"] == 1
    assert paid.balance is not None
    assert paid.balance.debt == 30
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(shop.actor, member, 1)
    assert fast.fallbacks["debt"] == 2
    assert_verified(container)


def test_due_pending_lots_are_settled_by_the_python_path(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, shop)
    container.ledger.accrue(shop.actor, member, 100, pending_days=3)
    fast = fast_of(container)
    assert fast.fallbacks == {}
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(shop.actor, member, 10)  # still pending: the fast answer
    clock.advance(days=4)
    done = container.ledger.redeem(shop.actor, member, 10)
    assert fast.fallbacks["due_lots"] == 1
    assert [t.kind for t in done.transactions] == ["redemption"]
    assert done.balance is not None
    assert done.balance.available == 90
    # Settled now: the next one is one call again.
    container.ledger.redeem(shop.actor, member, 10)
    assert fast.fallbacks["due_lots"] == 1
    assert_verified(container)


def test_expired_lots_are_settled_by_the_python_path(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, shop)
    container.ledger.accrue(shop.actor, member, 30, expires_at=clock.now() + timedelta(days=1))
    container.ledger.accrue(shop.actor, member, 100)
    fast = fast_of(container)
    assert fast.fallbacks["explicit_lot_dates"] == 1
    clock.advance(days=2)
    done = container.ledger.redeem(shop.actor, member, 20)
    assert fast.fallbacks["due_lots"] == 1
    assert done.balance is not None
    assert done.balance.available == 80
    assert_verified(container)


def test_a_lapsed_hold_is_released_by_the_python_path(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, shop)
    container.ledger.accrue(shop.actor, member, 100)
    container.ledger.hold(shop.actor, member, 70, ttl_seconds=60)
    fast = fast_of(container)
    live = container.ledger.accrue(shop.actor, member, 5)  # a live hold: the fast path
    assert live.balance is not None
    assert live.balance.held == 70
    assert fast.fallbacks == {}
    clock.advance(minutes=2)
    done = container.ledger.redeem(shop.actor, member, 90)
    assert fast.fallbacks["lapsed_holds"] == 1
    assert done.balance is not None
    assert (done.balance.available, done.balance.held) == (15, 0)
    assert_verified(container)


def test_a_new_currency_is_opened_by_the_python_path(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop, "+79161230001")
    other = enroll(container, shop, "+79161230002")
    fast = fast_of(container)
    # The tenant's own accounts in that currency are not known yet either.
    container.ledger.accrue(shop.actor, member, 10, currency="miles")
    assert dict(fast.fallbacks) == {"cold_cache": 1}
    container.ledger.accrue(shop.actor, member, 10, currency="miles")
    done = container.ledger.redeem(shop.actor, member, 15, currency="miles")
    assert dict(fast.fallbacks) == {"cold_cache": 1}
    assert done.balance is not None
    assert done.balance.currency == "miles"
    assert done.balance.available == 5
    container.ledger.accrue(shop.actor, other, 7, currency="miles")
    assert dict(fast.fallbacks) == {"cold_cache": 1, "no_accounts": 1}
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(shop.actor, member, 6, currency="miles")
    assert_verified(container)


def test_a_family_member_is_served_by_the_python_path(container: Container, shop: Merchant) -> None:
    owner = enroll(container, shop, "+79161230001")
    member = enroll(container, shop, "+79161230002")
    columns = {c.name for c in family_members.columns}
    row: dict[str, Any] = {
        "tenant_id": shop.tenant_id,
        "member_id": member,
        "family_id": owner,
        "status": "active",
        "joined_at": container.clock.now(),
    }
    # Only the contract's columns are set; whatever the families mechanic adds gets defaults.
    extra = {"role": "member", "can_spend": True, "brought": {}, "since_txn": uuid.uuid4()}
    row.update({k: v for k, v in extra.items() if k in columns})
    with container.engine.begin() as conn:
        conn.execute(sa.insert(family_members), row)
    fast = fast_of(container)
    outcome(lambda: container.ledger.accrue(shop.actor, member, 10))
    assert fast.fallbacks["family"] == 1


def test_lot_dates_and_bad_keys_are_left_to_the_python_path(
    container: Container, shop: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, shop)
    fast = fast_of(container)
    with pytest.raises(KopilkaError) as err:
        container.ledger.accrue(shop.actor, member, 10, expires_at=clock.now())
    assert err.value.code == "invalid_lot_dates"
    with pytest.raises(KopilkaError) as err:
        container.ledger.redeem(shop.actor, member, 10, idempotency_key="x" * 256)
    assert err.value.code == "invalid_idempotency_key"
    assert dict(fast.fallbacks) == {"explicit_lot_dates": 1, "invalid_key": 1}
    assert fast.calls == 0


# ---- errors: same code, message and details as the Python path ----------------------------
def both_ways(c: Container, call: Callable[[], OperationResult]) -> tuple[Any, ...]:
    """The outcome through the fast path and through the Python path (errors write
    nothing, so both see the same state); they must be equal."""
    fast = outcome(call)
    saved, c.ledger.fast = c.ledger.fast, None
    try:
        slow = outcome(call)
    finally:
        c.ledger.fast = saved
    assert fast == slow
    return fast


def test_member_errors(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop, "+79161230001")
    other = enroll(container, shop, "+79161230002")
    gone = enroll(container, shop, "+79161230003")
    container.ledger.accrue(shop.actor, member, 100)
    unknown = uuid.uuid4()
    assert both_ways(container, lambda: container.ledger.accrue(shop.actor, unknown, 5))[:3] == (
        "error",
        "NotFound",
        "member_not_found",
    )
    assert both_ways(container, lambda: container.ledger.redeem(shop.actor, unknown, 5))[2] == (
        "member_not_found"
    )
    container.members.set_blocked(shop.actor, member, True, reason="fraud")
    for call in (
        lambda: container.ledger.accrue(shop.actor, member, 5),
        lambda: container.ledger.redeem(shop.actor, member, 5),
    ):
        assert both_ways(container, call)[2] == "member_blocked"
    container.members.merge(shop.actor, other, gone)
    assert both_ways(container, lambda: container.ledger.accrue(shop.actor, gone, 5))[2] == (
        "member_merged"
    )
    container.members.erase(shop.actor, other)
    assert both_ways(container, lambda: container.ledger.redeem(shop.actor, other, 5))[2] == (
        "member_erased"
    )
    assert fast_of(container).fallbacks == {}


def test_not_enough_points(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop)
    container.ledger.accrue(shop.actor, member, 100)
    container.ledger.accrue(shop.actor, member, 50, pending_days=2)
    refused = both_ways(container, lambda: container.ledger.redeem(shop.actor, member, 101))
    assert refused == (
        "error",
        "InsufficientPoints",
        "insufficient_points",
        "Not enough points: 100 available, 101 asked.",
        {"available": 100, "requested": 101},
    )
    # Cached balance and lots disagree (legacy data): the lots have the last word.
    with container.engine.begin() as conn:
        conn.execute(sa.update(lots).where(lots.c.status == "active").values(remaining=60))
    short = both_ways(container, lambda: container.ledger.redeem(shop.actor, member, 80))
    assert short[2:] == (
        "insufficient_points",
        "Not enough spendable points: 60 of 80.",
        {"available": 60, "requested": 80},
    )
    assert fast_of(container).fallbacks == {}


def test_idempotency_errors(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop)
    container.ledger.accrue(shop.actor, member, 100, idempotency_key="k1")
    reused = both_ways(
        container, lambda: container.ledger.redeem(shop.actor, member, 5, idempotency_key="k1")
    )
    assert reused[1:3] == ("ValidationFailed", "idempotency_key_reused")
    replay = both_ways(
        container, lambda: container.ledger.accrue(shop.actor, member, 100, idempotency_key="k1")
    )
    assert replay[0] == "ok"
    # A twin still running holds the key's advisory lock: the answer is 409 at once.
    with container.engine.connect() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_lock(advisory_key(shop.tenant_id, "k2"))))
        busy = both_ways(
            container, lambda: container.ledger.redeem(shop.actor, member, 5, idempotency_key="k2")
        )
        conn.execute(sa.select(sa.func.pg_advisory_unlock(advisory_key(shop.tenant_id, "k2"))))
        conn.commit()
    assert busy[1:3] == ("Conflict", "idempotency_in_progress")
    assert fast_of(container).fallbacks == {}
    assert wallet_balance(container, member) == 100


def test_a_replay_crosses_paths(container: Container, shop: Merchant) -> None:
    """A key first used on one path replays on the other (same hash, same stored answer)."""
    member = enroll(container, shop)
    fast = container.ledger.fast
    container.ledger.fast = None
    first = container.ledger.accrue(shop.actor, member, 100, reason="x", idempotency_key="p")
    container.ledger.fast = fast
    assert container.ledger.accrue(shop.actor, member, 100, reason="x", idempotency_key="p") == (
        first
    )
    second = container.ledger.redeem(shop.actor, member, 30, idempotency_key="q")
    container.ledger.fast = None
    assert container.ledger.redeem(shop.actor, member, 30, idempotency_key="q") == second
    assert wallet_balance(container, member) == 70


# ---- concurrency through the fast path ----------------------------------------------------
def test_concurrent_spends_through_the_fast_path(container: Container, shop: Merchant) -> None:
    member = enroll(container, shop)
    k, price = 23, 10
    container.ledger.accrue(shop.actor, member, 100, pending_days=0)
    container.ledger.accrue(shop.actor, member, k * price + 7 - 100)
    fast = fast_of(container)
    results = run_together(
        [lambda: container.ledger.redeem(shop.actor, member, price) for _ in range(64)]
    )
    assert [r for r in results if not isinstance(r, OperationResult | InsufficientPoints)] == []
    done = [r for r in results if isinstance(r, OperationResult)]
    assert len(done) == k
    assert wallet_balance(container, member) == 7
    assert (fast.calls, dict(fast.fallbacks)) == (66, {})
    assert_verified(container)


def test_one_key_three_times_at_once_through_the_fast_path(
    container: Container, shop: Merchant
) -> None:
    member = enroll(container, shop)
    container.ledger.accrue(shop.actor, member, 1000)
    fast = fast_of(container)
    for n in range(8):
        results = run_together(
            [
                lambda key=f"till:{n}": container.ledger.redeem(  # type: ignore[misc]
                    shop.actor, member, 10, idempotency_key=key
                )
                for _ in range(3)
            ],
            workers=3,
        )
        answers = [r for r in results if isinstance(r, OperationResult)]
        assert answers
        assert all(a == answers[0] for a in answers)
        assert all(
            isinstance(r, KopilkaError) and r.code == "idempotency_in_progress"
            for r in results
            if not isinstance(r, OperationResult)
        )
    assert wallet_balance(container, member) == 1000 - 80
    assert fast.calls == 1 + 3 * 8
    assert fast.fallbacks == {}
    assert_verified(container)


def test_the_functions_are_installed_by_the_migrations(container: Container) -> None:
    functions = container.uow_factory.ledger_functions()
    assert functions is not None
    with container.engine.connect() as conn:
        settings = conn.execute(
            sa.text(
                "SELECT proname, proconfig FROM pg_proc WHERE proname IN "
                "('kopilka_ledger_accrue', 'kopilka_ledger_redeem') ORDER BY proname"
            )
        ).all()
    # No per-call settings (migration 0016): they cost a save and restore on every call.
    assert [(r.proname, r.proconfig) for r in settings] == [
        ("kopilka_ledger_accrue", None),
        ("kopilka_ledger_redeem", None),
    ]
    # Instead the calling sessions fix plans once and go by index whatever the tables'
    # sizes were then (a probe into the private pool: no public API needs this).
    pool = functions._pool
    held = pool._checkout()
    try:
        shown = [
            held.conn.execute(f"SHOW {name}").fetchone()
            for name in ("plan_cache_mode", "enable_seqscan")
        ]
    finally:
        pool._checkin(held, True)
    assert shown == [("force_generic_plan",), ("off",)]
