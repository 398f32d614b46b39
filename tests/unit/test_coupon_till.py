"""Coupons at the till, pure: the order of the checks, the receipt's limits, the rules a
coupon becomes and the words the customer reads."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kopilka.domain.coupons import texts
from kopilka.domain.coupons.settings import CouponSettings
from kopilka.domain.coupons.terms import Terms
from kopilka.domain.coupons.till import (
    CouponRule,
    Offer,
    Outcome,
    Program,
    Verdict,
    answer,
    build_rules,
    decide,
    presented,
)
from kopilka.domain.rules.document import compile_program, validate_document
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line

NOW = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
TZ = "Europe/Moscow"
MEMBER = uuid.UUID(int=7)
MAIN = Program("main", True, 3, 1000)


def offer(code: str, **fields: Any) -> Offer:
    terms = fields.pop("terms", None) or Terms(benefit={"discount_percent": 10})
    values: dict[str, Any] = {
        "id": uuid.uuid5(uuid.NAMESPACE_DNS, code),
        "code": code,
        "kind": "public",
        "member_id": None,
        "active": True,
        "valid_from": NOW - timedelta(days=1),
        "valid_until": None,
        "uses_left": 1,
        "per_member": None,
        "terms": terms,
        **fields,
    }
    return Offer(**values)


def fates(
    codes: list[str],
    offers: list[Offer],
    *,
    member: uuid.UUID | None = MEMBER,
    channel: str = "store",
    programs: tuple[Program, ...] = (MAIN,),
    refs: dict[str, tuple[tuple[str, str], ...]] | None = None,
) -> list[Verdict]:
    return decide(
        codes,
        {o.code: o for o in offers},
        refs or {},
        member_id=member,
        moment=NOW,
        channel=channel,
        programs=programs,
        timezone=TZ,
    )


def reasons(verdicts: list[Verdict]) -> list[str | None]:
    return [v.reason for v in verdicts]


@pytest.mark.parametrize(
    ("fields", "member", "reason"),
    [
        ({"active": False}, MEMBER, "coupon_voided"),
        ({"valid_from": NOW + timedelta(hours=1)}, MEMBER, "not_yet_valid"),
        ({"valid_until": NOW}, MEMBER, "expired"),
        ({"uses_left": 0}, MEMBER, "already_used"),
        ({"member_id": MEMBER}, None, "member_required"),
        ({"member_id": uuid.UUID(int=8)}, MEMBER, "other_member"),
        ({"terms": Terms(benefit={"points_fixed": 5})}, None, "member_required"),
        ({"per_member": 2}, None, "member_required"),
        ({"per_member": 2, "used_by_member": 2}, MEMBER, "member_limit_reached"),
        (
            {"terms": Terms(benefit={"discount_percent": 5}, channels=("online",))},
            MEMBER,
            "wrong_channel",
        ),
        (
            {"terms": Terms(benefit={"discount_percent": 5}, program="other")},
            MEMBER,
            "program_not_in_force",
        ),
        ({}, MEMBER, None),
        ({"member_id": MEMBER}, MEMBER, None),
    ],
)
def test_each_check(fields: dict[str, Any], member: uuid.UUID | None, reason: str | None) -> None:
    assert reasons(fates(["C1X"], [offer("C1X", **fields)], member=member)) == [reason]


def test_the_first_failing_check_is_the_one_reported() -> None:
    """Voided beats expired beats used: the customer hears the decisive reason."""
    gone = offer("OLD", active=False, valid_until=NOW - timedelta(days=1), uses_left=0)
    expired = offer("EXP", valid_until=NOW - timedelta(days=1), uses_left=0)
    assert reasons(fates(["OLD", "EXP"], [gone, expired])) == ["coupon_voided", "expired"]


def test_shape_repeats_and_unknown_codes() -> None:
    codes = presented([" c1x ", "c1x", "bad code", "NOPE", "stamps-coffee"])
    assert codes == ["C1X", "C1X", "BAD CODE", "NOPE"]  # a stamp card's code is not ours
    assert reasons(fates(codes, [offer("C1X")])) == [
        None,
        "duplicate_coupon",
        "invalid_code",
        "unknown_coupon",
    ]


def test_combinability_and_the_receipt_limit_in_the_order_presented() -> None:
    alone = offer("ALONE", terms=Terms(benefit={"discount_percent": 5}, combinable=False))
    others = [offer(f"C{i}X") for i in range(1, 5)]
    assert reasons(fates(["ALONE", "C1X"], [alone, *others])) == [None, "not_combinable"]
    assert reasons(fates(["C1X", "ALONE", "C2X"], [alone, *others])) == [
        None,
        "not_combinable",
        None,
    ]
    four = fates(["C1X", "C2X", "C3X", "C4X"], others)
    assert reasons(four) == [None, None, None, "too_many_coupons"]
    assert four[3].message == {
        "ru": "Не больше 3 купонов на один чек",
        "en": "At most 3 coupons per receipt",
    }
    # A coupon rejected for another reason takes no place.
    used = offer("USED", uses_left=0)
    assert reasons(fates(["USED", "C1X", "C2X", "C3X"], [used, *others])) == [
        "already_used",
        None,
        None,
        None,
    ]


def test_the_program_a_coupon_joins() -> None:
    club = Program("club", False, 5, 10)
    late = Program("zeta", True, 1, 1000)
    mine = offer("CLUB1", terms=Terms(benefit={"discount_percent": 5}, program="club"))
    verdicts = fates(["C1X", "CLUB1"], [offer("C1X"), mine], programs=(club, MAIN, late))
    # The first open program, else the one the coupon names (a closed one too).
    assert [v.program for v in verdicts] == ["main", "club"]
    assert reasons(fates(["C1X"], [offer("C1X")], programs=())) == ["no_program"]
    # A code only program rules name rides with its first rule's program.
    named = fates(["TVDAY"], [], refs={"TVDAY": (("main", "tv"),)})
    assert (named[0].reason, named[0].program, named[0].refs) == (None, "main", (("main", "tv"),))


def _line(index: int, sku: str, price: int, category: tuple[str, ...] = ()) -> Line:
    return Line(index, sku, Decimal(1), price, price, category=category)


def _ctx(outlet: str = "OUT-1") -> Context:
    return Context(
        occurred_at=NOW,
        local_time=NOW,
        tenant_today=NOW.date(),
        outlet_code=outlet,
        coupons=frozenset(),
    )


def test_coupon_rules_evaluate_like_program_rules() -> None:
    program = compile_program({"type": "bonus", "rules": []}, "main", 1)
    scoped = Terms(
        benefit={"discount_percent": 50},
        scope={"category": "home"},
        min_basket=20_000,
        outlets=("OUT-1",),
        name={"ru": "Дом", "en": "Home"},
    )
    verdicts = fates(["HOME", "OFF"], [offer("HOME", terms=scoped), offer("OFF")])
    rules = build_rules(verdicts, {"main": 1000})
    assert [r.id for _, r in rules] == ["coupon:HOME", "coupon:OFF"]
    assert all(isinstance(r, CouponRule) for _, r in rules)
    merged = replace(program, rules=tuple(r for _, r in rules))
    lines = [_line(0, "TV", 100_000, ("tech",)), _line(1, "MUG", 30_000, ("home",))]
    ev = evaluate([merged], lines, _ctx())
    by_rule = {(a.program, a.rule_id): a.discount for a in ev.applied}
    assert by_rule == {("main", "coupon:HOME"): 15_000, ("main", "coupon:OFF"): 11_500}
    # Not in this outlet, or too small a basket of the scope: the reason is worked out.
    marks = [r.mark for _, r in rules]
    for outlet, mug, reason in (("OUT-2", 30_000, "wrong_outlet"), ("OUT-1", 10_000, "min_basket")):
        lines = [_line(0, "TV", 100_000), _line(1, "MUG", mug, ("home",))]
        ev = evaluate([merged], lines, _ctx(outlet))
        outcomes = {(p, r): Outcome(True) for p, rs in ev.rules_by_program.items() for r in rs}
        got = answer(marks, [], outcomes, lines=lines, outlet_code=outlet, currency="RUB")
        assert got[0]["reason"] == reason
        assert got[1]["status"] == "rejected"  # chosen, but no outcome with a discount given
    got = answer(marks, ["LOST"], {}, lines=lines, outlet_code="OUT-1", currency="RUB")
    assert got[-1]["code"] == "LOST"
    assert got[-1]["reason"] == "no_program"


def test_the_words() -> None:
    assert texts.rejection("expired", day=date(2026, 5, 31)) == {
        "ru": "Срок действия купона истёк 31 мая 2026",
        "en": "Expired on 31 May 2026",
    }
    assert texts.rejection("min_basket", amount=150_050, currency="RUB") == {
        "ru": "Минимальная сумма покупки 1\u00a0500,50\u00a0₽",
        "en": "Minimum basket 1,500.50 ₽",
    }
    assert texts.rejection("member_limit_reached", limit=3) == {
        "ru": "Купон можно использовать не больше 3 раз",
        "en": "The coupon can be used at most 3 times per customer",
    }
    assert texts.rejection("member_limit_reached", limit=21)["ru"].endswith("21 раза")
    assert texts.rejection("too_many_coupons", limit=1) == {
        "ru": "Не больше 1 купона на один чек",
        "en": "At most 1 coupon per receipt",
    }
    assert texts.rejection("wrong_channel", channel="online")["ru"] == (
        "Купон не действует для покупок онлайн"
    )
    assert texts.applied(0, 0, "RUB") == {"ru": "Купон применён", "en": "Coupon applied"}
    assert texts.applied(5_000, 21, "RUB") == {
        "ru": "Купон применён: скидка 50\u00a0₽, +21 балл",
        "en": "Coupon applied: 50 ₽ off, +21 points",
    }
    # The last day a coupon valid until local midnight can be used is the day before.
    until = datetime(2026, 6, 1, tzinfo=UTC) - timedelta(hours=3)  # midnight in Moscow
    assert texts.last_day(until, TZ) == date(2026, 5, 31)
    assert texts.describe({"buy_n_get_free": {"n": 2, "free": 1}}, 0, None, TZ, "RUB") == {
        "ru": "2+1 бесплатно",
        "en": "Buy 2 get 1 free",
    }
    for reason in texts.REASONS:
        facts = {
            "day": date(2026, 1, 1),
            "amount": 100,
            "currency": "RUB",
            "limit": 2,
            "channel": "app",
        }
        words = texts.rejection(reason, **facts)
        assert words["ru"]
        assert words["en"]


def test_the_program_section() -> None:
    program = compile_program(
        {"type": "bonus", "coupons": {"restore_on_refund": True, "max_per_receipt": 2}}, "p", 1
    )
    assert program.settings.coupons == CouponSettings(restore_on_refund=True, max_per_receipt=2)
    assert compile_program({"type": "bonus"}, "p", 1).settings.coupons == CouponSettings()
    problems = validate_document(
        {"type": "bonus", "coupons": {"max_per_receipt": 0, "restore_on_refund": "often", "x": 1}}
    )
    assert sorted(tuple(p["path"]) for p in problems) == [
        ("coupons", "max_per_receipt"),
        ("coupons", "restore_on_refund"),
        ("coupons", "x"),
    ]
