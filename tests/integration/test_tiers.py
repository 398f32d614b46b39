"""Tiers on both databases, driven by the clock: a member's year (enrolment, the purchase that
crosses a threshold, a refund pulling the member back below it, the end of the period with a
grace, the downgrade), keeping and losing levels by policy, locks, the nightly job run twice,
late or daily with the same outcome, and the set-based SQL held to the pure rules."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.tiers import member_tiers, tier_history, tier_qualification
from kopilka.adapters.db.tables import audit_log
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation, ValidationFailed
from kopilka.domain.tiers import levels
from kopilka.domain.tiers.settings import TierSettings
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

MSK = ZoneInfo("Europe/Moscow")
LEVELS: list[dict[str, Any]] = [
    {"code": "silver", "name": {"ru": "Серебро", "en": "Silver"}, "threshold": 0},
    {"code": "gold", "name": {"ru": "Золото", "en": "Gold"}, "threshold": 4_000_000},
    {"code": "platinum", "name": "Platinum", "threshold": 10_000_000},
]


def document(**tiers: Any) -> dict[str, Any]:
    """5% back, doubled from Gold up; 40 000 ₽ a calendar year for Gold, 30 days' grace."""
    section = {
        "levels": LEVELS,
        "upgrade_applies_to_crossing_receipt": True,
        "downgrade": {"policy": "one_level", "grace_days": 30},
        **tiers,
    }
    return {
        "type": "bonus",
        "name": {"ru": "Бонусы", "en": "Bonus"},
        "rules": [
            {"id": "base", "effects": [{"points_percent": 5}]},
            {
                "id": "gold-x2",
                "when": {"tier_in": ["gold", "platinum"]},
                "effects": [{"points_multiplier": 2}],
            },
        ],
        "tiers": section,
    }


def publish(c: Container, m: Merchant, **tiers: Any) -> None:
    c.programs.publish(m.actor, "main", document(**tiers))


def msk(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MSK)


def receipt(member: uuid.UUID, roubles: int, at: datetime | None = None) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput("LATTE", Decimal(1), roubles * 100),),
        member=MemberRef(id=member),
        outlet="OUT-1",
        occurred_at=at,
    )


def buy(
    c: Container, m: Merchant, member: uuid.UUID, roubles: int, number: str, **kw: Any
) -> dict[str, Any]:
    return c.purchases.confirm(m.actor, receipt(member, roubles, kw.get("at")), number)


def enrol(c: Container, m: Merchant, **fields: Any) -> uuid.UUID:
    return c.members.enroll(m.actor, fields or {"name": "Anna"}).id


def reasons(c: Container, m: Merchant, member: uuid.UUID) -> list[str]:
    return [h.reason for h in reversed(c.tiers.history(m.actor, member, None, 200))]


def tier(c: Container, m: Merchant, member: uuid.UUID) -> str:
    return c.tiers.status(m.actor, member).tier.code


def job(c: Container) -> int:
    report = c.jobs.run()
    assert report.errors == []
    return report.steps["tiers_evaluated"]


def snapshot(c: Container) -> dict[str, Any]:
    """Everything the tiers job writes."""
    with c.engine.connect() as conn:
        tiers = conn.execute(
            sa.select(member_tiers).order_by(member_tiers.c.tenant_id, member_tiers.c.member_id)
        ).all()
        history = conn.execute(
            sa.select(tier_history.c.id, tier_history.c.reason).order_by(tier_history.c.id)
        ).all()
        audits = conn.execute(
            sa.select(sa.func.count()).where(audit_log.c.action.like("tier.%"))
        ).scalar_one()
    return {
        "tiers": [tuple(r) for r in tiers],
        "history": [tuple(r) for r in history],
        "audit": audits,
    }


# ---- a member's year ----------------------------------------------------------------------
def test_a_members_year(container: Container, merchant: Merchant, clock: FakeClock) -> None:
    c, m = container, merchant
    publish(c, m)
    anna, bob = enrol(c, m), enrol(c, m, name="Bob")
    status = c.tiers.status(m.actor, anna)
    assert (status.tier.code, status.source, status.qualification.value) == ("silver", "auto", 0)
    assert status.next is not None
    assert status.next.remaining == 4_000_000
    assert status.next_evaluation == date(2027, 1, 1)
    assert status.keep is None
    assert status.message == {
        "ru": "Осталось потратить 40\u00a0000\u00a0₽ до 31 декабря, чтобы получить Золото",
        "en": "Spend 40,000\u00a0₽ more by 31 Dec to reach Gold",
    }

    clock.set(msk(2026, 3, 10, 12))
    first = buy(c, m, anna, 25_000, "R-1")
    assert first["tier"] == {
        "program": "main",
        "code": "silver",
        "upgraded": False,
        "qualification": 2_500_000,
    }
    # The receipt that crosses 40 000 ₽ upgrades at once and already earns at Gold (x2).
    clock.set(msk(2026, 6, 1, 12))
    at_silver = c.purchases.calculate(m.actor, receipt(bob, 20_000))["totals"]["points_earned"]
    outlook = c.purchases.calculate(m.actor, receipt(anna, 20_000))
    assert outlook["tier"]["upgrade_to"] == "gold"
    assert outlook["tier"]["receipt_at_new_tier"] is True
    crossing = buy(c, m, anna, 20_000, "R-2")
    assert crossing["totals"]["points_earned"] == 2 * at_silver
    assert crossing["tier"] == {
        "program": "main",
        "code": "gold",
        "previous": "silver",
        "upgraded": True,
        "qualification": 4_500_000,
    }
    status = c.tiers.status(m.actor, anna)
    assert (status.tier.code, status.since) == ("gold", clock.now())
    assert status.keep is not None
    assert status.keep.remaining == 0
    assert status.message["en"] == "Spend 55,000\u00a0₽ more by 31 Dec to reach Platinum"

    # A refund pulls the qualification back below 40 000 ₽: Gold stays until the evaluation.
    clock.set(msk(2026, 6, 5, 12))
    refund = c.purchases.refund(m.actor, uuid.UUID(crossing["receipt"]["id"]), "RF-1", None)
    assert refund["tier"] == {"program": "main", "code": "gold", "qualification": 2_500_000}
    status = c.tiers.status(m.actor, anna)
    assert status.tier.code == "gold"
    assert status.qualification.value == 2_500_000
    assert status.keep is not None
    assert (status.keep.remaining, status.keep.by) == (1_500_000, date(2026, 12, 31))
    assert status.message == {
        "ru": "Осталось потратить 15\u00a0000\u00a0₽ до 31 декабря, чтобы сохранить Золото",
        "en": "Spend 15,000\u00a0₽ more by 31 Dec to keep Gold",
    }
    assert job(c) == 0  # nothing to judge in the middle of the year

    # The end of the year: short of Gold, a 30-day grace.
    clock.set(msk(2027, 1, 1, 3))
    assert job(c) == 1
    status = c.tiers.status(m.actor, anna)
    assert status.tier.code == "gold"
    assert status.grace is not None
    assert (status.grace.until, status.grace.pending_tier) == (date(2027, 1, 30), "silver")
    assert (
        status.message["en"] == "Gold until 30 Jan: spend 40,000\u00a0₽ more by 30 Jan to keep it"
    )
    after = snapshot(c)
    assert job(c) == 0  # again, at the same moment
    clock.set(msk(2027, 1, 20, 3))
    assert job(c) == 0  # later, still within the grace
    assert snapshot(c) == after

    # The grace is over: down to Silver, recorded and explained.
    clock.set(msk(2027, 1, 31, 3))
    assert job(c) == 1
    assert tier(c, m, anna) == "silver"
    assert reasons(c, m, anna) == ["enrolled", "upgraded", "grace", "downgraded"]
    history = c.tiers.history(m.actor, anna, None, 10)
    assert history[0].explanation == {
        "ru": "Статус изменён с Золото на Серебро: вы потратили 25\u00a0000\u00a0₽, "
        "а нужно было 40\u00a0000\u00a0₽",
        "en": "Downgraded from Gold to Silver: you spent 25,000\u00a0₽ of the 40,000\u00a0₽ needed",
    }
    assert history[0].actor == "job:scheduler"
    assert history[1].explanation["en"] == (
        "Gold kept until 30 Jan 2027 (grace period): you spent 25,000\u00a0₽ of the "
        "40,000\u00a0₽ needed"
    )
    assert history[2].explanation["en"] == (
        "Upgraded to Gold: you spent 45,000\u00a0₽ of the 40,000\u00a0₽ needed"
    )
    trail = [(e["action"], e["details"].get("to")) for e in c.members.audit_trail(m.actor, anna)]
    assert ("tier.upgrade", "gold") in trail
    assert trail[-1] == ("tier.downgrade", "silver")
    after = snapshot(c)
    assert job(c) == 0
    clock.set(msk(2027, 2, 15, 3))
    assert job(c) == 0
    assert snapshot(c) == after
    assert reasons(c, m, bob) == ["enrolled"]


def test_gold_kept_at_the_end_of_the_year(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m)
    anna = enrol(c, m)
    buy(c, m, anna, 48_300, "R-1")
    assert tier(c, m, anna) == "gold"
    clock.set(msk(2027, 1, 1, 0, 30))
    assert job(c) == 1
    kept = c.tiers.history(m.actor, anna, None, 1)[0]
    assert kept.reason == "kept"
    assert kept.explanation == {
        "ru": "Статус Золото сохранён: вы потратили 48\u00a0300\u00a0₽, "
        "а нужно было 40\u00a0000\u00a0₽",
        "en": "Gold kept: you spent 48,300\u00a0₽ of the 40,000\u00a0₽ needed",
    }
    status = c.tiers.status(m.actor, anna)
    assert (status.tier.code, status.grace) == ("gold", None)
    # The new year starts from nothing: 40 000 ₽ again by the end of 2027 to keep Gold.
    assert status.keep is not None
    assert status.keep.remaining == 4_000_000
    assert status.message["en"] == "Spend 40,000\u00a0₽ more by 31 Dec to keep Gold"


def test_spending_again_during_the_grace_keeps_the_tier(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, window={"kind": "rolling", "days": 365}, evaluation={"period": "quarter"})
    anna = enrol(c, m)
    buy(c, m, anna, 41_000, "R-1")
    clock.set(msk(2027, 4, 1, 2))  # the purchase is more than 365 days back
    assert job(c) == 1
    assert c.tiers.status(m.actor, anna).grace is not None
    clock.set(msk(2027, 4, 10, 12))
    assert buy(c, m, anna, 40_000, "R-2")["tier"]["upgraded"] is False
    clock.set(msk(2027, 4, 11, 2))
    assert job(c) == 1  # back above the keep threshold: the grace ends, Gold stays
    clock.set(msk(2027, 5, 11, 2))
    assert job(c) == 0
    assert tier(c, m, anna) == "gold"
    assert reasons(c, m, anna)[-2:] == ["grace", "kept"]
    assert c.tiers.status(m.actor, anna).grace is None


@pytest.mark.parametrize(
    ("policy", "expected"), [("one_level", "gold"), ("full", "silver")], ids=["one", "full"]
)
def test_downgrade_policies(
    container: Container, merchant: Merchant, clock: FakeClock, policy: str, expected: str
) -> None:
    c, m = container, merchant
    publish(c, m, downgrade={"policy": policy, "grace_days": 0})
    anna = enrol(c, m)
    c.tiers.set_tier(m.actor, anna, tier="platinum", reason="Founding member")
    buy(c, m, anna, 1_000, "R-1")
    clock.set(msk(2027, 1, 2, 12))
    assert job(c) == 1
    assert tier(c, m, anna) == expected
    assert reasons(c, m, anna) == ["enrolled", "manual", "downgraded"]


def test_a_locked_tier_is_not_lowered_until_the_lock_ends(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, downgrade={"grace_days": 0})
    anna = enrol(c, m)
    view = c.tiers.set_tier(
        m.actor, anna, tier="gold", reason="Compensation", locked_until=date(2027, 6, 30)
    )
    assert (view.tier.code, view.source, view.locked_until) == ("gold", "manual", date(2027, 6, 30))
    assert view.keep is None  # nothing to keep before the lock ends
    # The same request again changes nothing.
    c.tiers.set_tier(
        m.actor, anna, tier="gold", reason="Compensation", locked_until=date(2027, 6, 30)
    )
    assert reasons(c, m, anna) == ["enrolled", "manual"]
    clock.set(msk(2027, 1, 1, 9))
    assert job(c) == 0
    assert tier(c, m, anna) == "gold"
    clock.set(msk(2028, 1, 1, 9))
    assert job(c) == 1
    assert tier(c, m, anna) == "silver"


def test_setting_a_tier_by_hand_checks_its_input(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    anna = enrol(c, m)
    with pytest.raises(BusinessRuleViolation) as no_tiers:
        c.tiers.set_tier(m.actor, anna, tier="gold", reason="x")
    assert no_tiers.value.code == "tiers_not_configured"
    publish(c, m)
    with pytest.raises(ValidationFailed) as bad:
        c.tiers.set_tier(m.actor, anna, tier="diamond", reason="x", locked_until=date(2025, 1, 1))
    assert [(e.path, e.code) for e in bad.value.errors] == [
        (("tier",), "unknown_tier"),
        (("locked_until",), "invalid_locked_until"),
    ]
    assert reasons(c, m, anna) == []  # enrolled before the program: no row, no history
    assert c.tiers.status(m.actor, anna).source == "default"


def test_the_crossing_receipt_earns_at_the_old_level_unless_the_program_says_so(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, upgrade_applies_to_crossing_receipt=False)
    anna, bob = enrol(c, m), enrol(c, m, name="Bob")
    at_silver = c.purchases.calculate(m.actor, receipt(bob, 45_000))["totals"]["points_earned"]
    crossing = buy(c, m, anna, 45_000, "R-1")
    assert crossing["totals"]["points_earned"] == at_silver
    assert crossing["tier"]["upgraded"] is True
    assert buy(c, m, anna, 1_000, "R-2")["totals"]["points_earned"] == 2 * (at_silver // 45)


def test_purchases_and_points_metrics_count_refunds_against_them(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c = container
    by_count, by_points = make_merchant(c, "Count"), make_merchant(c, "Points")
    purchases_levels = [
        LEVELS[0],
        {"code": "gold", "threshold": 3},
        {"code": "vip", "threshold": 9},
    ]
    publish(c, by_count, metric="purchases", levels=purchases_levels)
    points_levels = [LEVELS[0], {"code": "gold", "threshold": 2_000}]
    publish(c, by_points, metric="points", levels=points_levels)
    anna, bob = enrol(c, by_count), enrol(c, by_points)
    made = [buy(c, by_count, anna, 100, f"R-{i}") for i in range(3)]
    assert made[-1]["tier"]["code"] == "gold"
    lines = [(0, Decimal("0.5"))]
    c.purchases.refund(by_count.actor, uuid.UUID(made[0]["receipt"]["id"]), "RF-1", lines)
    assert c.tiers.status(by_count.actor, anna).qualification.value == 3  # partly: still one
    c.purchases.cancel(by_count.actor, uuid.UUID(made[1]["receipt"]["id"]))
    assert c.tiers.status(by_count.actor, anna).qualification.value == 2
    big = buy(c, by_points, bob, 30_000, "P-1")  # 1 500 points at 5%
    earned = big["totals"]["points_earned"]
    assert c.tiers.status(by_points.actor, bob).qualification.value == earned
    c.purchases.refund(by_points.actor, uuid.UUID(big["receipt"]["id"]), "RF-1", None)
    assert c.tiers.status(by_points.actor, bob).qualification.value == 0


def test_the_day_and_the_year_are_the_tenants(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    """A purchase at 01:30 in Moscow on 1 January counts for the new year, though it is
    still the 31st of December in UTC."""
    c, m = container, merchant
    publish(c, m)
    anna = enrol(c, m)
    clock.set(datetime(2026, 12, 31, 22, 30, tzinfo=UTC))
    buy(c, m, anna, 45_000, "R-1")
    status = c.tiers.status(m.actor, anna)
    assert status.qualification.first_day == date(2027, 1, 1)
    assert (status.tier.code, status.next_evaluation) == ("gold", date(2028, 1, 1))
    assert job(c) == 0  # Gold was reached after 1 January began: not judged by 2026


def test_the_nightly_sweep_upgrades_what_the_till_did_not(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    """Lowered thresholds (a new program version) upgrade at night, members without a tier
    row included."""
    c, m = container, merchant
    early = enrol(c, m)  # before the program: no tier row
    publish(c, m)
    anna = enrol(c, m)
    buy(c, m, anna, 25_000, "R-1")
    buy(c, m, early, 30_000, "R-2")
    assert job(c) == 0
    lower = [LEVELS[0], {**LEVELS[1], "threshold": 2_000_000}, LEVELS[2]]
    publish(c, m, levels=lower)
    clock.advance(days=1)
    assert job(c) == 2
    assert (tier(c, m, anna), tier(c, m, early)) == ("gold", "gold")
    assert reasons(c, m, early) == ["upgraded"]
    assert c.tiers.history(m.actor, early, None, 1)[0].from_tier is None
    assert job(c) == 0


def test_a_legacy_tier_attribute_still_counts_without_a_tier_row(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    legacy = enrol(c, m, attributes={"tier": "gold"})
    publish(c, m)
    bob = enrol(c, m, name="Bob")
    newcomer = enrol(c, m, attributes={"tier": "gold"})
    silver = c.purchases.calculate(m.actor, receipt(bob, 1_000))["totals"]["points_earned"]
    legacy_points = c.purchases.calculate(m.actor, receipt(legacy, 1_000))["totals"]
    assert legacy_points["points_earned"] == 2 * silver
    assert c.tiers.status(m.actor, legacy).source == "default"
    assert (tier(c, m, newcomer), c.tiers.status(m.actor, newcomer).source) == ("gold", "import")


def test_running_late_equals_running_daily(container: Container, clock: FakeClock) -> None:
    c = container
    daily, late = make_merchant(c, "Daily"), make_merchant(c, "Late")
    members: dict[str, list[uuid.UUID]] = {}
    for m in (daily, late):
        publish(c, m)
        people = [enrol(c, m, name=f"n{i}") for i in range(4)]
        members[m.name] = people
        buy(c, m, people[0], 48_000, f"{m.name}-1")  # kept
        buy(c, m, people[1], 45_000, f"{m.name}-2")  # refunded below: grace, then down
        c.tiers.set_tier(m.actor, people[2], tier="platinum", reason="VIP")  # down one level
        buy(c, m, people[3], 5_000, f"{m.name}-4")  # silver all along
    receipts = {
        m.name: c.purchases.member_purchases(m.actor, members[m.name][1], None, 5)
        for m in (daily, late)
    }
    for m in (daily, late):
        c.purchases.refund(m.actor, uuid.UUID(receipts[m.name][0]["id"]), "RF", None)
    clock.set(msk(2026, 12, 30, 4))
    while clock.now() < msk(2027, 2, 5, 4):
        clock.advance(days=1)
        assert c.jobs.run(tenant_id=daily.tenant_id).errors == []
    # kept; grace then down; grace then down one level
    assert c.jobs.run(tenant_id=late.tenant_id).steps["tiers_evaluated"] == 5
    for a, b in zip(members["Daily"], members["Late"], strict=True):
        assert tier(c, daily, a) == tier(c, late, b)
        assert reasons(c, daily, a) == reasons(c, late, b)
    assert [tier(c, late, b) for b in members["Late"]] == ["gold", "silver", "gold", "silver"]
    assert job(c) == 0


def test_the_job_for_one_tenant_leaves_the_other_alone(
    container: Container, clock: FakeClock
) -> None:
    c = container
    one, two = make_merchant(c, "One"), make_merchant(c, "Two")
    people = {}
    for m in (one, two):
        publish(c, m)
        people[m.name] = enrol(c, m)
        c.tiers.set_tier(m.actor, people[m.name], tier="gold", reason="x")
    clock.set(msk(2027, 1, 2, 12))
    assert c.jobs.run(tenant_id=one.tenant_id).steps["tiers_evaluated"] == 1
    assert c.tiers.status(two.actor, people["Two"]).grace is None
    assert c.jobs.run().steps["tiers_evaluated"] == 1


# ---- the set-based SQL against the pure rules ----------------------------------------------
@pytest.mark.parametrize(
    "downgrade",
    [{"policy": "one_level", "grace_days": 30}, {"policy": "full", "grace_days": 0}],
    ids=["one-level-grace", "full-at-once"],
)
def test_the_nightly_sql_follows_the_rules(
    container: Container, merchant: Merchant, clock: FakeClock, downgrade: dict[str, Any]
) -> None:
    c, m = container, merchant
    section = {"levels": [*LEVELS[:2], {**LEVELS[2], "keep_threshold": 8_000_000}]}
    publish(c, m, downgrade=downgrade, **section)
    settings = TierSettings.model_validate({**section, "downgrade": downgrade})
    rng = random.Random(7)
    point = date(2027, 1, 1)
    now = msk(2027, 1, 1, 10)
    codes = [*settings.codes, "retired"]  # a level the program no longer has
    bounds = [0, 2_999_999, 3_000_000, 4_000_000, 7_999_999, 8_000_000, 10_000_000, 12_000_000]
    rows, days, expected = [], [], {}
    for i in range(80):
        member = uuid.uuid4()
        has_row = i % 10 != 9
        code = rng.choice(codes)
        before = rng.random() < 0.85  # since before the evaluation point: judged
        locked = rng.choice([None, date(2026, 12, 31), date(2027, 1, 1)])
        past = rng.choice(bounds) + rng.choice([0, 0, 1])
        current = rng.choice([0, 0, 0, 4_000_000, 9_000_000])
        for day, value in ((date(2026, 5, 1 + i % 28), past), (point, current)):
            if value:
                days.append(
                    {
                        "tenant_id": m.tenant_id,
                        "member_id": member,
                        "day": day,
                        "spent": value,
                        "purchases": 1,
                        "points": 0,
                    }
                )
        if has_row:
            rows.append(
                {
                    "tenant_id": m.tenant_id,
                    "program": "main",
                    "member_id": member,
                    "tier": code,
                    "since": msk(2026, 6, 1) if before else msk(2027, 1, 1, 5),
                    "source": "auto",
                    "locked_until": locked,
                    "updated_at": msk(2026, 6, 1),
                }
            )
        expected[member] = _expect(
            settings, code if has_row else None, before, locked, past, current, point
        )
    with c.engine.begin() as conn:
        conn.execute(sa.insert(member_tiers), rows)
        conn.execute(sa.insert(tier_qualification), days)
    clock.set(now)
    written = c.tiers.evaluate(now)
    with c.engine.connect() as conn:
        found = {
            r.member_id: (r.tier, r.pending_tier)
            for r in conn.execute(
                sa.select(member_tiers).where(member_tiers.c.tenant_id == m.tenant_id)
            )
        }
        history = conn.execute(
            sa.select(tier_history.c.member_id, tier_history.c.reason).order_by(tier_history.c.id)
        ).all()
    got = {
        member: (*found.get(member, (None, None)), [r for mid, r in history if mid == member])
        for member in expected
    }
    assert got == expected
    assert written == len(history)
    assert c.tiers.evaluate(now) == 0


def _expect(
    settings: TierSettings,
    code: str | None,
    judged: bool,
    locked: date | None,
    past: int,
    current: int,
    point: date,
) -> tuple[str | None, str | None, list[str]]:
    """What the evaluation at ``point`` and the sweep that follows make of one member."""
    index = settings.index(code) if code is not None else 0
    pending: int | None = None
    steps: list[str] = []
    if code is not None and judged:
        outcome = levels.evaluate(
            settings, index, past, locked=locked is not None and locked >= point
        )
        if outcome.reason != "none":
            steps.append(outcome.reason)
        if outcome.reason in ("upgraded", "downgraded"):
            index, code = outcome.to, settings.codes[outcome.to]
        elif outcome.reason == "grace":
            pending = outcome.to
    elif code is None and levels.reached(settings, past) > 0:
        index = levels.reached(settings, past)
        code = settings.codes[index]
        steps.append("upgraded")
    sweep = levels.sweep(settings, index, current, pending, grace_over=False)
    if sweep.reason != "none":
        steps.append(sweep.reason)
    if sweep.reason == "upgraded":
        code, pending = settings.codes[sweep.to], None
    elif sweep.reason == "kept":
        pending = None
    if code is None and levels.reached(settings, current) > 0:
        code = settings.codes[levels.reached(settings, current)]
        steps.append("upgraded")
    return code, settings.codes[pending] if pending is not None else None, steps


# ---- import ----------------------------------------------------------------------------
def test_import_from_csv_is_all_or_nothing_and_repeatable(
    container: Container, merchant: Merchant, clock: FakeClock, tmp_path: Path
) -> None:
    c, m = container, merchant
    publish(c, m)
    anna = c.members.enroll(m.actor, {"phone": "+79161234567", "external_id": "A-1"})
    bob = enrol(c, m, name="Bob")
    card = anna.cards[0].number
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "external_id;member_id;tier;locked_until;note\n"
        "A-1;;gold;;\n"
        f";{bob};diamond;;\n"
        "NOPE;;gold;;\n"
        f";{bob};gold;2020-01-01;\n",
        encoding="utf-8",
    )
    report = c.tiers.import_csv(m.actor, bad)
    assert [(line, column) for line, column, _ in report.errors] == [
        (3, "tier"),
        (4, "external_id"),
        (5, "locked_until"),
    ]
    assert tier(c, m, anna.id) == "silver"
    good = tmp_path / "good.csv"
    good.write_text(
        "phone,card,member_id,tier,locked_until,note\n"
        f",,{bob},platinum,2027-03-31,Migrated from the old system\n"
        "+7 916 123-45-67,,,gold,,\n",
        encoding="utf-8",
    )
    report = c.tiers.import_csv(m.actor, good)
    assert (report.errors, report.changed, report.unchanged) == ([], 2, 0)
    assert (tier(c, m, anna.id), tier(c, m, bob)) == ("gold", "platinum")
    assert c.tiers.status(m.actor, bob).locked_until == date(2027, 3, 31)
    again = c.tiers.import_csv(m.actor, good)
    assert (again.changed, again.unchanged) == (0, 2)
    by_card = tmp_path / "card.csv"
    by_card.write_text(f"card,tier\n{card},silver\n", encoding="utf-8")
    assert c.tiers.import_csv(m.actor, by_card).changed == 1
    history = c.tiers.history(m.actor, bob, None, 1)[0]
    assert (
        history.explanation["en"]
        == "Platinum imported until 31 Mar 2027: Migrated from the old system"
    )
    assert reasons(c, m, anna.id) == ["enrolled", "imported", "imported"]


def test_enrolment_hook_is_skipped_without_a_tier_program(
    container: Container, merchant: Merchant
) -> None:
    anna = enrol(container, merchant)
    with container.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(member_tiers)).scalar_one() == 0
    assert (
        container.purchases.confirm(merchant.actor, receipt(anna, 100), "R-1").get("tier") is None
    )


@pytest.mark.postgres_only
def test_two_jobs_at_once_evaluate_once(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m)
    people = [enrol(c, m, name=f"n{i}") for i in range(6)]
    for person in people[:3]:
        c.tiers.set_tier(m.actor, person, tier="gold", reason="x")
    clock.set(msk(2027, 1, 2, 12))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: c.tiers.evaluate(clock.now()), range(2)))
    assert sorted(results) == [0, 3]
    assert [reasons(c, m, p)[-1] for p in people[:3]] == ["grace"] * 3


def test_a_held_receipt_counts_when_it_is_confirmed(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m)
    anna = enrol(c, m)
    held = c.purchases.confirm(m.actor, receipt(anna, 45_000), "H-1", hold=True)
    assert held["tier"]["upgrade_to"] == "gold"
    assert c.tiers.status(m.actor, anna).qualification.value == 0
    confirmed = c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert confirmed["tier"]["upgraded"] is True
    assert (tier(c, m, anna), c.tiers.status(m.actor, anna).qualification.value) == (
        "gold",
        4_500_000,
    )
    voided = c.purchases.confirm(m.actor, receipt(anna, 1_000), "H-2", hold=True)
    c.purchases.void(m.actor, uuid.UUID(voided["receipt"]["id"]))
    assert c.tiers.status(m.actor, anna).qualification.value == 4_500_000
