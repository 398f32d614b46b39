"""Which rules read the member's purchase count: known when a program is compiled, so the
till counts a member's purchases only for programs that need it; and facts built without
the count are refused by the conditions that read it, never guessed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from kopilka.domain.errors import ErrorCollector
from kopilka.domain.rules.conditions import ConditionCompiler
from kopilka.domain.rules.document import compile_program, compile_rules
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line, MemberFacts

EFFECTS = [{"points_fixed": 10}]
MOMENT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def program(*rules: dict[str, Any]) -> Any:
    return compile_program({"type": "bonus", "rules": list(rules)}, "main", 1)


def rule(rid: str, when: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": rid, "effects": EFFECTS, **({"when": when} if when is not None else {})}


@pytest.mark.parametrize(
    ("when", "needs"),
    [
        (None, False),
        ({"sku": "TEA"}, False),
        ({"tier_in": ["gold"]}, False),
        ({"member": True}, False),
        ({"amount_gte": {"of": {"category": "drinks"}, "value": 100}}, False),
        ({"first_purchase": True}, True),
        ({"first_purchase": False}, True),
        ({"nth_purchase": 3}, True),
        ({"all": [{"sku": "TEA"}, {"nth_purchase": 2}]}, True),
        ({"any": [{"sku": "TEA"}, {"not": {"first_purchase": True}}]}, True),
        ({"not": {"all": [{"member": True}, {"first_purchase": True}]}}, True),
    ],
)
def test_a_rule_knows_whether_it_reads_the_purchase_count(
    when: dict[str, Any] | None, needs: bool
) -> None:
    compiled = program(rule("r", when))
    assert compiled.rules[0].needs_purchase_count is needs
    assert compiled.needs_purchase_count is needs


def test_each_rule_answers_for_itself() -> None:
    rules = compile_rules(
        [
            rule("a", {"first_purchase": True}),
            rule("b", {"sku": "TEA"}),
            rule("c", {"nth_purchase": 5}),
            rule("d"),
        ],
        ErrorCollector(),
    )
    assert {r.id: r.needs_purchase_count for r in rules} == {
        "a": True,
        "b": False,
        "c": True,
        "d": False,
    }


def test_a_program_rebuilt_with_other_rules_answers_for_its_own() -> None:
    """The till merges hooks' rules into programs with ``replace``: the flag follows the
    rules, it is not copied."""
    plain = program(rule("base"))
    extra = program(rule("nth", {"nth_purchase": 2})).rules
    assert plain.needs_purchase_count is False
    merged = replace(plain, rules=(*plain.rules, *extra))
    assert merged.needs_purchase_count is True
    assert replace(merged, rules=plain.rules).needs_purchase_count is False


def test_the_compiler_flag_is_set_by_the_purchase_conditions_only() -> None:
    compiler = ConditionCompiler(ErrorCollector())
    compiler.receipt({"all": [{"sku": "TEA"}, {"weekdays": [1, 2]}]}, ())
    assert compiler.reads_purchases is False
    compiler.receipt({"nth_purchase": 1}, ())
    assert compiler.reads_purchases is True


def context(member: MemberFacts | None) -> Context:
    return Context(occurred_at=MOMENT, local_time=MOMENT, tenant_today=MOMENT.date(), member=member)


LINES = [Line(index=0, sku="TEA", qty=Decimal(1), price=10_000, amount=10_000)]


def test_uncounted_facts_are_refused_by_a_rule_that_reads_the_count() -> None:
    welcome = program(rule("welcome", {"first_purchase": True}))
    counted = MemberFacts(id="m", purchases_before=0)
    assert [a.rule_id for a in evaluate([welcome], LINES, context(counted)).applied] == ["welcome"]
    uncounted = replace(counted, purchases_known=False)
    with pytest.raises(RuntimeError):
        evaluate([welcome], LINES, context(uncounted))
    # Rules that do not read it evaluate such facts as usual; nobody's facts too.
    plain = program(rule("base", {"member": True}))
    assert [a.rule_id for a in evaluate([plain], LINES, context(uncounted)).applied] == ["base"]
    assert evaluate([welcome], LINES, context(None)).applied == []
