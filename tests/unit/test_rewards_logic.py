"""The reward catalogue's pure logic: definitions and their cross-field checks, the cost by
tier, visibility, limit periods in the tenant's time zone, low-stock alerts, and the order's
fulfilment transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kopilka.domain.errors import Conflict
from kopilka.domain.rewards.definition import (
    RewardDefinition,
    RewardKind,
    RewardPatch,
    check_definition,
    dump,
    merge_patch,
)
from kopilka.domain.rewards.logic import (
    OrderAction,
    OrderStatus,
    initial_status,
    is_visible,
    left,
    low_stock_alert,
    period_start,
    status_text,
    transition,
    unit_cost,
)
from kopilka.domain.rules.facts import MemberFacts

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)  # a Wednesday
NAME = {"ru": "Кружка", "en": "Mug"}


def reward(**fields: Any) -> RewardDefinition:
    return RewardDefinition.model_validate(
        {"code": "MUG", "kind": "material", "name": NAME, "cost": 500, **fields}
    )


def problems(**fields: Any) -> list[tuple[tuple[str | int, ...], str]]:
    return [(e.path, e.code) for e in check_definition(reward(**fields))]


# ---- definitions -----------------------------------------------------------------------------
def test_a_plain_material_reward_is_sound() -> None:
    assert problems() == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"kind": "coupon"}, [(("coupon",), "section_required")]),
        ({"kind": "privilege"}, [(("privilege",), "section_required")]),
        ({"kind": "charity"}, [(("charity",), "section_required")]),
        ({"charity": {"code": "fund"}}, [(("charity",), "section_not_allowed")]),
        (
            {"kind": "charity", "charity": {"code": "fund"}, "sku": "S-1"},
            [(("sku",), "sku_not_allowed")],
        ),
        (
            {"kind": "coupon", "coupon": {"benefit": {"discount_percent": 150}}},
            [(("coupon", "benefit", "discount_percent"), "invalid_effect_value")],
        ),
        (
            {"kind": "coupon", "coupon": {"benefit": {"teleport": 1}}},
            [(("coupon", "benefit", "teleport"), "unknown_effect")],
        ),
        (
            {
                "kind": "coupon",
                "coupon": {"benefit": {"issue_coupon": {"benefit": {"points_fixed": 5}}}},
            },
            [(("coupon", "benefit", "issue_coupon"), "unsupported_benefit")],
        ),
        (
            {"kind": "privilege", "privilege": {"duration_days": 30}},
            [(("privilege",), "privilege_grants_nothing")],
        ),
        (
            {"visibility": {"from": "2026-04-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}},
            [(("visibility", "until"), "invalid_window")],
        ),
        (
            {"limits": {"per_member_period": "month"}},
            [(("limits", "per_member_period"), "period_without_limit")],
        ),
    ],
)
def test_cross_field_problems_have_paths(
    fields: dict[str, Any], expected: list[tuple[tuple[str | int, ...], str]]
) -> None:
    assert problems(**fields) == expected


def test_a_coupon_may_give_a_discount_points_or_a_gift() -> None:
    for benefit in (
        {"discount_percent": 10},
        {"points_fixed": 100},
        {"gift": {"sku": "CROISSANT"}},
    ):
        assert problems(kind="coupon", coupon={"benefit": benefit}) == []


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"cost": -1}, ("cost",)),
        ({"cost": 10**13}, ("cost",)),
        ({"cost": "5"}, ("cost",)),
        ({"code": "no spaces"}, ("code",)),
        ({"kind": "teleport"}, ("kind",)),
        ({"name": {"ru": "Только русский"}}, ("name", "en")),
        ({"cost_by_tier": {"gold": -5}}, ("cost_by_tier", "gold")),
        ({"limits": {"total": 0}}, ("limits", "total")),
        ({"visibility": {"from": "2026-04-01T00:00:00"}}, ("visibility", "from")),
        ({"visibility": {"until": "9999-12-31T23:59:59-05:00"}}, ("visibility", "until")),
        ({"visibility": {"from": "0001-01-01T00:00:00+05:00"}}, ("visibility", "from")),
        ({"surprise": 1}, ("surprise",)),
    ],
)
def test_bad_fields_are_refused_with_their_path(fields: dict[str, Any], path: tuple[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        reward(**fields)
    assert any(tuple(e["loc"])[: len(path)] == path for e in caught.value.errors())


def test_a_patch_changes_only_what_it_names() -> None:
    stored = dump(reward(description={"ru": "Белая", "en": "White"}))
    merged = merge_patch(stored, RewardPatch.model_validate({"cost": 300, "status": "archived"}))
    assert merged == {**stored, "cost": 300}
    cleared = merge_patch(stored, RewardPatch.model_validate({"description": None}))
    assert cleared["description"] is None
    reset = merge_patch(
        dump(reward(cost_by_tier={"gold": 1}, limits={"total": 5})),
        RewardPatch.model_validate({"cost_by_tier": None, "limits": None}),
    )
    assert RewardDefinition.model_validate(reset).cost_by_tier == {}
    assert RewardDefinition.model_validate(reset).limits.total is None
    # The visibility window survives the round trip, spelled "from" as in requests.
    stored = dump(reward(visibility={"from": "2026-04-01T00:00:00Z"}))
    assert stored["visibility"]["from"] == "2026-04-01T00:00:00Z"
    assert RewardDefinition.model_validate(stored).visibility.from_ == datetime(
        2026, 4, 1, tzinfo=UTC
    )
    # Stored in UTC whatever the offset sent.
    moscow = dump(reward(visibility={"until": "2026-04-01T00:00:00+03:00"}))
    assert moscow["visibility"]["until"] == "2026-03-31T21:00:00Z"


# ---- cost and visibility ---------------------------------------------------------------------
def test_cost_by_tier_falls_back_to_the_base_cost() -> None:
    definition = reward(cost_by_tier={"gold": 300, "vip": 0})
    assert unit_cost(definition, None) == 500
    assert unit_cost(definition, "silver") == 500
    assert unit_cost(definition, "gold") == 300
    assert unit_cost(definition, "vip") == 0


def facts(**fields: Any) -> MemberFacts:
    return MemberFacts(id="m", **fields)


def test_visibility_needs_every_dimension_given() -> None:
    anyone = reward()
    assert is_visible(anyone, facts(), NOW)
    gold = reward(visibility={"tiers": ["gold", "vip"]})
    assert not is_visible(gold, facts(), NOW)
    assert not is_visible(gold, facts(tier="silver"), NOW)
    assert is_visible(gold, facts(tier="vip"), NOW)
    both = reward(visibility={"segments": ["students"], "clubs": ["runners", "cyclists"]})
    assert not is_visible(both, facts(segments=frozenset({"students"})), NOW)
    assert not is_visible(both, facts(clubs=frozenset({"runners"})), NOW)
    assert is_visible(
        both, facts(segments=frozenset({"students"}), clubs=frozenset({"cyclists"})), NOW
    )


def test_the_window_is_from_inclusive_until_exclusive() -> None:
    definition = reward(
        visibility={"from": "2026-03-18T12:00:00Z", "until": "2026-03-19T00:00:00+03:00"}
    )
    assert not is_visible(definition, facts(), NOW - timedelta(microseconds=1))
    assert is_visible(definition, facts(), NOW)
    until = datetime(2026, 3, 18, 21, 0, tzinfo=UTC)
    assert is_visible(definition, facts(), until - timedelta(microseconds=1))
    assert not is_visible(definition, facts(), until)


# ---- limits ----------------------------------------------------------------------------------
def test_periods_start_at_local_midnight() -> None:
    tz = "Europe/Moscow"  # UTC+3
    late = datetime(2026, 3, 18, 22, 30, tzinfo=UTC)  # already Thursday 19 March in Moscow
    assert period_start(None, late, tz) is None
    assert period_start("day", late, tz) == datetime(2026, 3, 18, 21, 0, tzinfo=UTC)
    assert period_start("week", late, tz) == datetime(2026, 3, 15, 21, 0, tzinfo=UTC)
    assert period_start("month", late, tz) == datetime(2026, 2, 28, 21, 0, tzinfo=UTC)
    assert period_start("year", late, tz) == datetime(2025, 12, 31, 21, 0, tzinfo=UTC)


def test_periods_across_a_daylight_saving_change() -> None:
    # Berlin moves from UTC+1 to UTC+2 on 29 March 2026; the month began at UTC+1.
    moment = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
    assert period_start("month", moment, "Europe/Berlin") == datetime(
        2026, 2, 28, 23, 0, tzinfo=UTC
    )
    assert period_start("day", moment, "Europe/Berlin") == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


def test_what_is_left_of_a_limit() -> None:
    assert left(None, 10) is None
    assert left(5, 2) == 3
    assert left(5, 7) == 0


# ---- low stock -------------------------------------------------------------------------------
def test_low_stock_raises_one_event_per_crossing() -> None:
    assert low_stock_alert(10, None, False) == (False, False)
    assert low_stock_alert(6, 5, False) == (False, False)
    assert low_stock_alert(5, 5, False) == (True, True)  # falls to the threshold: event
    assert low_stock_alert(4, 5, True) == (False, True)  # further down: no second event
    assert low_stock_alert(0, 5, True) == (False, True)
    assert low_stock_alert(9, 5, True) == (False, False)  # restocked: re-armed
    assert low_stock_alert(3, 5, False) == (True, True)  # and the next fall alerts again
    assert low_stock_alert(3, None, True) == (False, False)  # threshold removed


# ---- orders ----------------------------------------------------------------------------------
def test_orders_start_pending_only_for_material_rewards() -> None:
    assert initial_status(RewardKind.MATERIAL) is OrderStatus.PENDING
    for kind in set(RewardKind) - {RewardKind.MATERIAL}:
        assert initial_status(kind) is OrderStatus.ISSUED


def test_transitions() -> None:
    pending, ready = OrderStatus.PENDING, OrderStatus.READY
    issued, cancelled = OrderStatus.ISSUED, OrderStatus.CANCELLED
    assert transition(pending, OrderAction.READY) is ready
    assert transition(pending, OrderAction.ISSUE) is issued
    assert transition(ready, OrderAction.ISSUE) is issued
    assert transition(pending, OrderAction.CANCEL) is cancelled
    assert transition(ready, OrderAction.CANCEL) is cancelled
    # A repeat is no change (the caller answers the same).
    assert transition(ready, OrderAction.READY) is None
    assert transition(issued, OrderAction.ISSUE) is None
    assert transition(cancelled, OrderAction.CANCEL) is None


@pytest.mark.parametrize(
    ("status", "action", "code"),
    [
        (OrderStatus.ISSUED, OrderAction.CANCEL, "order_issued"),
        (OrderStatus.ISSUED, OrderAction.READY, "order_issued"),
        (OrderStatus.CANCELLED, OrderAction.ISSUE, "order_cancelled"),
        (OrderStatus.CANCELLED, OrderAction.READY, "order_cancelled"),
        (OrderStatus.READY, OrderAction.READY, None),
    ],
)
def test_wrong_transitions_are_conflicts(
    status: OrderStatus, action: OrderAction, code: str | None
) -> None:
    if code is None:
        assert transition(status, action) is None
        return
    with pytest.raises(Conflict) as caught:
        transition(status, action)
    assert caught.value.code == code


def test_status_texts_in_both_languages() -> None:
    assert status_text(OrderStatus.READY, "OUT-1", True) == {
        "ru": "Готов к выдаче: OUT-1",
        "en": "Ready for pickup at OUT-1",
    }
    assert status_text(OrderStatus.CANCELLED, None, True)["en"] == "Cancelled, points returned"
    assert status_text(OrderStatus.CANCELLED, None, False)["ru"] == "Отменён"
    for status in OrderStatus:
        text = status_text(status, None, True)
        assert set(text) == {"ru", "en"}
        assert all(text.values())
