"""Discounts added after evaluation (a stamp card's free item): the evaluation stays what
the engine would make of it — within amounts and floors, points spread again and earned
again, every sum consistent — over random programs and receipts."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.errors import BusinessRuleViolation
from kopilka.domain.rules.document import POINTS_EFFECTS, CompiledProgram, compile_program
from kopilka.domain.rules.engine import (
    AppliedEffect,
    Evaluation,
    Redeem,
    add_line_discounts,
    discount_room,
)
from kopilka.domain.rules.facts import Line
from kopilka.domain.rules.money import line_amount
from tests.unit.test_rules_properties import CTX, FAST, lines, programs, run


def _effect() -> AppliedEffect:
    return AppliedEffect("p0", "stamps:x", {"ru": "x", "en": "x"}, "stamp_card_free_item", [])


def _assert_consistent(ev: Evaluation, receipt: list[Line]) -> None:
    for line, result in zip(receipt, ev.lines, strict=True):
        assert 0 <= result.discount <= line.amount
        if line.min_price is not None and result.discount:
            floor = min(line.amount, line_amount(line.min_price, line.qty))
            assert line.amount - result.discount >= floor or line.no_discount
        assert result.points_money == result.points_spent * ev.point_value
        assert 0 <= result.points_money <= line.amount - result.discount
        assert result.pay >= 0
        if line.no_discount:
            assert result.points_spent == 0
        if line.no_points:
            assert not result.points_earned
    assert sum(a.discount for a in ev.applied) == ev.total_discount
    assert sum(line.points_spent for line in ev.lines) == ev.points_redeemed
    assert 0 <= ev.points_redeemed <= ev.max_redeemable
    for code, points in ev.earned_by_program.items():
        assert points == sum(line.points_earned.get(code, 0) for line in ev.lines)


@FAST
@given(programs(), lines(), st.integers(0, 100_000), st.booleans())
def test_no_added_discount_changes_nothing_but_the_applied_list(
    progs: list[CompiledProgram], receipt: list[Line], balance: int, use_max: bool
) -> None:
    redeem: Redeem = "max" if use_max else None
    original = run(progs, receipt, balance, redeem)
    ev = copy.deepcopy(original)
    add_line_discounts(ev, progs, receipt, CTX, [(_effect(), {})], redeem=redeem)
    assert [a for a in ev.applied if a.kind != "stamp_card_free_item"] == original.applied
    assert ev.lines == original.lines
    assert (ev.max_redeemable, ev.points_redeemed) == (
        original.max_redeemable,
        original.points_redeemed,
    )
    assert ev.earned_by_program == original.earned_by_program


@FAST
@given(programs(), lines(), st.integers(0, 100_000), st.booleans(), st.data())
def test_added_discounts_keep_every_invariant(
    progs: list[CompiledProgram],
    receipt: list[Line],
    balance: int,
    use_max: bool,
    data: st.DataObject,
) -> None:
    redeem: Redeem = "max" if use_max else None
    original = run(progs, receipt, balance, redeem)
    ev = copy.deepcopy(original)
    wanted = {
        i: data.draw(st.integers(0, receipt[i].amount))
        for i in data.draw(st.sets(st.integers(0, len(receipt) - 1), max_size=3))
    }
    rooms = [discount_room(li, r) for li, r in zip(receipt, original.lines, strict=True)]
    effect = _effect()
    add_line_discounts(ev, progs, receipt, CTX, [(effect, wanted)], redeem=redeem)
    _assert_consistent(ev, receipt)
    given_total = sum(min(amount, rooms[i]) for i, amount in wanted.items())
    assert effect.discount == given_total
    assert ev.total_discount == original.total_discount + given_total
    assert ev.max_redeemable <= original.max_redeemable
    if use_max:
        assert ev.points_redeemed == ev.max_redeemable
    # The effect sits after the discounts and before points and gifts.
    kinds = [a.kind for a in ev.applied]
    at = kinds.index("stamp_card_free_item")
    assert all(k not in POINTS_EFFECTS for k in kinds[:at])


def test_points_and_earning_follow_the_free_item() -> None:
    program = compile_program(
        {
            "type": "combined",
            "redemption": {"point_value": 100, "max_percent": 50},
            "rules": [{"id": "base", "effects": [{"points_percent": 10}]}],
        },
        "main",
        1,
    )
    receipt = [
        Line(0, "LATTE", Decimal(1), 30000, 30000),
        Line(1, "CAKE", Decimal(1), 20000, 20000),
    ]
    ctx = CTX
    ev = run([program], receipt, 10_000, "max")
    assert (ev.max_redeemable, ev.earned_by_program) == (250, {"main": 25})
    effect = _effect()
    add_line_discounts(ev, [program], receipt, ctx, [(effect, {0: 30000})], redeem="max")
    assert (effect.discount, effect.lines) == (30000, [0])
    assert ev.max_redeemable == 100  # half of the 200 ₽ left to pay
    assert [line.points_spent for line in ev.lines] == [0, 100]
    assert ev.earned_by_program == {"main": 10}  # 10% of the 100 ₽ paid in money
    assert [a.kind for a in ev.applied] == ["stamp_card_free_item", "points_percent"]
    with pytest.raises(BusinessRuleViolation) as refused:
        add_line_discounts(
            run([program], receipt, 10_000, 200),
            [program],
            receipt,
            replace(ctx),
            [(_effect(), {0: 30000})],
            redeem=200,
        )
    assert refused.value.code == "redeem_exceeds_max"
    assert refused.value.extra == {"max_redeemable": 100}
