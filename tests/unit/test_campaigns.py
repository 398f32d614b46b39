"""The campaigns' pure logic: budget slots, stacking, audiences and the control-group draw,
schedules and limit periods, definitions and the per-receipt cut of points."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.campaigns.audience import held_out, in_audience
from kopilka.domain.campaigns.budget import (
    SlotState,
    caps,
    costs,
    plan_take,
    resize,
    split,
)
from kopilka.domain.campaigns.definition import (
    Audience,
    Budgets,
    Stacking,
    campaign_of_rule,
    compile_campaign,
)
from kopilka.domain.campaigns.effects import cap_points, shares
from kopilka.domain.campaigns.schedule import effective_status, period_start, to_instant
from kopilka.domain.campaigns.stacking import choose, combine
from kopilka.domain.errors import ValidationFailed
from kopilka.domain.rules.document import compile_program
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts

NAME = {"ru": "Весна", "en": "Spring"}


# ---- budgets -----------------------------------------------------------------------------
@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=1, max_value=64))
def test_split_sums_to_the_cap_evenly(cap: int, slots: int) -> None:
    parts = split(cap, slots)
    assert sum(parts) == cap
    assert len(parts) == slots
    assert max(parts) - min(parts) <= 1


@given(
    st.lists(st.integers(min_value=-5, max_value=1000), min_size=1, max_size=16),
    st.integers(min_value=0, max_value=20_000),
)
def test_plan_take_never_takes_more_than_a_slot_has(left: list[int], amount: int) -> None:
    slots = list(enumerate(left))
    plan = plan_take(slots, amount)
    room = sum(max(x, 0) for x in left)
    if amount > room:
        assert plan is None
        return
    assert plan is not None
    assert sum(n for _, n in plan) == amount
    for slot, n in plan:
        assert 0 < n <= left[slot]


def test_resize_keeps_what_each_slot_used() -> None:
    slots = [SlotState(0, 50, 50), SlotState(1, 50, 10)]
    assert resize(slots, 40) is None  # below the 60 used
    grown = resize([*slots, SlotState(2, 0, 0)], 90)
    assert grown == [SlotState(0, 60, 50), SlotState(1, 20, 10), SlotState(2, 10, 0)]


def test_costs_take_overall_and_the_receipts_outlet_only() -> None:
    budgets = Budgets.model_validate(
        {
            "points": 100,
            "redemptions": 5,
            "per_outlet": {"A": {"discount": 10}, "B": {"redemptions": 1}},
        }
    )
    assert caps(budgets) == {
        ("points", "all"): 100,
        ("redemptions", "all"): 5,
        ("discount", "outlet:A"): 10,
        ("redemptions", "outlet:B"): 1,
    }
    assert costs(budgets, "A", 7, 3) == {
        ("points", "all"): 7,
        ("redemptions", "all"): 1,
        ("discount", "outlet:A"): 3,
    }
    assert costs(budgets, "B", 0, 0) == {("redemptions", "all"): 1, ("redemptions", "outlet:B"): 1}


# ---- stacking ----------------------------------------------------------------------------
def _stacking(priority: int, *names: str, exclusive: bool = False) -> Stacking:
    return Stacking(priority=priority, combinable_with=list(names), exclusive=exclusive)


def test_both_sides_must_agree_to_combine() -> None:
    assert combine("a", _stacking(1, "b"), "b", _stacking(1, "a"))
    assert combine("a", _stacking(1, "*"), "b", _stacking(1, "*"))
    assert not combine("a", _stacking(1, "b"), "b", _stacking(1))
    assert not combine("a", _stacking(1, "*", exclusive=True), "b", _stacking(1, "*"))


def test_choose_by_priority() -> None:
    found = [
        ("low", _stacking(50, "*")),
        ("high", _stacking(10, "*")),
        ("alone", _stacking(20)),
        ("solo", _stacking(5, exclusive=True)),
    ]
    assert choose(found) == ["solo"]
    assert choose(found[:3]) == ["high", "low"]
    assert choose(found[2:3]) == ["alone"]


# ---- audiences and the control group -----------------------------------------------------
def test_audiences() -> None:
    gold = MemberFacts(id="1", tier="gold", segments=frozenset({"vip"}), clubs=frozenset({"wine"}))
    assert in_audience(Audience(), None, False)
    assert in_audience(Audience(kind="tiers", values=["gold"]), gold, False)
    assert not in_audience(Audience(kind="tiers", values=["silver"]), gold, False)
    assert in_audience(Audience(kind="segments", values=["vip", "x"]), gold, False)
    assert in_audience(Audience(kind="clubs", values=["wine"]), gold, False)
    assert in_audience(Audience(kind="members"), gold, True)
    assert not in_audience(Audience(kind="members"), gold, False)
    assert not in_audience(Audience(kind="tiers", values=["gold"]), None, False)


def test_the_draw_is_stable_and_near_its_percent() -> None:
    members = [f"m{i}" for i in range(20_000)]
    held = [m for m in members if held_out("seed-1", m, 10)]
    assert 1800 < len(held) < 2200
    assert held == [m for m in members if held_out("seed-1", m, 10)]
    other = {m for m in members if held_out("seed-2", m, 10)}
    assert len(other & set(held)) < 400  # another campaign draws independently


# ---- schedules ---------------------------------------------------------------------------
def test_wall_clock_times_are_the_tenants() -> None:
    moment = datetime(2026, 3, 1)
    assert to_instant(moment, "Europe/Moscow") == datetime(2026, 2, 28, 21, tzinfo=UTC)
    assert to_instant(moment, "Asia/Vladivostok") == datetime(2026, 2, 28, 14, tzinfo=UTC)
    aware = datetime(2026, 3, 1, tzinfo=UTC)
    assert to_instant(aware, "Europe/Moscow") == aware


@pytest.mark.parametrize(
    ("stored", "hour", "expected"),
    [
        ("draft", 12, "draft"),
        ("scheduled", 9, "scheduled"),
        ("scheduled", 10, "active"),
        ("scheduled", 12, "ended"),
        ("paused", 11, "paused"),
        ("paused", 12, "ended"),
        ("ended", 11, "ended"),
    ],
)
def test_effective_status(stored: str, hour: int, expected: str) -> None:
    span = (datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 12, tzinfo=UTC))
    assert effective_status(stored, span, datetime(2026, 1, 1, hour, tzinfo=UTC)) == expected


def test_limit_periods() -> None:
    thursday = date(2026, 1, 15)
    assert period_start("day", thursday) == thursday
    assert period_start("week", thursday) == date(2026, 1, 12)
    assert period_start("month", thursday) == date(2026, 1, 1)
    assert period_start("campaign", thursday) is None


# ---- definitions and effects -------------------------------------------------------------
def test_compiled_rules_are_prefixed_and_named_after_the_campaign() -> None:
    compiled = compile_campaign(
        1,
        "spring",
        3,
        "scheduled",
        "seed",
        {
            "name": NAME,
            "rules": [
                {"id": "a", "effects": [{"points_fixed": 10}]},
                {"id": "b", "name": {"ru": "Б", "en": "B"}, "effects": [{"points_fixed": 1}]},
            ],
        },
    )
    assert [r.id for r in compiled.rules] == ["campaign:spring:a", "campaign:spring:b"]
    assert [r.name for r in compiled.rules] == [NAME, {"ru": "Б", "en": "B"}]
    assert campaign_of_rule("campaign:spring:a") == "spring"
    assert campaign_of_rule("base") is None


def test_definition_errors_have_paths() -> None:
    with pytest.raises(ValidationFailed) as exc:
        compile_campaign(
            1,
            "x",
            1,
            "draft",
            "s",
            {
                "name": NAME,
                "audience": {"kind": "clubs"},
                "schedule": {"start": "2026-02-01", "end": "2026-02-01"},
                "rules": [{"id": "a", "effects": []}],
                "surprise": 1,
            },
        )
    assert {e.path for e in exc.value.errors} == {("surprise",)}
    with pytest.raises(ValidationFailed) as exc:
        compile_campaign(
            1,
            "x",
            1,
            "draft",
            "s",
            {
                "name": NAME,
                "audience": {"kind": "clubs"},
                "schedule": {"start": "2026-02-01", "end": "2026-02-01"},
                "rules": [{"id": "a", "effects": []}],
            },
        )
    assert {e.path for e in exc.value.errors} == {
        ("audience", "values"),
        ("schedule", "end"),
        ("rules", 0, "effects"),
    }


def test_cap_points_cuts_the_campaigns_points_and_its_lines() -> None:
    campaign = compile_campaign(
        1,
        "spring",
        1,
        "scheduled",
        "s",
        {"name": NAME, "rules": [{"id": "x", "effects": [{"points_percent": 10}]}]},
    )
    base = compile_program(
        {"type": "bonus", "rules": [{"id": "base", "effects": [{"points_percent": 5}]}]}, "p", 1
    )
    program = replace(base, rules=(*base.rules, *campaign.rules))
    lines = [
        Line(0, "A", Decimal(1), 60000, 60000),
        Line(1, "B", Decimal(1), 40000, 40000),
    ]
    moment = datetime(2026, 1, 15, 9, tzinfo=UTC)
    ctx = Context(moment, moment, moment.date(), member=MemberFacts(id="m"))
    evaluation = evaluate([program], lines, ctx)
    assert shares(evaluation)["spring"].points == 100
    assert evaluation.earned_by_program["p"] == 150
    assert cap_points(evaluation, "spring", 30, NAME) == 70
    assert shares(evaluation)["spring"].points == 30
    assert evaluation.earned_by_program["p"] == 80
    assert sum(li.points_earned.get("p", 0) for li in evaluation.lines) == 80
    assert cap_points(evaluation, "spring", 30, NAME) == 0
