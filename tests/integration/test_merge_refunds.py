"""Refunds of a receipt bought on a profile that was merged since (and the ledger API's
reversals of its entries), on both databases: the points spent come back to the surviving
profile (on new lots with the old dates, never into the merged profile's lots), the points
earned are taken back from it, and the ledger stays whole. Before, both landed on the
merged profile's emptied accounts."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.tables import lots
from kopilka.bootstrap import Container
from kopilka.services.ledger import ShortfallPolicy
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant

BONUS: dict[str, Any] = {
    "type": "bonus",
    "pending_days": 0,
    "redemption": {"point_value": 100, "max_percent": 100},
    "rules": [{"id": "base", "effects": [{"points_percent": 10}]}],
}


def available(c: Container, m: Merchant, member: uuid.UUID) -> int:
    return c.ledger.balance(m.actor, member).available


def lots_of(c: Container, member: uuid.UUID) -> list[tuple[int, str]]:
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.select(lots.c.remaining, lots.c.status)
            .where(lots.c.member_id == member, lots.c.remaining > 0)
            .order_by(lots.c.remaining)
        )
        return [(r.remaining, r.status) for r in rows]


def buy(
    c: Container, m: Merchant, member: uuid.UUID, *, qty: int, redeem: int, number: str
) -> dict[str, Any]:
    """TVs at 1,000 ₽, part paid with points."""
    receipt = ReceiptInput(
        lines=(LineInput(sku="TV", qty=Decimal(qty), price=100_000),),
        member=MemberRef(id=member),
        redeem_points=redeem,
        outlet=m.outlet_code,
    )
    return c.purchases.confirm(m.actor, receipt, number)


def assert_ledger_ok(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def test_refunds_after_a_merge_reach_the_survivor(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    c.programs.publish(m.actor, "main", BONUS)
    survivor = c.members.enroll(m.actor, {}).id
    duplicate = c.members.enroll(m.actor, {}).id
    c.ledger.accrue(m.actor, survivor, 50)
    c.ledger.accrue(m.actor, duplicate, 200)  # one lot, spent whole by the purchase
    bought = buy(c, m, duplicate, qty=2, redeem=200, number="D-1")
    # 2,000 ₽ less 200 ₽ paid with points: 10 % of 1,800 ₽ earned.
    assert (bought["totals"]["points_redeemed"], bought["totals"]["points_earned"]) == (200, 180)
    c.members.merge(m.actor, survivor, duplicate)
    assert available(c, m, survivor) == 50 + 180
    receipt_id = uuid.UUID(bought["receipt"]["id"])

    half = c.purchases.refund(m.actor, receipt_id, "rf-1", [(0, Decimal(1))])
    assert (half["points_returned"], half["points_taken_back"]) == (100, 90)
    assert available(c, m, survivor) == 50 + 180 + 100 - 90
    assert available(c, m, duplicate) == 0
    assert_ledger_ok(c)

    rest = c.purchases.refund(m.actor, receipt_id, "rf-2", None)
    assert (rest["points_returned"], rest["points_taken_back"]) == (100, 90)
    assert available(c, m, survivor) == 50 + 200  # as if the purchase never happened
    assert available(c, m, duplicate) == 0
    assert lots_of(c, duplicate) == []  # nothing went back into the merged profile's lots
    assert sum(remaining for remaining, _ in lots_of(c, survivor)) == 250
    assert_ledger_ok(c)


def test_a_cancel_after_a_merge_reaches_the_survivor(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    c.programs.publish(m.actor, "main", BONUS)
    survivor = c.members.enroll(m.actor, {}).id
    duplicate = c.members.enroll(m.actor, {}).id
    c.ledger.accrue(m.actor, duplicate, 300)  # a lot the purchase spends in part
    bought = buy(c, m, duplicate, qty=1, redeem=100, number="D-2")
    c.members.merge(m.actor, survivor, duplicate)  # closes the lot's last 200 points
    assert available(c, m, survivor) == 300 - 100 + 90
    c.purchases.cancel(m.actor, uuid.UUID(bought["receipt"]["id"]))
    assert available(c, m, survivor) == 300
    assert available(c, m, duplicate) == 0
    assert_ledger_ok(c)


def test_the_ledger_apis_reversals_after_a_merge_reach_the_survivor(
    container: Container, merchant: Merchant
) -> None:
    """``POST /v1/transactions/{id}/reverse`` of the duplicate's entries, after the merge."""
    c, m = container, merchant
    survivor = c.members.enroll(m.actor, {}).id
    duplicate = c.members.enroll(m.actor, {}).id
    earned = c.ledger.accrue(m.actor, duplicate, 300).transactions[0].id
    spent = c.ledger.redeem(m.actor, duplicate, 300).transactions[0].id  # the lot spent whole
    c.ledger.accrue(m.actor, duplicate, 40)
    c.members.merge(m.actor, survivor, duplicate)
    assert available(c, m, survivor) == 40
    c.ledger.reverse(m.actor, spent, 100)
    assert (available(c, m, survivor), available(c, m, duplicate)) == (140, 0)
    c.ledger.reverse(m.actor, earned, 120, on_shortfall=ShortfallPolicy.CAP)
    assert (available(c, m, survivor), available(c, m, duplicate)) == (20, 0)
    assert lots_of(c, duplicate) == []
    assert_ledger_ok(c)
