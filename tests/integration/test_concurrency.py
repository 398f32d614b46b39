"""Concurrency on PostgreSQL: double spends, twin idempotent requests, and the job running
beside live traffic. Threads are lined up on a barrier so the requests really overlap."""

from __future__ import annotations

import functools
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.tables import ledger_transactions, lots
from kopilka.bootstrap import Container
from kopilka.domain.errors import Conflict, InsufficientPoints, KopilkaError
from kopilka.services.verify import verify_ledger
from kopilka.services.views import OperationResult
from kopilka.testing import FakeClock
from tests.conftest import Merchant

pytestmark = pytest.mark.postgres_only

WORKERS = 32
TIMEOUT = 60


def run_together(calls: list[Callable[[], Any]], workers: int = WORKERS) -> list[Any]:
    """Run every call on a pool of ``workers`` threads, all started at once behind a gate;
    each result is the call's return value or the exception it raised."""
    workers = min(workers, len(calls))
    waiting = threading.Semaphore(0)
    gate = threading.Event()

    def one(call: Callable[[], Any]) -> Any:
        waiting.release()
        gate.wait(timeout=TIMEOUT)
        try:
            return call()
        except Exception as exc:  # collected and judged by the test
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, call) for call in calls]
        for _ in range(workers):  # the first wave is in place: let them all go
            assert waiting.acquire(timeout=TIMEOUT)
        gate.set()
        return [f.result(timeout=TIMEOUT) for f in futures]


def wallet(c: Container, member: uuid.UUID) -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT balance FROM accounts WHERE member_id = :m AND kind = 'wallet'"),
                {"m": member},
            ).scalar_one()
        )


def txn_count(c: Container, kind: str, member: uuid.UUID | None = None) -> int:
    stmt = (
        sa.select(sa.func.count())
        .select_from(ledger_transactions)
        .where(ledger_transactions.c.kind == kind)
    )
    if member is not None:
        stmt = stmt.where(ledger_transactions.c.member_id == member)
    with c.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def test_concurrent_redemptions_never_overspend(container: Container, merchant: Merchant) -> None:
    member = container.members.enroll(merchant.actor, {"phone": "+79161234567"}).id
    k, price = 23, 10
    # Several lots, so the spends also contend for the same lots in burn order.
    container.ledger.accrue(
        merchant.actor, member, 100, expires_at=container.clock.now() + timedelta(days=3)
    )
    container.ledger.accrue(
        merchant.actor, member, 100, expires_at=container.clock.now() + timedelta(days=9)
    )
    container.ledger.accrue(merchant.actor, member, k * price + 7 - 200)

    results = run_together(
        [lambda: container.ledger.redeem(merchant.actor, member, price) for _ in range(64)]
    )
    unexpected = [r for r in results if not isinstance(r, OperationResult | InsufficientPoints)]
    assert unexpected == []
    done = [r for r in results if isinstance(r, OperationResult)]
    assert len(done) == k
    assert wallet(container, member) == 7
    assert txn_count(container, "redemption", member) == k
    # Each success saw its own balance: all different, none below the remainder.
    seen = sorted(r.balance.available for r in done if r.balance is not None)
    assert seen == list(range(7, k * price + 7, price))
    with container.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.min(lots.c.remaining))).scalar_one() >= 0
    assert container.ledger.balance(merchant.actor, member).available == 7
    assert_verified(container)


def test_concurrent_holds_and_redemptions_share_one_balance(
    container: Container, merchant: Merchant
) -> None:
    member = container.members.enroll(merchant.actor, {"phone": "+79161234567"}).id
    container.ledger.accrue(merchant.actor, member, 500)
    calls: list[Callable[[], Any]] = []
    for i in range(48):
        if i % 2:
            calls.append(lambda: container.ledger.hold(merchant.actor, member, 15))
        else:
            calls.append(lambda: container.ledger.redeem(merchant.actor, member, 15))
    results = run_together(calls)
    assert [r for r in results if not isinstance(r, OperationResult | InsufficientPoints)] == []
    done = sum(isinstance(r, OperationResult) for r in results)
    assert done == 500 // 15
    view = container.ledger.balance(merchant.actor, member)
    assert view.available + view.held == 500 - 15 * txn_count(container, "redemption")
    assert view.available == 500 % 15
    assert_verified(container)


def test_one_idempotency_key_sent_three_times_at_once(
    container: Container, merchant: Merchant
) -> None:
    member = container.members.enroll(merchant.actor, {"phone": "+79161234567"}).id
    container.ledger.accrue(merchant.actor, member, 1000)
    outcomes: Counter[str] = Counter()
    rounds = 12
    for n in range(rounds):
        key = f"till-7:receipt-{n}"
        results = run_together(
            [
                lambda key=key: container.ledger.redeem(
                    merchant.actor, member, 10, idempotency_key=key
                )  # type: ignore[misc]
                for _ in range(3)
            ],
            workers=3,
        )
        answers = [r for r in results if isinstance(r, OperationResult)]
        conflicts = [r for r in results if isinstance(r, Conflict)]
        assert len(answers) + len(conflicts) == 3, results
        assert answers, results  # the first request always gets through
        assert all(c.code == "idempotency_in_progress" for c in conflicts)
        assert all(a == answers[0] for a in answers)  # replays are the very same answer
        outcomes["replayed"] += len(answers) - 1
        outcomes["in_progress"] += len(conflicts)
        # After the dust settles, the key replays the one answer.
        again = container.ledger.redeem(merchant.actor, member, 10, idempotency_key=key)
        assert again == answers[0]
    assert txn_count(container, "redemption", member) == rounds
    assert wallet(container, member) == 1000 - 10 * rounds
    assert sum(outcomes.values()) == 2 * rounds
    assert_verified(container)


def test_concurrent_captures_of_one_hold(container: Container, merchant: Merchant) -> None:
    member = container.members.enroll(merchant.actor, {"phone": "+79161234567"}).id
    container.ledger.accrue(merchant.actor, member, 100)
    hold = container.ledger.hold(merchant.actor, member, 80).hold
    assert hold is not None
    calls: list[Callable[[], Any]] = [
        lambda: container.ledger.capture(merchant.actor, hold.id, 50) for _ in range(6)
    ] + [lambda: container.ledger.release(merchant.actor, hold.id) for _ in range(2)]
    results = run_together(calls)
    done = [r for r in results if isinstance(r, OperationResult)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(done) == 1
    assert len(refused) == len(calls) - 1
    assert {r.code for r in refused} <= {"hold_captured", "hold_released"}
    captures = txn_count(container, "capture", member)
    assert wallet(container, member) == (50 if captures else 100)
    assert_verified(container)


def test_jobs_beside_live_spending_keep_the_books(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    """Two job runs race each other and live redemptions, holds and releases at the moment
    lots expire, pending lots activate and holds go stale."""
    start = clock.now()
    members = []
    holds: list[uuid.UUID] = []
    for i in range(12):
        member = container.members.enroll(merchant.actor, {"phone": f"+7916555{i:04d}"}).id
        members.append(member)
        container.ledger.accrue(merchant.actor, member, 100, expires_at=start + timedelta(days=2))
        container.ledger.accrue(merchant.actor, member, 100, pending_days=2)
        container.ledger.accrue(merchant.actor, member, 100)
        hold = container.ledger.hold(merchant.actor, member, 30, ttl_seconds=3600).hold
        assert hold is not None
        holds.append(hold.id)
    clock.advance(days=2)

    calls: list[Callable[[], Any]] = [container.jobs.run, container.jobs.run]
    for i, member in enumerate(members):
        calls.append(functools.partial(container.ledger.redeem, merchant.actor, member, 60))
        calls.append(functools.partial(container.ledger.redeem, merchant.actor, member, 90))
        calls.append(functools.partial(container.ledger.hold, merchant.actor, member, 20))
        if i % 2:
            calls.append(functools.partial(container.ledger.release, merchant.actor, holds[i]))
    calls.append(container.jobs.run)
    results = run_together(calls, workers=16)

    allowed = (OperationResult, InsufficientPoints, Conflict)
    reports = [r for r in results if not isinstance(r, allowed)]
    assert all(not isinstance(r, BaseException) for r in reports), reports
    assert all(r.errors == [] for r in reports)
    for r in results:
        if isinstance(r, Conflict):
            assert r.code in ("hold_expired", "hold_released"), r
    # Whatever the interleaving: one activation per member, every spend went through
    # (the expiring lot and the stale hold over it are gone, 200 points remain to spend), ...
    assert txn_count(container, "activation") == len(members)
    assert txn_count(container, "redemption") == 2 * len(members)
    assert_verified(container)
    # ... and nothing is left for another run, so cache and projection agree.
    final = container.jobs.run()
    assert (final.transactions, final.holds_released) == (0, 0)
    for member in members:
        view = container.ledger.balance(merchant.actor, member)
        assert (view.available, view.held, view.pending) == (30, 20, 0)
        assert wallet(container, member) == 30
    assert_verified(container)


def test_redemptions_for_many_members_at_once(container: Container, merchant: Merchant) -> None:
    """Different members never wait for each other's locks in a way that deadlocks."""
    members = [
        container.members.enroll(merchant.actor, {"phone": f"+7916777{i:04d}"}).id for i in range(8)
    ]
    for member in members:
        container.ledger.accrue(merchant.actor, member, 50)
    calls: list[Callable[[], Any]] = [
        functools.partial(container.ledger.redeem, merchant.actor, m, 10)
        for m in members
        for _ in range(6)
    ]
    results = run_together(calls)
    errors = [
        r
        for r in results
        if isinstance(r, KopilkaError | Exception) and not isinstance(r, InsufficientPoints)
    ]
    assert errors == []
    for member in members:
        assert wallet(container, member) == 0
        assert txn_count(container, "redemption", member) == 5
    assert_verified(container)
