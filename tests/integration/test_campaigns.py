"""Campaigns at the till and over time, on SQLite and PostgreSQL: the life cycle, the
schedule in the tenant's time zone, audiences, outlets and channels, stacking, budgets
(overall and per outlet) that stop a campaign exactly, per-member and per-receipt limits,
held receipts, cancellations, the control group, the preview, and the jobs run."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.campaigns import (
    campaign_budget_slots,
    campaign_control,
    campaign_redemptions,
)
from kopilka.bootstrap import Container
from kopilka.domain.campaigns.definition import CampaignCreate, CampaignPatch
from kopilka.domain.errors import BusinessRuleViolation, Conflict, NotFound, ValidationFailed
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "name": {"ru": "Бонусы", "en": "Bonus"},
    "redemption": {"point_value": 100, "max_percent": 50},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}
NAME = {"ru": "Весна", "en": "Spring"}
JANUARY = {"start": "2026-01-01", "end": "2026-02-01"}
PRICE = 100_000  # 1000 ₽: the base rule earns 50 points


def campaign(code: str = "spring", **fields: Any) -> CampaignCreate:
    body: dict[str, Any] = {
        "code": code,
        "name": NAME,
        "schedule": JANUARY,
        "rules": [{"id": "bonus", "effects": [{"points_fixed": 100}]}],
        **fields,
    }
    return CampaignCreate.model_validate(body)


def start(c: Container, m: Merchant, body: CampaignCreate) -> dict[str, Any]:
    c.campaigns.create(m.actor, body)
    return c.campaigns.transition(m.actor, body.code, "schedule")


def receipt(member_id: uuid.UUID | None, price: int = PRICE, **fields: Any) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput("TEA", Decimal(1), price, category="drinks/tea"),),
        member=MemberRef(id=member_id) if member_id else None,
        outlet=fields.pop("outlet", "OUT-1"),
        **fields,
    )


def enrol(c: Container, m: Merchant, **fields: Any) -> uuid.UUID:
    return c.members.enroll(m.actor, {"name": "Anna", **fields}).id


def entry(answer: dict[str, Any], code: str = "spring") -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in answer["campaigns"] if e["code"] == code)
    return found


def buy(c: Container, m: Merchant, member_id: uuid.UUID | None, number: str, **kw: Any) -> Any:
    return c.purchases.confirm(m.actor, receipt(member_id, **kw), number)


def used(c: Container, kind: str = "points") -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(campaign_budget_slots.c.used), 0)).where(
                    campaign_budget_slots.c.kind == kind,
                    campaign_budget_slots.c.scope == "all",
                )
            ).scalar_one()
        )


@pytest.fixture
def ready(container: Container, merchant: Merchant) -> Container:
    container.programs.publish(merchant.actor, "bonus", PROGRAM)
    return container


# ---- the life cycle ----------------------------------------------------------------------
def test_life_cycle_and_wrong_moves(ready: Container, merchant: Merchant, clock: FakeClock) -> None:
    c, a = ready, merchant.actor
    future = {"start": "2026-02-01", "end": "2026-03-01"}
    draft = c.campaigns.create(a, campaign(schedule=future))
    assert draft["status"] == "draft"
    assert draft["revision"] == 1
    # The same definition again is the same campaign; another one is a conflict.
    assert c.campaigns.create(a, campaign(schedule=future))["id"] == draft["id"]
    with pytest.raises(Conflict) as exc:
        c.campaigns.create(a, campaign(schedule=JANUARY))
    assert exc.value.code == "campaign_exists"
    for action in ("pause", "resume"):
        with pytest.raises(Conflict) as exc:
            c.campaigns.transition(a, "spring", action)
        assert exc.value.code == "campaign_transition_invalid"
    scheduled = c.campaigns.transition(a, "spring", "schedule")
    assert scheduled["status"] == "scheduled"
    assert scheduled["starts_at"] == "2026-01-31T21:00:00+00:00"  # midnight in Moscow
    assert c.campaigns.transition(a, "spring", "schedule")["status"] == "scheduled"
    with pytest.raises(Conflict):  # not active yet
        c.campaigns.transition(a, "spring", "pause")
    clock.set(datetime(2026, 1, 31, 21, 0, tzinfo=UTC))
    assert c.campaigns.get(a, "spring")["status"] == "active"
    with pytest.raises(Conflict) as exc:
        c.campaigns.update(a, "spring", CampaignPatch(name={"ru": "Лето", "en": "Summer"}))
    assert exc.value.code == "campaign_not_editable"
    assert c.campaigns.transition(a, "spring", "pause")["status"] == "paused"
    assert c.campaigns.transition(a, "spring", "pause")["status"] == "paused"
    patched = c.campaigns.update(a, "spring", CampaignPatch(name={"ru": "Лето", "en": "Summer"}))
    assert patched["revision"] == 2
    assert patched["name"]["en"] == "Summer"
    assert c.campaigns.transition(a, "spring", "resume")["status"] == "active"
    assert c.campaigns.transition(a, "spring", "end")["status"] == "ended"
    for action in ("schedule", "pause", "resume"):
        with pytest.raises(Conflict):
            c.campaigns.transition(a, "spring", action)
    assert c.campaigns.transition(a, "spring", "end")["status"] == "ended"
    with pytest.raises(NotFound):
        c.campaigns.get(a, "nope")


def test_schedule_needs_a_future_window_and_rules(ready: Container, merchant: Merchant) -> None:
    c, a = ready, merchant.actor
    c.campaigns.create(a, campaign("past", schedule={"start": "2025-01-01", "end": "2025-02-01"}))
    with pytest.raises(BusinessRuleViolation) as exc:
        c.campaigns.transition(a, "past", "schedule")
    assert exc.value.code == "campaign_schedule_passed"
    c.campaigns.create(a, CampaignCreate.model_validate({"code": "bare", "name": NAME}))
    with pytest.raises(BusinessRuleViolation) as exc:
        c.campaigns.transition(a, "bare", "schedule")
    assert exc.value.code == "campaign_schedule_required"


def test_bad_definitions_are_refused_with_paths(ready: Container, merchant: Merchant) -> None:
    c, a = ready, merchant.actor
    bad = [
        (
            campaign(rules=[{"id": "x", "effects": [{"points_fixed": -1}]}]),
            ["rules", 0, "effects", 0, "points_fixed"],
        ),
        (campaign(schedule={"start": "2026-02-01", "end": "2026-01-01"}), ["schedule", "end"]),
        (campaign(audience={"kind": "tiers"}), ["audience", "values"]),
        (campaign(outlets=["NOWHERE"]), ["outlets", 0]),
        (campaign(budgets={"per_outlet": {"NOWHERE": {"points": 5}}}), None),
        (campaign(program="missing"), ["program"]),
    ]
    for body, path in bad:
        with pytest.raises(ValidationFailed) as exc:
            c.campaigns.create(a, body)
        if path is not None:
            assert [list(e.path) for e in exc.value.errors] == [path], exc.value.errors
    assert c.campaigns.list_campaigns(a, None, 10) == []


# ---- at the till -------------------------------------------------------------------------
def test_an_active_campaign_adds_its_rules(
    ready: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    c.campaigns.create(m.actor, campaign())
    assert "campaigns" not in buy(c, m, member, "R-0")  # a draft does nothing
    c.campaigns.transition(m.actor, "spring", "schedule")
    answer = buy(c, m, member, "R-1")
    assert answer["totals"]["points_earned"] == 150
    assert entry(answer)["applied"]
    assert entry(answer)["points"] == 100
    assert {a["rule_id"] for a in answer["applied"]} == {"base", "campaign:spring:bonus"}
    assert c.ledger.balance(m.actor, member).available == 50 + 150
    # The rule is named after the campaign, in both languages.
    bonus = next(a for a in answer["applied"] if a["rule_id"] == "campaign:spring:bonus")
    assert "Весна" in bonus["explanation"]["ru"]
    assert "Spring" in bonus["explanation"]["en"]
    clock.set(datetime(2026, 1, 31, 21, 0, tzinfo=UTC))  # February in Moscow: over
    later = buy(c, m, member, "R-2")
    assert later["totals"]["points_earned"] == 50
    assert "campaigns" not in later
    assert c.campaigns.get(m.actor, "spring")["status"] == "ended"


def test_pause_takes_effect_at_once(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(c, m, campaign())
    assert buy(c, m, member, "R-1")["totals"]["points_earned"] == 150
    c.campaigns.transition(m.actor, "spring", "pause")
    assert buy(c, m, member, "R-2")["totals"]["points_earned"] == 50
    c.campaigns.transition(m.actor, "spring", "resume")
    assert buy(c, m, member, "R-3")["totals"]["points_earned"] == 150


def test_outlets_channels_and_anonymous_buyers(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    c.tenants.create_outlet(m.actor, "OUT-2", name="Two")
    member = enrol(c, m)
    start(
        c,
        m,
        campaign(
            outlets=["OUT-1"],
            channels=["store"],
            rules=[{"id": "off", "effects": [{"discount_percent": 10}]}],
        ),
    )
    here = c.purchases.calculate(m.actor, receipt(member))
    assert here["totals"]["discount"] == PRICE // 10
    assert (
        c.purchases.calculate(m.actor, receipt(member, outlet="OUT-2"))["totals"]["discount"] == 0
    )
    online = c.purchases.calculate(m.actor, receipt(member, channel="online"))
    assert online["totals"]["discount"] == 0
    # An anonymous buyer gets a campaign for everyone (discounts: there is nobody to credit).
    anonymous = buy(c, m, None, "R-A")
    assert anonymous["totals"]["discount"] == PRICE // 10
    assert entry(anonymous)["applied"]


def test_audiences(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    gold = enrol(c, m, attributes={"tier": "gold"})
    students = enrol(c, m, name="Student", attributes={"segments": ["students"]})
    listed = enrol(c, m, name="Listed")
    nobody = enrol(c, m, name="Nobody")
    start(c, m, campaign("tiers", audience={"kind": "tiers", "values": ["gold"]}, stacking=ALL))
    start(
        c,
        m,
        campaign("segments", audience={"kind": "segments", "values": ["students"]}, stacking=ALL),
    )
    c.campaigns.create(m.actor, campaign("list", audience={"kind": "members"}, stacking=ALL))
    c.campaigns.set_members(m.actor, "list", [listed])
    c.campaigns.transition(m.actor, "list", "schedule")
    with pytest.raises(ValidationFailed) as exc:
        c.campaigns.set_members(m.actor, "list", [listed, uuid.UUID(int=9)])
    assert [list(e.path) for e in exc.value.errors] == [["member_ids", 1]]
    with pytest.raises(Conflict):
        c.campaigns.set_members(m.actor, "tiers", [listed])

    def codes(member: uuid.UUID) -> set[str]:
        answer = c.purchases.calculate(m.actor, receipt(member))
        return {e["code"] for e in answer.get("campaigns", []) if e["applied"]}

    assert codes(gold) == {"tiers"}
    assert codes(students) == {"segments"}
    assert codes(listed) == {"list"}
    assert codes(nobody) == set()
    assert "campaigns" not in c.purchases.calculate(m.actor, receipt(None))
    assert c.campaigns.get(m.actor, "list")["members"] == 1


ALL = {"combinable_with": ["*"]}


def test_stacking_exclusive_and_combinable(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(c, m, campaign("a", stacking={"combinable_with": ["b"], "priority": 10}))
    start(c, m, campaign("b", stacking={"combinable_with": ["a"], "priority": 20}))
    start(c, m, campaign("c", stacking={"priority": 30}))  # names nobody: alone
    answer = c.purchases.calculate(m.actor, receipt(member))
    applied = {e["code"]: e["reason"] for e in answer["campaigns"]}
    assert applied == {"a": None, "b": None, "c": "not_combinable"}
    assert answer["totals"]["points_earned"] == 250
    start(c, m, campaign("x", stacking={"exclusive": True, "priority": 1}))
    answer = c.purchases.calculate(m.actor, receipt(member))
    applied = {e["code"]: e["reason"] for e in answer["campaigns"]}
    assert applied == {
        "x": None,
        "a": "not_combinable",
        "b": "not_combinable",
        "c": "not_combinable",
    }
    assert answer["totals"]["points_earned"] == 150


# ---- budgets -----------------------------------------------------------------------------
def test_a_points_budget_stops_the_campaign_exactly(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(c, m, campaign(budgets={"points": 250}))
    earned = [buy(c, m, member, f"R-{i}")["totals"]["points_earned"] for i in range(4)]
    assert earned == [150, 150, 50, 50]
    assert used(c) == 200  # 50 left: no receipt of 100 fits, and none went over
    budget = c.campaigns.budget(m.actor, "spring")
    assert budget["budgets"] == [
        {
            "kind": "points",
            "outlet": None,
            "cap": 250,
            "used": 200,
            "left": 50,
            "exhausted": False,
            "slots": 16,
        }
    ]
    assert budget["given"] == {"redemptions": 2, "points": 200, "discount": 0}
    third = c.purchases.calculate(m.actor, receipt(member))
    assert entry(third)["reason"] == "budget_exhausted"
    # Raised while paused, it applies again; it cannot go below what was used.
    c.campaigns.transition(m.actor, "spring", "pause")
    with pytest.raises(Conflict) as exc:
        c.campaigns.update(
            m.actor, "spring", CampaignPatch.model_validate({"budgets": {"points": 150}})
        )
    assert exc.value.code == "budget_below_used"
    c.campaigns.update(
        m.actor, "spring", CampaignPatch.model_validate({"budgets": {"points": 300}})
    )
    c.campaigns.transition(m.actor, "spring", "resume")
    assert buy(c, m, member, "R-9")["totals"]["points_earned"] == 150
    assert used(c) == 300
    assert c.campaigns.budget(m.actor, "spring")["budgets"][0]["exhausted"]
    assert verify_ledger(c.uow_factory).ok


def test_redemption_and_outlet_budgets(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    c.tenants.create_outlet(m.actor, "OUT-2", name="Two")
    member = enrol(c, m)
    start(
        c,
        m,
        campaign(
            budgets={"redemptions": 3, "per_outlet": {"OUT-2": {"redemptions": 1}}},
            rules=[
                {"id": "off", "effects": [{"discount_amount": {"value": 5000, "per": "receipt"}}]}
            ],
        ),
    )
    discounts = [
        buy(c, m, member, f"R-{i}", outlet=outlet)["totals"]["discount"]
        for i, outlet in enumerate(["OUT-2", "OUT-2", "OUT-1", "OUT-1", "OUT-1"])
    ]
    assert discounts == [5000, 0, 5000, 5000, 0]
    budget = {
        (b["kind"], b["outlet"]): (b["used"], b["left"])
        for b in c.campaigns.budget(m.actor, "spring")["budgets"]
    }
    assert budget == {("redemptions", None): (3, 0), ("redemptions", "OUT-2"): (1, 0)}


def test_a_discount_budget_and_cancel_gives_it_back(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(
        c,
        m,
        campaign(
            budgets={"discount": 15000},
            rules=[{"id": "off", "effects": [{"discount_percent": 10}]}],
        ),
    )
    first = buy(c, m, member, "R-1")
    assert first["totals"]["discount"] == 10000
    assert buy(c, m, member, "R-2")["totals"]["discount"] == 0  # 5000 left, 10000 wanted
    small = buy(c, m, member, "R-3", price=50000)
    assert small["totals"]["discount"] == 5000  # exactly what was left
    assert used(c, "discount") == 15000
    # A refund does not give the budget back; a cancellation does.
    c.purchases.refund(m.actor, uuid.UUID(small["receipt"]["id"]), "RF-1", None)
    assert used(c, "discount") == 15000
    c.purchases.cancel(m.actor, uuid.UUID(first["receipt"]["id"]))
    assert used(c, "discount") == 5000
    assert buy(c, m, member, "R-4")["totals"]["discount"] == 10000


def test_held_receipts_reserve_and_voids_give_back(
    ready: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(c, m, campaign(budgets={"points": 200}))
    held = c.purchases.confirm(m.actor, receipt(member), "H-1", hold=True)
    kept = c.purchases.confirm(m.actor, receipt(member), "H-2", hold=True)
    assert entry(held)["applied"]
    assert used(c) == 200
    assert not entry(c.purchases.calculate(m.actor, receipt(member)))["applied"]
    c.purchases.confirm_held(m.actor, uuid.UUID(kept["receipt"]["id"]))
    c.purchases.void(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert c.jobs.run().steps["campaign_reservations_released"] == 1
    assert c.jobs.run().steps["campaign_reservations_released"] == 0
    assert used(c) == 100
    with c.engine.connect() as conn:
        statuses = sorted(conn.execute(sa.select(campaign_redemptions.c.status)).scalars())
    assert statuses == ["confirmed", "released"]
    clock.advance(days=1)
    assert c.jobs.run().steps["campaign_reservations_released"] == 0


# ---- limits ------------------------------------------------------------------------------
def test_per_member_limits_by_tenant_day(
    ready: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = ready, merchant
    member, other = enrol(c, m), enrol(c, m, name="Other")
    start(c, m, campaign(limits={"per_member": [{"period": "day", "redemptions": 1}]}))
    assert buy(c, m, member, "R-1")["totals"]["points_earned"] == 150
    second = buy(c, m, member, "R-2")
    assert second["totals"]["points_earned"] == 50
    assert entry(second)["reason"] == "member_limit"
    assert buy(c, m, other, "R-3")["totals"]["points_earned"] == 150
    clock.set(datetime(2026, 1, 15, 20, 59, tzinfo=UTC))  # 23:59 in Moscow: the same day
    assert buy(c, m, member, "R-4")["totals"]["points_earned"] == 50
    clock.set(datetime(2026, 1, 15, 21, 0, tzinfo=UTC))  # midnight in Moscow: a new day
    assert buy(c, m, member, "R-5")["totals"]["points_earned"] == 150


def test_per_member_points_over_the_campaign(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(c, m, campaign(limits={"per_member": [{"period": "campaign", "points": 250}]}))
    earned = [buy(c, m, member, f"R-{i}")["totals"]["points_earned"] for i in range(3)]
    assert earned == [150, 150, 50]


def test_per_receipt_limits(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    member = enrol(c, m)
    start(
        c,
        m,
        campaign(
            limits={"per_receipt": {"points": 30}},
            rules=[{"id": "x2", "effects": [{"points_percent": 10}]}],
        ),
    )
    answer = buy(c, m, member, "R-1")
    assert answer["totals"]["points_earned"] == 50 + 30
    assert sum(li["points_earned"] for li in answer["lines"]) == 80
    assert entry(answer)["points"] == 30
    note = next(a for a in answer["applied"] if a["rule_id"] == "campaign:spring:x2")
    assert note["points"] == 30
    assert "не больше" in note["explanation"]["ru"]
    assert c.ledger.balance(m.actor, member).available == 80
    start(
        c,
        m,
        campaign(
            "big",
            limits={"per_receipt": {"discount": 5000}},
            rules=[{"id": "off", "effects": [{"discount_percent": 10}]}],
            stacking=ALL,
        ),
    )
    assert entry(c.purchases.calculate(m.actor, receipt(member, price=40000)), "big")["applied"]
    over = c.purchases.calculate(m.actor, receipt(member))
    assert entry(over, "big")["reason"] == "receipt_limit"
    assert over["totals"]["discount"] == 0


# ---- the control group, the preview ------------------------------------------------------
def test_control_group_is_drawn_once_and_measured(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    start(c, m, campaign(control_group={"percent": 50}))
    people = [enrol(c, m, name=f"M{i}") for i in range(30)]
    arms: dict[uuid.UUID, bool] = {}
    for i, person in enumerate(people):
        arms[person] = entry(buy(c, m, person, f"R-{i}"))["applied"]
        again = c.purchases.calculate(m.actor, receipt(person))
        assert entry(again)["applied"] == arms[person]  # the same draw every time
    held = [p for p, got in arms.items() if not got]
    assert 0 < len(held) < 30
    with c.engine.connect() as conn:
        recorded = dict(
            conn.execute(sa.select(campaign_control.c.member_id, campaign_control.c.arm)).all()
        )
    assert recorded == {p: "exposed" if got else "control" for p, got in arms.items()}
    report = c.campaigns.control_group(m.actor, "spring")
    assert report["control"]["members"] == len(held)
    assert report["control"]["purchases"] == len(held)
    assert report["exposed"]["spend"] == (30 - len(held)) * PRICE


def test_preview_counts_the_audience_and_the_cost(ready: Container, merchant: Merchant) -> None:
    c, m = ready, merchant
    gold = [enrol(c, m, name=f"G{i}", attributes={"tier": "gold"}) for i in range(3)]
    enrol(c, m, name="Silver", attributes={"tier": "silver"})
    for i, person in enumerate(gold):
        buy(c, m, person, f"R-{i}")
    buy(c, m, None, "R-anon")
    c.campaigns.create(
        m.actor,
        campaign(
            audience={"kind": "tiers", "values": ["gold"]},
            budgets={"points": 250},
            control_group={"percent": 10},
        ),
    )
    preview = c.campaigns.preview(m.actor, "spring", 30)
    assert preview["audience"]["members"] == 3
    assert preview["cost"]["redemptions"] == 3
    assert preview["cost"]["points"] == 300
    assert preview["cost"]["receipts_in_period"] == 4
    assert preview["cost"]["budgets"]["points"] == {"cap": 250, "would_run_out": True}
    segments = campaign("seg", audience={"kind": "segments", "values": ["vip"]})
    c.campaigns.create(m.actor, segments)
    assert c.campaigns.preview(m.actor, "seg", 7)["audience"]["members"] == 0
