"""Life-cycle rewards on both databases, driven by the clock: birthdays (tenant time zone,
29 February in a non-leap year, late runs, edited birthdays), anniversaries, win-back, the
welcome bonus, and every job run twice, late, or at once without ever rewarding twice."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.tables import coupons
from kopilka.bootstrap import Container
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant
from tests.integration.test_concurrency import run_together

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def publish(c: Container, m: Merchant, lifecycle: dict[str, Any], code: str = "main") -> None:
    c.programs.publish(
        m.actor,
        code,
        {
            "type": "bonus",
            "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
            "lifecycle": lifecycle,
        },
    )


def enrol(c: Container, m: Merchant, **profile: Any) -> uuid.UUID:
    return c.members.enroll(m.actor, profile).id


def awards(c: Container, member: uuid.UUID) -> list[tuple[str, str, int]]:
    """(mechanic, key, points) of the member's rewards, by key."""
    a = mechanic_awards.c
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.mechanic, a.award_key, a.points)
            .where(a.member_id == member, a.status == "granted")
            .order_by(a.award_key)
        ).all()
    return [(r.mechanic, r.award_key, r.points) for r in rows]


def available(c: Container, m: Merchant, member: uuid.UUID) -> int:
    return c.ledger.balance(m.actor, member).available


def bonus_texts(c: Container, m: Merchant, member: uuid.UUID) -> list[dict[str, str]]:
    history = c.ledger.history(m.actor, member, None, 50)
    return [t.description for t in history if t.kind == "bonus"]


def buy(c: Container, m: Merchant, member: uuid.UUID, number: str) -> dict[str, Any]:
    request = ReceiptInput(
        lines=(LineInput("LATTE", Decimal(1), 25000),), member=MemberRef(id=member), outlet="OUT-1"
    )
    return c.purchases.confirm(m.actor, request, number)


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


# ---- birthdays -----------------------------------------------------------------------------
def test_birthday_bonus_comes_on_the_tenants_local_day_once(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = make_merchant(c, "Far East", timezone="Asia/Vladivostok")  # UTC+10
    publish(c, m, {"birthday": {"points": 500, "days_after": 0, "expires_in_days": 30}})
    member = enrol(c, m, phone="+79161230001", birthday="1990-01-16")
    other = enrol(c, m, phone="+79161230002", birthday="1990-01-17")
    clock.set(datetime(2026, 1, 15, 13, 59, tzinfo=UTC))  # 23:59 on the 15th in Vladivostok
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    clock.set(datetime(2026, 1, 15, 14, 0, tzinfo=UTC))  # midnight: the 16th there
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    assert awards(c, member) == [("birthday", "birthday:2026", 500)]
    assert awards(c, other) == []
    # Twice at the same moment, and later the same day: nothing more.
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    clock.advance(hours=9)
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    assert available(c, m, member) == 500
    [text] = bonus_texts(c, m, member)
    # Awarded on 16 January (local), usable for 30 days: through 15 February.
    assert text == {
        "ru": "Бонус ко дню рождения: 500 баллов, сгорят 2026-02-15",
        "en": "Birthday bonus: 500 points, expire on 2026-02-15",
    }
    assert_verified(c)


def test_a_birthday_on_29_february_in_a_non_leap_year(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, {"birthday": {"points": 300, "days_after": 0}})
    leap = enrol(c, m, phone="+79161230003", birthday="2000-02-29")
    on_28th = enrol(c, m, phone="+79161230004", birthday="--02-28")
    for day, expected in ((27, 0), (28, 2), (28, 0)):
        clock.set(datetime(2026, 2, day, 6, 0, tzinfo=UTC))
        assert c.lifecycle.run_birthdays(clock.now()) == expected
    clock.set(datetime(2026, 3, 1, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    assert awards(c, leap) == [("birthday", "birthday:2026", 300)]
    # 2028 is a leap year: the 28th is not the 29th's day, the 29th is.
    clock.set(datetime(2028, 2, 28, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    assert [k for _, k, _ in awards(c, on_28th)] == ["birthday:2026", "birthday:2028"]
    clock.set(datetime(2028, 2, 29, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    assert [k for _, k, _ in awards(c, leap)] == ["birthday:2026", "birthday:2028"]


def test_a_late_job_gives_what_is_due_within_the_window_only(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, {"birthday": {"points": 100, "days_after": 3}})
    in_window = enrol(c, m, phone="+79161230005", birthday="1985-03-10")
    missed = enrol(c, m, phone="+79161230006", birthday="1985-03-09")
    clock.set(datetime(2026, 3, 13, 6, 0, tzinfo=UTC))  # the job did not run for days
    report = c.jobs.run()
    assert report.steps["lifecycle_birthday"] == 1
    assert awards(c, in_window) == [("birthday", "birthday:2026", 100)]
    assert awards(c, missed) == []
    assert c.jobs.run().steps["lifecycle_birthday"] == 0


def test_given_early_with_days_before_and_keyed_by_the_celebrated_year(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, {"birthday": {"points": 100, "days_before": 7, "days_after": 0}})
    member = enrol(c, m, phone="+79161230007", birthday="--01-02")
    clock.set(datetime(2026, 12, 26, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    assert awards(c, member) == [("birthday", "birthday:2027", 100)]
    clock.set(datetime(2027, 1, 2, 6, 0, tzinfo=UTC))  # the day itself: given already
    assert c.lifecycle.run_birthdays(clock.now()) == 0


def test_editing_the_birthday_never_gives_a_second_bonus_that_year(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, {"birthday": {"points": 200}})
    member = enrol(c, m, phone="+79161230008", birthday="1990-03-10")
    clock.set(datetime(2026, 3, 10, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    c.members.update(m.actor, member, {"birthday": "1990-11-05"})
    clock.set(datetime(2026, 11, 5, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    clock.set(datetime(2027, 11, 5, 6, 0, tzinfo=UTC))
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    assert [k for _, k, _ in awards(c, member)] == ["birthday:2026", "birthday:2027"]


def test_only_active_members_and_only_with_the_section_in_force(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    blocked = enrol(c, m, phone="+79161230009", birthday="1990-01-15")
    erased = enrol(c, m, phone="+79161230010", birthday="1990-01-15")
    assert c.lifecycle.run_birthdays(clock.now()) == 0  # no program yet
    publish(c, m, {"welcome": {"points": 10}})
    assert c.lifecycle.run_birthdays(clock.now()) == 0  # no birthday section
    publish(c, m, {"birthday": {"points": 100}})
    c.members.set_blocked(m.actor, blocked, True)
    c.members.erase(m.actor, erased)
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    c.members.set_blocked(m.actor, blocked, False)
    assert c.lifecycle.run_birthdays(clock.now()) == 1


def test_a_birthday_coupon(container: Container, merchant: Merchant, clock: FakeClock) -> None:
    c, m = container, merchant
    publish(
        c,
        m,
        {
            "birthday": {
                "coupon": {"benefit": {"discount_percent": 20}, "valid_days": 7},
                "label": {"ru": "С днём рождения", "en": "Happy birthday"},
            }
        },
    )
    member = enrol(c, m, phone="+79161230011", birthday="1990-01-15")
    assert c.lifecycle.run_birthdays(clock.now()) == 1
    assert c.lifecycle.run_birthdays(clock.now()) == 0
    with c.engine.connect() as conn:
        rows = conn.execute(sa.select(coupons).where(coupons.c.member_id == member)).all()
    [coupon] = rows
    assert coupon.benefit == {"discount_percent": 20}
    assert coupon.source_type == "birthday"
    assert coupon.valid_until == clock.now() + timedelta(days=7)
    assert awards(c, member) == [("birthday", "birthday:2026", 0)]
    assert bonus_texts(c, m, member) == []  # a coupon only: nothing in the points ledger


def test_one_job_run_per_tenant(container: Container, clock: FakeClock) -> None:
    c = container
    one, two = make_merchant(c, "One"), make_merchant(c, "Two")
    for m, phone in ((one, "+79161230012"), (two, "+79161230013")):
        publish(c, m, {"birthday": {"points": 50}})
        enrol(c, m, phone=phone, birthday="1990-01-15")
    assert c.lifecycle.run_birthdays(clock.now(), one.tenant_id) == 1
    assert c.lifecycle.run_birthdays(clock.now(), one.tenant_id) == 0
    assert c.lifecycle.run_birthdays(clock.now(), uuid.UUID(int=7)) == 0  # no such tenant
    assert c.lifecycle.run_birthdays(clock.now()) == 1


def test_many_members_in_pages(container: Container, merchant: Merchant, clock: FakeClock) -> None:
    """More members than one page: every one is rewarded once."""
    from kopilka.services import lifecycle

    c, m = container, merchant
    publish(c, m, {"birthday": {"points": 10}})
    members = [enrol(c, m, phone=f"+7916124{i:04d}", birthday="1990-01-15") for i in range(7)]
    old = lifecycle.BATCH
    lifecycle.BATCH = 3
    try:
        assert c.lifecycle.run_birthdays(clock.now()) == 7
    finally:
        lifecycle.BATCH = old
    assert all(len(awards(c, member)) == 1 for member in members)


@pytest.mark.postgres_only
def test_jobs_run_at_once_reward_once(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(
        c,
        m,
        {
            "birthday": {"points": 100},
            "anniversary": {"points": 50},
            "win_back": {"inactive_days": 30, "points": 70},
        },
    )
    clock.set(datetime(2025, 1, 15, 9, 0, tzinfo=UTC))
    members = [enrol(c, m, phone=f"+7916125{i:04d}", birthday="1990-01-15") for i in range(5)]
    clock.set(START)
    results = run_together([lambda: c.jobs.run() for _ in range(8)], workers=8)
    assert all(not isinstance(r, Exception) for r in results), results
    given = [sum(r.steps[s] for s in r.steps if s.startswith("lifecycle")) for r in results]
    assert sum(given) == 15
    for member in members:
        assert [k for _, k, _ in awards(c, member)] == [
            "anniversary:1",
            "birthday:2026",
            "win_back:2025-01-15",
        ]
        assert available(c, m, member) == 220
    assert_verified(c)


# ---- anniversaries -------------------------------------------------------------------------
def test_anniversary_of_an_enrolment_on_29_february(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    clock.set(datetime(2024, 2, 29, 10, 0, tzinfo=UTC))
    leap = enrol(c, m, phone="+79161230014")
    clock.set(datetime(2024, 3, 1, 10, 0, tzinfo=UTC))
    march = enrol(c, m, phone="+79161230015")
    clock.set(datetime(2025, 2, 27, 10, 0, tzinfo=UTC))
    publish(c, m, {"anniversary": {"points": 100, "days_after": 0}})
    assert c.lifecycle.run_anniversaries(clock.now()) == 0
    clock.set(datetime(2025, 2, 28, 10, 0, tzinfo=UTC))
    assert c.lifecycle.run_anniversaries(clock.now()) == 1
    assert c.lifecycle.run_anniversaries(clock.now()) == 0
    assert awards(c, leap) == [("anniversary", "anniversary:1", 100)]
    clock.set(datetime(2025, 3, 1, 10, 0, tzinfo=UTC))
    assert c.lifecycle.run_anniversaries(clock.now()) == 1
    assert awards(c, march) == [("anniversary", "anniversary:1", 100)]
    clock.set(datetime(2028, 2, 29, 10, 0, tzinfo=UTC))
    assert c.lifecycle.run_anniversaries(clock.now()) == 1
    assert [k for _, k, _ in awards(c, leap)] == ["anniversary:1", "anniversary:4"]
    [text, _] = bonus_texts(c, m, leap)
    assert text["en"] == "Anniversary bonus: 100 points"


def test_anniversary_late_run_and_local_day(container: Container, clock: FakeClock) -> None:
    c = container
    m = make_merchant(c, "Moscow")  # UTC+3: 22:00 UTC is the next local day
    clock.set(datetime(2025, 6, 9, 22, 0, tzinfo=UTC))
    member = enrol(c, m, phone="+79161230016")  # 10 June, local
    publish(c, m, {"anniversary": {"points": 100, "days_after": 2}})
    clock.set(datetime(2026, 6, 9, 12, 0, tzinfo=UTC))
    assert c.lifecycle.run_anniversaries(clock.now()) == 0
    clock.set(datetime(2026, 6, 12, 12, 0, tzinfo=UTC))  # two days late: still given
    assert c.lifecycle.run_anniversaries(clock.now()) == 1
    clock.set(datetime(2026, 6, 13, 12, 0, tzinfo=UTC))
    assert c.lifecycle.run_anniversaries(clock.now()) == 0
    assert awards(c, member) == [("anniversary", "anniversary:1", 100)]


# ---- win-back ------------------------------------------------------------------------------
def test_win_back_once_per_spell_and_per_period(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, {"win_back": {"inactive_days": 30, "points": 70, "period_days": 90}})
    buyer = enrol(c, m, phone="+79161230017")
    idle = enrol(c, m, phone="+79161230018")
    buy(c, m, buyer, "R-1")
    clock.set(START + timedelta(days=29))
    assert c.lifecycle.run_win_back(clock.now()) == 0
    clock.set(START + timedelta(days=30))
    assert c.lifecycle.run_win_back(clock.now()) == 2
    assert c.lifecycle.run_win_back(clock.now()) == 0
    clock.set(START + timedelta(days=45))
    buy(c, m, buyer, "R-2")
    assert c.lifecycle.run_win_back(clock.now()) == 0
    # Inactive again from day 76, but the last win-back was on day 30: not before day 120.
    clock.set(START + timedelta(days=100))
    assert c.lifecycle.run_win_back(clock.now()) == 0
    clock.set(START + timedelta(days=121))
    assert c.lifecycle.run_win_back(clock.now()) == 1
    assert [k for _, k, _ in awards(c, buyer)] == ["win_back:2026-01-15", "win_back:2026-03-01"]
    # The idle member's spell never ended: one reward for it, however long it lasts.
    clock.set(START + timedelta(days=400))
    assert c.lifecycle.run_win_back(clock.now()) == 0
    assert [k for _, k, _ in awards(c, idle)] == ["win_back:2026-01-15"]
    assert bonus_texts(c, m, idle)[0]["ru"] == "Бонус «Мы скучали»: 70 баллов"
    assert_verified(c)


# ---- welcome -------------------------------------------------------------------------------
def test_welcome_on_enrolment_waits_for_a_complete_profile(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(
        c,
        m,
        {
            "welcome": {
                "points": 150,
                "require_complete_profile": ["phone", "email"],
                "complete_within_days": 30,
                "label": {"ru": "Добро пожаловать", "en": "Welcome aboard"},
            }
        },
    )
    complete = enrol(c, m, phone="+79161230019", email="a@example.com")
    assert awards(c, complete) == [("welcome", "welcome", 150)]
    assert bonus_texts(c, m, complete) == [
        {"ru": "Добро пожаловать: 150 баллов", "en": "Welcome aboard: 150 points"}
    ]
    partial = enrol(c, m, phone="+79161230020")
    assert awards(c, partial) == []
    clock.advance(days=10)
    c.members.update(m.actor, partial, {"name": "Ann"})  # still no e-mail
    assert awards(c, partial) == []
    c.members.update(m.actor, partial, {"email": "b@example.com"})
    assert awards(c, partial) == [("welcome", "welcome", 150)]
    c.members.update(m.actor, partial, {"email": "c@example.com"})
    assert available(c, m, partial) == 150
    late = enrol(c, m, phone="+79161230021")
    clock.advance(days=31)
    c.members.update(m.actor, late, {"email": "d@example.com"})
    assert awards(c, late) == []


def test_welcome_on_the_first_purchase(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(
        c,
        m,
        {"welcome": {"points": 200, "on": "first_purchase", "require_complete_profile": ["name"]}},
    )
    member = enrol(c, m, phone="+79161230022", name="Ann")
    assert awards(c, member) == []
    first = buy(c, m, member, "R-1")
    assert first["welcome"]["given"] is True
    assert first["welcome"]["points"] == 200
    assert first["welcome"]["description"]["en"] == "Welcome bonus: 200 points"
    assert "welcome" not in buy(c, m, member, "R-2")
    assert awards(c, member) == [("welcome", "welcome", 200)]
    # A replay of the first receipt answers the same and gives nothing more.
    assert buy(c, m, member, "R-1")["welcome"] == first["welcome"]
    assert awards(c, member) == [("welcome", "welcome", 200)]
    nameless = enrol(c, m, phone="+79161230023")
    answer = buy(c, m, nameless, "R-3")
    assert answer["welcome"] == {"given": False, "missing_profile": ["name"]}
    c.members.update(m.actor, nameless, {"name": "Bob"})
    assert "welcome" not in buy(c, m, nameless, "R-4")  # only the very first purchase
    assert awards(c, nameless) == []


def test_a_cancelled_first_purchase_takes_the_welcome_back(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, {"welcome": {"points": 200, "on": "first_purchase"}})
    member = enrol(c, m, phone="+79161230024")
    receipt = buy(c, m, member, "R-1")
    assert available(c, m, member) == 200 + receipt["totals"]["points_earned"]
    cancelled = c.purchases.cancel(m.actor, uuid.UUID(receipt["receipt"]["id"]))
    assert cancelled["refunds"][0]["welcome_taken_back"] == 200
    assert available(c, m, member) == 0
    assert awards(c, member) == []
    assert "welcome" not in buy(c, m, member, "R-2")  # not given again
    assert_verified(c)


def test_only_a_full_refund_of_the_first_purchase_takes_the_welcome_back(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, {"welcome": {"points": 200, "on": "first_purchase"}})
    member = enrol(c, m, phone="+79161230025")
    request = ReceiptInput(
        lines=(LineInput("LATTE", Decimal(2), 25000),), member=MemberRef(id=member), outlet="OUT-1"
    )
    receipt = uuid.UUID(c.purchases.confirm(m.actor, request, "R-1")["receipt"]["id"])
    half = c.purchases.refund(m.actor, receipt, "RF-1", [(0, Decimal(1))])
    assert "welcome_taken_back" not in half
    assert awards(c, member) == [("welcome", "welcome", 200)]
    rest = c.purchases.refund(m.actor, receipt, "RF-2", None)
    assert rest["welcome_taken_back"] == 200
    assert awards(c, member) == []
    assert c.purchases.refund(m.actor, receipt, "RF-2", None) == rest  # a replay
    assert available(c, m, member) == 0
    assert_verified(c)


@pytest.mark.postgres_only
def test_concurrent_events_never_pass_a_cap_and_twins_record_once(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    c.programs.publish(
        m.actor,
        "main",
        {"type": "bonus", "events": [{"name": "review_left", "points": 5, "caps": {"day": 3}}]},
    )
    member = enrol(c, m, phone="+79161230026")
    record = c.lifecycle.events.record
    calls: list[Callable[[], Any]] = [
        functools.partial(record, m.actor, member, f"ev-{i % 10}", "review_left", {})
        for i in range(20)
    ]
    results = run_together(calls, workers=20)
    views = [r for r in results if not isinstance(r, Exception)]
    errors = {getattr(r, "code", repr(r)) for r in results if isinstance(r, Exception)}
    assert errors <= {"idempotency_in_progress"}
    assert len({v.event_id for v in views}) == 10  # every event id recorded, once
    listed = c.lifecycle.events.list(m.actor, member, None, 50)
    assert len(listed) == 10
    assert sum(1 for e in listed if e.reward is not None) == 3
    assert {e.capped for e in listed if e.reward is None} == {"day"}
    assert available(c, m, member) == 15
    assert_verified(c)


def test_a_first_purchase_welcome_waits_out_the_return_window(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    c.programs.publish(
        m.actor,
        "main",
        {
            "type": "bonus",
            "pending_days": 14,
            "lifecycle": {"welcome": {"points": 200, "on": "first_purchase"}},
        },
    )
    member = enrol(c, m, phone="+79161230027")
    answer = buy(c, m, member, "R-1")
    assert answer["welcome"]["description"]["en"] == (
        "Welcome bonus: 200 points, available from 2026-01-29"
    )
    assert bonus_texts(c, m, member) == [answer["welcome"]["description"]]
    assert available(c, m, member) == 0
    clock.advance(days=14)
    c.jobs.run()
    assert available(c, m, member) == 200
