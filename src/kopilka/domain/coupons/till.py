"""Coupons at the till, pure: which presented codes stay in play and why the others are
rejected, the rules the ones in play become, and the answer for each code.

Order of the checks, for each code in the order presented: its shape, a repeat on the same
receipt, known to the tenant, voided, not yet valid, expired, uses left, whose it is (a
personal coupon needs its member; a points benefit or a per-member limit needs a member),
the per-member limit, the channel, a program to join. Then, still in the order presented,
the receipt's limits: ``max_per_receipt`` coupons, and a coupon that does not combine stands
alone (the first one presented wins). What depends on the lines (the outlet, the scope, the
minimum basket, an exclusive promotion) is decided by evaluating the coupon's rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kopilka.domain.coupons import texts
from kopilka.domain.coupons.codes import is_valid, normalise
from kopilka.domain.coupons.terms import Terms
from kopilka.domain.errors import ErrorCollector
from kopilka.domain.rules.conditions import (
    ALWAYS,
    ConditionCompiler,
    LinePredicate,
    ReceiptCondition,
)
from kopilka.domain.rules.document import CompiledRule, Effect
from kopilka.domain.rules.facts import Context, Line

RULE_PREFIX = "coupon:"
# A public code without a total limit starts from this many uses and is not counted down.
UNCOUNTED_USES = 2_000_000_000
# Codes another mechanic reads from the receipt's coupons (a stamp card's free item).
FOREIGN_PREFIXES = ("STAMPS-",)


@dataclass(frozen=True)
class Offer:
    """A coupon of the tenant as the till sees it."""

    id: uuid.UUID
    code: str
    kind: str  # personal, public, batch
    member_id: uuid.UUID | None
    active: bool  # neither the coupon nor its batch is voided
    valid_from: datetime
    valid_until: datetime | None
    uses_left: int
    per_member: int | None
    terms: Terms
    used_by_member: int = 0  # redemptions by this receipt's member (per-member limits)


@dataclass(frozen=True)
class Program:
    """A program in force, as far as coupons care."""

    code: str
    open: bool  # not a club's closed program
    max_per_receipt: int
    priority: int


@dataclass(frozen=True)
class Verdict:
    """One presented code: in play (``reason`` None) or rejected with a reason."""

    position: int
    code: str
    reason: str | None = None
    message: dict[str, str] | None = None
    offer: Offer | None = None
    program: str | None = None
    # Codes named only by program rules (``when: {coupon: CODE}``): (program, rule id).
    refs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Mark:
    """What the till needs to answer for one code after evaluation."""

    position: int
    code: str
    kind: str  # personal, public, batch; "program" for codes only program rules name
    reason: str | None = None
    message: dict[str, str] | None = None
    coupon_id: uuid.UUID | None = None
    program: str | None = None
    outlets: tuple[str, ...] | None = None
    min_basket: int = 0
    scope: LinePredicate | None = None
    refs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CouponRule(CompiledRule):
    """A coupon's benefit as a rule of the program it joins; rejected codes ride along as
    rules that never apply, so the answer needs nothing but the evaluated programs."""

    mark: Mark = field(default_factory=lambda: Mark(0, "", "public"))


def rule_id(code: str) -> str:
    return f"{RULE_PREFIX}{code}"


def presented(codes: Iterable[str]) -> list[str]:
    """The codes as the till sent them, normalised, foreign ones left out."""
    return [c for c in (normalise(code) for code in codes) if not c.startswith(FOREIGN_PREFIXES)]


def decide(
    codes: Sequence[str],
    offers: Mapping[str, Offer],
    refs: Mapping[str, tuple[tuple[str, str], ...]],
    *,
    member_id: uuid.UUID | None,
    moment: datetime,
    channel: str,
    programs: Sequence[Program],
    timezone: str,
) -> list[Verdict]:
    """The fate of each presented code (normalised, in the order presented)."""
    by_code = {p.code: p for p in programs}
    default = next((p for p in programs if p.open), None)
    verdicts: list[Verdict] = []
    seen: set[str] = set()
    fallback = default.code if default else None
    for position, code in enumerate(codes):

        def reject(
            reason: str,
            offer: Offer | None = None,
            position: int = position,
            code: str = code,
            **facts: Any,
        ) -> Verdict:
            return Verdict(
                position, code, reason, texts.rejection(reason, **facts), offer, fallback
            )

        if not is_valid(code):
            verdicts.append(reject("invalid_code"))
            continue
        if code in seen:
            verdicts.append(reject("duplicate_coupon"))
            continue
        seen.add(code)
        offer = offers.get(code)
        if offer is None:
            named = refs.get(code, ())
            if named:
                verdicts.append(Verdict(position, code, None, None, None, named[0][0], named))
            else:
                verdicts.append(reject("unknown_coupon"))
            continue
        reason, facts = _offer_reason(offer, member_id, moment, channel, timezone)
        if reason is None:
            target = by_code.get(offer.terms.program) if offer.terms.program else default
            if target is None:
                reason = "program_not_in_force" if offer.terms.program else "no_program"
            else:
                verdicts.append(Verdict(position, code, None, None, offer, target.code))
                continue
        verdicts.append(reject(reason, offer, **facts))
    return _receipt_limits(verdicts, by_code, default)


def _offer_reason(
    offer: Offer,
    member_id: uuid.UUID | None,
    moment: datetime,
    channel: str,
    timezone: str,
) -> tuple[str | None, dict[str, Any]]:
    if not offer.active:
        return "coupon_voided", {}
    if moment < offer.valid_from:
        return "not_yet_valid", {"day": texts.first_day(offer.valid_from, timezone)}
    if offer.valid_until is not None and moment >= offer.valid_until:
        return "expired", {"day": texts.last_day(offer.valid_until, timezone)}
    if offer.uses_left <= 0:
        return "already_used", {}
    if offer.member_id is not None:
        if member_id is None:
            return "member_required", {}
        if offer.member_id != member_id:
            return "other_member", {}
    if member_id is None and (offer.terms.gives_points or offer.per_member is not None):
        return "member_required", {}
    if offer.per_member is not None and offer.used_by_member >= offer.per_member:
        return "member_limit_reached", {"limit": offer.per_member}
    if offer.terms.channels is not None and channel not in offer.terms.channels:
        return "wrong_channel", {"channel": channel}
    return None, {}


def _receipt_limits(
    verdicts: list[Verdict], programs: Mapping[str, Program], default: Program | None
) -> list[Verdict]:
    """``max_per_receipt`` and combinability, greedily in the order presented."""
    taken: list[Verdict] = []
    out: list[Verdict] = []
    for verdict in verdicts:
        offer = verdict.offer
        if verdict.reason is not None or offer is None:
            out.append(verdict)
            continue
        # The receipt's limit, and the coupon's own program's if it joins another.
        caps = [p.max_per_receipt for p in (default, programs.get(verdict.program or "")) if p]
        cap = min(caps) if caps else 1
        if len(taken) >= cap:
            verdict = _rejected(verdict, "too_many_coupons", limit=cap)
        elif taken and not (
            offer.terms.combinable
            and all(t.offer is not None and t.offer.terms.combinable for t in taken)
        ):
            verdict = _rejected(verdict, "not_combinable")
        else:
            taken.append(verdict)
        out.append(verdict)
    return out


def _rejected(verdict: Verdict, reason: str, **facts: Any) -> Verdict:
    return Verdict(
        verdict.position,
        verdict.code,
        reason,
        texts.rejection(reason, **facts),
        verdict.offer,
        verdict.program,
    )


# ---- rules ------------------------------------------------------------------------------
def _never(_ctx: Context, _lines: Sequence[Line]) -> bool:
    return False


def build_rules(
    verdicts: Sequence[Verdict], priority: Mapping[str, int]
) -> list[tuple[str, CouponRule]]:
    """Each verdict as (program code, rule): the benefit of a coupon in play, a rule that
    never applies for the others (it only carries the answer)."""
    rules: list[tuple[str, CouponRule]] = []
    for verdict in verdicts:
        if verdict.program is None:
            continue  # no program to carry it: the answer says "no program"
        offer = verdict.offer
        rid = (
            rule_id(verdict.code)
            if verdict.position == _first(verdicts, verdict.code)
            else (f"{rule_id(verdict.code)}#{verdict.position}")
        )
        if verdict.reason is not None or offer is None:
            mark = Mark(
                verdict.position,
                verdict.code,
                offer.kind if offer else "program",
                verdict.reason,
                verdict.message,
                offer.id if offer else None,
                verdict.program,
                refs=verdict.refs,
            )
            rules.append((verdict.program, _rule(rid, verdict.code, None, mark, priority)))
            continue
        terms = offer.terms
        scope, scope_keys = terms.scope_predicate()
        mark = Mark(
            verdict.position,
            verdict.code,
            offer.kind,
            None,
            None,
            offer.id,
            verdict.program,
            terms.outlets,
            terms.min_basket,
            scope,
        )
        rules.append(
            (
                verdict.program,
                _rule(rid, verdict.code, terms, mark, priority, scope=(scope, scope_keys)),
            )
        )
    return rules


def _first(verdicts: Sequence[Verdict], code: str) -> int:
    return next(v.position for v in verdicts if v.code == code)


def _rule(
    rid: str,
    code: str,
    terms: Terms | None,
    mark: Mark,
    priority: Mapping[str, int],
    scope: tuple[LinePredicate, frozenset[str] | None] | None = None,
) -> CouponRule:
    name = (terms.name if terms else None) or {"ru": f"Купон {code}", "en": f"Coupon {code}"}
    base = priority.get(mark.program or "", 1000)
    if terms is None or scope is None:
        return CouponRule(
            id=rid,
            name=name,
            priority=base,
            exclusive=False,
            stop=False,
            when=_NEVER,
            lines=lambda _line: False,
            line_keys=None,
            effects=(),
            mark=mark,
        )
    predicate, keys = scope
    parts: list[dict[str, Any]] = []
    if terms.min_basket:
        threshold: dict[str, Any] = {"value": terms.min_basket}
        if terms.scope is not None:
            threshold["of"] = terms.scope
        parts.append({"amount_gte": threshold})
    if terms.outlets:
        parts.append({"outlet_in": list(terms.outlets)})
    errors = ErrorCollector()
    compiler = ConditionCompiler(errors)
    when = ALWAYS
    if len(parts) == 1:
        when = compiler.receipt(parts[0], ("when",))
    elif parts:
        when = compiler.receipt({"all": parts}, ("when",))
    errors.raise_if_any("The coupon's terms are not valid.")
    effect: Effect = terms.effect()
    return CouponRule(
        id=rid,
        name=name,
        priority=base,
        exclusive=False,
        stop=False,
        when=when,
        lines=predicate,
        line_keys=keys,
        effects=(effect,),
        mark=mark,
    )


_NEVER = ReceiptCondition(_never)


# ---- the answer -------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What evaluation did with one coupon rule."""

    chosen: bool
    discount: int = 0
    points: int = 0
    other: bool = False  # an action (gift, coupon to issue) was given


def answer(
    marks: Sequence[Mark],
    leftover: Sequence[str],
    outcomes: Mapping[tuple[str, str], Outcome],
    *,
    lines: Sequence[Line],
    outlet_code: str,
    currency: str,
) -> list[dict[str, Any]]:
    """The ``coupons`` of the till's answer: the marked codes in the order presented, then
    the ``leftover`` codes, which had no program to join.

    ``outcomes`` is keyed by (program, rule id).
    """
    out: list[dict[str, Any]] = []
    for mark in sorted(marks, key=lambda m: m.position):
        code = mark.code
        if mark.reason is not None:
            out.append(_entry(code, "rejected", mark.reason, mark.message or {}, mark=mark))
            continue
        if mark.kind == "program":
            hit = [outcomes.get(ref) for ref in mark.refs]
            chosen = [o for o in hit if o is not None and o.chosen]
            if chosen:
                discount = sum(o.discount for o in chosen)
                points = sum(o.points for o in chosen)
                message = texts.applied(discount, points, currency)
                out.append(_entry(code, "applied", None, message, discount, points, mark=mark))
            else:
                reason = "conditions_not_met"
                out.append(_entry(code, "rejected", reason, texts.rejection(reason), mark=mark))
            continue
        outcome = outcomes.get((mark.program or "", rule_id(code)))
        if outcome is not None and outcome.chosen:
            if outcome.discount or outcome.points or outcome.other:
                message = texts.applied(outcome.discount, outcome.points, currency)
                out.append(
                    _entry(
                        code, "applied", None, message, outcome.discount, outcome.points, mark=mark
                    )
                )
                continue
            why: tuple[str, dict[str, Any]] = ("no_benefit", {})
        else:
            why = _why_not(mark, lines, outlet_code, currency)
        out.append(_entry(code, "rejected", why[0], texts.rejection(why[0], **why[1]), mark=mark))
    for code in leftover:
        out.append(_entry(code, "rejected", "no_program", texts.rejection("no_program")))
    return out


def _why_not(
    mark: Mark, lines: Sequence[Line], outlet_code: str, currency: str
) -> tuple[str, dict[str, Any]]:
    if mark.outlets is not None and outlet_code not in mark.outlets:
        return "wrong_outlet", {}
    scope = mark.scope or (lambda _line: True)
    chosen = [line for line in lines if scope(line)]
    if not chosen:
        return "no_eligible_items", {}
    if sum(line.amount for line in chosen) < mark.min_basket:
        return "min_basket", {"amount": mark.min_basket, "currency": currency}
    return "blocked_by_promotion", {}


def _entry(
    code: str,
    status: str,
    reason: str | None,
    message: dict[str, str],
    discount: int = 0,
    points: int = 0,
    *,
    mark: Mark | None = None,
) -> dict[str, Any]:
    return {
        "code": code,
        "status": status,
        "reason": reason,
        "message": message,
        "discount": discount,
        "points": points,
        "program": mark.program if mark else None,
        "kind": mark.kind if mark else None,
    }
