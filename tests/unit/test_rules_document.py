"""Program documents: ``validate_document`` reports every problem with its path, at once."""

from __future__ import annotations

from typing import Any

import pytest

from kopilka.domain.errors import ValidationFailed
from kopilka.domain.ledger.expiry import CalendarExpiry, NeverExpires, RollingExpiry
from kopilka.domain.rules.document import compile_program, validate_document

OK_EFFECT = {"points_percent": 5}


def doc(**fields: Any) -> dict[str, Any]:
    return {"type": "bonus", **fields}


def with_rule(**fields: Any) -> dict[str, Any]:
    """A document with one rule: id "r" and a valid effect unless ``fields`` say otherwise."""
    return doc(rules=[{"id": "r", "effects": [OK_EFFECT], **fields}])


def when(condition: Any) -> dict[str, Any]:
    return with_rule(when=condition)


def effect(value: Any) -> dict[str, Any]:
    return with_rule(effects=[value])


def found(document: Any) -> list[tuple[list[Any], str]]:
    return [(e["path"], e["code"]) for e in validate_document(document)]


# ---- one problem, one error, the right path ------------------------------------------------
R = ["rules", 0]
W = [*R, "when"]
E = [*R, "effects", 0]

ERROR_ROWS = [
    # the document itself
    pytest.param([1, 2], [([], "invalid_document")], id="not-an-object"),
    pytest.param({}, [(["type"], "invalid")], id="type-missing"),
    pytest.param(doc(type="loyalty"), [(["type"], "invalid")], id="type-unknown"),
    pytest.param(doc(colour="red"), [(["colour"], "unknown_field")], id="unknown-top-level"),
    pytest.param(doc(name=5), [(["name"], "invalid"), (["name"], "invalid")], id="name-type"),
    pytest.param(
        doc(name={"ru": 5}),
        [(["name"], "invalid"), (["name", "ru"], "invalid")],
        id="name-translation-type",
    ),
    pytest.param(doc(currency=""), [(["currency"], "invalid")], id="currency-empty"),
    pytest.param(doc(pending_days=-1), [(["pending_days"], "invalid")], id="pending-days"),
    pytest.param(doc(pending_days="soon"), [(["pending_days"], "invalid")], id="pending-days-type"),
    pytest.param(
        doc(redemption={"max_percent": 150}),
        [(["redemption", "max_percent"], "invalid")],
        id="max-percent",
    ),
    pytest.param(
        doc(redemption={"point_value": 0}),
        [(["redemption", "point_value"], "invalid")],
        id="point-value",
    ),
    pytest.param(
        doc(redemption={"max_percent_by_tier": {"gold": 101}}),
        [(["redemption", "max_percent_by_tier", "gold"], "invalid")],
        id="tier-percent",
    ),
    pytest.param(
        doc(redemption={"max_percent_by_tier": {"gold": "all"}}),
        [(["redemption", "max_percent_by_tier", "gold"], "invalid")],
        id="tier-percent-type",
    ),
    pytest.param(
        doc(redemption={"bonus": True}),
        [(["redemption", "bonus"], "unknown_field")],
        id="redemption-unknown",
    ),
    pytest.param(
        doc(rounding={"mode": "sideways"}), [(["rounding", "mode"], "invalid")], id="rounding-mode"
    ),
    pytest.param(
        doc(rounding={"scope": "basket"}), [(["rounding", "scope"], "invalid")], id="rounding-scope"
    ),
    pytest.param(
        doc(limits={"max_discount_percent_line": 101}),
        [(["limits", "max_discount_percent_line"], "invalid")],
        id="limits",
    ),
    pytest.param(
        doc(refund_shortfall="bill"), [(["refund_shortfall"], "invalid")], id="refund-shortfall"
    ),
    pytest.param(
        doc(expiry={"kind": "rolling", "days": 0}),
        [(["expiry", "days"], "invalid")],
        id="expiry-rolling-days",
    ),
    pytest.param(
        doc(expiry={"kind": "calendar"}),
        [(["expiry", "period"], "invalid")],
        id="expiry-calendar-period",
    ),
    pytest.param(
        doc(expiry={"kind": "calendar", "period": "month", "days": 3}),
        [(["expiry", "days"], "unknown_field")],
        id="expiry-unknown-field",
    ),
    pytest.param(
        doc(expiry={"kind": "someday"}), [(["expiry", "kind"], "invalid")], id="expiry-kind"
    ),
    pytest.param(doc(expiry="never"), [(["expiry"], "invalid")], id="expiry-type"),
    pytest.param(doc(rules="all"), [(["rules"], "invalid")], id="rules-type"),
    # rules
    pytest.param(doc(rules=["r"]), [(R, "invalid_rule")], id="rule-type"),
    pytest.param(
        with_rule(colour="red"), [([*R, "colour"], "unknown_field")], id="rule-unknown-field"
    ),
    pytest.param(
        doc(rules=[{"effects": [OK_EFFECT]}]),
        [([*R, "id"], "invalid_rule_id")],
        id="rule-id-missing",
    ),
    pytest.param(with_rule(id="Big Sale"), [([*R, "id"], "invalid_rule_id")], id="rule-id-form"),
    pytest.param(with_rule(id=7), [([*R, "id"], "invalid_rule_id")], id="rule-id-type"),
    pytest.param(
        doc(
            rules=[
                {"id": "r", "effects": [OK_EFFECT]},
                {"id": "s", "effects": [OK_EFFECT]},
                {"id": "r", "effects": [OK_EFFECT]},
            ]
        ),
        [(["rules", 2, "id"], "duplicate_rule_id")],
        id="rule-id-duplicate",
    ),
    pytest.param(
        with_rule(priority=-1), [([*R, "priority"], "invalid_priority")], id="priority-negative"
    ),
    pytest.param(
        with_rule(priority="high"), [([*R, "priority"], "invalid_priority")], id="priority-type"
    ),
    pytest.param(
        with_rule(exclusive="yes"), [([*R, "exclusive"], "invalid_flag")], id="exclusive-type"
    ),
    pytest.param(with_rule(stop=1), [([*R, "stop"], "invalid_flag")], id="stop-type"),
    pytest.param(
        doc(rules=[{"id": "r"}]), [([*R, "effects"], "effects_required")], id="effects-missing"
    ),
    pytest.param(
        with_rule(effects=[]), [([*R, "effects"], "effects_required")], id="effects-empty"
    ),
    pytest.param(
        with_rule(effects={"points_percent": 5}),
        [([*R, "effects"], "effects_required")],
        id="effects-not-a-list",
    ),
    # conditions
    pytest.param(
        when({"moon_phase": "full"}),
        [([*W, "moon_phase"], "unknown_condition")],
        id="unknown-condition",
    ),
    pytest.param(
        with_rule(lines={"tier_in": ["gold"]}),
        [([*R, "lines", "tier_in"], "unknown_condition")],
        id="receipt-condition-in-lines",
    ),
    pytest.param(
        when({"all": [{"sku": "A"}, {"moon": 1}]}),
        [([*W, "all", 1, "moon"], "unknown_condition")],
        id="unknown-nested",
    ),
    pytest.param(
        when({"qty_gte": {"of": {"moon": 1}, "value": 2}}),
        [([*W, "qty_gte", "of", "moon"], "unknown_condition")],
        id="unknown-in-of",
    ),
    pytest.param(when({"sku": "A", "brand": "B"}), [(W, "invalid_condition")], id="two-keys"),
    pytest.param(when([]), [(W, "invalid_condition")], id="condition-not-an-object"),
    pytest.param(when({"all": []}), [([*W, "all"], "invalid_condition")], id="all-empty"),
    pytest.param(
        when({"any": {"sku": "A"}}), [([*W, "any"], "invalid_condition")], id="any-not-a-list"
    ),
    pytest.param(when({"sku": ""}), [([*W, "sku"], "invalid_condition")], id="sku-empty"),
    pytest.param(when({"sku_in": []}), [([*W, "sku_in"], "invalid_condition")], id="sku_in-empty"),
    pytest.param(
        when({"sku_in": ["A", 1]}), [([*W, "sku_in"], "invalid_condition")], id="sku_in-type"
    ),
    pytest.param(
        when({"category": "//"}),
        [([*W, "category"], "invalid_condition")],
        id="category-empty-path",
    ),
    pytest.param(
        when({"brand_in": "Paul"}),
        [([*W, "brand_in"], "invalid_condition")],
        id="brand_in-not-a-list",
    ),
    pytest.param(
        when({"attribute": {"name": "size"}}),
        [([*W, "attribute"], "invalid_condition")],
        id="attribute-no-test",
    ),
    pytest.param(
        when({"attribute": {"name": "size", "equals": 1, "in": [1]}}),
        [([*W, "attribute"], "invalid_condition")],
        id="attribute-both-tests",
    ),
    pytest.param(
        when({"attribute": {"name": ["size"], "equals": 1}}),
        [([*W, "attribute"], "invalid_condition")],
        id="attribute-name-type",
    ),
    pytest.param(
        when({"attribute": {"name": "size", "in": "L"}}),
        [([*W, "attribute", "in"], "invalid_condition")],
        id="attribute-in-type",
    ),
    pytest.param(
        when({"price_gte": -1}), [([*W, "price_gte"], "invalid_condition")], id="price-negative"
    ),
    pytest.param(
        when({"line_qty_gte": True}), [([*W, "line_qty_gte"], "invalid_condition")], id="qty-bool"
    ),
    pytest.param(
        when({"amount_gte": "lots"}),
        [([*W, "amount_gte"], "invalid_condition")],
        id="threshold-value",
    ),
    pytest.param(
        when({"qty_gte": {"of": {"sku": "A"}}}),
        [([*W, "qty_gte"], "invalid_condition")],
        id="threshold-value-missing",
    ),
    pytest.param(
        when({"qty_gte": {"value": 2, "min": 1}}),
        [([*W, "qty_gte"], "invalid_condition")],
        id="threshold-extra-key",
    ),
    pytest.param(
        when({"weekdays": [0, 8]}), [([*W, "weekdays"], "invalid_condition_value")], id="weekdays"
    ),
    pytest.param(
        when({"hours": {"from": "25:00", "to": "02:00"}}),
        [([*W, "hours"], "invalid_condition_value")],
        id="hours",
    ),
    pytest.param(
        when({"hours": {"from": "10:00"}}),
        [([*W, "hours"], "invalid_condition_value")],
        id="hours-open",
    ),
    pytest.param(
        when({"date_between": {"from": "2024-13-01"}}),
        [([*W, "date_between"], "invalid_condition_value")],
        id="date",
    ),
    pytest.param(
        when({"date_between": {"from": 20240101}}),
        [([*W, "date_between"], "invalid_condition_value")],
        id="date-type",
    ),
    pytest.param(
        when({"birthday_window": {"days": 40}}),
        [([*W, "birthday_window"], "invalid_condition_value")],
        id="birthday-days",
    ),
    pytest.param(
        when({"nth_purchase": 0}),
        [([*W, "nth_purchase"], "invalid_condition_value")],
        id="nth-purchase",
    ),
    pytest.param(
        when({"member": "yes"}), [([*W, "member"], "invalid_condition_value")], id="member-type"
    ),
    pytest.param(
        when({"tier_in": "gold"}),
        [([*W, "tier_in"], "invalid_condition_value")],
        id="tier_in-not-a-list",
    ),
    pytest.param(
        when({"coupon": ""}), [([*W, "coupon"], "invalid_condition_value")], id="coupon-empty"
    ),
    pytest.param(
        when({"member_attribute": {"equals": 1}}),
        [([*W, "member_attribute"], "invalid_condition")],
        id="member-attribute",
    ),
    # effects
    pytest.param(
        effect({"discount_percent": 150}),
        [([*E, "discount_percent"], "invalid_effect_value")],
        id="percent-above-100",
    ),
    pytest.param(
        effect({"discount_percent": 0}),
        [([*E, "discount_percent"], "invalid_effect_value")],
        id="percent-zero",
    ),
    pytest.param(
        effect({"points_percent": -5}),
        [([*E, "points_percent"], "invalid_effect_value")],
        id="percent-negative",
    ),
    pytest.param(
        effect({"points_percent": True}),
        [([*E, "points_percent"], "invalid_effect_value")],
        id="percent-bool",
    ),
    pytest.param(
        effect({"points_multiplier": 0.5}),
        [([*E, "points_multiplier"], "invalid_effect_value")],
        id="multiplier",
    ),
    pytest.param(
        effect({"points_fixed": 2.5}),
        [([*E, "points_fixed"], "invalid_effect_value")],
        id="points-fixed-fraction",
    ),
    pytest.param(
        effect({"points_per_unit": 0}),
        [([*E, "points_per_unit"], "invalid_effect_value")],
        id="per-unit-zero",
    ),
    pytest.param(
        effect({"cheapest_free": 0}),
        [([*E, "cheapest_free"], "invalid_effect_value")],
        id="cheapest-free-zero",
    ),
    pytest.param(
        effect({"fixed_price": -100}),
        [([*E, "fixed_price"], "invalid_effect_value")],
        id="fixed-price-negative",
    ),
    pytest.param(
        effect({"discount_amount": {"value": 100, "per": "kg"}}),
        [([*E, "discount_amount"], "invalid_effect_value")],
        id="amount-per",
    ),
    pytest.param(
        effect({"discount_amount": {"value": 0}}),
        [([*E, "discount_amount"], "invalid_effect_value")],
        id="amount-zero",
    ),
    pytest.param(
        effect({"discount_amount": {"value": 100, "cap": 5}}),
        [([*E, "discount_amount"], "invalid_effect_value")],
        id="amount-extra-key",
    ),
    pytest.param(
        effect({"buy_n_get_free": {"n": 2}}),
        [([*E, "buy_n_get_free"], "invalid_effect_value")],
        id="n-plus-free-shape",
    ),
    pytest.param(
        effect({"buy_n_get_free": {"n": 0, "free": 1}}),
        [([*E, "buy_n_get_free"], "invalid_effect_value")],
        id="n-plus-free-zero",
    ),
    pytest.param(
        effect({"gift": {"qty": 1}}), [([*E, "gift"], "invalid_effect_value")], id="gift-no-sku"
    ),
    pytest.param(
        effect({"gift": {"sku": "MUG", "qty": 0}}),
        [([*E, "gift", "qty"], "invalid_effect_value")],
        id="gift-qty",
    ),
    pytest.param(
        effect({"gift": {"sku": "MUG", "colour": "red"}}),
        [([*E, "gift"], "invalid_effect_value")],
        id="gift-unknown-key",
    ),
    pytest.param(
        effect({"issue_coupon": {"valid_days": 3}}),
        [([*E, "issue_coupon"], "invalid_effect_value")],
        id="coupon-no-benefit",
    ),
    pytest.param(
        effect({"issue_coupon": {"benefit": {"discount_percent": 500}}}),
        [([*E, "issue_coupon", "benefit", "discount_percent"], "invalid_effect_value")],
        id="coupon-bad-benefit",
    ),
    pytest.param(
        effect({"issue_coupon": {"benefit": {"points_fixed": 5}, "valid_days": 0}}),
        [([*E, "issue_coupon", "valid_days"], "invalid_effect_value")],
        id="coupon-valid-days",
    ),
    pytest.param(
        effect({"issue_coupon": {"benefit": {"points_fixed": 5}, "min_basket": -1}}),
        [([*E, "issue_coupon", "min_basket"], "invalid_effect_value")],
        id="coupon-min-basket",
    ),
    pytest.param(
        effect({"issue_coupon": {"benefit": {"points_fixed": 5}, "days": 3}}),
        [([*E, "issue_coupon"], "invalid_effect_value")],
        id="coupon-unknown-key",
    ),
    pytest.param(
        effect({"cashback": 5}), [([*E, "cashback"], "unknown_effect")], id="unknown-effect"
    ),
    pytest.param(
        effect({"points_percent": 5, "points_fixed": 1}),
        [(E, "invalid_effect")],
        id="effect-two-keys",
    ),
    pytest.param(effect("points"), [(E, "invalid_effect")], id="effect-not-an-object"),
]


@pytest.mark.parametrize(("document", "expected"), ERROR_ROWS)
def test_each_error_has_its_path(document: Any, expected: list[tuple[list[Any], str]]) -> None:
    assert found(document) == expected
    for error in validate_document(document):
        assert error["message"]


def test_every_error_is_reported_at_once() -> None:
    document = {
        "type": "bonus",
        "colour": "red",
        "redemption": {"max_percent": 500},
        "rules": [
            {"id": "a", "when": {"moon_phase": "full"}, "effects": [{"discount_percent": 0}]},
            {"id": "a", "effects": [{"cashback": 5}, {"points_fixed": 10}]},
            {"id": "b", "lines": {"sku": ""}, "priority": -3},
        ],
    }
    assert sorted(found(document), key=repr) == sorted(
        [
            (["colour"], "unknown_field"),
            (["redemption", "max_percent"], "invalid"),
            (["rules", 0, "when", "moon_phase"], "unknown_condition"),
            (["rules", 0, "effects", 0, "discount_percent"], "invalid_effect_value"),
            (["rules", 1, "id"], "duplicate_rule_id"),
            (["rules", 1, "effects", 0, "cashback"], "unknown_effect"),
            (["rules", 2, "priority"], "invalid_priority"),
            (["rules", 2, "lines", "sku"], "invalid_condition"),
            (["rules", 2, "effects"], "effects_required"),
        ],
        key=repr,
    )


def test_compile_program_raises_with_every_error() -> None:
    document = doc(colour="red", rules=[{"id": "r", "effects": [{"cashback": 1}]}])
    with pytest.raises(ValidationFailed) as caught:
        compile_program(document, "p", 1)
    assert [(list(e.path), e.code) for e in caught.value.errors] == found(document)
    assert len(caught.value.errors) == 2


# ---- valid documents ------------------------------------------------------------------------
VALID = {
    "type": "combined",
    "name": {"ru": "Копилка", "en": "Piggy bank"},
    "currency": "points",
    "redemption": {
        "point_value": 100,
        "max_percent": 50,
        "max_percent_by_tier": {"gold": 70},
        "min_balance": 10,
    },
    "pending_days": 14,
    "expiry": {"kind": "rolling", "days": 365},
    "rounding": {"scope": "line", "mode": "half_up"},
    "limits": {"max_discount_percent_line": 50, "max_discount_percent_receipt": 30},
    "refund_shortfall": "debt",
    "rules": [
        {
            "id": "welcome",
            "name": "Первая покупка",
            "priority": 1,
            "exclusive": True,
            "when": {"first_purchase": True},
            "effects": [{"points_fixed": 500}],
        },
        {
            "id": "coffee-3",
            "when": {"qty_gte": {"of": {"category": "drinks/coffee"}, "value": 3}},
            "lines": {"category": "drinks/coffee"},
            "effects": [{"buy_n_get_free": {"n": 2, "free": 1}}],
        },
        {"id": "base", "priority": 200, "effects": [{"points_percent": 5}]},
        {
            "id": "happy_hours",
            "priority": 50,
            "stop": True,
            "when": {
                "all": [{"weekdays": [1, 2, 3, 4, 5]}, {"hours": {"from": "22:00", "to": "02:00"}}]
            },
            "effects": [
                {"discount_amount": {"value": 10_000, "per": "receipt"}},
                {"gift": {"sku": "MUG", "qty": 1, "name": "Кружка"}},
                {
                    "issue_coupon": {
                        "benefit": {"discount_percent": 10},
                        "valid_days": 7,
                        "min_basket": 100_000,
                    }
                },
            ],
        },
    ],
}


def test_a_valid_document_compiles() -> None:
    assert validate_document(VALID) == []
    program = compile_program(VALID, "kopilka", 3)
    assert (program.code, program.version, program.currency) == ("kopilka", 3, "points")
    assert program.name == {"ru": "Копилка", "en": "Piggy bank"}
    assert [r.id for r in program.rules] == ["welcome", "happy_hours", "coffee-3", "base"]
    welcome = program.rules[0]
    assert welcome.name == {"ru": "Первая покупка", "en": "Первая покупка"}
    assert welcome.exclusive
    assert not welcome.stop
    assert program.rules[1].stop
    assert [e.kind for e in program.rules[1].effects] == ["discount_amount", "gift", "issue_coupon"]
    assert program.rules[2].keys == frozenset({"cat:drinks/coffee"})
    assert program.settings.expiry == RollingExpiry(days=365)


@pytest.mark.parametrize(
    ("expiry", "policy"),
    [
        pytest.param(None, NeverExpires(), id="default"),
        pytest.param({}, NeverExpires(), id="empty"),
        pytest.param({"kind": "never"}, NeverExpires(), id="never"),
        pytest.param({"kind": "rolling", "days": 30}, RollingExpiry(days=30), id="rolling"),
        pytest.param(
            {"kind": "calendar", "period": "quarter", "extra_periods": 1},
            CalendarExpiry(period="quarter", extra_periods=1),
            id="calendar",
        ),
    ],
)
def test_expiry_policies(expiry: dict[str, Any] | None, policy: Any) -> None:
    document = doc() if expiry is None else doc(expiry=expiry)
    assert compile_program(document, "p", 1).settings.expiry == policy


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("", {"ru": "p", "en": "p"}, id="empty"),
        pytest.param("Бонусы", {"ru": "Бонусы", "en": "Бонусы"}, id="one-name"),
        pytest.param({"en": "Bonus"}, {"ru": "Bonus", "en": "Bonus"}, id="en-only"),
        pytest.param({"ru": "Бонусы", "en": "Bonus"}, {"ru": "Бонусы", "en": "Bonus"}, id="both"),
    ],
)
def test_program_names(name: Any, expected: dict[str, str]) -> None:
    assert compile_program(doc(name=name), "p", 1).name == expected


def test_rule_names_default_to_the_id() -> None:
    program = compile_program(with_rule(), "p", 1)
    assert program.rules[0].name == {"ru": "r", "en": "r"}


def test_mechanics_keys_must_not_repeat() -> None:
    problems = validate_document(
        {
            "type": "bonus",
            "events": [{"name": "review_left"}, {"name": "review_left"}],
            "clubs": [
                {"code": "vip", "name": "VIP", "join": "open"},
                {"code": "vip", "name": "VIP 2", "join": "open"},
            ],
            "stamp_cards": [
                {
                    "id": "coffee",
                    "lines": {"category": "coffee"},
                    "stamps": 6,
                    "reward": {"free_item": {}},
                },
                {
                    "id": "coffee",
                    "lines": {"category": "tea"},
                    "stamps": 6,
                    "reward": {"free_item": {}},
                },
            ],
        }
    )
    assert [(p["path"], p["code"]) for p in problems] == [
        (["events", 1, "name"], "duplicate_name"),
        (["clubs", 1, "code"], "duplicate_code"),
        (["stamp_cards", 1, "id"], "duplicate_id"),
    ]


# What a lenient reading would turn into a number or a flag: refused at input, each at its path.
LOOSE_TYPES = [
    pytest.param(doc(pending_days="7"), ["pending_days"], id="days-as-text"),
    pytest.param(doc(pending_days=7.0), ["pending_days"], id="days-as-float"),
    pytest.param(doc(redemption={"enabled": "yes"}), ["redemption", "enabled"], id="flag-yes"),
    pytest.param(doc(redemption={"enabled": 1}), ["redemption", "enabled"], id="flag-as-1"),
    pytest.param(doc(redemption={"point_value": "100"}), ["redemption", "point_value"], id="pv"),
    pytest.param(doc(expiry={"kind": "rolling", "days": True}), ["expiry", "days"], id="true-day"),
    pytest.param(
        doc(expiry={"kind": "calendar", "period": "month", "extra_periods": "1"}),
        ["expiry", "extra_periods"],
        id="extra-periods-as-text",
    ),
    pytest.param(
        doc(limits={"max_discount_percent_line": 50.0}),
        ["limits", "max_discount_percent_line"],
        id="percent-as-float",
    ),
]


@pytest.mark.parametrize(("document", "path"), LOOSE_TYPES)
def test_values_need_their_exact_type_at_input(document: dict[str, Any], path: list[Any]) -> None:
    assert [e["path"] for e in validate_document(document)] == [path]
    with pytest.raises(ValidationFailed) as raised:
        compile_program(document, "p", 0, at_input=True)
    assert [list(e.path) for e in raised.value.errors] == [path]


@pytest.mark.parametrize(("document", "path"), LOOSE_TYPES)
def test_a_stored_version_still_loads_leniently(document: dict[str, Any], path: list[Any]) -> None:
    """Published versions are immutable and must keep loading: a document stored before
    types were held exactly is read as it always was."""
    compile_program(document, "p", 1)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        pytest.param(with_rule(note=b"\x80\x80"), ["rules", 0, "note"], id="binary-in-a-rule"),
        pytest.param(doc(name=b"piggy"), ["name"], id="binary-name"),
        pytest.param(when({"attr": {"a"}}), ["rules", 0, "when", "attr"], id="set"),
    ],
)
def test_values_json_cannot_hold_are_errors_at_their_path(
    document: dict[str, Any], path: list[Any]
) -> None:
    """YAML's ``!!binary`` and ``!!set`` load as bytes and sets: reported, never a crash."""
    assert [(e["path"], e["code"]) for e in validate_document(document)] == [
        (path, "not_json_value")
    ]
