"""Stamp cards, pure: the document section, what a receipt earns and frees, what refunds
take back, and the texts (ru plurals)."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopilka.domain.rules.document import compile_program, validate_document
from kopilka.domain.rules.engine import LineResult, discount_room
from kopilka.domain.rules.facts import Line
from kopilka.domain.rules.money import line_amount
from kopilka.domain.stamps.cards import (
    CardPlan,
    CardState,
    LineStamps,
    Taken,
    add_stamps,
    plan_card,
    refund_effect,
    remove_stamps,
    to_go,
)
from kopilka.domain.stamps.settings import StampCardSettings
from kopilka.domain.stamps.texts import describe_movement, stamps_en, stamps_ru, till_status

COFFEE = ("drinks", "coffee")


def card(**fields: Any) -> StampCardSettings:
    base: dict[str, Any] = {
        "id": "coffee",
        "name": {"ru": "Кофе", "en": "Coffee"},
        "lines": {"category": "drinks/coffee"},
        "stamps": 6,
        "reward": {"free_item": {}},
    }
    return StampCardSettings.model_validate({**base, **fields})


def line(
    index: int, price: int, qty: str | int = 1, category: tuple[str, ...] = COFFEE, **kw: Any
) -> Line:
    q = Decimal(str(qty))
    return Line(index, f"SKU{index}", q, price, line_amount(price, q), category=category, **kw)


def plan(
    c: StampCardSettings,
    lines: list[Line],
    balance: int = 0,
    debt: int = 0,
    *,
    redeem: bool = True,
    discounts: dict[int, int] | None = None,
    taken: Taken | None = None,
) -> CardPlan:
    results = [
        LineResult(li.index, li.sku, li.qty, li.price, li.amount, (discounts or {}).get(i, 0))
        for i, li in enumerate(lines)
    ]
    rooms = [discount_room(li, r) for li, r in zip(lines, results, strict=True)]
    return plan_card(c, lines, results, rooms, CardState(balance, debt), redeem=redeem, taken=taken)


# ---- the document section ------------------------------------------------------------------
def test_a_card_in_a_program_compiles_and_selects_lines_like_a_rule() -> None:
    program = compile_program(
        {
            "type": "bonus",
            "stamp_cards": [
                {
                    "id": "coffee",
                    "name": "Кофе",
                    "lines": {"all": [{"category": "drinks/coffee"}, {"not": {"sku": "ESP"}}]},
                    "stamps": 6,
                    "per": "line",
                    "reward": {"coupon": {"benefit": {"discount_percent": 20}, "valid_days": 14}},
                    "expires_days": 90,
                }
            ],
        },
        "main",
        1,
    )
    [c] = program.settings.stamp_cards
    assert c.names == {"ru": "Кофе", "en": "Кофе"}
    assert c.reward.kind == "coupon"
    assert c.auto_redeem is True
    assert c.refund_shortfall == "debt"
    assert c.qualifies(line(0, 100))
    assert not c.qualifies(Line(0, "ESP", Decimal(1), 100, 100, category=COFFEE))
    assert not c.qualifies(line(0, 100, category=("bakery",)))


@pytest.mark.parametrize(
    ("field", "value", "path", "code"),
    [
        ("id", "Кофе", ["id"], "invalid"),
        ("stamps", 0, ["stamps"], "invalid"),
        ("stamps", 1001, ["stamps"], "invalid"),
        ("per", "visit", ["per"], "invalid"),
        ("lines", {"categoryx": "a"}, ["lines"], "invalid"),
        ("lines", {"all": [{"sku": "A"}, {"price_gte": -1}]}, ["lines"], "invalid"),
        ("reward", {}, ["reward"], "invalid"),
        ("reward", {"free_item": {}, "coupon": {"benefit": {"points_fixed": 5}}}, ["reward"], None),
        ("reward", {"coupon": {"benefit": {"discount_percent": 500}}}, None, None),
        ("reward", {"free_item": {"max_price": 0}}, ["reward", "free_item", "max_price"], None),
        ("expires_days", -1, ["expires_days"], "invalid"),
        ("name", {"de": "Kaffee"}, ["name", "de"], "unknown_field"),
        ("surprise", 1, ["surprise"], "unknown_field"),
    ],
)
def test_bad_cards_are_refused_with_their_path(
    field: str, value: Any, path: list[str] | None, code: str | None
) -> None:
    doc_card: dict[str, Any] = {
        "id": "coffee",
        "lines": {"sku": "A"},
        "stamps": 6,
        "reward": {"free_item": {}},
        field: value,
    }
    errors = validate_document({"type": "bonus", "stamp_cards": [{"id": "ok"}, doc_card]})
    mine = [e for e in errors if e["path"][:2] == ["stamp_cards", 1]]
    assert mine, errors
    if path is not None:
        assert ["stamp_cards", 1, *path] in [e["path"] for e in mine], mine
    if code is not None:
        assert {e["code"] for e in mine} == {code}, mine


def test_condition_errors_name_their_place_inside_lines() -> None:
    errors = validate_document(
        {
            "type": "bonus",
            "stamp_cards": [
                {
                    "id": "c",
                    "lines": {"any": [{"sku": "A"}, {"brand": 5}]},
                    "stamps": 3,
                    "reward": {"coupon": {"benefit": {"cheapest_free": 0}}},
                }
            ],
        }
    )
    messages = {tuple(e["path"]): e["message"] for e in errors}
    assert messages[("stamp_cards", 0, "lines")].startswith("any.1.brand:")
    assert messages[("stamp_cards", 0, "reward", "coupon", "benefit")].startswith("cheapest_free:")


# ---- what a receipt does -------------------------------------------------------------------
def test_six_stamps_then_the_seventh_is_free() -> None:
    c = card()
    p = plan(c, [line(0, 25000)], balance=5)
    assert (p.earned, p.rewards, p.after) == (1, 0, CardState(6, 0))
    p = plan(c, [line(0, 25000)], balance=6)
    assert (p.earned, p.rewards, p.after, p.discount) == (0, 1, CardState(0, 0), 25000)
    assert p.lines[0].free == 1
    assert p.lines[0].stamps == 0


def test_a_card_filled_by_the_same_receipt_frees_its_cheapest_unit() -> None:
    c = card()
    p = plan(c, [line(0, 30000, qty=4), line(1, 20000, qty=3)])
    assert (p.earned, p.rewards, p.after) == (6, 1, CardState(0, 0))
    assert [(li.line, li.stamps, li.free, li.discount) for li in p.lines] == [
        (0, 4, 0, 0),
        (1, 2, 1, 20000),
    ]
    # Three on the card already: the fourth coffee of this receipt is free.
    p = plan(c, [line(0, 30000, qty=4)], balance=3)
    assert (p.earned, p.rewards, p.after) == (3, 1, CardState(0, 0))


def test_the_cheapest_unit_is_what_is_left_to_pay_and_max_price_caps_the_gift() -> None:
    lines = [line(0, 30000), line(1, 28000)]
    p = plan(card(), lines, balance=6, discounts={0: 5000})  # 250 left on line 0
    assert [(li.line, li.free, li.discount) for li in p.lines] == [(0, 1, 25000), (1, 0, 0)]
    capped = plan(card(reward={"free_item": {"max_price": 20000}}), lines, balance=6)
    assert capped.discount == 20000
    assert [li.free for li in capped.lines] == [0, 1]


def test_lines_that_cannot_be_discounted_earn_but_are_never_free() -> None:
    lines = [line(0, 10000, no_discount=True), line(1, 30000, min_price=29000)]
    p = plan(card(), lines, balance=6)
    assert (p.earned, p.rewards, p.after) == (2, 0, CardState(8, 0))
    # The floor leaves room for a unit of up to 1 000 ₽ off: a 300 ₽ latte fits.
    p = plan(card(), [line(0, 30000, qty=2, min_price=10000)], balance=6)
    assert (p.rewards, p.discount) == (1, 30000)


def test_weighed_goods_earn_per_whole_unit_and_are_never_free() -> None:
    p = plan(card(), [line(0, 100000, qty="1.500"), line(1, 5000, qty="0.300")], balance=6)
    assert (p.earned, p.rewards) == (1, 0)
    per_line = plan(card(per="line"), [line(0, 100000, qty="0.300")])
    assert per_line.earned == 1


def test_zero_priced_and_other_lines_do_not_count() -> None:
    p = plan(card(), [line(0, 0, qty=3), line(1, 5000, category=("bakery",))], balance=6)
    assert (p.earned, p.rewards, p.lines) == (0, 0, [])


def test_per_line_and_per_receipt() -> None:
    lines = [line(0, 20000, qty=3), line(1, 25000)]
    assert plan(card(per="line"), lines).earned == 2
    p = plan(card(per="receipt"), lines)
    assert (p.earned, p.receipt_lines) == (1, [0, 1])
    # Five on the card: the receipt's stamp fills it, and one of its coffees is free.
    p = plan(card(per="receipt"), lines, balance=5)
    assert (p.earned, p.rewards, p.after) == (1, 1, CardState(0, 0))
    # With a single coffee there is nothing left to pay for that stamp.
    p = plan(card(per="receipt"), [line(0, 20000)], balance=5)
    assert (p.earned, p.rewards, p.after) == (1, 0, CardState(6, 0))


def test_a_debt_is_paid_before_the_card_fills() -> None:
    p = plan(card(), [line(0, 20000, qty=7)], debt=2)
    assert (p.earned, p.rewards, p.after) == (7, 0, CardState(5, 0))
    p = plan(card(), [line(0, 20000, qty=9)], debt=2)
    assert (p.earned, p.rewards, p.after) == (8, 1, CardState(0, 0))


def test_without_redeeming_a_card_may_hold_more_than_it_takes() -> None:
    p = plan(card(), [line(0, 20000, qty=10)], balance=6, redeem=False)
    assert (p.earned, p.rewards, p.after) == (10, 0, CardState(16, 0))
    coupon = card(reward={"coupon": {"benefit": {"discount_percent": 10}}})
    assert plan(coupon, [line(0, 20000)], balance=6).rewards == 0


def test_two_cards_never_free_the_same_unit() -> None:
    taken = Taken()
    lines = [line(0, 20000)]
    first = plan(card(), lines, balance=6, taken=taken)
    second = plan(card(id="drinks", lines={"category": "drinks"}), lines, balance=6, taken=taken)
    assert (first.rewards, second.rewards, second.earned) == (1, 0, 0)


def test_many_full_cards_and_a_huge_quantity_are_quick() -> None:
    p = plan(card(), [line(0, 100, qty=1)], balance=18)
    assert (p.rewards, p.after) == (1, CardState(12, 0))
    p = plan(card(), [line(0, 100, qty=3)], balance=18)
    assert (p.rewards, p.after) == (3, CardState(0, 0))
    started = time.perf_counter()
    p = plan(card(), [line(0, 100, qty=1_000_000)])
    assert time.perf_counter() - started < 1
    assert (p.rewards, p.earned, p.after) == (142_857, 857_143, CardState(1, 0))


def _random_line(index: int, rnd: random.Random) -> Line:
    qty = Decimal(rnd.randint(1, 6)) if rnd.random() < 0.8 else Decimal("0.750")
    price = rnd.choice([0, rnd.randint(1, 50_000)])
    return line(
        index,
        price,
        qty=str(qty),
        category=rnd.choice([COFFEE, ("drinks", "tea"), ("bakery",)]),
        no_discount=rnd.random() < 0.15,
        min_price=rnd.choice([None, None, rnd.randint(0, price)]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32),
    st.integers(1, 8),
    st.integers(0, 20),
    st.integers(0, 5),
    st.sampled_from(["unit", "line", "receipt"]),
)
def test_plans_keep_the_card_consistent(
    seed: int, size: int, balance: int, debt: int, per: str
) -> None:
    rnd = random.Random(seed)
    lines = [_random_line(i, rnd) for i in range(rnd.randint(1, 8))]
    if debt:
        balance = 0  # a card with debt holds no stamps
    c = card(stamps=size, per=per)
    p = plan(c, lines, balance, debt)
    assert p.earned >= 0
    assert p.rewards >= 0
    grown = add_stamps(CardState(balance, debt), p.earned)
    assert p.after == CardState(grown.balance - p.rewards * size, grown.debt)
    assert p.after.balance >= 0
    assert p.after.debt >= 0
    assert p.after.debt == 0 or p.after.balance == 0
    assert sum(li.free for li in p.lines) == p.rewards
    for li in p.lines:
        source = lines[li.position]
        assert li.discount <= discount_room(source, LineResult(0, "", source.qty, 0, source.amount))
        if li.free:
            assert source.qty == source.qty.to_integral_value()
            assert li.free <= source.qty
            assert not source.no_discount
    if per == "unit":
        assert p.earned == sum(li.stamps for li in p.lines)

        def another_fits(li: LineStamps) -> bool:
            """Whether one more unit of the line could have been made free."""
            source = lines[li.position]
            if source.qty != source.qty.to_integral_value() or li.free >= source.qty:
                return False
            per_unit = source.amount // int(source.qty)
            room = discount_room(source, LineResult(0, "", source.qty, 0, source.amount))
            return 0 < per_unit <= room - li.discount

        if not debt and any(another_fits(li) for li in p.lines):
            # One more free unit costs a full card and the stamp it would have earned.
            assert p.after.balance < size + 1


# ---- refunds -------------------------------------------------------------------------------
def test_partial_refunds_take_back_exactly_what_a_full_refund_would() -> None:
    record: dict[int, dict[str, str | int]] = {
        0: {"qty": "5", "stamps": 4, "free": 1},
        1: {"qty": "3", "stamps": 3, "free": 0},
    }
    steps = [{0: Decimal(2)}, {1: Decimal(1), 0: Decimal(1)}, {0: Decimal(2), 1: Decimal(2)}]
    done: dict[int, Decimal] = {}
    removed = returned = 0
    for step in steps:
        after = {n: done.get(n, Decimal(0)) + step.get(n, Decimal(0)) for n in record}
        effect = refund_effect(record, [], done, after)
        removed += effect.stamps_removed
        returned += effect.rewards_returned
        done = after
    assert (removed, returned) == (7, 1)
    whole = refund_effect(record, [], {}, {0: Decimal(5), 1: Decimal(3)})
    assert (whole.stamps_removed, whole.rewards_returned) == (7, 1)


def test_a_receipt_stamp_goes_with_the_last_of_its_lines() -> None:
    record: dict[int, dict[str, str | int]] = {
        0: {"qty": "2", "stamps": 0, "free": 0},
        1: {"qty": "1", "stamps": 0, "free": 0},
    }
    first = refund_effect(record, [0, 1], {}, {0: Decimal(2)})
    second = refund_effect(record, [0, 1], {0: Decimal(2)}, {0: Decimal(2), 1: Decimal(1)})
    assert (first.stamps_removed, second.stamps_removed) == (0, 1)


def test_removing_stamps_never_goes_below_zero() -> None:
    owed = remove_stamps(CardState(2, 0), 5, debt=True)
    assert (owed.after, owed.debt_added, owed.forgiven) == (CardState(0, 3), 3, 0)
    kept = remove_stamps(CardState(2, 0), 5, debt=False)
    assert (kept.after, kept.debt_added, kept.forgiven) == (CardState(0, 0), 0, 3)
    assert to_go(CardState(0, 3), 6) == 9
    assert to_go(CardState(8, 0), 6) == 0


# ---- texts ---------------------------------------------------------------------------------
def test_plurals() -> None:
    assert [stamps_ru(n) for n in (1, 2, 5, 11, 21, 22, 1000)] == [
        "1 штамп",
        "2 штампа",
        "5 штампов",
        "11 штампов",
        "21 штамп",
        "22 штампа",
        "1\u00a0000 штампов",
    ]
    assert [stamps_en(n) for n in (1, 2)] == ["1 stamp", "2 stamps"]


def test_the_till_and_the_history_speak_both_languages() -> None:
    name = {"ru": "Кофе", "en": "Coffee"}
    text = till_status(
        name,
        size=6,
        earned=1,
        rewards=1,
        discount=25000,
        balance=0,
        debt=0,
        to_go=6,
        waiting=0,
        coupons=0,
        currency="RUB",
    )
    assert text["ru"].startswith("+1 штамп на карте «Кофе».")
    assert "250\u00a0₽" in text["ru"]
    assert "6 stamps to go" in text["en"]
    refund = describe_movement(
        "refund",
        name,
        earned=-2,
        rewards=-1,
        stamps=4,
        debt=0,
        details={"stamps_removed": 2, "rewards_returned": 1},
    )
    assert "−2 штампа" in refund["ru"]
    assert "came back" in refund["en"]
    expired = describe_movement("expiry", name, earned=0, rewards=0, stamps=-1, debt=0, details={})
    assert expired["ru"].startswith("Сгорел 1 штамп")
