"""Which level a qualification value earns, and what an evaluation does to a member.

These are the rules in one place, for one member. The nightly job applies the very same
rules to every member at once in SQL (``services/tiers.py``); the tests hold the two to
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kopilka.domain.tiers.settings import TierSettings

Reason = Literal["upgraded", "kept", "grace", "downgraded", "none"]


@dataclass(frozen=True)
class Outcome:
    """``to`` is the level after the evaluation (for ``grace``: the level the member will
    drop to when the grace ends); ``needed`` is the threshold the value was judged against."""

    reason: Reason
    to: int
    needed: int


def reached(settings: TierSettings, value: int) -> int:
    """The highest level whose threshold ``value`` reaches (0, the base, at least)."""
    found = 0
    for i, level in enumerate(settings.levels):
        if value >= level.threshold:
            found = i
    return found


def kept(settings: TierSettings, value: int) -> int:
    """The highest level whose keep threshold ``value`` reaches."""
    found = 0
    for i, level in enumerate(settings.levels):
        if value >= level.keep:
            found = i
    return found


def evaluate(settings: TierSettings, current: int, value: int, *, locked: bool) -> Outcome:
    """The evaluation at the end of a period, ``value`` being what the period brought.

    ``current`` is the member's level index (-1: a level the program no longer has, which
    is replaced by the level the value reaches). A locked tier is not lowered.
    """
    levels = settings.levels
    up = reached(settings, value)
    if up > current:
        return Outcome("upgraded", up, levels[up].threshold)
    needed = levels[current].keep
    if kept(settings, value) >= current:
        return Outcome("kept" if current > 0 else "none", current, needed)
    if locked:
        return Outcome("none", current, needed)
    target = kept(settings, value) if settings.downgrade.policy == "full" else current - 1
    reason: Reason = "grace" if settings.downgrade.grace_days > 0 else "downgraded"
    return Outcome(reason, target, needed)


def sweep(
    settings: TierSettings, current: int, value: int, pending: int | None, *, grace_over: bool
) -> Outcome:
    """The daily check, ``value`` being the current window's: an upgrade the till did not
    make (imports, lowered thresholds), a member back above the keep threshold during the
    grace, or the end of the grace."""
    levels = settings.levels
    up = reached(settings, value)
    if up > current:
        return Outcome("upgraded", up, levels[up].threshold)
    if pending is None or current < 0:
        return Outcome("none", current, 0)
    if kept(settings, value) >= current:
        return Outcome("kept", current, levels[current].keep)
    if grace_over:
        return Outcome("downgraded", pending, levels[current].keep)
    return Outcome("none", current, levels[current].keep)
