"""Reward stock, code pools and limits under many concurrent redemptions (PostgreSQL):
nothing is sold beyond stock, stock never goes negative, each partner code goes to one order,
limits hold, a low-stock event is raised once, and a cancellation returns points once."""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db import outbox
from kopilka.adapters.db.mechanics.rewards import reward_orders, reward_stock
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.services.rewards import RedeemInput, RewardOrderView, RewardView, StockInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant
from tests.integration.test_concurrency import run_together

pytestmark = pytest.mark.postgres_only

NAME = {"ru": "Кружка", "en": "Mug"}


def make_reward(c: Container, m: Merchant, **fields: Any) -> RewardView:
    body = {"code": "MUG", "kind": "material", "name": NAME, "cost": 100, **fields}
    return c.rewards.create(m.actor, RewardDefinition.model_validate(body))


def members(c: Container, m: Merchant, n: int, points: int) -> list[uuid.UUID]:
    found = []
    for i in range(n):
        member = c.members.enroll(m.actor, {"phone": f"+791650{i:05d}"}).id
        c.ledger.accrue(m.actor, member, points)
        found.append(member)
    return found


def redeeming(
    c: Container, m: Merchant, member: uuid.UUID, reward_id: uuid.UUID, **kw: Any
) -> Callable[[], Any]:
    return functools.partial(
        c.rewards.redeem, m.actor, member, RedeemInput(reward_id=reward_id, **kw)
    )


def outcome(results: list[Any]) -> tuple[list[RewardOrderView], Counter[str]]:
    """The orders placed, and the codes of the refusals; anything else fails the test."""
    done = [r for r in results if isinstance(r, RewardOrderView)]
    refusals = Counter(r.code for r in results if isinstance(r, BusinessRuleViolation))
    unexpected = [r for r in results if not isinstance(r, RewardOrderView | BusinessRuleViolation)]
    assert unexpected == []
    return done, refusals


def quantities(c: Container) -> dict[str, int]:
    with c.engine.connect() as conn:
        rows = conn.execute(sa.select(reward_stock.c.location, reward_stock.c.quantity)).all()
    return {r.location: int(r.quantity) for r in rows}


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def test_stock_raced_past_zero_never_goes_negative(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    mug = make_reward(c, m)
    c.rewards.set_stock(m.actor, mug.id, StockInput("WH-1", 6, 3, True))
    c.rewards.set_stock(m.actor, mug.id, StockInput("OUT-1", 4))
    buyers = members(c, m, 16, 1000)
    calls = [redeeming(c, m, buyers[i % len(buyers)], mug.id) for i in range(64)]
    done, refusals = outcome(run_together(calls))
    assert len(done) == 10
    assert refusals == Counter({"out_of_stock": 54})
    assert quantities(c) == {"WH-1": 0, "OUT-1": 0}
    assert Counter(o.location for o in done) == Counter({"WH-1": 6, "OUT-1": 4})
    with c.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(reward_orders)).scalar_one() == 10
        )
    spent = sum(1000 - c.ledger.balance(m.actor, b).available for b in buyers)
    assert spent == 10 * 100
    view = c.rewards.get(m.actor, mug.id)
    assert (view.available, view.redeemed, view.totals.orders) == (0, 10, 10)
    # WH-1 crossed its threshold of 3 once, whatever the interleaving.
    with c.uow_factory(write=False) as uow:
        events = outbox.recent(uow, m.tenant_id, "reward.low_stock")
    assert [e["payload"]["location"] for e in events] == ["WH-1"]
    assert_verified(c)


def test_one_location_raced_by_one_member_and_many(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    mug = make_reward(c, m, limits={"per_member": 3})
    c.rewards.set_stock(m.actor, mug.id, StockInput("OUT-1", 7))
    [eager] = members(c, m, 1, 10_000)
    calls = [
        lambda: c.rewards.redeem(m.actor, eager, RedeemInput(reward_id=mug.id, location="OUT-1"))
        for _ in range(32)
    ]
    done, refusals = outcome(run_together(calls))
    assert len(done) == 3  # the member's limit, though 7 are in stock
    assert refusals == Counter({"member_limit_reached": 29})
    assert quantities(c) == {"OUT-1": 4}
    assert c.ledger.balance(m.actor, eager).available == 10_000 - 300
    assert_verified(c)


def test_each_partner_code_goes_to_one_order(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    cinema = make_reward(c, m, code="CINEMA", kind="partner_code", cost=10)
    c.rewards.upload_codes(m.actor, cinema.id, [f"CODE-{i}" for i in range(8)])
    buyers = members(c, m, 8, 1000)
    calls = [redeeming(c, m, buyers[i % len(buyers)], cinema.id) for i in range(40)]
    done, refusals = outcome(run_together(calls))
    assert len(done) == 8
    assert refusals == Counter({"out_of_stock": 32})
    codes = [code for order in done for code in order.partner_codes]
    assert sorted(codes) == sorted(f"CODE-{i}" for i in range(8))
    assert c.rewards.get(m.actor, cinema.id).available == 0
    assert_verified(c)


def test_the_total_limit_holds_under_a_race(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    fund = make_reward(
        c, m, code="FUND", kind="charity", charity={"code": "kids"}, limits={"total": 7}
    )
    buyers = members(c, m, 12, 1000)
    calls = [redeeming(c, m, buyers[i % len(buyers)], fund.id) for i in range(36)]
    done, refusals = outcome(run_together(calls))
    assert len(done) == 7
    assert refusals == Counter({"total_limit_reached": 29})
    assert c.rewards.get(m.actor, fund.id).redeemed == 7
    assert_verified(c)


def test_a_cancellation_raced_with_itself_refunds_once(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    mug = make_reward(c, m, cost=250)
    c.rewards.set_stock(m.actor, mug.id, StockInput("OUT-1", 3))
    [buyer] = members(c, m, 1, 1000)
    order = c.rewards.redeem(m.actor, buyer, RedeemInput(reward_id=mug.id))
    results = run_together([lambda: c.rewards.cancel(m.actor, order.id) for _ in range(16)])
    assert all(isinstance(r, RewardOrderView) and r.status == "cancelled" for r in results)
    assert len({r.refund_transaction_id for r in results}) == 1
    assert c.ledger.balance(m.actor, buyer).available == 1000
    assert quantities(c) == {"OUT-1": 3}
    assert c.rewards.get(m.actor, mug.id).redeemed == 0
    assert_verified(c)
