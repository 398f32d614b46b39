"""The reward catalogue's use cases on both databases: redemption of every kind, stock per
location, limits, visibility and tier prices, cancellation, low-stock events, the CSV import,
and refusals that write nothing."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db import outbox
from kopilka.adapters.db.mechanics.rewards import reward_stock
from kopilka.adapters.db.tables import coupons, ledger_transactions
from kopilka.bootstrap import Container
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    InsufficientPoints,
    KopilkaError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.rewards.definition import RewardDefinition, RewardPatch
from kopilka.domain.rules.facts import MemberFacts
from kopilka.services.context import Actor, Role, load_tenant
from kopilka.services.rewards import RedeemInput, RewardView, StockInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

NAME = {"ru": "Кружка", "en": "Mug"}
_phones = itertools.count(1000)
REWARD_TABLES = ("rewards", "reward_stock", "reward_codes", "reward_orders", "outbox_events")
LEDGER_TABLES = ("ledger_transactions", "postings", "lots", "lot_movements", "coupons")


def make_reward(c: Container, m: Merchant, **fields: Any) -> RewardView:
    body = {"code": "MUG", "kind": "material", "name": NAME, "cost": 100, **fields}
    return c.rewards.create(m.actor, RewardDefinition.model_validate(body))


def enrol(c: Container, m: Merchant, points: int = 0, **attributes: Any) -> uuid.UUID:
    member = c.members.enroll(
        m.actor, {"phone": f"+7916000{next(_phones):04d}", "attributes": attributes}
    ).id
    if points:
        c.ledger.accrue(m.actor, member, points)
    return member


def stock(
    c: Container, m: Merchant, reward: RewardView, location: str, qty: int, **kw: Any
) -> RewardView:
    return c.rewards.set_stock(
        m.actor,
        reward.id,
        StockInput(location, qty, kw.get("threshold"), "threshold" in kw),
    )


def available(c: Container, m: Merchant, member: uuid.UUID) -> int:
    return c.ledger.balance(m.actor, member).available


def footprint(c: Container) -> dict[str, int]:
    with c.engine.connect() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in REWARD_TABLES + LEDGER_TABLES
        } | {
            "stock": int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(reward_stock.c.quantity), 0))
                ).scalar_one()
            )
        }


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def refused(c: Container, call: Any, error: type[KopilkaError], code: str) -> KopilkaError:
    """``call`` raises ``error`` with ``code`` and leaves no trace."""
    before = footprint(c)
    with pytest.raises(error) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert footprint(c) == before
    return caught.value


# ---- material rewards ------------------------------------------------------------------------
def test_a_material_reward_from_order_to_pickup(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    mug = make_reward(c, m, cost=300, description={"ru": "Белая", "en": "White"})
    stock(c, m, mug, "WH-1", 2)
    stock(c, m, mug, "OUT-1", 1)
    member = enrol(c, m, 1000)
    order = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id))
    assert order.status == "pending"
    assert order.points == 300
    assert order.location == "WH-1"  # an admin without a location: where most is left
    assert order.name.en == "Mug"
    assert available(c, m, member) == 700
    view = c.rewards.get(m.actor, mug.id)
    assert {s.location: s.quantity for s in view.stock} == {"WH-1": 1, "OUT-1": 1}
    assert view.available == 2
    assert view.redeemed == 1
    assert view.totals.points == 300
    # The ledger says what the points bought, in both languages.
    txn = c.ledger.transaction(m.actor, order.transaction_id)  # type: ignore[arg-type]
    assert txn.kind == "redemption"
    assert txn.description == {
        "ru": "Списано 300 баллов — Кружка",
        "en": "300 points spent — Кружка",
    }
    assert txn.source_type == "reward_order"
    assert txn.source_id == str(order.id)

    ready = c.rewards.mark_ready(m.actor, order.id, "OUT-1")
    assert (ready.status, ready.pickup_outlet) == ("ready", "OUT-1")
    assert ready.status_text["en"] == "Ready for pickup at OUT-1"
    assert c.rewards.mark_ready(m.actor, order.id, "OUT-1") == ready  # a repeat: the same
    issued = c.rewards.issue(m.actor, order.id)
    assert issued.status == "issued"
    assert c.rewards.issue(m.actor, order.id) == issued
    assert c.rewards.order(m.actor, order.id) == issued
    with pytest.raises(Conflict) as caught:
        c.rewards.cancel(m.actor, order.id)
    assert caught.value.code == "order_issued"
    assert available(c, m, member) == 700
    assert_verified(c)


def test_nothing_is_sold_beyond_stock(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    mug = make_reward(c, m)
    stock(c, m, mug, "OUT-1", 2)
    member = enrol(c, m, 10_000)
    c.rewards.redeem(m.actor, member, RedeemInput(reward_code="MUG"))
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, member, RedeemInput(reward_code="MUG", quantity=2)),
        BusinessRuleViolation,
        "out_of_stock",
    )
    c.rewards.redeem(m.actor, member, RedeemInput(reward_code="MUG", location="OUT-1"))
    for location in (None, "OUT-1", "WH-9"):
        refused(
            c,
            lambda loc=location: c.rewards.redeem(
                m.actor, member, RedeemInput(reward_code="MUG", location=loc)
            ),
            BusinessRuleViolation,
            "out_of_stock",
        )
    assert c.rewards.get(m.actor, mug.id).available == 0
    assert available(c, m, member) == 9_800
    # A stock of zero hides the reward from the member's catalogue.
    assert c.rewards.catalogue(m.actor, member, None, 50) == []
    stock(c, m, mug, "OUT-1", 1)
    assert [r.code for r in c.rewards.catalogue(m.actor, member, None, 50)] == ["MUG"]


def test_the_stock_check_constraint_is_the_last_line_of_defence(
    container: Container, merchant: Merchant
) -> None:
    mug = make_reward(container, merchant)
    stock(container, merchant, mug, "OUT-1", 1)
    with container.engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.update(reward_stock).values(quantity=reward_stock.c.quantity - 2))
    assert container.rewards.get(merchant.actor, mug.id).available == 1


def test_a_till_takes_stock_from_its_own_outlet_first(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    mug = make_reward(c, m)
    stock(c, m, mug, "WH-1", 50)
    stock(c, m, mug, "OUT-1", 1)
    member = enrol(c, m, 1000)
    till = Actor(m.tenant_id, "till", Role.POS, outlet_id=_outlet_id(c, m, "OUT-1"))
    first = c.rewards.redeem(till, member, RedeemInput(reward_id=mug.id))
    assert first.location == "OUT-1"
    second = c.rewards.redeem(till, member, RedeemInput(reward_id=mug.id))
    assert second.location == "WH-1"
    # The till marks it ready at its own outlet, never at another one.
    c.tenants.create_outlet(m.actor, "OUT-2", name="Outlet two")
    with pytest.raises(KopilkaError) as caught:
        c.rewards.mark_ready(till, second.id, "OUT-2")
    assert caught.value.code == "outlet_not_allowed"
    assert c.rewards.mark_ready(till, second.id, None).pickup_outlet == "OUT-1"
    # An admin names the outlet, unless the stock location is one.
    with pytest.raises(ValidationFailed) as missing:
        c.rewards.mark_ready(
            m.actor, c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id)).id, None
        )
    assert [e.code for e in missing.value.errors] == ["outlet_required"]
    assert c.rewards.mark_ready(m.actor, first.id, None).pickup_outlet == "OUT-1"
    # An order ready at OUT-2 is not OUT-1's till's to hand over or cancel.
    third = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id, location="WH-1"))
    c.rewards.mark_ready(m.actor, third.id, "OUT-2")
    for call in (c.rewards.issue, c.rewards.cancel):
        with pytest.raises(KopilkaError) as other:
            call(till, third.id)
        assert other.value.code == "outlet_not_allowed"
    with pytest.raises(Conflict) as elsewhere:
        c.rewards.mark_ready(m.actor, third.id, "OUT-1")
    assert elsewhere.value.code == "order_ready_elsewhere"


def _outlet_id(c: Container, m: Merchant, code: str) -> uuid.UUID:
    with c.uow_factory(write=False) as uow:
        outlet = uow.directory.outlet_by_code(m.tenant_id, code)
        assert outlet is not None
        return uuid.UUID(str(outlet["id"]))


# ---- cancelling ------------------------------------------------------------------------------
def test_cancelling_returns_points_stock_and_limits(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    mug = make_reward(c, m, cost=400, limits={"total": 1, "per_member": 1})
    stock(c, m, mug, "OUT-1", 1)
    # The points come from a lot that expires before the cancellation.
    member = enrol(c, m)
    c.ledger.accrue(m.actor, member, 400, expires_at=clock.now() + timedelta(days=2))
    c.ledger.accrue(m.actor, member, 100)
    order = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id, quantity=1))
    assert available(c, m, member) == 100
    c.rewards.mark_ready(m.actor, order.id, "OUT-1")
    clock.advance(days=3)
    cancelled = c.rewards.cancel(m.actor, order.id)
    assert cancelled.status == "cancelled"
    assert cancelled.status_text["en"] == "Cancelled, points returned"
    assert cancelled.refund_transaction_id is not None
    assert c.rewards.cancel(m.actor, order.id) == cancelled  # twice: the same answer
    # The points keep their original expiry: given back to a lot that has expired, they are
    # in a new lot with the same dates, so only the 100 others are spendable.
    assert available(c, m, member) == 100
    refund = c.ledger.transaction(m.actor, cancelled.refund_transaction_id)
    assert refund.kind == "refund"
    assert refund.amount == 400
    assert refund.description["ru"] == "Возвращено 400 списанных баллов — Кружка"
    view = c.rewards.get(m.actor, mug.id)
    assert (view.available, view.redeemed, view.totals.orders) == (1, 0, 0)
    # The limits count the cancelled unit no more: it can be bought again.
    c.ledger.accrue(m.actor, member, 400)
    again = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id))
    assert again.status == "pending"
    for action in (c.rewards.issue, c.rewards.mark_ready):
        with pytest.raises(Conflict) as caught:
            action(m.actor, order.id, *(["OUT-1"] if action == c.rewards.mark_ready else []))
        assert caught.value.code == "order_cancelled"
    assert_verified(c)


def test_a_free_reward_moves_no_points(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    gift = make_reward(c, m, cost=500, cost_by_tier={"gold": 0})
    stock(c, m, gift, "OUT-1", 3)
    gold = enrol(c, m, tier="gold")
    order = c.rewards.redeem(m.actor, gold, RedeemInput(reward_id=gift.id))
    assert (order.points, order.transaction_id) == (0, None)
    cancelled = c.rewards.cancel(m.actor, order.id)
    assert cancelled.refund_transaction_id is None
    assert cancelled.status_text["en"] == "Cancelled"
    assert c.rewards.get(m.actor, gift.id).available == 3


# ---- who sees what, at which price -----------------------------------------------------------
def test_visibility_and_tier_prices(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    now = clock.now()
    make_reward(c, m, code="ANY", cost=100, cost_by_tier={"gold": 60})
    make_reward(c, m, code="GOLD", cost=100, visibility={"tiers": ["gold"]})
    make_reward(c, m, code="STUDENT", cost=100, visibility={"segments": ["students"]})
    make_reward(
        c, m, code="LATER", cost=100, visibility={"from": (now + timedelta(days=1)).isoformat()}
    )
    make_reward(
        c, m, code="ENDING", cost=100, visibility={"until": (now + timedelta(hours=1)).isoformat()}
    )
    for code in ("ANY", "GOLD", "STUDENT", "LATER", "ENDING"):
        reward = c.rewards.list_rewards(m.actor, None, 50)
        stock(c, m, next(r for r in reward if r.code == code), "OUT-1", 5)
    gold = enrol(c, m, 80, tier="gold")
    student = enrol(c, m, 80, segments=["students"])

    def shown(member: uuid.UUID) -> dict[str, tuple[int, bool]]:
        return {
            r.code: (r.cost, r.affordable) for r in c.rewards.catalogue(m.actor, member, None, 50)
        }

    assert shown(gold) == {"ANY": (60, True), "GOLD": (100, False), "ENDING": (100, False)}
    assert shown(student) == {"ANY": (100, False), "STUDENT": (100, False), "ENDING": (100, False)}
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, student, RedeemInput(reward_code="GOLD")),
        BusinessRuleViolation,
        "reward_not_available",
    )
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, student, RedeemInput(reward_code="ANY")),
        InsufficientPoints,
        "insufficient_points",
    )
    assert c.rewards.redeem(m.actor, gold, RedeemInput(reward_code="ANY")).points == 60
    clock.advance(days=2)
    assert set(shown(student)) == {"ANY", "STUDENT", "LATER"}


def test_archived_rewards_are_hidden_and_not_sold(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    mug = make_reward(c, m)
    stock(c, m, mug, "OUT-1", 5)
    member = enrol(c, m, 1000)
    archived = c.rewards.update(m.actor, mug.id, RewardPatch(status="archived"))
    assert archived.status == "archived"
    assert c.rewards.catalogue(m.actor, member, None, 50) == []
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id)),
        BusinessRuleViolation,
        "reward_archived",
    )
    assert [r.code for r in c.rewards.list_rewards(m.actor, None, 50, status="archived")] == ["MUG"]
    c.rewards.update(m.actor, mug.id, RewardPatch(status="active"))
    assert c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id)).points == 100


# ---- limits ----------------------------------------------------------------------------------
def test_per_member_limits_per_calendar_month(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    clock.set(datetime(2026, 1, 31, 20, 0, tzinfo=UTC))  # 23:00 in Moscow, 31 January
    coffee = make_reward(
        c,
        m,
        code="COFFEE",
        kind="coupon",
        coupon={"benefit": {"discount_percent": 100}, "valid_days": 7},
        limits={"per_member": 2, "per_member_period": "month"},
    )
    member = enrol(c, m, 10_000)
    c.rewards.redeem(m.actor, member, RedeemInput(reward_id=coffee.id, quantity=2))
    [item] = c.rewards.catalogue(m.actor, member, None, 50)
    assert (item.per_member_left, item.redeemable, item.unavailable_reason) == (
        0,
        False,
        "member_limit_reached",
    )
    error = refused(
        c,
        lambda: c.rewards.redeem(m.actor, member, RedeemInput(reward_id=coffee.id)),
        BusinessRuleViolation,
        "member_limit_reached",
    )
    assert error.extra == {"limit": 2, "used": 2}
    clock.advance(hours=1)  # midnight in Moscow: February, a new period
    assert c.rewards.catalogue(m.actor, member, None, 50)[0].per_member_left == 2
    c.rewards.redeem(m.actor, member, RedeemInput(reward_id=coffee.id))
    # Another member has a limit of their own.
    other = enrol(c, m, 10_000)
    c.rewards.redeem(m.actor, other, RedeemInput(reward_id=coffee.id, quantity=2))


def test_the_total_limit(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    fund = make_reward(
        c, m, code="FUND", kind="charity", charity={"code": "kids"}, cost=50, limits={"total": 3}
    )
    first, second = enrol(c, m, 1000), enrol(c, m, 1000)
    c.rewards.redeem(m.actor, first, RedeemInput(reward_id=fund.id, quantity=2))
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, second, RedeemInput(reward_id=fund.id, quantity=2)),
        BusinessRuleViolation,
        "total_limit_reached",
    )
    [item] = c.rewards.catalogue(m.actor, second, None, 50)
    assert item.total_left == 1
    c.rewards.redeem(m.actor, second, RedeemInput(reward_id=fund.id))
    assert c.rewards.catalogue(m.actor, second, None, 50) == []  # sold out: hidden
    # The limit cannot be lowered below what is already redeemed.
    with pytest.raises(BusinessRuleViolation) as caught:
        c.rewards.update(m.actor, fund.id, RewardPatch.model_validate({"limits": {"total": 2}}))
    assert caught.value.code == "limit_below_redeemed"
    raised = c.rewards.update(m.actor, fund.id, RewardPatch.model_validate({"limits": {}}))
    assert raised.limits.total is None


# ---- the other kinds -------------------------------------------------------------------------
def test_a_coupon_reward_issues_personal_coupons(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    make_reward(
        c,
        m,
        code="CROISSANT",
        kind="coupon",
        cost=150,
        coupon={"benefit": {"gift": {"sku": "CROISSANT"}}, "valid_days": 10, "min_basket": 5000},
    )
    member = enrol(c, m, 1000)
    order = c.rewards.redeem(m.actor, member, RedeemInput(reward_code="CROISSANT", quantity=2))
    assert order.status == "issued"
    assert order.issued_at is not None
    assert order.points == 300
    assert len(order.coupons) == 2
    assert {cp.benefit["gift"]["sku"] for cp in order.coupons} == {"CROISSANT"}
    with c.engine.connect() as conn:
        rows = conn.execute(sa.select(coupons).where(coupons.c.member_id == member)).all()
    assert sorted(r.code for r in rows) == sorted(cp.code for cp in order.coupons)
    assert {(r.source_type, r.source_id, r.uses_left, r.min_basket) for r in rows} == {
        ("reward_order", str(order.id), 1, 5000)
    }
    assert all(r.valid_until == order.created_at + timedelta(days=10) for r in rows)
    with pytest.raises(Conflict):
        c.rewards.cancel(m.actor, order.id)  # delivered at once: nothing to cancel


def test_partner_codes_from_a_pool(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    cinema = make_reward(c, m, code="CINEMA", kind="partner_code", cost=10)
    member = enrol(c, m, 1000)
    assert c.rewards.catalogue(m.actor, member, None, 50) == []  # an empty pool: hidden
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, member, RedeemInput(reward_id=cinema.id)),
        BusinessRuleViolation,
        "out_of_stock",
    )
    uploaded = c.rewards.upload_codes(m.actor, cinema.id, ["A-1", "A-2", "A-1", "A-3"])
    assert (uploaded.received, uploaded.added, uploaded.duplicates, uploaded.available) == (
        4,
        3,
        1,
        3,
    )
    again = c.rewards.upload_codes(m.actor, cinema.id, ["A-3", "A-4"])
    assert (again.added, again.available) == (1, 4)
    first = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=cinema.id, quantity=3))
    assert first.partner_codes == ["A-1", "A-2", "A-3"]
    assert first.status == "issued"
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, member, RedeemInput(reward_id=cinema.id, quantity=2)),
        BusinessRuleViolation,
        "out_of_stock",
    )
    second = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=cinema.id))
    assert second.partner_codes == ["A-4"]
    assert c.rewards.get(m.actor, cinema.id).available == 0
    # Codes already handed out stay out of the pool when uploaded again.
    assert c.rewards.upload_codes(m.actor, cinema.id, ["A-1"]).added == 0
    mug = make_reward(c, m, code="MUG2")
    with pytest.raises(BusinessRuleViolation) as caught:
        c.rewards.upload_codes(m.actor, mug.id, ["X"])
    assert caught.value.code == "not_a_partner_reward"
    with pytest.raises(BusinessRuleViolation) as no_stock:
        stock(c, m, cinema, "OUT-1", 3)
    assert no_stock.value.code == "not_a_material_reward"


def test_a_privilege_shows_in_the_members_facts_while_it_lasts(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    make_reward(
        c,
        m,
        code="DELIVERY",
        kind="privilege",
        cost=200,
        privilege={"duration_days": 30, "tag": "free_delivery", "club": "insiders"},
    )
    make_reward(c, m, code="SALE", cost=1, visibility={"clubs": ["insiders"]})
    member = enrol(c, m, 1000)
    order = c.rewards.redeem(m.actor, member, RedeemInput(reward_code="DELIVERY"))
    assert order.privilege is not None
    assert order.privilege.valid_until == clock.now() + timedelta(days=30)
    assert (order.privilege.tag, order.privilege.club) == ("free_delivery", "insiders")

    def facts() -> MemberFacts:
        with c.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, m.tenant_id)
            row = uow.directory.member(m.tenant_id, member)
            assert row is not None
            return c.purchases.member_facts(uow, tenant, row, 0, clock.now())

    assert "free_delivery" in facts().tags
    assert "insiders" in facts().clubs
    # The club opens the closed sale in the catalogue (stock is a material reward's).
    sale = c.rewards.list_rewards(m.actor, None, 50, kind="material")[0]
    stock(c, m, sale, "OUT-1", 1)
    assert {r.code for r in c.rewards.catalogue(m.actor, member, None, 50)} == {
        "DELIVERY",
        "SALE",
    }
    clock.advance(days=30)
    assert "free_delivery" not in facts().tags
    assert {r.code for r in c.rewards.catalogue(m.actor, member, None, 50)} == {"DELIVERY"}


def test_charity_points_are_reportable(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    fund = make_reward(
        c,
        m,
        code="KIDS",
        kind="charity",
        cost=100,
        name={"ru": "Помощь детям", "en": "Help children"},
        charity={"code": "kids-fund"},
    )
    a, b = enrol(c, m, 1000), enrol(c, m, 1000)
    c.rewards.redeem(m.actor, a, RedeemInput(reward_id=fund.id, quantity=3))
    order = c.rewards.redeem(m.actor, b, RedeemInput(reward_id=fund.id))
    assert (order.status, order.charity) == ("issued", "kids-fund")
    totals = c.rewards.get(m.actor, fund.id).totals
    assert (totals.orders, totals.quantity, totals.points) == (2, 4, 400)
    with c.engine.connect() as conn:
        params = conn.execute(
            sa.select(ledger_transactions.c.params).where(
                ledger_transactions.c.id == order.transaction_id
            )
        ).scalar_one()
    assert params["charity"] == "kids-fund"
    assert params["reward"] == "KIDS"
    assert_verified(c)


# ---- low stock -------------------------------------------------------------------------------
def test_low_stock_raises_one_event_per_crossing(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    mug = make_reward(c, m)
    stock(c, m, mug, "OUT-1", 4, threshold=2)
    member = enrol(c, m, 10_000)

    def events() -> list[dict[str, Any]]:
        with c.uow_factory(write=False) as uow:
            return [e["payload"] for e in outbox.recent(uow, m.tenant_id, "reward.low_stock")]

    c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id))
    assert events() == []
    c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id))  # 2 left: at threshold
    assert events() == [
        {
            "reward_id": str(mug.id),
            "reward_code": "MUG",
            "location": "OUT-1",
            "quantity": 2,
            "low_stock_threshold": 2,
        }
    ]
    last = c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id))
    c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id))
    stock(c, m, mug, "OUT-1", 0)  # a recount changes nothing: still low, already told
    assert len(events()) == 1
    c.rewards.cancel(m.actor, last.id)  # back to 1: still at or below the threshold
    assert len(events()) == 1
    stock(c, m, mug, "OUT-1", 10)  # a delivery re-arms the alert
    assert len(events()) == 1
    stock(c, m, mug, "OUT-1", 1)  # a recount finds it low again
    assert [e["quantity"] for e in events()] == [1, 2]
    # Omitting the threshold keeps it; null removes it.
    kept = stock(c, m, mug, "OUT-1", 5)
    assert kept.stock[0].low_stock_threshold == 2
    cleared = stock(c, m, mug, "OUT-1", 0, threshold=None)
    assert cleared.stock[0].low_stock_threshold is None
    assert len(events()) == 2


# ---- idempotency and refusals ----------------------------------------------------------------
def test_a_retried_redemption_replays(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    mug = make_reward(c, m)
    stock(c, m, mug, "OUT-1", 5)
    member = enrol(c, m, 1000)
    request = RedeemInput(reward_id=mug.id)
    first = c.rewards.redeem(m.actor, member, request, idempotency_key="k-1")
    c.rewards.mark_ready(m.actor, first.id, "OUT-1")
    assert c.rewards.redeem(m.actor, member, request, idempotency_key="k-1") == first
    assert available(c, m, member) == 900
    assert c.rewards.get(m.actor, mug.id).available == 4
    with pytest.raises(ValidationFailed) as caught:
        c.rewards.redeem(
            m.actor, member, RedeemInput(reward_id=mug.id, quantity=2), idempotency_key="k-1"
        )
    assert caught.value.code == "idempotency_key_reused"


def test_creating_a_reward_is_idempotent_on_its_code(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    first = make_reward(c, m, sku="MUG-WHITE")
    assert make_reward(c, m, sku="MUG-WHITE") == first
    with pytest.raises(Conflict) as taken:
        make_reward(c, m, sku="MUG-WHITE", cost=1)
    assert taken.value.code == "reward_code_taken"
    with pytest.raises(Conflict) as sku:
        make_reward(c, m, code="MUG-2", sku="MUG-WHITE")
    assert sku.value.code == "reward_sku_taken"
    # Another tenant has codes of its own.
    rival = make_merchant(c, "Rival")
    assert make_reward(c, rival, sku="MUG-WHITE").id != first.id


def test_refusals_write_nothing(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    mug = make_reward(c, m, cost=300)
    stock(c, m, mug, "OUT-1", 5)
    member = enrol(c, m, 100)
    fund = make_reward(c, m, code="FUND", kind="charity", charity={"code": "f"})
    cases: list[tuple[Any, type[KopilkaError], str]] = [
        (RedeemInput(reward_id=mug.id), InsufficientPoints, "insufficient_points"),
        (RedeemInput(reward_id=uuid.uuid4()), NotFound, "reward_not_found"),
        (RedeemInput(reward_code="NOPE"), NotFound, "reward_not_found"),
        (RedeemInput(), ValidationFailed, "validation_failed"),
        (RedeemInput(reward_id=mug.id, reward_code="MUG"), ValidationFailed, "validation_failed"),
        (
            RedeemInput(reward_id=mug.id, location="bad location"),
            ValidationFailed,
            "validation_failed",
        ),
        (RedeemInput(reward_id=fund.id, location="OUT-1"), ValidationFailed, "validation_failed"),
    ]
    for request, error, code in cases:
        refused(c, lambda r=request: c.rewards.redeem(m.actor, member, r), error, code)
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, uuid.uuid4(), RedeemInput(reward_id=mug.id)),
        NotFound,
        "member_not_found",
    )
    c.members.set_blocked(m.actor, member, True, "fraud")
    refused(
        c,
        lambda: c.rewards.redeem(m.actor, member, RedeemInput(reward_id=mug.id)),
        BusinessRuleViolation,
        "member_blocked",
    )
    # Another tenant's reward, order and member are not found.
    rival = make_merchant(c, "Rival")
    rival_member = enrol(c, rival, 1000)
    refused(
        c,
        lambda: c.rewards.redeem(rival.actor, rival_member, RedeemInput(reward_id=mug.id)),
        NotFound,
        "reward_not_found",
    )
    refused(
        c,
        lambda: c.rewards.redeem(rival.actor, rival_member, RedeemInput(reward_code="MUG")),
        NotFound,
        "reward_not_found",
    )
    for call in (
        lambda: c.rewards.set_stock(rival.actor, mug.id, StockInput("OUT-1", 9)),
        lambda: c.rewards.update(rival.actor, mug.id, RewardPatch(cost=1)),
        lambda: c.rewards.get(rival.actor, mug.id),
    ):
        refused(c, call, NotFound, "reward_not_found")


# ---- the CSV import --------------------------------------------------------------------------
def test_stock_import_is_all_or_nothing(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    c, m = container, merchant
    mug = make_reward(c, m, sku="MUG-W")
    make_reward(c, m, code="FUND", kind="charity", charity={"code": "f"})
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "sku;code;location;quantity;low_stock_threshold\n"
        "MUG-W;;WH-1;10;2\n"
        ";MUG;WH-1;5;\n"
        ";NOPE;WH-1;5;\n"
        ";FUND;WH-1;5;\n"
        "MUG-W;;bad place;-1;x\n",
        encoding="utf-8",
    )
    count, problems = c.rewards.import_stock(m.actor, bad)
    assert count == 0
    assert problems == [
        "line 3: MUG at WH-1 repeats line 2",
        "line 4: no reward with code 'NOPE'",
        "line 5: reward FUND has no stock",
        "line 6: location 'bad place' is not a location code",
        "line 6: quantity: a whole number from 0 to 1000000000",
        "line 6: low_stock_threshold: a whole number from 0 to 1000000000",
    ]
    assert c.rewards.get(m.actor, mug.id).stock == []
    good = tmp_path / "good.csv"
    good.write_text(
        "code,location,quantity,low_stock_threshold\nMUG,WH-1,10,2\nMUG,OUT-1,0,\n",
        encoding="utf-8",
    )
    assert c.rewards.import_stock(m.actor, good) == (2, [])
    levels = {
        s.location: (s.quantity, s.low_stock_threshold)
        for s in c.rewards.get(m.actor, mug.id).stock
    }
    assert levels == {"WH-1": (10, 2), "OUT-1": (0, None)}
    assert c.rewards.import_stock(m.actor, good) == (2, [])  # again: the same levels
    header = tmp_path / "header.csv"
    header.write_text("reward,where,count\nMUG,WH-1,1\n", encoding="utf-8")
    assert c.rewards.import_stock(m.actor, header)[1] == [
        "line 1: the header needs location, quantity, and code or sku"
    ]
