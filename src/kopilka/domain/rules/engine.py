"""The evaluator: a receipt in, discounts, points to spend and points to earn out.

Order of work, for every active program together:
1. choose the rules that apply (priority order; exclusive and stop-further-rules honoured);
2. discounts, line by line, within the price floor and the per-line and per-receipt caps;
3. payment with points, capped and spread over the lines in proportion (exact to the kopeck);
4. points earned on what is left to pay in money, rounded as the program says.
Everything is pure: the caller brings the catalogue, the member and the balances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from kopilka.domain.errors import BusinessRuleViolation
from kopilka.domain.rules.conditions import line_keys
from kopilka.domain.rules.document import (
    DISCOUNT_EFFECTS,
    POINTS_EFFECTS,
    CompiledProgram,
    CompiledRule,
    Effect,
)
from kopilka.domain.rules.explain import describe_effect, describe_near_miss
from kopilka.domain.rules.facts import Context, Line
from kopilka.domain.rules.money import RoundingMode, line_amount, round_to_int, spread

Redeem = int | Literal["max"] | None


@dataclass
class LineResult:
    index: int
    sku: str
    qty: Decimal
    price: int
    amount: int
    discount: int = 0
    points_spent: int = 0
    points_money: int = 0
    points_earned: dict[str, int] = field(default_factory=dict)  # program code -> points

    @property
    def pay(self) -> int:
        """What the customer pays in money for this line."""
        return self.amount - self.discount - self.points_money


@dataclass
class AppliedEffect:
    program: str
    rule_id: str
    rule_name: dict[str, str]
    kind: str
    lines: list[int]
    discount: int = 0
    points: int = 0
    explanation: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class NearMiss:
    program: str
    rule_id: str
    rule_name: dict[str, str]
    kind: str
    missing: str
    explanation: dict[str, str]


@dataclass
class Evaluation:
    lines: list[LineResult]
    applied: list[AppliedEffect]
    not_applied: list[NearMiss]
    gifts: list[dict[str, Any]]
    coupons: list[dict[str, Any]]
    points_program: str | None  # the program whose points pay
    max_redeemable: int
    points_redeemed: int
    point_value: int
    earned_by_program: dict[str, int]
    rules_by_program: dict[str, list[str]]

    @property
    def total_amount(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def total_discount(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def total_points_money(self) -> int:
        return sum(line.points_money for line in self.lines)

    @property
    def total_pay(self) -> int:
        return sum(line.pay for line in self.lines)


@dataclass
class _LineState:
    line: Line
    result: LineResult
    floor: int  # the lowest the line may cost after discounts
    cap: int  # the most discount the line may take


def evaluate(
    programs: Sequence[CompiledProgram],
    lines: Sequence[Line],
    ctx: Context,
    *,
    redeem: Redeem = None,
    balances: dict[str, int] | None = None,
    currency: str = "RUB",
    near_misses: bool = True,
) -> Evaluation:
    """Evaluate a receipt; ``near_misses=False`` skips the upsell hints (bulk paths)."""
    balances = balances or {}
    states = [_state(line, programs) for line in lines]
    receipt_keys: set[str] = set()
    for line in lines:
        receipt_keys |= line_keys(line)

    chosen: list[tuple[CompiledProgram, CompiledRule, list[int]]] = []
    near: list[NearMiss] = []
    for program in programs:
        chosen += _choose(
            program, lines, ctx, receipt_keys, near if near_misses else None, currency
        )

    applied: list[AppliedEffect] = []
    receipt_cap = _receipt_cap(programs, states)
    for program, rule, targets in chosen:
        for effect in rule.effects:
            if effect.kind in DISCOUNT_EFFECTS:
                applied.append(
                    _discount(program, rule, effect, targets, states, receipt_cap, currency)
                )

    points_program = next(
        (p for p in programs if p.settings.redemption.enabled and p.settings.type != "discount"),
        None,
    )
    max_redeemable, redeemed = 0, 0
    point_value = points_program.settings.redemption.point_value if points_program else 100
    if points_program is not None and ctx.member is not None:
        max_redeemable = _max_redeemable(
            points_program, states, ctx, balances.get(points_program.currency, 0)
        )
        if redeem == "max":
            redeemed = max_redeemable
        elif isinstance(redeem, int) and redeem > 0:
            if redeem > max_redeemable:
                raise BusinessRuleViolation(
                    f"At most {max_redeemable} points can pay for this receipt.",
                    code="redeem_exceeds_max",
                    extra={"max_redeemable": max_redeemable},
                )
            redeemed = redeem
        if redeemed:
            _spread_points(redeemed, point_value, states)
    elif isinstance(redeem, int) and redeem > 0:
        raise BusinessRuleViolation(
            "Paying with points needs an identified member and a points program.",
            code="redeem_not_possible",
            extra={"max_redeemable": 0},
        )

    earned: dict[str, int] = {}
    gifts: list[dict[str, Any]] = []
    coupons: list[dict[str, Any]] = []
    for program in programs:
        mine = [(rule, targets) for p, rule, targets in chosen if p is program]
        earned[program.code] = _earn(program, mine, states, applied)
        for rule, _targets in mine:
            for effect in rule.effects:
                if effect.kind == "gift":
                    gifts.append(
                        {
                            "program": program.code,
                            "rule_id": rule.id,
                            "sku": effect.params["sku"],
                            "qty": int(effect.value),
                            "name": effect.params.get("name"),
                        }
                    )
                    applied.append(
                        AppliedEffect(
                            program.code,
                            rule.id,
                            rule.name,
                            "gift",
                            [],
                            details=gifts[-1],
                            explanation=describe_effect(
                                "gift", rule.name, 0, 0, gifts[-1], currency
                            ),
                        )
                    )
                elif effect.kind == "issue_coupon":
                    coupons.append({"program": program.code, "rule_id": rule.id, **effect.params})
                    applied.append(
                        AppliedEffect(
                            program.code,
                            rule.id,
                            rule.name,
                            "issue_coupon",
                            [],
                            details=effect.params,
                            explanation=describe_effect(
                                "issue_coupon", rule.name, 0, 0, effect.params, currency
                            ),
                        )
                    )

    return Evaluation(
        lines=[s.result for s in states],
        applied=applied,
        not_applied=near,
        gifts=gifts,
        coupons=coupons,
        points_program=points_program.code if points_program else None,
        max_redeemable=max_redeemable,
        points_redeemed=redeemed,
        point_value=point_value,
        earned_by_program=earned,
        rules_by_program={p.code: [r.id for q, r, _ in chosen if q is p] for p in programs},
    )


# ---- choosing rules ----------------------------------------------------------------------
def _choose(
    program: CompiledProgram,
    lines: Sequence[Line],
    ctx: Context,
    receipt_keys: set[str],
    near: list[NearMiss] | None,
    currency: str,
) -> list[tuple[CompiledProgram, CompiledRule, list[int]]]:
    chosen: list[tuple[CompiledProgram, CompiledRule, list[int]]] = []
    for rule in program.candidates(receipt_keys):  # the index: rules this receipt may match
        if not rule.when.test(ctx, lines):
            if near is not None and rule.when.gap is not None and not (rule.exclusive and chosen):
                gap = rule.when.gap(ctx, lines)
                if gap is not None:
                    near.append(
                        NearMiss(
                            program.code,
                            rule.id,
                            rule.name,
                            gap.kind,
                            str(gap.missing),
                            describe_near_miss(gap, rule.name, currency),
                        )
                    )
            continue
        targets = [i for i, line in enumerate(lines) if rule.lines(line)]
        needs_lines = any(
            e.kind in DISCOUNT_EFFECTS or e.kind in POINTS_EFFECTS for e in rule.effects
        )
        # A rule whose ``lines`` select none of the receipt's lines does not apply, whatever
        # its effects: the same answer the index gives when the selector has keys.
        if not targets and (needs_lines or lines):
            continue
        if rule.exclusive and chosen:
            continue  # an exclusive rule applies alone
        chosen.append((program, rule, targets))
        if rule.exclusive or rule.stop:
            break
    return chosen


# ---- discounts ---------------------------------------------------------------------------
def _state(line: Line, programs: Sequence[CompiledProgram]) -> _LineState:
    floor = 0
    if line.min_price is not None:
        # What the line costs at min_price, rounded as the till rounds every line amount.
        floor = min(line.amount, line_amount(line.min_price, line.qty))
    caps = [
        p.settings.limits.max_discount_percent_line
        for p in programs
        if p.settings.limits.max_discount_percent_line is not None
    ]
    cap = line.amount if not caps else line.amount * min(caps) // 100
    if line.no_discount:
        cap = 0
    return _LineState(
        line, LineResult(line.index, line.sku, line.qty, line.price, line.amount), floor, cap
    )


@dataclass
class _ReceiptCap:
    left: int


def _receipt_cap(programs: Sequence[CompiledProgram], states: list[_LineState]) -> _ReceiptCap:
    caps = [
        p.settings.limits.max_discount_percent_receipt
        for p in programs
        if p.settings.limits.max_discount_percent_receipt is not None
    ]
    total = sum(s.line.amount for s in states)
    return _ReceiptCap(total if not caps else total * min(caps) // 100)


def _room(state: _LineState) -> int:
    """How much more discount the line can take."""
    return max(
        0,
        min(
            state.cap - state.result.discount,
            state.line.amount - state.floor - state.result.discount,
        ),
    )


def _give(state: _LineState, wanted: int, cap: _ReceiptCap) -> int:
    given = max(0, min(wanted, _room(state), cap.left))
    state.result.discount += given
    cap.left -= given
    return given


def _discount(
    program: CompiledProgram,
    rule: CompiledRule,
    effect: Effect,
    targets: list[int],
    states: list[_LineState],
    cap: _ReceiptCap,
    currency: str,
) -> AppliedEffect:
    eligible = [i for i in targets if not states[i].line.no_discount]
    given: dict[int, int] = defaultdict(int)
    if effect.kind == "discount_percent":
        whole = effect.value == effect.value.to_integral_value()
        percent = int(effect.value)
        for i in eligible:
            remaining = states[i].line.amount - states[i].result.discount
            if whole:  # integer arithmetic for the common case: same result, much faster
                wanted = remaining * percent // 100
            else:
                wanted = int(
                    (Decimal(remaining) * effect.value / 100).to_integral_value(ROUND_FLOOR)
                )
            given[i] += _give(states[i], wanted, cap)
    elif effect.kind == "discount_amount" and effect.per in ("line", "unit"):
        for i in eligible:
            wanted = (
                int(effect.value)
                if effect.per == "line"
                else int((effect.value * states[i].line.qty).to_integral_value(ROUND_FLOOR))
            )
            given[i] += _give(states[i], wanted, cap)
    elif effect.kind == "discount_amount":
        rooms = [min(_room(states[i]), cap.left) for i in eligible]
        weights = [states[i].line.amount - states[i].result.discount for i in eligible]
        shares = spread(min(int(effect.value), sum(rooms), cap.left), weights, rooms)
        for i, share in zip(eligible, shares, strict=True):
            given[i] += _give(states[i], share, cap)
    elif effect.kind == "fixed_price":
        for i in eligible:
            target = line_amount(int(effect.value), states[i].line.qty)
            remaining = states[i].line.amount - states[i].result.discount
            given[i] += _give(states[i], max(0, remaining - target), cap)
    else:  # cheapest_free, buy_n_get_free: free the cheapest whole units
        units: list[tuple[int, int]] = []  # (unit price still to pay, line index)
        for i in eligible:
            qty = states[i].line.qty
            if qty != qty.to_integral_value() or qty <= 0:
                continue  # weighed goods are not "items"
            count = int(qty)
            per_unit = (states[i].line.amount - states[i].result.discount) // count
            units += [(per_unit, i)] * count
        units.sort()
        if effect.kind == "cheapest_free":
            free = min(int(effect.value), len(units))
        else:
            free = (len(units) // (effect.n + effect.free)) * effect.free
        for price, i in units[:free]:
            given[i] += _give(states[i], price, cap)
    total = sum(given.values())
    touched = sorted(i for i, amount in given.items() if amount)
    return AppliedEffect(
        program.code,
        rule.id,
        rule.name,
        effect.kind,
        [states[i].line.index for i in touched],
        discount=total,
        explanation=describe_effect(
            effect.kind,
            rule.name,
            total,
            0,
            {"value": str(effect.value), "lines": len(touched), "n": effect.n, "free": effect.free},
            currency,
        ),
        details={"per_line": {str(states[i].line.index): given[i] for i in touched}},
    )


# ---- paying with points ------------------------------------------------------------------
def _max_redeemable(
    program: CompiledProgram, states: list[_LineState], ctx: Context, balance: int
) -> int:
    settings = program.settings.redemption
    if balance <= 0 or balance < settings.min_balance:
        return 0
    return max(0, min(balance, _redeemable_cap(program, states, ctx)))


def _redeemable_cap(program: CompiledProgram, states: list[_LineState], ctx: Context) -> int:
    """The most points the lines may take, whatever the balance."""
    settings = program.settings.redemption
    percent = settings.max_percent
    if ctx.member is not None and ctx.member.tier in settings.max_percent_by_tier:
        percent = settings.max_percent_by_tier[ctx.member.tier]
    # Paying with points is a discount in law: lines that may not be discounted are excluded.
    payable = sum(s.result.amount - s.result.discount for s in states if not s.line.no_discount)
    cap_money = payable * percent // 100
    by_line = sum(
        (s.result.amount - s.result.discount) // settings.point_value
        for s in states
        if not s.line.no_discount
    )
    return min(cap_money // settings.point_value, by_line)


def _spread_points(points: int, point_value: int, states: list[_LineState]) -> None:
    eligible = [s for s in states if not s.line.no_discount]
    weights = [s.result.amount - s.result.discount for s in eligible]
    caps = [w // point_value for w in weights]
    shares = spread(points, weights, caps)
    for state, share in zip(eligible, shares, strict=True):
        state.result.points_spent = share
        state.result.points_money = share * point_value


# ---- earning -----------------------------------------------------------------------------
def _earn(
    program: CompiledProgram,
    rules: list[tuple[CompiledRule, list[int]]],
    states: list[_LineState],
    applied: list[AppliedEffect],
) -> int:
    settings = program.settings
    point_value = Decimal(settings.redemption.point_value)
    exact: dict[int, Decimal] = defaultdict(Decimal)  # line position -> points, unrounded
    by_effect: list[tuple[CompiledRule, Effect, dict[int, Decimal]]] = []
    multipliers: list[tuple[CompiledRule, Effect, list[int]]] = []
    for rule, targets in rules:
        eligible = [i for i in targets if not states[i].line.no_points]
        for effect in rule.effects:
            if effect.kind not in POINTS_EFFECTS:
                continue
            if effect.kind == "points_multiplier":
                multipliers.append((rule, effect, eligible))
                continue
            part: dict[int, Decimal] = {}
            if effect.kind == "points_percent":
                for i in eligible:
                    part[i] = Decimal(states[i].result.pay) * effect.value / 100 / point_value
            elif effect.kind == "points_per_unit":
                for i in eligible:
                    part[i] = effect.value * states[i].line.qty
            elif eligible:  # points_fixed, attributed to lines by what they cost
                weights = [max(states[i].result.pay, 0) for i in eligible]
                if not any(weights):
                    weights = [1] * len(eligible)
                for i, share in zip(eligible, spread(int(effect.value), weights), strict=True):
                    part[i] = Decimal(share)
            for i, value in part.items():
                exact[i] += value
            by_effect.append((rule, effect, part))
    # Multipliers do not compound: each line takes the largest one that covers it.
    best: dict[int, tuple[Decimal, CompiledRule, Effect]] = {}
    for rule, effect, eligible in multipliers:
        for i in eligible:
            if i not in best or effect.value > best[i][0]:
                best[i] = (effect.value, rule, effect)
    extra_by_rule: dict[tuple[str, str], dict[int, Decimal]] = defaultdict(dict)
    for i, (factor, rule, effect) in best.items():
        extra = exact[i] * (factor - 1)
        if extra:
            exact[i] += extra
            extra_by_rule[(rule.id, str(effect.value))][i] = extra
    for rule, effect, _eligible in multipliers:
        part = extra_by_rule.get((rule.id, str(effect.value)), {})
        by_effect.append((rule, effect, part))

    mode = settings.rounding.mode
    positions = sorted(exact)
    if settings.rounding.scope == "line":
        final = {i: round_to_int(exact[i], mode) for i in positions}
    else:
        total = round_to_int(sum(exact.values(), Decimal(0)), mode)
        floors = {i: int(exact[i].to_integral_value(ROUND_FLOOR)) for i in positions}
        final = dict(floors)
        rest = total - sum(floors.values())
        order = sorted(positions, key=lambda i: (-(exact[i] - floors[i]), i))
        for i in order[: max(rest, 0)]:
            final[i] += 1
        if rest < 0:  # rounding down never takes more than the floors; kept for safety
            for i in order[rest:]:
                final[i] -= 1
    for i in positions:
        if final[i]:
            states[i].result.points_earned[program.code] = final[i]
    for rule, effect, part in by_effect:
        points = round_to_int(sum(part.values(), Decimal(0)), RoundingMode.DOWN)
        lines_touched = sorted(states[i].line.index for i, v in part.items() if v)
        applied.append(
            AppliedEffect(
                program.code,
                rule.id,
                rule.name,
                effect.kind,
                lines_touched,
                points=points,
                explanation=describe_effect(
                    effect.kind,
                    rule.name,
                    0,
                    points,
                    {"value": str(effect.value), "lines": len(lines_touched)},
                    "RUB",
                ),
            )
        )
    return sum(final.values())


# ---- discounts added after evaluation ----------------------------------------------------
def discount_room(line: Line, result: LineResult) -> int:
    """How much more discount a line may take: never below its ``min_price`` floor, none
    on a ``no_discount`` line (both are legal limits). The programs' percent caps are not
    applied: they bound promotions, not rewards a member has earned."""
    if line.no_discount:
        return 0
    floor = 0
    if line.min_price is not None:
        floor = min(line.amount, line_amount(line.min_price, line.qty))
    return max(0, line.amount - floor - result.discount)


def add_line_discounts(
    evaluation: Evaluation,
    programs: Sequence[CompiledProgram],
    lines: Sequence[Line],
    ctx: Context,
    effects: Sequence[tuple[AppliedEffect, dict[int, int]]],
    *,
    redeem: Redeem = None,
) -> None:
    """Discount lines after evaluation (e.g. a stamp card's free item), in place, and redo
    what depends on discounts: paying with points, then earning.

    ``effects`` pairs each new :class:`AppliedEffect` with the discount it gives per line
    position (an index into ``lines``). Each amount is held to :func:`discount_room`; the
    effect's ``discount``, ``lines`` and ``details`` are set to what the lines took. The
    discounts come before paying with points (like a rule's): the points are spread again,
    ``"max"`` follows the new maximum, and a number above it is refused as in
    :func:`evaluate`. Points are earned again with the rules chosen before, so every
    invariant of an evaluation holds. ``evaluate``'s caller may have changed the evaluation
    afterwards (e.g. an anonymous receipt earns nothing): that is for it to do again.
    """
    if not effects:
        return
    states = [
        _LineState(line, result, 0, 0) for line, result in zip(lines, evaluation.lines, strict=True)
    ]
    for state in states:  # paid with points after discounts: spread again below
        state.result.points_spent = 0
        state.result.points_money = 0
    added: list[AppliedEffect] = []
    for effect, wanted in effects:
        given: dict[int, int] = {}
        for position, amount in sorted(wanted.items()):
            state = states[position]
            take = max(0, min(amount, discount_room(state.line, state.result)))
            if take:
                state.result.discount += take
                given[position] = take
        effect.discount = sum(given.values())
        effect.lines = [states[i].line.index for i in sorted(given)]
        effect.details = {
            **effect.details,
            "per_line": {str(states[i].line.index): given[i] for i in sorted(given)},
        }
        added.append(effect)
    # After the discounts of the evaluation and before its points and actions.
    at = next(
        (
            i
            for i, a in enumerate(evaluation.applied)
            if a.kind in POINTS_EFFECTS or a.kind in ("gift", "issue_coupon")
        ),
        len(evaluation.applied),
    )
    applied = [*evaluation.applied[:at], *added, *evaluation.applied[at:]]

    redeemed = 0
    program = next((p for p in programs if p.code == evaluation.points_program), None)
    max_redeemable = 0
    if program is not None and evaluation.max_redeemable > 0:
        # The balance (and min_balance) allowed the old maximum; lines only got cheaper.
        max_redeemable = max(
            0, min(evaluation.max_redeemable, _redeemable_cap(program, states, ctx))
        )
    if redeem == "max":
        redeemed = max_redeemable
    elif isinstance(redeem, int) and redeem > 0:
        if redeem > max_redeemable:
            raise BusinessRuleViolation(
                f"At most {max_redeemable} points can pay for this receipt.",
                code="redeem_exceeds_max",
                extra={"max_redeemable": max_redeemable},
            )
        redeemed = redeem
    if redeemed:
        _spread_points(redeemed, evaluation.point_value, states)
    evaluation.max_redeemable = max_redeemable
    evaluation.points_redeemed = redeemed

    for state in states:
        state.result.points_earned = {}
    earned: dict[str, int] = {}
    fresh: dict[str, list[AppliedEffect]] = {}
    for prog in programs:
        by_id = {rule.id: rule for rule in prog.rules}
        chosen = [
            (by_id[rule_id], [i for i, line in enumerate(lines) if by_id[rule_id].lines(line)])
            for rule_id in evaluation.rules_by_program.get(prog.code, [])
            if rule_id in by_id
        ]
        fresh[prog.code] = []
        earned[prog.code] = _earn(prog, chosen, states, fresh[prog.code])
    # The points effects are replaced where they stood, program by program.
    rebuilt: list[AppliedEffect] = []
    for entry in applied:
        if entry.kind not in POINTS_EFFECTS:
            rebuilt.append(entry)
        elif entry.program in fresh:
            rebuilt += fresh.pop(entry.program)
    for rest in fresh.values():
        rebuilt += rest
    evaluation.applied = rebuilt
    evaluation.earned_by_program = {code: earned.get(code, 0) for code in earned}
