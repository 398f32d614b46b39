"""Every rule condition, table-driven: the condition JSON, a receipt and its context, the answer.

Each row is checked twice: by the compiled condition itself, and through ``evaluate`` with a
rule that uses it, so the rule index (which skips rules a receipt cannot match) is checked too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kopilka.domain.errors import ErrorCollector
from kopilka.domain.rules.conditions import ConditionCompiler, Gap
from kopilka.domain.rules.document import compile_program
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts
from kopilka.domain.rules.money import line_amount

MSK = ZoneInfo("Europe/Moscow")  # UTC+3
YEKT = ZoneInfo("Asia/Yekaterinburg")  # UTC+5


def ln(sku: str, price: int = 10_000, qty: str = "1", **extra: Any) -> Line:
    """A receipt line; the amount is price × qty as the till computes it."""
    quantity = Decimal(qty)
    return Line(
        index=0, sku=sku, qty=quantity, price=price, amount=line_amount(price, quantity), **extra
    )


def receipt(*lines: Line) -> list[Line]:
    """Lines numbered in order."""
    return [replace(line, index=i) for i, line in enumerate(lines)]


LATTE = ln(
    "LATTE",
    25_000,
    category=("drinks", "coffee"),
    brand="Lavazza",
    tags=frozenset({"hot", "new"}),
    attributes={"size": "L", "milk": "oat"},
)
TEA = ln("TEA", 15_000, category=("drinks", "tea"), brand="Greenfield", tags=frozenset({"hot"}))
CROISSANT = ln(
    "CROISSANT",
    12_000,
    category=("bakery",),
    brand="Paul",
    tags=frozenset({"fresh"}),
    attributes={"size": "M"},
)
BEANS = ln("BEANS", 200_000, "0.250", category=("drinks", "beans"))  # weighed: 500,00 ₽
TWO_LATTES = ln("LATTE", 25_000, "2", category=("drinks", "coffee"), brand="Lavazza")

BASKET = receipt(LATTE, CROISSANT)
GOLD = MemberFacts(
    id="m1",
    tier="gold",
    segments=frozenset({"vip", "students"}),
    tags=frozenset({"staff"}),
    attributes={"city": "spb", "kids": 2},
    purchases_before=0,
    birthday=(5, 15),
    clubs=frozenset({"coffee-club"}),
)


def ctx(
    local: str = "2024-05-15T12:00", tz: ZoneInfo = MSK, *, today: str | None = None, **extra: Any
) -> Context:
    """A context at ``local`` outlet time; the tenant's date defaults to the same day."""
    local_time = datetime.fromisoformat(local).replace(tzinfo=tz)
    tenant_today = date.fromisoformat(today) if today else local_time.date()
    base: dict[str, Any] = {
        "occurred_at": local_time.astimezone(UTC),
        "local_time": local_time,
        "tenant_today": tenant_today,
        "outlet_code": "MSK-1",
        "outlet_tags": frozenset({"mall", "24h"}),
        "region": "msk",
        "channel": "store",
        "payment_method": "card",
        "coupons": frozenset(),
        "member": GOLD,
    }
    base.update(extra)
    return Context(**base)


def member(**changes: Any) -> MemberFacts:
    return replace(GOLD, **changes)


def holds(condition: Any, lines: Sequence[Line], context: Context) -> bool:
    """Compile ``condition`` at receipt level (it must be valid) and test it."""
    errors = ErrorCollector()
    compiled = ConditionCompiler(errors).receipt(condition, ("when",))
    assert errors.errors == []
    return compiled.test(context, lines)


def applies_through_engine(condition: Any, lines: Sequence[Line], context: Context) -> bool:
    """Whether a rule with ``when: condition`` is chosen by the evaluator."""
    program = compile_program(
        {
            "type": "bonus",
            "rules": [
                {"id": "r", "when": condition, "effects": [{"gift": {"sku": "GIFT"}}]},
            ],
        },
        "p",
        1,
    )
    return evaluate([program], lines, context).rules_by_program["p"] == ["r"]


def check(condition: Any, lines: Sequence[Line], context: Context, expected: bool) -> None:
    assert holds(condition, lines, context) is expected
    assert applies_through_engine(condition, lines, context) is expected


# ---- line conditions (at receipt level: "the receipt has such a line") ------------------
LINE_ROWS = [
    pytest.param({"sku": "LATTE"}, BASKET, True, id="sku"),
    pytest.param({"sku": "TEA"}, BASKET, False, id="sku-absent"),
    pytest.param({"sku": "latte"}, BASKET, False, id="sku-is-case-sensitive"),
    pytest.param({"sku_in": ["TEA", "CROISSANT"]}, BASKET, True, id="sku_in"),
    pytest.param({"sku_in": ["TEA", "BEANS"]}, BASKET, False, id="sku_in-none"),
    pytest.param({"category": "drinks"}, BASKET, True, id="category-parent-matches-child"),
    pytest.param({"category": "drinks/coffee"}, BASKET, True, id="category-exact"),
    pytest.param({"category": "/drinks/coffee/"}, BASKET, True, id="category-slashes-trimmed"),
    pytest.param({"category": "drinks/tea"}, BASKET, False, id="category-sibling"),
    pytest.param({"category": "drink"}, BASKET, False, id="category-prefix-of-a-name"),
    pytest.param({"category": "drinks/coffee/decaf"}, BASKET, False, id="category-deeper"),
    pytest.param({"category": "coffee"}, BASKET, False, id="category-not-a-root"),
    pytest.param({"category_in": ["drinks/tea", "bakery"]}, BASKET, True, id="category_in"),
    pytest.param({"category_in": ["drinks/tea", "frozen"]}, BASKET, False, id="category_in-none"),
    pytest.param({"brand": "Lavazza"}, BASKET, True, id="brand"),
    pytest.param({"brand": "Illy"}, BASKET, False, id="brand-absent"),
    pytest.param({"brand_in": ["Illy", "Paul"]}, BASKET, True, id="brand_in"),
    pytest.param({"brand_in": ["Illy"]}, BASKET, False, id="brand_in-none"),
    pytest.param({"tag": "fresh"}, BASKET, True, id="tag"),
    pytest.param({"tag": "frozen"}, BASKET, False, id="tag-absent"),
    pytest.param({"tag_in": ["frozen", "new"]}, BASKET, True, id="tag_in"),
    pytest.param({"tag_in": ["frozen"]}, BASKET, False, id="tag_in-none"),
    pytest.param(
        {"attribute": {"name": "milk", "equals": "oat"}}, BASKET, True, id="attribute-equals"
    ),
    pytest.param(
        {"attribute": {"name": "milk", "equals": "cow"}}, BASKET, False, id="attribute-equals-other"
    ),
    pytest.param(
        {"attribute": {"name": "size", "in": ["S", "M"]}}, BASKET, True, id="attribute-in"
    ),
    pytest.param(
        {"attribute": {"name": "size", "in": ["XL"]}}, BASKET, False, id="attribute-in-none"
    ),
    pytest.param(
        {"attribute": {"name": "sugar", "equals": "no"}}, BASKET, False, id="attribute-missing"
    ),
    pytest.param({"line_qty_gte": 2}, receipt(TWO_LATTES), True, id="line_qty_gte"),
    pytest.param({"line_qty_gte": 2}, BASKET, False, id="line_qty_gte-short"),
    pytest.param({"line_qty_gte": 0.25}, receipt(BEANS), True, id="line_qty_gte-weighed"),
    pytest.param({"line_qty_gte": "0.251"}, receipt(BEANS), False, id="line_qty_gte-weighed-no"),
    pytest.param({"line_amount_gte": 50_000}, receipt(TWO_LATTES), True, id="line_amount_gte"),
    pytest.param({"line_amount_gte": 50_000}, BASKET, False, id="line_amount_gte-no"),
    pytest.param({"price_gte": 25_000}, BASKET, True, id="price_gte-boundary"),
    pytest.param({"price_gte": 25_001}, BASKET, False, id="price_gte-no"),
    pytest.param({"price_lte": 12_000}, BASKET, True, id="price_lte-boundary"),
    pytest.param({"price_lte": 11_999}, BASKET, False, id="price_lte-no"),
    pytest.param(
        {"all": [{"category": "drinks"}, {"brand": "Lavazza"}]}, BASKET, True, id="all-on-one-line"
    ),
    pytest.param({"any": [{"sku": "TEA"}, {"brand": "Paul"}]}, BASKET, True, id="any"),
    pytest.param({"any": [{"sku": "TEA"}, {"brand": "Illy"}]}, BASKET, False, id="any-none"),
    pytest.param({"not": {"sku": "TEA"}}, BASKET, True, id="not"),
    pytest.param({"not": {"sku": "LATTE"}}, BASKET, False, id="not-present"),
]


@pytest.mark.parametrize(("condition", "lines", "expected"), LINE_ROWS)
def test_line_conditions_at_receipt_level(
    condition: Any, lines: list[Line], expected: bool
) -> None:
    check(condition, lines, ctx(), expected)


# ``lines``: the same conditions select lines one by one.
SELECT_ROWS = [
    pytest.param({"category": "drinks"}, [0, 1, 3], id="category-subtree"),
    pytest.param({"category": "drinks/coffee"}, [0], id="category-exact"),
    pytest.param({"all": [{"category": "drinks"}, {"tag": "hot"}]}, [0, 1], id="all"),
    pytest.param({"all": [{"brand": "Lavazza"}, {"sku": "TEA"}]}, [], id="all-needs-one-line"),
    pytest.param({"any": [{"sku": "CROISSANT"}, {"tag": "new"}]}, [0, 2], id="any"),
    pytest.param({"not": {"category": "drinks"}}, [2], id="not"),
    pytest.param({"not": {"not": {"sku": "TEA"}}}, [1], id="not-not"),
    pytest.param({"price_lte": 15_000}, [1, 2], id="price_lte"),
    pytest.param({"price_gte": 20_000}, [0, 3], id="price_gte"),
    pytest.param({"line_amount_gte": 20_000}, [0, 3], id="line_amount_gte"),
    pytest.param({"line_qty_gte": 1}, [0, 1, 2], id="line_qty_gte-skips-weighed"),
    pytest.param({"attribute": {"name": "size", "in": ["L", "M"]}}, [0, 2], id="attribute-in"),
]


@pytest.mark.parametrize(("condition", "selected"), SELECT_ROWS)
def test_line_conditions_select_lines(condition: Any, selected: list[int]) -> None:
    errors = ErrorCollector()
    predicate, _keys = ConditionCompiler(errors).line(condition, ("lines",))
    assert errors.errors == []
    lines = receipt(LATTE, TEA, CROISSANT, BEANS)
    assert [line.index for line in lines if predicate(line)] == selected


# ---- thresholds: qty_gte, amount_gte, lines_gte ----------------------------------------
THREE_LATTES = ln("LATTE", 25_000, "3", category=("drinks", "coffee"))
SET_A, SET_B, SET_C = ln("A", 5_000), ln("B", 6_000), ln("C", 7_000)

THRESHOLD_ROWS = [
    pytest.param({"qty_gte": 3}, receipt(TWO_LATTES, CROISSANT), True, id="qty_gte-all-lines"),
    pytest.param({"qty_gte": 4}, receipt(TWO_LATTES, CROISSANT), False, id="qty_gte-short"),
    pytest.param(
        {"qty_gte": {"value": 3}},
        receipt(TWO_LATTES, CROISSANT),
        True,
        id="qty_gte-object-without-of",
    ),
    pytest.param(
        {"qty_gte": {"of": {"sku": "LATTE"}, "value": 2}},
        receipt(TWO_LATTES),
        True,
        id="qty_gte-of",
    ),
    pytest.param(
        {"qty_gte": {"of": {"sku": "LATTE"}, "value": 3}},
        receipt(TWO_LATTES, CROISSANT),
        False,
        id="qty_gte-of-ignores-others",
    ),
    pytest.param(
        {"qty_gte": {"of": {"category": "drinks"}, "value": "2.25"}},
        receipt(TWO_LATTES, BEANS),
        True,
        id="qty_gte-of-weighed",
    ),
    pytest.param(
        {"amount_gte": 62_000}, receipt(TWO_LATTES, CROISSANT), True, id="amount_gte-boundary"
    ),
    pytest.param(
        {"amount_gte": 62_001}, receipt(TWO_LATTES, CROISSANT), False, id="amount_gte-short"
    ),
    pytest.param(
        {"amount_gte": {"of": {"category": "bakery"}, "value": 12_000}},
        BASKET,
        True,
        id="amount_gte-of",
    ),
    pytest.param(
        {"amount_gte": {"of": {"category": "drinks"}, "value": 30_000}},
        BASKET,
        False,
        id="amount_gte-of-short",
    ),
    pytest.param({"lines_gte": 2}, BASKET, True, id="lines_gte"),
    pytest.param({"lines_gte": 3}, BASKET, False, id="lines_gte-short"),
    pytest.param(
        {"lines_gte": {"of": {"tag": "hot"}, "value": 2}},
        receipt(LATTE, TEA),
        True,
        id="lines_gte-of",
    ),
    pytest.param(
        {"lines_gte": {"of": {"tag": "hot"}, "value": 2}}, BASKET, False, id="lines_gte-of-short"
    ),
    # "buy 3 of the set {A, B, C}": any mix of the set counts
    pytest.param(
        {"qty_gte": {"of": {"sku_in": ["A", "B", "C"]}, "value": 3}},
        receipt(SET_A, SET_B, SET_C),
        True,
        id="set-one-of-each",
    ),
    pytest.param(
        {"qty_gte": {"of": {"sku_in": ["A", "B", "C"]}, "value": 3}},
        receipt(replace(SET_A, qty=Decimal(2), amount=10_000), SET_C),
        True,
        id="set-two-plus-one",
    ),
    pytest.param(
        {"qty_gte": {"of": {"sku_in": ["A", "B", "C"]}, "value": 3}},
        receipt(SET_A, SET_B, CROISSANT),
        False,
        id="set-two-plus-outsider",
    ),
]


@pytest.mark.parametrize(("condition", "lines", "expected"), THRESHOLD_ROWS)
def test_threshold_conditions(condition: Any, lines: list[Line], expected: bool) -> None:
    check(condition, lines, ctx(), expected)


@pytest.mark.parametrize(
    ("condition", "lines", "gap"),
    [
        pytest.param(
            {"qty_gte": {"of": {"sku": "LATTE"}, "value": 3}},
            receipt(TWO_LATTES),
            Gap("qty", Decimal(1)),
            id="qty",
        ),
        pytest.param(
            {"qty_gte": {"of": {"category": "drinks"}, "value": 1}},
            receipt(BEANS),
            Gap("qty", Decimal("0.750")),
            id="qty-weighed",
        ),
        pytest.param({"amount_gte": 100_000}, BASKET, Gap("amount", 63_000), id="amount"),
        pytest.param({"lines_gte": 4}, BASKET, Gap("qty", Decimal(2)), id="lines"),
        pytest.param(
            {"all": [{"tier_in": ["gold"]}, {"amount_gte": 40_000}]},
            BASKET,
            Gap("amount", 3_000),
            id="all-one-threshold-missing",
        ),
        pytest.param({"amount_gte": 37_000}, BASKET, None, id="met"),
    ],
)
def test_threshold_gaps(condition: Any, lines: list[Line], gap: Gap | None) -> None:
    errors = ErrorCollector()
    compiled = ConditionCompiler(errors).receipt(condition, ("when",))
    assert compiled.gap is not None
    assert compiled.gap(ctx(), lines) == gap


def test_all_gives_no_gap_when_a_non_threshold_part_fails_too() -> None:
    compiled = ConditionCompiler(ErrorCollector()).receipt(
        {"all": [{"tier_in": ["silver"]}, {"amount_gte": 40_000}]}, ("when",)
    )
    assert compiled.gap is not None
    assert compiled.gap(ctx(), BASKET) is None


# ---- where, how, who ---------------------------------------------------------------------
NO_MEMBER = ctx(member=None)

CONTEXT_ROWS = [
    pytest.param({"outlet_in": ["MSK-1", "MSK-2"]}, ctx(), True, id="outlet_in"),
    pytest.param({"outlet_in": ["SPB-1"]}, ctx(), False, id="outlet_in-other"),
    pytest.param({"outlet_in": ["MSK-1"]}, ctx(outlet_code=None), False, id="outlet_in-none"),
    pytest.param({"outlet_tag": "mall"}, ctx(), True, id="outlet_tag"),
    pytest.param({"outlet_tag": "airport"}, ctx(), False, id="outlet_tag-absent"),
    pytest.param({"region_in": ["spb", "msk"]}, ctx(), True, id="region_in"),
    pytest.param({"region_in": ["spb"]}, ctx(), False, id="region_in-other"),
    pytest.param({"region_in": ["msk"]}, ctx(region=None), False, id="region_in-none"),
    pytest.param({"channel_in": ["store"]}, ctx(), True, id="channel_in"),
    pytest.param({"channel_in": ["online", "app"]}, ctx(), False, id="channel_in-other"),
    pytest.param({"channel_in": ["app"]}, ctx(channel="app"), True, id="channel_in-app"),
    pytest.param({"payment_method_in": ["card", "sbp"]}, ctx(), True, id="payment_method_in"),
    pytest.param({"payment_method_in": ["cash"]}, ctx(), False, id="payment_method_in-other"),
    pytest.param(
        {"payment_method_in": ["card"]},
        ctx(payment_method=None),
        False,
        id="payment_method_in-unknown",
    ),
    pytest.param({"coupon": "SUMMER10"}, ctx(coupons=frozenset({"SUMMER10"})), True, id="coupon"),
    pytest.param(
        {"coupon": "summer10"},
        ctx(coupons=frozenset({"SUMMER10"})),
        True,
        id="coupon-rule-lower-case",
    ),
    pytest.param(
        {"coupon": "SUMMER10"},
        ctx(coupons=frozenset({"Summer10"})),
        True,
        id="coupon-receipt-mixed-case",
    ),
    pytest.param(
        {"coupon": "SUMMER10"}, ctx(coupons=frozenset({"WINTER5"})), False, id="coupon-other"
    ),
    pytest.param({"coupon": "SUMMER10"}, ctx(), False, id="coupon-none"),
    pytest.param({"tier_in": ["gold", "platinum"]}, ctx(), True, id="tier_in"),
    pytest.param({"tier_in": ["silver"]}, ctx(), False, id="tier_in-other"),
    pytest.param({"tier_in": ["gold"]}, ctx(member=member(tier=None)), False, id="tier_in-no-tier"),
    pytest.param({"tier_in": ["gold"]}, NO_MEMBER, False, id="tier_in-no-member"),
    pytest.param({"segment_in": ["vip"]}, ctx(), True, id="segment_in"),
    pytest.param({"segment_in": ["churn"]}, ctx(), False, id="segment_in-other"),
    pytest.param({"segment_in": ["vip"]}, NO_MEMBER, False, id="segment_in-no-member"),
    pytest.param({"club_in": ["coffee-club", "kids"]}, ctx(), True, id="club_in"),
    pytest.param({"club_in": ["kids"]}, ctx(), False, id="club_in-other"),
    pytest.param({"club_in": ["coffee-club"]}, NO_MEMBER, False, id="club_in-no-member"),
    pytest.param({"member_tag": "staff"}, ctx(), True, id="member_tag"),
    pytest.param({"member_tag": "blogger"}, ctx(), False, id="member_tag-absent"),
    pytest.param({"member_tag": "staff"}, NO_MEMBER, False, id="member_tag-no-member"),
    pytest.param(
        {"member_attribute": {"name": "city", "equals": "spb"}},
        ctx(),
        True,
        id="member_attribute-equals",
    ),
    pytest.param(
        {"member_attribute": {"name": "city", "equals": "msk"}},
        ctx(),
        False,
        id="member_attribute-equals-other",
    ),
    pytest.param(
        {"member_attribute": {"name": "kids", "in": [1, 2, 3]}},
        ctx(),
        True,
        id="member_attribute-in",
    ),
    pytest.param(
        {"member_attribute": {"name": "kids", "in": [0]}},
        ctx(),
        False,
        id="member_attribute-in-none",
    ),
    pytest.param(
        {"member_attribute": {"name": "city", "equals": "spb"}},
        NO_MEMBER,
        False,
        id="member_attribute-no-member",
    ),
    pytest.param({"member": True}, ctx(), True, id="member-true"),
    pytest.param({"member": True}, NO_MEMBER, False, id="member-true-anonymous"),
    pytest.param({"member": False}, NO_MEMBER, True, id="member-false-anonymous"),
    pytest.param({"member": False}, ctx(), False, id="member-false-identified"),
    pytest.param({"first_purchase": True}, ctx(), True, id="first_purchase"),
    pytest.param(
        {"first_purchase": True},
        ctx(member=member(purchases_before=3)),
        False,
        id="first_purchase-returning",
    ),
    pytest.param(
        {"first_purchase": False},
        ctx(member=member(purchases_before=3)),
        True,
        id="first_purchase-false-returning",
    ),
    pytest.param({"first_purchase": True}, NO_MEMBER, False, id="first_purchase-anonymous"),
    pytest.param(
        {"nth_purchase": 3}, ctx(member=member(purchases_before=2)), True, id="nth_purchase"
    ),
    pytest.param(
        {"nth_purchase": 3}, ctx(member=member(purchases_before=3)), False, id="nth_purchase-after"
    ),
    pytest.param({"nth_purchase": 1}, ctx(), True, id="nth_purchase-first"),
    pytest.param({"nth_purchase": 1}, NO_MEMBER, False, id="nth_purchase-anonymous"),
]


@pytest.mark.parametrize(("condition", "context", "expected"), CONTEXT_ROWS)
def test_context_conditions(condition: Any, context: Context, expected: bool) -> None:
    check(condition, BASKET, context, expected)


# ---- when: weekdays, hours, dates (outlet local time), birthdays (tenant calendar) -------
def utc_seen_from(moment_utc: str, tz: ZoneInfo, **extra: Any) -> Context:
    """A purchase at ``moment_utc`` in an outlet in ``tz``: what the service builds."""
    occurred = datetime.fromisoformat(moment_utc).replace(tzinfo=UTC)
    local = occurred.astimezone(tz)
    return ctx(local.replace(tzinfo=None).isoformat(), tz, **extra)


# 2024-05-13 is a Monday; 2024-05-19 a Sunday.
TIME_ROWS = [
    pytest.param({"weekdays": [1, 2, 3, 4, 5]}, ctx("2024-05-15T12:00"), True, id="weekdays"),
    pytest.param({"weekdays": [6, 7]}, ctx("2024-05-15T12:00"), False, id="weekdays-weekend"),
    pytest.param({"weekdays": [7]}, ctx("2024-05-19T23:59"), True, id="weekdays-sunday"),
    pytest.param(
        {"weekdays": [1]},
        utc_seen_from("2024-05-19T22:30", MSK),
        True,
        id="weekdays-outlet-local-monday",
    ),  # Sunday in UTC, Monday in Moscow
    pytest.param(
        {"hours": {"from": "08:00", "to": "11:00"}},
        ctx("2024-05-15T08:00"),
        True,
        id="hours-from-inclusive",
    ),
    pytest.param(
        {"hours": {"from": "08:00", "to": "11:00"}},
        ctx("2024-05-15T10:59"),
        True,
        id="hours-inside",
    ),
    pytest.param(
        {"hours": {"from": "08:00", "to": "11:00"}},
        ctx("2024-05-15T11:00"),
        False,
        id="hours-to-exclusive",
    ),
    pytest.param(
        {"hours": {"from": "08:00", "to": "11:00"}},
        ctx("2024-05-15T07:59"),
        False,
        id="hours-before",
    ),
    pytest.param(
        {"hours": {"from": "22:00", "to": "02:00"}},
        ctx("2024-05-15T23:30"),
        True,
        id="hours-midnight-evening",
    ),
    pytest.param(
        {"hours": {"from": "8:00", "to": "9:30:30"}},
        ctx("2024-05-15T09:30:15"),
        True,
        id="hours-without-leading-zero-and-with-seconds",
    ),
    pytest.param(
        {"hours": {"from": "22:00", "to": "02:00"}},
        ctx("2024-05-15T00:00"),
        True,
        id="hours-midnight-at-midnight",
    ),
    pytest.param(
        {"hours": {"from": "22:00", "to": "02:00"}},
        ctx("2024-05-15T01:59"),
        True,
        id="hours-midnight-night",
    ),
    pytest.param(
        {"hours": {"from": "22:00", "to": "02:00"}},
        ctx("2024-05-15T02:00"),
        False,
        id="hours-midnight-end",
    ),
    pytest.param(
        {"hours": {"from": "22:00", "to": "02:00"}},
        ctx("2024-05-15T12:00"),
        False,
        id="hours-midnight-noon",
    ),
    pytest.param(
        {"hours": {"from": "22:00", "to": "00:00"}},
        ctx("2024-05-15T23:59"),
        True,
        id="hours-until-midnight",
    ),
    # 19:30 UTC is 00:30 in Yekaterinburg: the outlet's clock decides, not UTC
    pytest.param(
        {"hours": {"from": "22:00", "to": "02:00"}},
        utc_seen_from("2024-05-15T19:30", YEKT),
        True,
        id="hours-outlet-local",
    ),
    pytest.param(
        {"hours": {"from": "18:00", "to": "21:00"}},
        utc_seen_from("2024-05-15T19:30", YEKT),
        False,
        id="hours-not-utc",
    ),
    pytest.param(
        {"date_between": {"from": "2024-05-01", "to": "2024-05-15"}},
        ctx("2024-05-15T23:59"),
        True,
        id="date_between-last-day-inclusive",
    ),
    pytest.param(
        {"date_between": {"from": "2024-05-15", "to": "2024-05-31"}},
        ctx("2024-05-15T00:00"),
        True,
        id="date_between-first-day-inclusive",
    ),
    pytest.param(
        {"date_between": {"from": "2024-05-16", "to": "2024-05-31"}},
        ctx("2024-05-15T12:00"),
        False,
        id="date_between-before",
    ),
    pytest.param(
        {"date_between": {"from": "2024-05-01", "to": "2024-05-14"}},
        ctx("2024-05-15T12:00"),
        False,
        id="date_between-after",
    ),
    pytest.param(
        {"date_between": {"from": "2024-05-01"}},
        ctx("2030-01-01T12:00"),
        True,
        id="date_between-open-end",
    ),
    pytest.param(
        {"date_between": {"to": "2024-05-01"}},
        ctx("2024-05-02T12:00"),
        False,
        id="date_between-open-start",
    ),
    pytest.param(
        {"date_between": {"from": "2024-05-16", "to": "2024-05-16"}},
        utc_seen_from("2024-05-15T21:30", MSK),
        True,
        id="date_between-outlet-local",
    ),
]


@pytest.mark.parametrize(("condition", "context", "expected"), TIME_ROWS)
def test_time_conditions(condition: Any, context: Context, expected: bool) -> None:
    check(condition, BASKET, context, expected)


def birthday(days: int, born: tuple[int, int] | None, today: str) -> tuple[Any, Context]:
    return {"birthday_window": {"days": days}}, ctx(today=today, member=member(birthday=born))


BIRTHDAY_ROWS = [
    pytest.param(*birthday(0, (5, 15), "2024-05-15"), True, id="on-the-day"),
    pytest.param(*birthday(0, (5, 15), "2024-05-16"), False, id="day-after-window-0"),
    pytest.param(*birthday(3, (5, 15), "2024-05-18"), True, id="plus-3"),
    pytest.param(*birthday(3, (5, 15), "2024-05-12"), True, id="minus-3"),
    pytest.param(*birthday(3, (5, 15), "2024-05-19"), False, id="plus-4"),
    pytest.param(*birthday(3, (5, 15), "2024-05-11"), False, id="minus-4"),
    pytest.param(*birthday(7, (5, 15), "2023-05-20"), True, id="any-year"),
    # 29 February: celebrated on 28 February in other years
    pytest.param(*birthday(0, (2, 29), "2024-02-29"), True, id="feb29-leap-year"),
    pytest.param(*birthday(0, (2, 29), "2024-02-28"), False, id="feb29-leap-year-day-before"),
    pytest.param(*birthday(0, (2, 29), "2025-02-28"), True, id="feb29-non-leap-on-28"),
    pytest.param(*birthday(0, (2, 29), "2025-03-01"), False, id="feb29-non-leap-on-1-march"),
    pytest.param(*birthday(1, (2, 29), "2025-03-01"), True, id="feb29-non-leap-plus-1"),
    pytest.param(*birthday(2, (2, 29), "2025-02-26"), True, id="feb29-non-leap-minus-2"),
    # across New Year
    pytest.param(*birthday(3, (12, 30), "2025-01-02"), True, id="dec30-seen-in-january"),
    pytest.param(*birthday(2, (12, 30), "2025-01-02"), False, id="dec30-too-far"),
    pytest.param(*birthday(3, (1, 2), "2024-12-30"), True, id="jan2-seen-in-december"),
    pytest.param(*birthday(1, (12, 31), "2024-01-01"), True, id="dec31-on-new-year"),
    pytest.param(*birthday(1, (1, 1), "2023-12-31"), True, id="jan1-on-new-years-eve"),
    pytest.param(*birthday(7, (1, 3), "2024-12-28"), True, id="jan3-a-week-before"),
    pytest.param(*birthday(30, (5, 15), "2024-06-14"), True, id="wide-window"),
    pytest.param(*birthday(3, None, "2024-05-15"), False, id="birthday-unknown"),
    pytest.param(
        {"birthday_window": {"days": 3}},
        ctx(today="2024-05-15", member=None),
        False,
        id="anonymous",
    ),
]


@pytest.mark.parametrize(("condition", "context", "expected"), BIRTHDAY_ROWS)
def test_birthday_window(condition: Any, context: Context, expected: bool) -> None:
    check(condition, BASKET, context, expected)


def test_birthday_uses_the_tenants_calendar_not_the_outlets() -> None:
    """Late evening on 14 May in Kaliningrad is already 15 May for a Moscow tenant."""
    context = ctx("2024-05-14T23:30", ZoneInfo("Europe/Kaliningrad"), today="2024-05-15")
    check({"birthday_window": {"days": 0}}, BASKET, context, True)
    check({"date_between": {"from": "2024-05-15"}}, BASKET, context, False)


# ---- combinators at receipt level ----------------------------------------------------------
COMBINATOR_ROWS = [
    pytest.param(
        {"all": [{"sku": "LATTE"}, {"tier_in": ["gold"]}]}, ctx(), True, id="all-line-and-member"
    ),
    pytest.param(
        {"all": [{"sku": "LATTE"}, {"tier_in": ["silver"]}]}, ctx(), False, id="all-one-fails"
    ),
    pytest.param(
        {"all": [{"sku": "LATTE"}, {"sku": "CROISSANT"}]}, ctx(), True, id="all-two-different-lines"
    ),
    pytest.param({"any": [{"sku": "TEA"}, {"coupon": "X"}]}, ctx(), False, id="any-none"),
    pytest.param(
        {"any": [{"sku": "TEA"}, {"member_tag": "staff"}]}, ctx(), True, id="any-context-part"
    ),
    pytest.param(
        {"any": [{"sku": "TEA"}, {"category": "bakery"}]}, ctx(), True, id="any-line-parts"
    ),
    pytest.param({"not": {"channel_in": ["online"]}}, ctx(), True, id="not-context"),
    pytest.param({"not": {"sku": "TEA"}}, ctx(), True, id="not-line-absent"),
    pytest.param({"not": {"category": "drinks"}}, ctx(), False, id="not-line-present"),
    pytest.param(
        {
            "all": [
                {"any": [{"sku": "TEA"}, {"sku": "LATTE"}]},
                {"not": {"member": False}},
                {"amount_gte": 37_000},
            ]
        },
        ctx(),
        True,
        id="nested",
    ),
]


@pytest.mark.parametrize(("condition", "context", "expected"), COMBINATOR_ROWS)
def test_combinators(condition: Any, context: Context, expected: bool) -> None:
    check(condition, BASKET, context, expected)


# ---- the rule index ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("condition", "keys"),
    [
        pytest.param({"sku": "LATTE"}, {"sku:LATTE"}, id="sku"),
        pytest.param({"sku_in": ["A", "B"]}, {"sku:A", "sku:B"}, id="sku_in"),
        pytest.param({"category": "drinks/coffee"}, {"cat:drinks/coffee"}, id="category"),
        pytest.param({"category_in": ["a", "b/c"]}, {"cat:a", "cat:b/c"}, id="category_in"),
        pytest.param({"any": [{"sku": "A"}, {"category": "b"}]}, {"sku:A", "cat:b"}, id="any"),
        pytest.param({"any": [{"sku": "A"}, {"tier_in": ["gold"]}]}, None, id="any-open"),
        pytest.param({"all": [{"sku_in": ["A", "B"]}, {"sku": "A"}]}, {"sku:A"}, id="all-smallest"),
        pytest.param({"all": [{"tier_in": ["gold"]}, {"sku": "A"}]}, {"sku:A"}, id="all-one-known"),
        pytest.param({"not": {"sku": "A"}}, None, id="not"),
        pytest.param({"brand": "X"}, None, id="brand"),
        pytest.param({"qty_gte": {"of": {"sku": "A"}, "value": 2}}, {"sku:A"}, id="threshold-of"),
        pytest.param({"amount_gte": 100}, None, id="threshold"),
    ],
)
def test_index_keys(condition: Any, keys: set[str] | None) -> None:
    compiled = ConditionCompiler(ErrorCollector()).receipt(condition, ("when",))
    assert compiled.keys == (frozenset(keys) if keys is not None else None)
