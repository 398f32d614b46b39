"""Every effect and how effects combine, table-driven through ``evaluate``.

Money is in kopecks; a point is worth ``point_value`` kopecks (100 unless a row says so).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from kopilka.domain.errors import BusinessRuleViolation
from kopilka.domain.rules.document import CompiledProgram, compile_program
from kopilka.domain.rules.engine import Evaluation, Redeem, evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts
from kopilka.domain.rules.money import line_amount

NOON = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
GOLD = MemberFacts(id="m1", tier="gold")


def ln(sku: str, price: int, qty: str = "1", **extra: Any) -> Line:
    """A receipt line; the amount is price × qty as the till computes it."""
    quantity = Decimal(qty)
    return Line(
        index=0, sku=sku, qty=quantity, price=price, amount=line_amount(price, quantity), **extra
    )


def receipt(*lines: Line) -> list[Line]:
    return [replace(line, index=i) for i, line in enumerate(lines)]


A = ln("A", 10_000)  # 100 ₽
B = ln("B", 3_000, "3")  # 3 × 30 ₽
W = ln("W", 20_000, "0.500")  # 0.5 kg at 200 ₽/kg
C = ln("C", 500)  # 5 ₽
COFFEE = ln("COFFEE", 10_000, category=("drinks", "coffee"))
BUN = ln("BUN", 10_000, category=("bakery",))


def program(
    rules: list[dict[str, Any]], code: str = "p", kind: str = "combined", **settings: Any
) -> CompiledProgram:
    return compile_program({"type": kind, "rules": rules, **settings}, code, 1)


def rule(rule_id: str, *effects: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "effects": list(effects), **extra}


def ctx(member: MemberFacts | None = GOLD) -> Context:
    return Context(occurred_at=NOON, local_time=NOON, tenant_today=NOON.date(), member=member)


def run(
    programs: CompiledProgram | list[CompiledProgram],
    lines: list[Line],
    *,
    member: MemberFacts | None = GOLD,
    redeem: Redeem = None,
    balance: int = 0,
    currency: str = "RUB",
) -> Evaluation:
    programs = programs if isinstance(programs, list) else [programs]
    balances = {p.currency: balance for p in programs}
    return evaluate(
        programs, lines, ctx(member), redeem=redeem, balances=balances, currency=currency
    )


def discounts(ev: Evaluation) -> list[int]:
    return [line.discount for line in ev.lines]


def earned(ev: Evaluation, code: str = "p") -> list[int]:
    return [line.points_earned.get(code, 0) for line in ev.lines]


# ---- discount effects ----------------------------------------------------------------------
DISCOUNT_ROWS = [
    pytest.param({"discount_percent": 10}, [A], [1_000], id="percent"),
    pytest.param({"discount_percent": 12.5}, [ln("X", 999)], [124], id="percent-fraction-floors"),
    pytest.param({"discount_percent": "7.5"}, [A, B], [750, 675], id="percent-as-text"),
    pytest.param({"discount_percent": 100}, [A, W], [10_000, 10_000], id="percent-100"),
    pytest.param({"discount_amount": 500}, [A, C], [500, 500], id="amount-shorthand-per-line"),
    pytest.param(
        {"discount_amount": {"value": 700, "per": "line"}},
        [A, C],
        [700, 500],
        id="amount-per-line-capped-by-line",
    ),
    pytest.param(
        {"discount_amount": {"value": 500, "per": "unit"}},
        [B, W],
        [1_500, 250],
        id="amount-per-unit-incl-weighed",
    ),
    pytest.param(
        {"discount_amount": {"value": 3_000, "per": "receipt"}},
        [A, ln("B", 9_000)],
        [1_579, 1_421],
        id="amount-per-receipt-spread",
    ),
    pytest.param(
        {"discount_amount": {"value": 50_000, "per": "receipt"}},
        [A, B],
        [10_000, 9_000],
        id="amount-per-receipt-capped",
    ),
    pytest.param({"fixed_price": 2_000}, [B], [3_000], id="fixed-price"),
    pytest.param({"fixed_price": 5_000}, [B], [0], id="fixed-price-above-price"),
    pytest.param({"fixed_price": 0}, [A], [10_000], id="fixed-price-zero"),
    pytest.param({"fixed_price": 15_000}, [W], [2_500], id="fixed-price-weighed"),
    pytest.param(
        {"fixed_price": 333},
        [ln("H", 1_000, "0.500")],
        [333],
        id="fixed-price-rounds-like-the-till",
    ),  # 333 × 0.5 = 166.5 → 167
    pytest.param({"cheapest_free": 1}, [A, B, C], [0, 0, 500], id="cheapest-free"),
    pytest.param({"cheapest_free": 2}, [A, B], [0, 6_000], id="cheapest-free-2-units"),
    pytest.param({"cheapest_free": 5}, [A, W], [10_000, 0], id="cheapest-free-not-weighed"),
    pytest.param({"buy_n_get_free": {"n": 2, "free": 1}}, [B], [3_000], id="2-plus-1"),
    pytest.param(
        {"buy_n_get_free": {"n": 2, "free": 1}}, [ln("B", 3_000, "2")], [0], id="2-plus-1-only-two"
    ),
    pytest.param(
        {"buy_n_get_free": {"n": 2, "free": 1}}, [ln("B", 3_000, "5")], [3_000], id="2-plus-1-five"
    ),
    pytest.param(
        {"buy_n_get_free": {"n": 2, "free": 1}}, [ln("B", 3_000, "6")], [6_000], id="2-plus-1-six"
    ),
    pytest.param(
        {"buy_n_get_free": {"n": 2, "free": 1}},
        [A, ln("B", 3_000, "2")],
        [0, 3_000],
        id="2-plus-1-cheapest-across-lines",
    ),
    pytest.param(
        {"buy_n_get_free": {"n": 1, "free": 1}},
        [A, C, W],
        [0, 500, 0],
        id="1-plus-1-ignores-weighed",
    ),
    pytest.param(
        {"buy_n_get_free": {"n": 3, "free": 2}}, [ln("B", 3_000, "10")], [12_000], id="3-plus-2-ten"
    ),
]


@pytest.mark.parametrize(("effect", "lines", "expected"), DISCOUNT_ROWS)
def test_discount_effects(effect: dict[str, Any], lines: list[Line], expected: list[int]) -> None:
    ev = run(program([rule("r", effect)]), receipt(*lines))
    assert discounts(ev) == expected
    kind = next(iter(effect))
    [applied] = [a for a in ev.applied if a.kind == kind]
    assert applied.discount == sum(expected)
    assert applied.details["per_line"] == {str(i): d for i, d in enumerate(expected) if d}


def test_discount_only_on_the_selected_lines() -> None:
    ev = run(
        program([rule("r", {"discount_percent": 20}, lines={"category": "drinks"})]),
        receipt(COFFEE, BUN),
    )
    assert discounts(ev) == [2_000, 0]


# ---- points effects ------------------------------------------------------------------------
POINTS_ROWS = [
    pytest.param([rule("r", {"points_percent": 5})], [A], [5], id="percent"),
    pytest.param([rule("r", {"points_percent": 5})], [A, W], [5, 5], id="percent-two-lines"),
    pytest.param(
        [rule("r", {"points_percent": 5})], [ln("X", 1_000)], [0], id="percent-rounds-down"
    ),  # 0.5 point
    pytest.param([rule("r", {"points_per_unit": 10})], [B, W], [30, 5], id="per-unit-incl-weighed"),
    pytest.param(
        [rule("r", {"points_fixed": 100})],
        [A, ln("B", 30_000)],
        [25, 75],
        id="fixed-spread-by-amount",
    ),
    pytest.param(
        [rule("r", {"points_fixed": 7})], [ln("Z", 0), ln("Z", 0)], [4, 3], id="fixed-on-free-lines"
    ),
    pytest.param(
        [
            rule("base", {"points_percent": 10}),
            rule("x2", {"points_multiplier": 2}, lines={"category": "drinks"}),
        ],
        [COFFEE, BUN],
        [20, 10],
        id="multiplier-on-a-category",
    ),
    pytest.param(
        [
            rule("base", {"points_percent": 10}),
            rule("x2", {"points_multiplier": 2}, lines={"category": "drinks"}),
            rule("x3", {"points_multiplier": 3}, lines={"sku": "COFFEE"}),
        ],
        [COFFEE, BUN],
        [30, 10],
        id="multipliers-do-not-compound",
    ),
    pytest.param([rule("x2", {"points_multiplier": 2})], [A], [0], id="multiplier-of-nothing"),
    pytest.param(
        [
            rule("base", {"points_percent": 10}, {"points_per_unit": 1}),
            rule("x2", {"points_multiplier": 2}),
        ],
        [B],
        [2 * (9 + 3)],
        id="multiplier-covers-every-points-effect",
    ),
]


@pytest.mark.parametrize(("rules", "lines", "expected"), POINTS_ROWS)
def test_points_effects(
    rules: list[dict[str, Any]], lines: list[Line], expected: list[int]
) -> None:
    ev = run(program(rules), receipt(*lines))
    assert earned(ev) == expected
    assert ev.earned_by_program == {"p": sum(expected)}
    assert discounts(ev) == [0] * len(lines)


def test_multiplier_reports_only_the_extra_points() -> None:
    ev = run(
        program(
            [
                rule("base", {"points_percent": 10}),
                rule("x2", {"points_multiplier": 2}, lines={"category": "drinks"}),
            ]
        ),
        receipt(COFFEE, BUN),
    )
    by_kind = {a.kind: a for a in ev.applied}
    assert by_kind["points_percent"].points == 20
    assert by_kind["points_multiplier"].points == 10
    assert by_kind["points_multiplier"].lines == [0]


# ---- actions: gift, issue_coupon -------------------------------------------------------------
def test_gift() -> None:
    ev = run(
        program(
            [
                rule(
                    "mug",
                    {"gift": {"sku": "MUG", "qty": 2, "name": "Кружка"}},
                    when={"amount_gte": 10_000},
                )
            ]
        ),
        receipt(A),
    )
    assert ev.gifts == [
        {"program": "p", "rule_id": "mug", "sku": "MUG", "qty": 2, "name": "Кружка"}
    ]
    [applied] = ev.applied
    assert applied.explanation == {"ru": "Подарок: Кружка (mug)", "en": "Gift: Кружка (mug)"}
    assert discounts(ev) == [0]


def test_gift_not_given_when_the_condition_fails() -> None:
    ev = run(
        program([rule("mug", {"gift": {"sku": "MUG"}}, when={"amount_gte": 10_001})]), receipt(A)
    )
    assert ev.gifts == []


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param({"sku": "X"}, id="indexed"),
        pytest.param({"any": [{"sku": "X"}, {"brand": "Nope"}]}, id="not-indexed"),
        pytest.param({"brand": "Nope"}, id="no-keys"),
    ],
)
def test_gift_rule_whose_lines_select_nothing_does_not_apply(selector: dict[str, Any]) -> None:
    """The rule index and the evaluator agree, whether or not the selector has index keys."""
    ev = run(program([rule("mug", {"gift": {"sku": "MUG"}}, lines=selector)]), receipt(A))
    assert ev.gifts == []
    ev = run(
        program([rule("mug", {"gift": {"sku": "MUG"}}, lines=selector)]),
        receipt(A, ln("X", 100, brand="Nope")),
    )
    assert [g["sku"] for g in ev.gifts] == ["MUG"]


def test_issue_coupon() -> None:
    benefit = {"discount_percent": 15}
    ev = run(
        program(
            [
                rule(
                    "back",
                    {"issue_coupon": {"benefit": benefit, "valid_days": 14, "min_basket": 50_000}},
                )
            ]
        ),
        receipt(A),
    )
    assert ev.coupons == [
        {
            "program": "p",
            "rule_id": "back",
            "benefit": benefit,
            "valid_days": 14,
            "min_basket": 50_000,
        }
    ]
    assert [a.kind for a in ev.applied] == ["issue_coupon"]
    assert discounts(ev) == [0]  # the benefit is for the next purchase


def test_issue_coupon_defaults() -> None:
    ev = run(
        program([rule("back", {"issue_coupon": {"benefit": {"points_fixed": 50}}})]), receipt(A)
    )
    assert ev.coupons[0]["valid_days"] == 30
    assert ev.coupons[0]["min_basket"] == 0
    assert ev.earned_by_program == {"p": 0}


# ---- combining rules: priority, exclusive, stop ---------------------------------------------
PCT = {"discount_percent": 10}
AMT = {"discount_amount": 1_000}
PTS = {"points_fixed": 5}

COMBINE_ROWS = [
    pytest.param(
        [rule("a", PCT, priority=10), rule("b", AMT, priority=20)],
        ["a", "b"],
        2_000,
        id="priority-percent-first",
    ),
    pytest.param(
        [rule("a", PCT, priority=30), rule("b", AMT, priority=20)],
        ["b", "a"],
        1_900,
        id="priority-amount-first",
    ),
    pytest.param([rule("b", AMT), rule("a", PCT)], ["a", "b"], 2_000, id="same-priority-by-id"),
    pytest.param(
        [rule("a", PCT, priority=10, exclusive=True), rule("b", AMT, priority=20)],
        ["a"],
        1_000,
        id="exclusive-applies-alone",
    ),
    pytest.param(
        [
            rule("a", PCT, priority=10),
            rule("b", AMT, priority=20, exclusive=True),
            rule("c", PTS, priority=30),
        ],
        ["a", "c"],
        1_000,
        id="exclusive-skipped-after-another",
    ),
    pytest.param(
        [
            rule("a", PCT, priority=10, exclusive=True, when={"coupon": "NOPE"}),
            rule("b", AMT, priority=20),
        ],
        ["b"],
        1_000,
        id="exclusive-not-met-blocks-nothing",
    ),
    pytest.param(
        [
            rule("a", PCT, priority=10, stop=True),
            rule("b", AMT, priority=20),
            rule("c", PTS, priority=30),
        ],
        ["a"],
        1_000,
        id="stop-further-rules",
    ),
    pytest.param(
        [
            rule("a", PCT, priority=10),
            rule("b", AMT, priority=20, stop=True),
            rule("c", PTS, priority=30),
        ],
        ["a", "b"],
        2_000,
        id="stop-keeps-earlier-rules",
    ),
    pytest.param(
        [
            rule("a", PCT, priority=10, stop=True, lines={"sku": "NONE"}),
            rule("b", AMT, priority=20),
        ],
        ["b"],
        1_000,
        id="stop-without-lines-does-not-apply",
    ),
]


@pytest.mark.parametrize(("rules", "applied_ids", "discount"), COMBINE_ROWS)
def test_combining_rules(
    rules: list[dict[str, Any]], applied_ids: list[str], discount: int
) -> None:
    ev = run(program(rules), receipt(A))
    assert ev.rules_by_program == {"p": applied_ids}
    assert ev.total_discount == discount


def test_exclusive_and_stop_act_within_their_program() -> None:
    first = program([rule("a", PCT, exclusive=True)], code="first")
    second = program([rule("b", AMT)], code="second")
    ev = run([first, second], receipt(A))
    assert ev.rules_by_program == {"first": ["a"], "second": ["b"]}
    assert ev.total_discount == 2_000


# ---- limits and floors -----------------------------------------------------------------------
LIMIT_ROWS = [
    pytest.param({"max_discount_percent_line": 20}, [A], [2_000], id="line-cap"),
    pytest.param({"max_discount_percent_line": 20}, [A, B], [2_000, 1_800], id="line-cap-each"),
    pytest.param(
        {"max_discount_percent_receipt": 10}, [A, ln("B", 9_000)], [1_900, 0], id="receipt-cap"
    ),
    pytest.param(
        {"max_discount_percent_line": 40, "max_discount_percent_receipt": 30},
        [A, A],
        [4_000, 2_000],
        id="both-caps",
    ),
    pytest.param({"max_discount_percent_line": 0}, [A], [0], id="line-cap-zero"),
]


@pytest.mark.parametrize(("limits", "lines", "expected"), LIMIT_ROWS)
def test_discount_limits(limits: dict[str, int], lines: list[Line], expected: list[int]) -> None:
    ev = run(program([rule("half", {"discount_percent": 50})], limits=limits), receipt(*lines))
    assert discounts(ev) == expected


def test_the_strictest_line_limit_of_all_programs_wins() -> None:
    loose = program(
        [rule("a", {"discount_percent": 50})],
        code="loose",
        limits={"max_discount_percent_line": 40},
    )
    strict = program(
        [rule("b", {"discount_percent": 50})],
        code="strict",
        limits={"max_discount_percent_line": 25},
    )
    assert discounts(run([loose, strict], receipt(A))) == [2_500]


FLOOR_ROWS = [
    pytest.param(ln("A", 10_000, min_price=9_000), {"discount_percent": 50}, 1_000, id="percent"),
    pytest.param(ln("A", 10_000, min_price=10_000), {"discount_amount": 100}, 0, id="at-floor"),
    pytest.param(ln("A", 10_000, min_price=0), {"discount_percent": 100}, 10_000, id="zero"),
    pytest.param(ln("A", 10_000, min_price=20_000), {"discount_percent": 10}, 0, id="above-price"),
    pytest.param(
        ln("B", 3_000, "3", min_price=2_500),
        {"fixed_price": 1_000},
        1_500,
        id="fixed-price-per-unit",
    ),
    pytest.param(
        ln("B", 3_000, "3", min_price=2_500), {"cheapest_free": 1}, 1_500, id="cheapest-free"
    ),
    pytest.param(
        ln("W", 20_000, "0.500", min_price=19_000), {"discount_percent": 50}, 500, id="weighed"
    ),
    # 0.5 × 333 = 166.5: the line costs 167 at that price, and may not cost less
    pytest.param(
        ln("H", 333, "0.500", min_price=333), {"discount_amount": 50}, 0, id="weighed-half-kopeck"
    ),
    pytest.param(
        ln("H", 400, "0.500", min_price=333),
        {"discount_amount": 50},
        33,
        id="weighed-half-kopeck-below-price",
    ),
]


@pytest.mark.parametrize(("line", "effect", "expected"), FLOOR_ROWS)
def test_min_price_floor(line: Line, effect: dict[str, Any], expected: int) -> None:
    assert discounts(run(program([rule("r", effect)]), receipt(line))) == [expected]


def test_no_discount_and_no_points_lines_are_never_touched() -> None:
    protected = ln("TOBACCO", 500, no_discount=True)  # the cheapest: still not free
    gift_card = ln("CARD", 100_000, no_points=True)
    rules = [
        rule("pct", {"discount_percent": 10}),
        rule("free", {"cheapest_free": 1}),
        rule("rcpt", {"discount_amount": {"value": 1_000, "per": "receipt"}}),
        rule("pts", {"points_percent": 10}, {"points_fixed": 10}),
        rule("x2", {"points_multiplier": 2}),
    ]
    ev = run(program(rules), receipt(protected, gift_card, A), redeem="max", balance=10_000)
    tobacco, card, plain = ev.lines
    assert tobacco.discount == 0
    assert tobacco.points_spent == 0
    assert tobacco.points_earned["p"] > 0
    assert card.discount > 0
    assert card.points_spent > 0
    assert "p" not in card.points_earned
    assert plain.discount > 0


# ---- points are earned on what is paid in money ----------------------------------------------
@pytest.mark.parametrize(
    ("effects", "redeem", "pay", "points"),
    [
        pytest.param([], None, 10_000, 10, id="full-price"),
        pytest.param([{"discount_percent": 10}], None, 9_000, 9, id="after-discount"),
        pytest.param([], 20, 8_000, 8, id="after-paying-with-points"),
        pytest.param([{"discount_percent": 10}], 20, 7_000, 7, id="after-both"),
        pytest.param([], "max", 0, 0, id="all-paid-with-points"),
    ],
)
def test_points_on_the_amount_actually_paid(
    effects: list[dict[str, Any]], redeem: Redeem, pay: int, points: int
) -> None:
    rules = [rule("earn", {"points_percent": 10})]
    if effects:
        rules.append(rule("disc", *effects))
    ev = run(program(rules), receipt(A), redeem=redeem, balance=1_000)
    assert ev.lines[0].pay == pay
    assert ev.earned_by_program == {"p": points}


# ---- rounding of earned points -----------------------------------------------------------------
HALVES = [ln("A", 5_000), ln("B", 5_000), ln("C", 5_000)]  # 0.5 point each at 1 %
TENTHS = [ln("A", 3_000), ln("B", 3_000), ln("C", 3_000)]  # 0.3 point each at 1 %


@pytest.mark.parametrize(
    ("lines", "scope", "mode", "per_line"),
    [
        pytest.param(HALVES, "line", "down", [0, 0, 0], id="halves-line-down"),
        pytest.param(HALVES, "line", "half_up", [1, 1, 1], id="halves-line-half_up"),
        pytest.param(HALVES, "line", "up", [1, 1, 1], id="halves-line-up"),
        pytest.param(HALVES, "receipt", "down", [1, 0, 0], id="halves-receipt-down"),
        pytest.param(HALVES, "receipt", "half_up", [1, 1, 0], id="halves-receipt-half_up"),
        pytest.param(HALVES, "receipt", "up", [1, 1, 0], id="halves-receipt-up"),
        pytest.param(TENTHS, "line", "down", [0, 0, 0], id="tenths-line-down"),
        pytest.param(TENTHS, "line", "half_up", [0, 0, 0], id="tenths-line-half_up"),
        pytest.param(TENTHS, "line", "up", [1, 1, 1], id="tenths-line-up"),
        pytest.param(TENTHS, "receipt", "down", [0, 0, 0], id="tenths-receipt-down"),
        pytest.param(TENTHS, "receipt", "half_up", [1, 0, 0], id="tenths-receipt-half_up"),
        pytest.param(TENTHS, "receipt", "up", [1, 0, 0], id="tenths-receipt-up"),
    ],
)
def test_rounding_scope_and_mode(
    lines: list[Line], scope: str, mode: str, per_line: list[int]
) -> None:
    ev = run(
        program([rule("r", {"points_percent": 1})], rounding={"scope": scope, "mode": mode}),
        receipt(*lines),
    )
    assert earned(ev) == per_line
    assert ev.earned_by_program == {"p": sum(per_line)}


# ---- paying with points ------------------------------------------------------------------------
TWO = [A, ln("B", 9_000)]  # 190 ₽


@pytest.mark.parametrize(
    ("redemption", "lines", "member", "balance", "expected"),
    [
        pytest.param({}, TWO, GOLD, 1_000, 190, id="whole-receipt"),
        pytest.param({}, TWO, GOLD, 30, 30, id="balance-limits"),
        pytest.param({}, TWO, GOLD, 0, 0, id="no-balance"),
        pytest.param({"max_percent": 50}, TWO, GOLD, 1_000, 95, id="max-percent"),
        pytest.param({"max_percent": 0}, TWO, GOLD, 1_000, 0, id="max-percent-zero"),
        pytest.param(
            {"max_percent": 50, "max_percent_by_tier": {"gold": 20}},
            TWO,
            GOLD,
            1_000,
            38,
            id="by-tier",
        ),
        pytest.param(
            {"max_percent": 50, "max_percent_by_tier": {"gold": 20}},
            TWO,
            MemberFacts(id="m2", tier="silver"),
            1_000,
            95,
            id="by-tier-other-tier",
        ),
        pytest.param(
            {"max_percent": 50, "max_percent_by_tier": {"gold": 20}},
            TWO,
            MemberFacts(id="m3"),
            1_000,
            95,
            id="by-tier-no-tier",
        ),
        pytest.param({"min_balance": 100}, TWO, GOLD, 99, 0, id="below-min-balance"),
        pytest.param({"min_balance": 100}, TWO, GOLD, 100, 100, id="at-min-balance"),
        pytest.param({"point_value": 1_000}, TWO, GOLD, 1_000, 19, id="point-value"),
        pytest.param(
            {"point_value": 1_000},
            [ln("A", 1_500), ln("B", 1_500)],
            GOLD,
            1_000,
            2,
            id="point-value-whole-points-per-line",
        ),
        pytest.param(
            {},
            [replace(A, no_discount=True), ln("B", 9_000)],
            GOLD,
            1_000,
            90,
            id="no-discount-lines-excluded",
        ),
        pytest.param({"enabled": False}, TWO, GOLD, 1_000, 0, id="disabled"),
        pytest.param({}, TWO, None, 1_000, 0, id="no-member"),
    ],
)
def test_max_redeemable(
    redemption: dict[str, Any],
    lines: list[Line],
    member: MemberFacts | None,
    balance: int,
    expected: int,
) -> None:
    ev = run(
        program([], kind="bonus", redemption=redemption),
        receipt(*lines),
        member=member,
        balance=balance,
    )
    assert ev.max_redeemable == expected
    assert ev.points_redeemed == 0


def test_max_redeemable_after_discounts() -> None:
    ev = run(program([rule("r", {"discount_percent": 10})]), receipt(*TWO), balance=1_000)
    assert ev.max_redeemable == 171


def test_a_discount_program_does_not_pay_with_points() -> None:
    ev = run(program([], kind="discount"), receipt(*TWO), balance=1_000)
    assert ev.points_program is None
    assert ev.max_redeemable == 0


def test_the_first_points_program_pays() -> None:
    discount = program([], code="disc", kind="discount")
    bonus = program([], code="bonus", kind="bonus", redemption={"point_value": 50})
    ev = run([discount, bonus], receipt(*TWO), balance=10_000, redeem="max")
    assert ev.points_program == "bonus"
    assert ev.point_value == 50
    assert ev.points_redeemed == 380


@pytest.mark.parametrize(
    ("redeem", "redeemed", "per_line"),
    [
        pytest.param(None, 0, [0, 0], id="none"),
        pytest.param(0, 0, [0, 0], id="zero"),
        pytest.param("max", 95, [50, 45], id="max"),
        pytest.param(50, 50, [26, 24], id="number-spread-in-proportion"),
        pytest.param(95, 95, [50, 45], id="number-equal-to-max"),
    ],
)
def test_redeem(redeem: Redeem, redeemed: int, per_line: list[int]) -> None:
    ev = run(
        program([], kind="bonus", redemption={"max_percent": 50}),
        receipt(*TWO),
        redeem=redeem,
        balance=1_000,
    )
    assert ev.points_redeemed == redeemed
    assert [line.points_spent for line in ev.lines] == per_line
    assert [line.points_money for line in ev.lines] == [p * 100 for p in per_line]
    assert ev.total_pay == 19_000 - redeemed * 100


def test_redeeming_more_than_the_maximum_is_refused() -> None:
    with pytest.raises(BusinessRuleViolation) as caught:
        run(
            program([], kind="bonus", redemption={"max_percent": 50}),
            receipt(*TWO),
            redeem=96,
            balance=1_000,
        )
    assert caught.value.code == "redeem_exceeds_max"
    assert caught.value.extra == {"max_redeemable": 95}


def test_redeeming_without_a_member_is_refused_but_max_is_zero() -> None:
    bonus = program([], kind="bonus")
    with pytest.raises(BusinessRuleViolation) as caught:
        run(bonus, receipt(*TWO), member=None, redeem=10, balance=1_000)
    assert caught.value.code == "redeem_not_possible"
    assert caught.value.extra == {"max_redeemable": 0}
    ev = run(bonus, receipt(*TWO), member=None, redeem="max", balance=1_000)
    assert (ev.max_redeemable, ev.points_redeemed) == (0, 0)


# ---- near misses -------------------------------------------------------------------------------
THIRD_COFFEE = {"ru": "Третий кофе в подарок", "en": "Third coffee free"}
BIG_BASKET = {"ru": "Скидка 5% от 1000 ₽", "en": "5% off from 1,000 ₽"}
NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("when", "lines", "currency", "kind", "missing", "ru", "en"),
    [
        pytest.param(
            {"qty_gte": {"of": {"sku": "COFFEE"}, "value": 3}},
            [ln("COFFEE", 10_000, "2", category=("drinks",))],
            "RUB",
            "qty",
            "1",
            "Купите ещё 1 шт., чтобы получить: Третий кофе в подарок",
            "Buy 1 more to get: Third coffee free",
            id="buy-1-more",
        ),
        pytest.param(
            {"qty_gte": {"of": {"category": "drinks"}, "value": 1}},
            [ln("COFFEE", 10_000, "0.250", category=("drinks",))],
            "RUB",
            "qty",
            "0.750",
            "Купите ещё 0.75 шт., чтобы получить: Третий кофе в подарок",
            "Buy 0.75 more to get: Third coffee free",
            id="buy-weighed",
        ),
        pytest.param(
            {"amount_gte": 100_000},
            [ln("X", 85_000)],
            "RUB",
            "amount",
            "15000",
            f"Добавьте покупок ещё на 150{NBSP}₽, чтобы получить: Третий кофе в подарок",
            f"Spend 150{NBSP}₽ more to get: Third coffee free",
            id="spend-more",
        ),
        pytest.param(
            {"amount_gte": 100_000},
            [ln("X", 84_950)],
            "KZT",
            "amount",
            "15050",
            f"Добавьте покупок ещё на 150,50{NBSP}₸, чтобы получить: Третий кофе в подарок",
            f"Spend 150,50{NBSP}₸ more to get: Third coffee free",
            id="spend-more-kopecks",
        ),
        pytest.param(
            {"all": [{"member": True}, {"amount_gte": 1_000_000}]},
            [ln("X", 10_000)],
            "RUB",
            "amount",
            "990000",
            f"Добавьте покупок ещё на 9{NBSP}900{NBSP}₽, чтобы получить: Третий кофе в подарок",
            f"Spend 9{NBSP}900{NBSP}₽ more to get: Third coffee free",
            id="spend-in-all",
        ),
    ],
)
def test_near_misses(
    when: dict[str, Any],
    lines: list[Line],
    currency: str,
    kind: str,
    missing: str,
    ru: str,
    en: str,
) -> None:
    ev = run(
        program([rule("r", {"points_fixed": 10}, name=THIRD_COFFEE, when=when)]),
        receipt(*lines),
        currency=currency,
    )
    assert ev.rules_by_program == {"p": []}
    [miss] = ev.not_applied
    assert (miss.program, miss.rule_id, miss.kind, miss.missing) == ("p", "r", kind, missing)
    assert miss.rule_name == THIRD_COFFEE
    assert miss.explanation == {"ru": ru, "en": en}


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param([rule("r", PTS, when={"amount_gte": 10_000})], id="met"),
        pytest.param(
            [rule("r", PTS, when={"all": [{"member": False}, {"amount_gte": 20_000}]})],
            id="another-part-fails-too",
        ),
        pytest.param(
            [
                rule("a", PTS, priority=1),
                rule("r", PTS, priority=2, exclusive=True, when={"amount_gte": 20_000}),
            ],
            id="exclusive-could-not-apply-anyway",
        ),
        pytest.param([rule("r", PTS, when={"tier_in": ["silver"]})], id="no-threshold"),
    ],
)
def test_no_near_miss(rules: list[dict[str, Any]]) -> None:
    assert run(program(rules), receipt(A)).not_applied == []


# ---- explanations of what applied ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("effect", "lines", "ru", "en"),
    [
        pytest.param(
            {"discount_percent": 10},
            [A],
            f"Скидка 10% — 10{NBSP}₽ (Акция)",
            f"10% off — 10{NBSP}₽ (Promo)",
            id="percent",
        ),
        pytest.param(
            {"discount_amount": 250},
            [A],
            f"Скидка 2,50{NBSP}₽ (Акция)",
            f"2,50{NBSP}₽ off (Promo)",
            id="amount",
        ),
        pytest.param(
            {"cheapest_free": 1},
            [A, C],
            f"Самый дешёвый товар бесплатно — 5{NBSP}₽ (Акция)",
            f"Cheapest item free — 5{NBSP}₽ (Promo)",
            id="cheapest",
        ),
        pytest.param(
            {"buy_n_get_free": {"n": 2, "free": 1}},
            [B],
            f"2+1: 30{NBSP}₽ (Акция)",
            f"Buy 2 get 1 free: 30{NBSP}₽ (Promo)",
            id="n-plus-free",
        ),
        pytest.param(
            {"points_percent": 5},
            [A],
            "+5 баллов: 5% от суммы оплаты (Акция)",
            "+5 points: 5% of the amount paid (Promo)",
            id="points-percent",
        ),
        pytest.param(
            {"points_per_unit": 2},
            [B],
            "+6 баллов: 2 за каждую единицу товара (Акция)",
            "+6 points: 2 per item (Promo)",
            id="points-per-unit",
        ),
        pytest.param(
            {"points_fixed": 50},
            [A],
            "+50 баллов за покупку (Акция)",
            "+50 points for the purchase (Promo)",
            id="points-fixed",
        ),
    ],
)
def test_explanations(effect: dict[str, Any], lines: list[Line], ru: str, en: str) -> None:
    ev = run(program([rule("r", effect, name={"ru": "Акция", "en": "Promo"})]), receipt(*lines))
    [applied] = ev.applied
    assert applied.explanation == {"ru": ru, "en": en}
