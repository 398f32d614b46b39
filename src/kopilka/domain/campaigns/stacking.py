"""Which of the campaigns that match a receipt are offered together.

Candidates are taken in priority order (lower first, then code); each joins the receipt
when it can combine with every campaign already chosen. Two campaigns combine when neither
is exclusive and each names the other (or ``"*"``) in ``combinable_with``. So an exclusive
campaign applies alone, and only when no campaign before it was chosen; a campaign that
names nobody applies alone too, but does not stop others after it from being considered.
"""

from __future__ import annotations

from collections.abc import Sequence

from kopilka.domain.campaigns.definition import Stacking


def combine(a_code: str, a: Stacking, b_code: str, b: Stacking) -> bool:
    """Whether campaigns ``a`` and ``b`` may apply to the same receipt."""
    if a.exclusive or b.exclusive:
        return False
    return ("*" in a.combinable_with or b_code in a.combinable_with) and (
        "*" in b.combinable_with or a_code in b.combinable_with
    )


def order_key(code: str, stacking: Stacking) -> tuple[int, str]:
    return stacking.priority, code


def choose(candidates: Sequence[tuple[str, Stacking]]) -> list[str]:
    """The codes offered, in priority order."""
    chosen: list[tuple[str, Stacking]] = []
    for code, stacking in sorted(candidates, key=lambda c: order_key(c[0], c[1])):
        if all(combine(code, stacking, other, theirs) for other, theirs in chosen):
            chosen.append((code, stacking))
    return [code for code, _ in chosen]
