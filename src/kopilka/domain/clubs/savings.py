"""What a club gave its members at the till, to set against the fees they paid.

A receipt's answer lists every applied effect with its program, rule, discount and points.
What counts as the club's is what came from a program closed to the club
(``members_of_club``) or from a rule whose ``when`` asks for the club (``club_in`` naming it,
alone or inside ``all``/``any``; not under ``not``, which is a rule for non-members).
Points are valued at their program's ``point_value``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


def mentions_club(condition: Any, club: str) -> bool:
    """Whether a rule's ``when`` asks for membership of ``club``."""
    if not isinstance(condition, dict) or len(condition) != 1:
        return False
    key, value = next(iter(condition.items()))
    if key in ("all", "any") and isinstance(value, list):
        return any(mentions_club(part, club) for part in value)
    if key == "club_in":
        return isinstance(value, list) and club in value
    return False


def club_rule_ids(raw_rules: Iterable[Any], club: str) -> frozenset[str]:
    """Ids of the rules (as published) that only the club's members can get."""
    return frozenset(
        str(rule["id"])
        for rule in raw_rules
        if isinstance(rule, dict) and "id" in rule and mentions_club(rule.get("when"), club)
    )


@dataclass(frozen=True)
class ProgramShare:
    """Which of a program version's effects are the club's."""

    whole: bool  # the program is closed to the club: all of it counts
    rules: frozenset[str]
    point_value: int  # minor units per point

    @property
    def relevant(self) -> bool:
        return self.whole or bool(self.rules)


@dataclass
class Savings:
    receipts: int = 0
    discount: int = 0  # minor units
    points: int = 0
    points_value: int = 0  # minor units

    @property
    def saved(self) -> int:
        return self.discount + self.points_value

    def add(self, other: Savings) -> None:
        self.receipts += other.receipts
        self.discount += other.discount
        self.points += other.points
        self.points_value += other.points_value


def receipt_savings(
    applied: Iterable[dict[str, Any]],
    shares: dict[str, ProgramShare],
    kept: tuple[int, int] = (1, 1),
) -> Savings:
    """The club's part of one receipt; ``kept`` = (money kept, money bought) scales it down
    when part of the receipt was refunded (the points were taken back in proportion too)."""
    found = Savings()
    kept_part, whole = kept
    for effect in applied:
        share = shares.get(str(effect.get("program")))
        if share is None or not (share.whole or effect.get("rule_id") in share.rules):
            continue
        discount = int(effect.get("discount") or 0)
        points = int(effect.get("points") or 0)
        if whole > 0 and kept_part != whole:
            discount = discount * kept_part // whole
            points = points * kept_part // whole
        found.discount += discount
        found.points += points
        found.points_value += points * share.point_value
    if found.discount or found.points:
        found.receipts = 1
    return found
