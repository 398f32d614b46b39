"""Properties of the evaluator over random receipts and random programs (hypothesis).

Receipts: 1–30 lines, whole and weighed (3-decimal) quantities, prices including 0, random
no_discount / no_points flags and price floors. Programs: random discount and points rules,
limits, rounding and redemption settings.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopilka.domain.rules.document import CompiledProgram, CompiledRule, Rounding, compile_program
from kopilka.domain.rules.engine import Evaluation, Redeem, evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts
from kopilka.domain.rules.money import RoundingMode, line_amount, spread

NOON = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
CTX = Context(
    occurred_at=NOON,
    local_time=NOON,
    tenant_today=NOON.date(),
    member=MemberFacts(id="m1", tier="gold"),
)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Hypothesis spends most of its time per draw, so each line and each rule is built from one
# drawn seed: generation stays fast, and failures still shrink to fewer lines and rules.
seeds = st.integers(0, 2**32 - 1)


# ---- receipts ----------------------------------------------------------------------------
def make_line(index: int, seed: int) -> Line:
    """A random line: whole or weighed (3 decimals), price possibly 0, flags, a floor."""
    rnd = random.Random(seed)
    qty = rnd.choice(
        [
            Decimal(rnd.randint(1, 10)),
            Decimal(rnd.randint(1, 5_000)).scaleb(-3),  # weighed: 0.001–5.000
            Decimal(rnd.randint(0, 4)) + Decimal("0.500"),  # odd prices give half kopecks
        ]
    )
    price = rnd.choice([0, rnd.randint(1, 1_000), rnd.randint(1, 200_000)])
    min_price = rnd.choice([None, None, price, rnd.randint(0, price), rnd.randint(0, 250_000)])
    return Line(
        index=index,
        sku=rnd.choice("ABCD"),
        qty=qty,
        price=price,
        amount=line_amount(price, qty),
        category=rnd.choice([("drinks", "coffee"), ("drinks", "tea"), ("bakery",), ()]),
        no_discount=rnd.random() < 0.2,
        no_points=rnd.random() < 0.2,
        min_price=min_price,
    )


def lines() -> st.SearchStrategy[list[Line]]:
    return st.lists(seeds, min_size=1, max_size=30).map(
        lambda drawn: [make_line(i, seed) for i, seed in enumerate(drawn)]
    )


# ---- programs ----------------------------------------------------------------------------
def percent(rnd: random.Random) -> int | float:
    return rnd.randint(1, 100) if rnd.random() < 0.7 else rnd.randint(1, 999) / 10


def discount_effect(rnd: random.Random) -> dict[str, Any]:
    kind = rnd.choice(
        ["discount_percent", "discount_amount", "fixed_price", "cheapest_free", "buy_n_get_free"]
    )
    if kind == "discount_percent":
        return {kind: percent(rnd)}
    if kind == "discount_amount":
        return {
            kind: {"value": rnd.randint(1, 50_000), "per": rnd.choice(["line", "unit", "receipt"])}
        }
    if kind == "fixed_price":
        return {kind: rnd.randint(0, 100_000)}
    if kind == "cheapest_free":
        return {kind: rnd.randint(1, 5)}
    return {kind: {"n": rnd.randint(1, 4), "free": rnd.randint(1, 2)}}


def points_effect(rnd: random.Random) -> dict[str, Any]:
    kind = rnd.choice(["points_percent", "points_per_unit", "points_fixed", "points_multiplier"])
    if kind == "points_percent":
        return {kind: percent(rnd)}
    return {
        kind: rnd.randint(
            1, {"points_per_unit": 50, "points_fixed": 1_000, "points_multiplier": 5}[kind]
        )
    }


LINE_SELECTORS = [
    None,
    {"category": "drinks"},
    {"sku_in": ["A", "B"]},
    {"not": {"sku": "C"}},
    {"price_gte": 5_000},
    {"any": [{"category": "bakery"}, {"sku": "D"}]},
]
RECEIPT_CONDITIONS = [
    None,
    {"amount_gte": 50_000},
    {"qty_gte": 3},
    {"lines_gte": {"of": {"sku": "A"}, "value": 2}},
]


def make_rule(index: int, seed: int, only_points: bool) -> dict[str, Any]:
    """A random rule: 1–3 discount or points effects, maybe on some lines, maybe a condition."""
    rnd = random.Random(seed)
    effect = points_effect if only_points else rnd.choice([discount_effect, points_effect])
    rule: dict[str, Any] = {
        "id": f"r{index}",
        "priority": rnd.randint(0, 5),
        "effects": [effect(rnd) for _ in range(rnd.randint(1, 3))],
        "exclusive": rnd.random() < 0.15,
        "stop": rnd.random() < 0.15,
    }
    selector, condition = rnd.choice(LINE_SELECTORS), rnd.choice(RECEIPT_CONDITIONS)
    if selector is not None:
        rule["lines"] = selector
    if condition is not None:
        rule["when"] = condition
    return rule


def make_document(seed: int, rule_seeds: list[int], only_points: bool) -> dict[str, Any]:
    """A random program: its rules, rounding, redemption and limits."""
    rnd = random.Random(seed)
    limits = {
        name: rnd.randint(0, 100)
        for name in ("max_discount_percent_line", "max_discount_percent_receipt")
        if rnd.random() < 0.3
    }
    return {
        "type": rnd.choice(["combined", "bonus", "cashback", "discount"]),
        "rules": [make_rule(i, s, only_points) for i, s in enumerate(rule_seeds)],
        "rounding": {
            "scope": rnd.choice(["receipt", "line"]),
            "mode": rnd.choice(["down", "half_up", "up"]),
        },
        "redemption": {
            "point_value": rnd.choice([1, 10, 100, 1_000]),
            "max_percent": rnd.choice([100, rnd.randint(0, 100)]),
            "min_balance": rnd.randint(0, 100),
        },
        "limits": limits,
    }


def documents(only_points: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        make_document, seeds, st.lists(seeds, min_size=1, max_size=5), st.just(only_points)
    )


def programs() -> st.SearchStrategy[list[CompiledProgram]]:
    return st.lists(documents(), min_size=1, max_size=2).map(
        lambda docs: [compile_program(d, f"p{i}", 1) for i, d in enumerate(docs)]
    )


def run(
    progs: list[CompiledProgram], receipt: list[Line], balance: int, redeem: Redeem = None
) -> Evaluation:
    return evaluate(
        progs, receipt, CTX, redeem=redeem, balances={p.currency: balance for p in progs}
    )


# ---- (a) discounts -----------------------------------------------------------------------
@FAST
@given(programs(), lines())
def test_discounts_stay_within_amounts_floors_and_limits(
    progs: list[CompiledProgram], receipt: list[Line]
) -> None:
    ev = run(progs, receipt, balance=0)
    line_caps = [
        p.settings.limits.max_discount_percent_line
        for p in progs
        if p.settings.limits.max_discount_percent_line is not None
    ]
    receipt_caps = [
        p.settings.limits.max_discount_percent_receipt
        for p in progs
        if p.settings.limits.max_discount_percent_receipt is not None
    ]
    for line, result in zip(receipt, ev.lines, strict=True):
        assert (result.index, result.amount) == (line.index, line.amount)
        assert 0 <= result.discount <= line.amount
        if line.min_price is not None:
            floor = min(line.amount, line_amount(line.min_price, line.qty))
            assert line.amount - result.discount >= floor
        if line.no_discount:
            assert result.discount == 0
        if line_caps:
            assert result.discount <= line.amount * min(line_caps) // 100
    if receipt_caps:
        assert ev.total_discount <= ev.total_amount * min(receipt_caps) // 100
    assert sum(a.discount for a in ev.applied) == ev.total_discount
    assert all(a.discount >= 0 for a in ev.applied)


FULL_DISCOUNT = compile_program(
    {"type": "discount", "rules": [{"id": "all", "effects": [{"discount_percent": 100}]}]}, "p", 1
)


@FAST
@given(lines())
def test_a_full_discount_takes_every_line_down_to_its_floor(receipt: list[Line]) -> None:
    """The floor is reached exactly: the line then costs what it costs at min_price."""
    ev = run([FULL_DISCOUNT], receipt, balance=0)
    for line, result in zip(receipt, ev.lines, strict=True):
        if line.no_discount:
            assert result.discount == 0
        elif line.min_price is None:
            assert result.discount == line.amount
        else:
            assert line.amount - result.discount == min(
                line.amount, line_amount(line.min_price, line.qty)
            )


# ---- (b) paying with points --------------------------------------------------------------
@FAST
@given(programs(), lines(), st.integers(0, 100_000), st.data())
def test_points_spent_add_up_and_never_overpay(
    progs: list[CompiledProgram], receipt: list[Line], balance: int, data: st.DataObject
) -> None:
    dry = run(progs, receipt, balance)
    redeem: Redeem = (
        "max" if data.draw(st.booleans()) else data.draw(st.integers(0, dry.max_redeemable))
    )
    ev = run(progs, receipt, balance, redeem)
    assert ev.max_redeemable == dry.max_redeemable
    assert 0 <= ev.points_redeemed <= ev.max_redeemable <= balance
    assert ev.points_redeemed == (ev.max_redeemable if redeem == "max" else redeem)
    assert sum(line.points_spent for line in ev.lines) == ev.points_redeemed
    for line, result in zip(receipt, ev.lines, strict=True):
        assert result.points_spent >= 0
        assert result.points_money == result.points_spent * ev.point_value
        assert result.points_money <= line.amount - result.discount
        assert result.pay >= 0
        if line.no_discount:
            assert result.points_spent == 0
    if ev.points_program is not None:
        program = next(p for p in progs if p.code == ev.points_program)
        payable = sum(
            r.amount - r.discount
            for line, r in zip(receipt, ev.lines, strict=True)
            if not line.no_discount
        )
        percent = program.settings.redemption.max_percent
        assert ev.total_points_money <= payable * percent // 100
    else:
        assert ev.max_redeemable == 0
    assert ev.total_pay == ev.total_amount - ev.total_discount - ev.total_points_money


# ---- (c) spread ----------------------------------------------------------------------------
def amount(rnd: random.Random) -> int:
    return rnd.choice([0, rnd.randint(1, 10), rnd.randint(1, 10_000), rnd.randint(1, 10**9)])


def make_spread_case(
    total: int,
    seeds: list[int],
    capped: bool,
) -> tuple[int, list[int], list[int] | None]:
    """Weights (and caps) from one seed each: 0, small, medium and large amounts."""
    weights = [amount(random.Random(seed)) for seed in seeds]
    caps = [amount(random.Random(seed + 1)) for seed in seeds] if capped else None
    return total, weights, caps


@FAST
@given(
    st.builds(make_spread_case, st.integers(0, 10**9), st.lists(seeds, max_size=30), st.booleans())
)
def test_spread_sums_respects_caps_and_is_proportional(
    case: tuple[int, list[int], list[int] | None],
) -> None:
    total, weights, caps = case
    shares = spread(total, weights, caps)
    assert len(shares) == len(weights)
    limits = caps if caps is not None else [total] * len(weights)
    room = sum(cap for cap, weight in zip(limits, weights, strict=True) if weight > 0)
    assert sum(shares) == min(total, room)  # everything, unless the caps cannot take it
    weight_sum = sum(weights)
    for share, weight, cap in zip(shares, weights, limits, strict=True):
        assert 0 <= share <= cap
        if weight == 0:
            assert share == 0
        elif caps is None:  # within one unit of the exact proportion
            assert abs(share * weight_sum - total * weight) < weight_sum
        elif share < cap:  # not capped: at least its proportion, rounded down
            assert share >= total * weight // weight_sum


# ---- (d) earning -----------------------------------------------------------------------------
def with_rounding(program: CompiledProgram, scope: str, mode: str) -> CompiledProgram:
    rounding = Rounding(scope=scope, mode=RoundingMode(mode))
    return replace(program, settings=program.settings.model_copy(update={"rounding": rounding}))


@FAST
@given(
    documents(only_points=True), lines(), st.integers(0, 100_000), st.sampled_from([None, "max"])
)
def test_earned_points_are_non_negative_and_rounding_is_ordered(
    document: dict[str, Any],
    receipt: list[Line],
    balance: int,
    redeem: Redeem,
) -> None:
    program = compile_program({**document, "type": "bonus"}, "p", 1)
    order = [
        ("line", "down"),
        ("receipt", "down"),
        ("receipt", "half_up"),
        ("receipt", "up"),
        ("line", "up"),
    ]
    totals = []
    for scope, mode in order:
        ev = run([with_rounding(program, scope, mode)], receipt, balance, redeem)
        for line, result in zip(receipt, ev.lines, strict=True):
            assert result.points_earned.get("p", 0) >= 0
            if line.no_points:
                assert "p" not in result.points_earned
        assert sum(r.points_earned.get("p", 0) for r in ev.lines) == ev.earned_by_program["p"]
        totals.append(ev.earned_by_program["p"])
    # line/down ≤ receipt/down ≤ receipt/half_up ≤ receipt/up ≤ line/up
    assert totals == sorted(totals)
    assert totals[-1] - totals[0] <= len(receipt)


# ---- the rule index ----------------------------------------------------------------------
def _every_rule_by_its_keys(program: CompiledProgram, receipt_keys: set[str]) -> list[CompiledRule]:
    """The evaluator's choice before the index: every rule, skipped by its own keys."""
    return [r for r in program.rules if r.keys is None or r.keys & receipt_keys]


@FAST
@given(programs(), lines(), st.integers(0, 100_000))
def test_the_rule_index_changes_no_answer(
    progs: list[CompiledProgram], receipt: list[Line], balance: int
) -> None:
    indexed = run(progs, receipt, balance, redeem="max")
    original = CompiledProgram.candidates
    try:
        CompiledProgram.candidates = _every_rule_by_its_keys  # type: ignore[method-assign,assignment]
        scanned = run(progs, receipt, balance, redeem="max")
    finally:
        CompiledProgram.candidates = original  # type: ignore[method-assign]
    assert indexed == scanned


def test_the_rule_index_keeps_rule_order_and_unkeyed_rules() -> None:
    program = compile_program(
        {
            "type": "bonus",
            "rules": [
                {"id": "all", "priority": 1, "effects": [{"points_percent": 1}]},
                {
                    "id": "tea",
                    "priority": 2,
                    "lines": {"category": "drinks/tea"},
                    "effects": [{"points_percent": 2}],
                },
                {
                    "id": "sku-a",
                    "priority": 3,
                    "lines": {"sku": "A"},
                    "effects": [{"points_percent": 3}],
                },
                {
                    "id": "a-or-tea",
                    "priority": 4,
                    "lines": {"any": [{"sku": "A"}, {"category": "drinks/tea"}]},
                    "effects": [{"points_percent": 4}],
                },
            ],
        },
        "p",
        1,
    )

    def ids(keys: set[str]) -> list[str]:
        return [rule.id for rule in program.candidates(keys)]

    assert ids(set()) == ["all"]
    assert ids({"sku:A"}) == ["all", "sku-a", "a-or-tea"]
    assert ids({"cat:drinks", "cat:drinks/tea", "sku:B"}) == ["all", "tea", "a-or-tea"]
    assert ids({"sku:A", "cat:drinks/tea"}) == ["all", "tea", "sku-a", "a-or-tea"]
