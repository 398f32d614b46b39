"""Purchases racing each other on PostgreSQL: many tills spending one family card at once,
the same receipt sent by several tills, refunds and hold decisions racing."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from kopilka.bootstrap import Container
from kopilka.domain.errors import KopilkaError
from kopilka.services.context import Actor
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant
from tests.e2e.helpers import count

pytestmark = pytest.mark.postgres_only

T = TypeVar("T")
BONUS: dict[str, Any] = {
    "type": "bonus",
    "redemption": {"point_value": 100, "max_percent": 100},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}
SPEND_ONLY: dict[str, Any] = {**BONUS, "rules": []}  # nothing earned to refill the card
TILLS = 32
START = 1000


def race(n: int, work: Callable[[int], T]) -> list[T | KopilkaError]:
    """Run ``work(i)`` in ``n`` threads released at once; expected errors are results."""
    barrier = threading.Barrier(n)
    results: list[T | KopilkaError | None] = [None] * n
    crashes: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except KopilkaError as exc:
            results[i] = exc
        except BaseException as exc:  # a deadlock or a 500 would land here
            crashes.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a till never came back"
    assert not crashes, crashes
    return [r for r in results if r is not None]


def basket(
    member_id: uuid.UUID | None, redeem: int | None, price: int = 1_000_000, qty: int = 1
) -> ReceiptInput:
    member = MemberRef(id=member_id) if member_id else None
    return ReceiptInput(
        lines=(LineInput(sku="TV", qty=Decimal(qty), price=price),),
        member=member,
        redeem_points=redeem,
        outlet="OUT-1",
    )


def family(container: Container, actor: Actor, document: dict[str, Any] = BONUS) -> uuid.UUID:
    container.programs.publish(actor, "bonus", document)
    member_id = container.members.enroll(actor, {"name": "Family"}).id
    container.ledger.accrue(actor, member_id, START)
    return member_id


def assert_ledger_ok(container: Container) -> None:
    report = verify_ledger(container.uow_factory)
    assert report.ok, report.checks


def test_family_card_is_never_overdrawn(container: Container, merchant: Merchant) -> None:
    actor = merchant.actor
    member_id = family(container, actor, SPEND_ONLY)
    asks = [random.Random(i).randint(40, 90) for i in range(TILLS)]
    assert sum(asks) > START
    # Half the tills spend at once, the other half hold the points first.
    holding = {i for i in range(TILLS) if i % 2}

    def till(i: int) -> dict[str, Any]:
        return container.purchases.confirm(
            actor, basket(member_id, asks[i]), f"FAM-{i}", hold=i in holding
        )

    results = race(TILLS, till)
    assert len(results) == TILLS
    won = [i for i, r in enumerate(results) if isinstance(r, dict)]
    lost = [i for i, r in enumerate(results) if isinstance(r, KopilkaError)]
    assert len(won) + len(lost) == TILLS
    assert won, "somebody must have been served"
    for i in lost:
        error = results[i]
        assert isinstance(error, KopilkaError)
        assert error.code == "redeem_exceeds_max", error
        assert error.extra["max_redeemable"] < asks[i]
    spent = sum(asks[i] for i in won)
    assert spent <= START
    state = container.ledger.balance(actor, member_id)
    held = sum(asks[i] for i in won if i in holding)
    assert state.held == held
    assert state.available == START - spent  # earning waits for a hold's confirmation...
    assert state.available >= 0
    # ...and nobody was turned away while the points they asked for were there.
    if lost:
        assert state.available < min(asks[i] for i in lost)
    assert count(container.engine, "receipts") == len(won)
    assert_ledger_ok(container)
    # Now the holds settle, again all at once: half confirmed, half voided.
    held_receipts = [
        (i, uuid.UUID(results[i]["receipt"]["id"]))  # type: ignore[index]
        for i in won
        if i in holding
    ]
    if held_receipts:

        def settle(k: int) -> dict[str, Any]:
            _i, receipt_id = held_receipts[k]
            if k % 2:
                return container.purchases.void(actor, receipt_id)
            return container.purchases.confirm_held(actor, receipt_id)

        settled = race(len(held_receipts), settle)
        assert all(isinstance(r, dict) for r in settled), settled
        voided = sum(asks[i] for k, (i, _) in enumerate(held_receipts) if k % 2)
        state = container.ledger.balance(actor, member_id)
        assert state.held == 0
        assert state.available >= START - spent + voided
    assert container.ledger.balance(actor, member_id).available >= 0
    assert_ledger_ok(container)


@pytest.mark.parametrize("hold", [False, True])
def test_same_receipt_from_three_tills_is_one_receipt(
    container: Container, merchant: Merchant, hold: bool
) -> None:
    actor = merchant.actor
    member_id = family(container, actor)

    def till(_: int) -> dict[str, Any]:
        return container.purchases.confirm(actor, basket(member_id, 300), "SAME-1", hold=hold)

    results = race(3, till)
    answers = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, KopilkaError)]
    assert answers, results
    assert len({a["receipt"]["id"] for a in answers}) == 1
    for error in refused:  # a twin still in flight is told to retry, nothing else
        assert error.code == "idempotency_in_progress", error
    with container.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM receipts WHERE receipt_number = 'SAME-1'")
        ).scalar_one()
    assert stored == 1
    state = container.ledger.balance(actor, member_id)
    earned = 0 if hold else answers[0]["totals"]["points_earned"]
    assert earned == (0 if hold else 485)  # 5% of 9,700 roubles paid in money
    assert (state.available, state.held) == (START - 300 + earned, 300 if hold else 0)
    # A retry now replays the one receipt.
    again = container.purchases.confirm(actor, basket(member_id, 300), "SAME-1", hold=hold)
    assert again["receipt"]["id"] == answers[0]["receipt"]["id"]
    assert_ledger_ok(container)


def test_racing_refunds_never_refund_more_than_was_bought(
    container: Container, merchant: Merchant
) -> None:
    actor = merchant.actor
    member_id = family(container, actor)
    bought = container.purchases.confirm(
        actor, basket(member_id, 400, price=100_000, qty=4), "REF-1"
    )
    receipt_id = uuid.UUID(bought["receipt"]["id"])

    def refund_one(i: int) -> dict[str, Any]:
        return container.purchases.refund(actor, receipt_id, f"rf-{i}", [(0, Decimal(1))])

    results = race(8, refund_one)
    done = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, KopilkaError)]
    assert len(done) == 4
    assert all(e.code == "validation_failed" for e in refused), refused
    assert sum(r["points_returned"] for r in done) == 400
    assert sum(r["points_taken_back"] for r in done) == bought["totals"]["points_earned"]
    assert sum(r["money_to_return"] for r in done) == bought["totals"]["pay"]
    assert container.ledger.balance(actor, member_id).available == START
    assert_ledger_ok(container)


def test_confirm_and_void_of_one_hold_race(container: Container, merchant: Merchant) -> None:
    actor = merchant.actor
    member_id = family(container, actor)
    receipt_ids = [
        uuid.UUID(
            container.purchases.confirm(
                actor, basket(member_id, 100, price=20_000), f"HOLD-{k}", hold=True
            )["receipt"]["id"]
        )
        for k in range(4)
    ]

    def decide(i: int) -> dict[str, Any]:
        receipt_id = receipt_ids[i // 2]
        if i % 2:
            return container.purchases.void(actor, receipt_id)
        return container.purchases.confirm_held(actor, receipt_id)

    results = race(8, decide)
    expected = START
    for k, receipt_id in enumerate(receipt_ids):
        pair = results[2 * k : 2 * k + 2]
        wins = [r for r in pair if isinstance(r, dict)]
        assert len(wins) == 1, pair  # one decision wins, the other is told the outcome
        loser = next(r for r in pair if isinstance(r, KopilkaError))
        final = container.purchases.get(actor, receipt_id)["receipt"]["status"]
        assert final in ("confirmed", "voided")
        assert wins[0]["receipt"]["status"] == final
        assert loser.code == f"receipt_{final}"
        if final == "confirmed":
            expected += -100 + 5  # 5% of the 100 roubles paid in money
    state = container.ledger.balance(actor, member_id)
    assert (state.available, state.held) == (expected, 0)
    assert_ledger_ok(container)
