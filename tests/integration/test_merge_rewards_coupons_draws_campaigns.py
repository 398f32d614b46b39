"""A member merge keeps the reward orders, coupons, draw entries and campaign use of the
duplicate profile, on both databases: orders, privileges, personal coupons, redemptions and
list places change hands; per-member limits count both profiles' past use (a merge never
resets one); frozen draw lists are never rewritten; another tenant's rows are untouched."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.campaigns import (
    campaign_control,
    campaign_members,
    campaign_redemptions,
)
from kopilka.adapters.db.mechanics.coupons import coupon_redemptions
from kopilka.adapters.db.mechanics.draws import draw_entries
from kopilka.adapters.db.mechanics.rewards import reward_orders
from kopilka.adapters.db.tables import audit_log, coupons
from kopilka.bootstrap import Container
from kopilka.domain.campaigns.definition import CampaignCreate
from kopilka.domain.coupons.terms import PersonalCouponInput, PromoCodeInput
from kopilka.domain.draws.definition import DrawDefinition
from kopilka.domain.draws.fairness import verify
from kopilka.domain.errors import BusinessRuleViolation, KopilkaError
from kopilka.domain.rewards.definition import RewardDefinition
from kopilka.services.context import load_tenant
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.rewards import RedeemInput, StockInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "redemption": {"point_value": 100, "max_percent": 50},
    "coupons": {"restore_on_refund": True},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}


def setup(c: Container, name: str = "Coffee One") -> Merchant:
    """A merchant with a program, and the merge hooks registered (once: the lead registers
    them in bootstrap)."""
    for hook in (c.rewards.member_hook, c.coupons.member_hook, c.campaigns.member_hook):
        if hook not in c.members.hooks:
            c.members.hooks.append(hook)
    m = make_merchant(c, name)
    c.programs.publish(m.actor, "main", PROGRAM)
    return m


def enrol(c: Container, m: Merchant, points: int = 0) -> uuid.UUID:
    member = c.members.enroll(m.actor, {"name": "Anna"}).id
    if points:
        c.ledger.accrue(m.actor, member, points)
    return member


def owned(c: Container, table: sa.Table, member: uuid.UUID) -> int:
    """Rows of ``table`` whose member is ``member``."""
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.member_id == member)
            ).scalar_one()
        )


def audits(c: Container, action: str, survivor: uuid.UUID) -> list[dict[str, Any]]:
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.details).where(
                audit_log.c.action == action, audit_log.c.subject_id == str(survivor)
            )
        )
        return [dict(r.details) for r in rows]


def receipt(member: uuid.UUID | None, coupon: str | None = None, **kw: Any) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput("TEA", Decimal(1), 100_000, category="drinks/tea"),),
        member=MemberRef(id=member) if member else None,
        coupons=(coupon,) if coupon else (),
        outlet="OUT-1",
        **kw,
    )


# ---- rewards -----------------------------------------------------------------------------
def reward(c: Container, m: Merchant, **fields: Any) -> Any:
    body = {"code": "MUG", "kind": "material", "name": {"ru": "Кружка", "en": "Mug"}}
    return c.rewards.create(m.actor, RewardDefinition.model_validate({**body, **fields}))


def test_reward_orders_and_privileges_move_and_limits_are_not_reset(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m, other = setup(c), setup(c, "Other shop")
    once = reward(
        c, m, code="ONCE", kind="charity", charity={"code": "k"}, cost=100, limits={"per_member": 1}
    )
    reward(
        c,
        m,
        code="VIP",
        kind="privilege",
        cost=100,
        privilege={"duration_days": 30, "tag": "vip"},
    )
    survivor, duplicate = enrol(c, m, 1000), enrol(c, m, 1000)
    order = c.rewards.redeem(m.actor, duplicate, RedeemInput(reward_code="ONCE"))
    c.rewards.redeem(m.actor, duplicate, RedeemInput(reward_code="VIP"))
    reward(
        c,
        other,
        code="ONCE",
        kind="charity",
        charity={"code": "k"},
        cost=100,
        limits={"per_member": 1},
    )
    stranger = enrol(c, other, 1000)
    c.rewards.redeem(other.actor, stranger, RedeemInput(reward_code="ONCE"))

    c.members.merge(m.actor, survivor, duplicate)

    assert owned(c, reward_orders, duplicate) == 0
    assert owned(c, reward_orders, survivor) == 2
    assert owned(c, reward_orders, stranger) == 1
    mine = c.rewards.orders(m.actor, None, 10, member_id=survivor)
    assert {o.id for o in mine} >= {order.id}
    # The duplicate's use counts: the once-per-member reward is not available again.
    with pytest.raises(KopilkaError) as limited:
        c.rewards.redeem(m.actor, survivor, RedeemInput(reward_id=once.id))
    assert limited.value.code == "member_limit_reached"
    item = next(r for r in c.rewards.catalogue(m.actor, survivor, None, 50) if r.code == "ONCE")
    assert item.per_member_left == 0
    # The privilege runs for the survivor.
    with c.uow_factory(write=False) as uow:
        tenant = load_tenant(uow, m.tenant_id)
        row = uow.directory.member(m.tenant_id, survivor)
        assert row is not None
        assert "vip" in c.purchases.member_facts(uow, tenant, row, 0, clock.now()).tags
    assert audits(c, "reward.orders_merged", survivor) == [
        {"duplicate": str(duplicate), "orders": 2}
    ]
    assert verify_ledger(c.uow_factory).ok


def test_a_moved_order_is_cancelled_to_the_survivor(container: Container) -> None:
    c = container
    m = setup(c)
    mug = reward(c, m, cost=300)
    c.rewards.set_stock(m.actor, mug.id, _stock("OUT-1", 5))
    survivor, duplicate = enrol(c, m), enrol(c, m, 1000)
    order = c.rewards.redeem(m.actor, duplicate, RedeemInput(reward_id=mug.id))
    c.members.merge(m.actor, survivor, duplicate)
    before = c.ledger.balance(m.actor, survivor).available
    cancelled = c.rewards.cancel(m.actor, order.id)
    assert cancelled.status == "cancelled"
    assert c.ledger.balance(m.actor, survivor).available == before + 300
    assert verify_ledger(c.uow_factory).ok


def _stock(location: str, qty: int) -> StockInput:
    return StockInput(location, qty, None, False)


# ---- coupons -----------------------------------------------------------------------------
def test_personal_coupons_and_per_member_uses_move(container: Container) -> None:
    c = container
    m, other = setup(c), setup(c, "Other shop")
    promo = {"code": "ONEEACH", "per_member": 1, "benefit": {"discount_percent": 10}}
    c.coupons.create_promo(m.actor, PromoCodeInput.model_validate(promo))
    c.coupons.create_promo(other.actor, PromoCodeInput.model_validate(promo))
    survivor, duplicate = enrol(c, m), enrol(c, m)
    stranger = enrol(c, other)
    terms = PersonalCouponInput.model_validate({"benefit": {"discount_amount": 5_000}})
    personal = c.coupons.issue(m.actor, duplicate, terms)
    c.coupons.issue(other.actor, stranger, terms)
    used = c.purchases.confirm(m.actor, receipt(duplicate, "ONEEACH"), "D-1")
    assert used["coupons"][0]["status"] == "applied"
    c.purchases.confirm(other.actor, receipt(stranger, "ONEEACH"), "X-1")

    c.members.merge(m.actor, survivor, duplicate)

    assert owned(c, coupons, duplicate) == 0
    assert owned(c, coupon_redemptions, duplicate) == 0
    assert (owned(c, coupons, stranger), owned(c, coupon_redemptions, stranger)) == (1, 1)
    listed = c.coupons.member_coupons(m.actor, survivor, None, 10)
    assert [x.code for x in listed] == [personal.code]
    # The duplicate used the once-per-member code: the survivor may not use it again.
    again = c.purchases.calculate(m.actor, receipt(survivor, "ONEEACH"))
    assert again["coupons"][0]["status"] != "applied"
    # The personal coupon is the survivor's own now.
    mine = c.purchases.confirm(m.actor, receipt(survivor, personal.code), "S-1")
    assert mine["coupons"][0]["status"] == "applied"
    assert audits(c, "coupon.member_merged", survivor) == [
        {"duplicate": str(duplicate), "coupons": 1, "redemptions": 1}
    ]
    assert verify_ledger(c.uow_factory).ok


def test_a_refund_of_the_duplicates_receipt_restores_the_moved_use(container: Container) -> None:
    c = container
    m = setup(c)
    promo = {"code": "ONEEACH", "per_member": 1, "benefit": {"discount_percent": 10}}
    c.coupons.create_promo(m.actor, PromoCodeInput.model_validate(promo))
    survivor, duplicate = enrol(c, m), enrol(c, m)
    answer = c.purchases.confirm(m.actor, receipt(duplicate, "ONEEACH"), "D-1")
    c.members.merge(m.actor, survivor, duplicate)
    c.purchases.refund(m.actor, uuid.UUID(answer["receipt"]["id"]), "RF-1", None)
    with c.engine.connect() as conn:
        statuses = list(conn.execute(sa.select(coupon_redemptions.c.status)).scalars())
    assert statuses == ["restored"]
    again = c.purchases.calculate(m.actor, receipt(survivor, "ONEEACH"))
    assert again["coupons"][0]["status"] == "applied"


# ---- campaigns ---------------------------------------------------------------------------
def campaign(code: str, **fields: Any) -> CampaignCreate:
    body: dict[str, Any] = {
        "code": code,
        "name": {"ru": "Весна", "en": "Spring"},
        "schedule": {"start": "2026-01-01", "end": "2026-02-01"},
        "rules": [{"id": "bonus", "effects": [{"points_fixed": 100}]}],
        "stacking": {"combinable_with": ["*"]},
        **fields,
    }
    return CampaignCreate.model_validate(body)


def applied(answer: dict[str, Any], code: str) -> bool:
    return bool(next(e for e in answer["campaigns"] if e["code"] == code)["applied"])


def test_campaign_use_and_lists_move_and_limits_are_not_reset(container: Container) -> None:
    c = container
    m, other = setup(c), setup(c, "Other shop")
    limit = {"per_member": [{"period": "campaign", "redemptions": 1}]}
    for shop in (m, other):
        c.campaigns.create(shop.actor, campaign("once", limits=limit))
        c.campaigns.transition(shop.actor, "once", "schedule")
    survivor, duplicate, listed_both = enrol(c, m), enrol(c, m), enrol(c, m)
    stranger = enrol(c, other)
    for code, members in (("list", [duplicate]), ("both", [duplicate, survivor, listed_both])):
        c.campaigns.create(m.actor, campaign(code, audience={"kind": "members"}))
        c.campaigns.set_members(m.actor, code, members)
        c.campaigns.transition(m.actor, code, "schedule")
    c.campaigns.create(m.actor, campaign("ctl", control_group={"percent": 50}))
    c.campaigns.transition(m.actor, "ctl", "schedule")
    assert applied(c.purchases.confirm(m.actor, receipt(duplicate), "D-1"), "once")
    used = owned(c, campaign_redemptions, duplicate)  # 3, or 4 when drawn exposed in "ctl"
    assert applied(c.purchases.confirm(other.actor, receipt(stranger), "X-1"), "once")

    c.members.merge(m.actor, survivor, duplicate)

    assert owned(c, campaign_redemptions, duplicate) == 0
    assert owned(c, campaign_members, duplicate) == 0
    assert owned(c, campaign_redemptions, stranger) == 1
    answer = c.purchases.calculate(m.actor, receipt(survivor))
    assert not applied(answer, "once")  # the duplicate's use counts for the survivor
    assert applied(answer, "list")  # the duplicate's list place is the survivor's
    assert applied(answer, "both")
    assert c.campaigns.get(m.actor, "list")["members"] == 1
    assert c.campaigns.get(m.actor, "both")["members"] == 2
    # The control-group draw of the duplicate stays where it was drawn.
    assert owned(c, campaign_control, duplicate) == 1
    assert applied(c.purchases.calculate(other.actor, receipt(stranger)), "once") is False
    assert audits(c, "campaign.member_merged", survivor) == [
        {"duplicate": str(duplicate), "redemptions": used, "lists": 1}
    ]


def test_a_held_receipts_reservation_is_settled_after_a_merge(container: Container) -> None:
    c = container
    m = setup(c)
    c.campaigns.create(m.actor, campaign("spring", budgets={"points": 1000}))
    c.campaigns.transition(m.actor, "spring", "schedule")
    survivor, duplicate = enrol(c, m), enrol(c, m)
    held = c.purchases.confirm(m.actor, receipt(duplicate), "H-1", hold=True)
    assert applied(held, "spring")
    c.members.merge(m.actor, survivor, duplicate)
    c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    c.jobs.run()
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.select(campaign_redemptions.c.status, campaign_redemptions.c.member_id)
        )
        assert [tuple(r) for r in rows] == [("confirmed", survivor)]


# ---- draws -------------------------------------------------------------------------------
DRAW: dict[str, Any] = {
    "code": "spring",
    "name": {"ru": "Весенний розыгрыш", "en": "Spring draw"},
    "starts_on": "2026-02-01",
    "ends_on": "2026-02-28",
    "draw_on": "2026-03-02",
    "entry_rules": {"min_receipt": 100000, "per_receipt": 1},
    "prizes": [{"rank": 1, "count": 2, "kind": "points", "points": 300}],
}


def test_a_frozen_draw_is_never_rewritten_and_the_survivor_sees_it(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    code = c.draws.create(m.actor, DrawDefinition.model_validate(DRAW)).code
    c.draws.open(m.actor, code)
    clock.set(datetime(2026, 2, 10, 12, tzinfo=UTC))
    c.purchases.confirm(m.actor, receipt(survivor), "S-1")
    c.purchases.confirm(m.actor, receipt(duplicate), "D-1")
    clock.set(datetime(2026, 3, 1, 21, tzinfo=UTC))
    frozen = c.draws.freeze(m.actor, code)
    with c.engine.connect() as conn:
        before = [
            tuple(r)
            for r in conn.execute(sa.select(draw_entries).order_by(draw_entries.c.entry_no))
        ]

    c.members.merge(m.actor, survivor, duplicate)

    with c.engine.connect() as conn:
        assert [
            tuple(r)
            for r in conn.execute(sa.select(draw_entries).order_by(draw_entries.c.entry_no))
        ] == before
    assert c.draws.get(m.actor, code).entries_hash == frozen.entries_hash
    [mine] = c.draws.member_draws(m.actor, survivor, None, 10)
    assert (mine.provisional, mine.total, [e.entry for e in mine.entries]) == (
        False,
        2,
        [1, 2],
    )
    c.draws.run(m.actor, code)
    assert verify(c.draws.publication(m.actor, code)).ok
    [mine] = c.draws.member_draws(m.actor, survivor, None, 10)
    assert len(mine.won) == 2  # both entries won (2 prizes, 2 entries): paid to the survivor
    assert c.ledger.balance(m.actor, survivor).available >= 600


def test_a_merge_before_the_freeze_enters_once_for_the_survivor(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    code = c.draws.create(m.actor, DrawDefinition.model_validate(DRAW)).code
    c.draws.open(m.actor, code)
    clock.set(datetime(2026, 2, 10, 12, tzinfo=UTC))
    c.purchases.confirm(m.actor, receipt(duplicate), "D-1")
    c.members.merge(m.actor, survivor, duplicate)
    clock.set(datetime(2026, 3, 1, 21, tzinfo=UTC))
    c.draws.freeze(m.actor, code)
    assert owned(c, draw_entries, survivor) == 1
    assert owned(c, draw_entries, duplicate) == 0


def test_merge_refusals_write_nothing(container: Container) -> None:
    c = container
    m = setup(c)
    member = enrol(c, m)
    with pytest.raises(BusinessRuleViolation):
        c.members.merge(m.actor, member, member)
    assert audits(c, "reward.orders_merged", member) == []
