"""A campaign's part of an evaluated receipt: what its rules gave, and the per-receipt cut
of its points."""

from __future__ import annotations

from dataclasses import dataclass

from kopilka.domain.campaigns.definition import campaign_of_rule
from kopilka.domain.campaigns.texts import capped
from kopilka.domain.rules.document import POINTS_EFFECTS
from kopilka.domain.rules.engine import Evaluation


@dataclass(frozen=True)
class Share:
    """What one campaign's rules gave on a receipt: ``applied`` when any of its effects
    did (a gift or a coupon counts too)."""

    code: str
    program: str | None
    applied: bool
    points: int
    discount: int


def shares(evaluation: Evaluation) -> dict[str, Share]:
    """Each campaign's share of the evaluation, by code. The points are the effects' own
    points (each rounded down), as the evaluation reports them."""
    found: dict[str, Share] = {}
    for effect in evaluation.applied:
        code = campaign_of_rule(effect.rule_id)
        if code is None:
            continue
        before = found.get(code, Share(code, effect.program, False, 0, 0))
        found[code] = Share(
            code,
            before.program,
            True,
            before.points + effect.points,
            before.discount + effect.discount,
        )
    return found


def cap_points(evaluation: Evaluation, code: str, limit: int, name: dict[str, str]) -> int:
    """Cut the campaign's points on this receipt down to ``limit``, in place: from its last
    points effects first, and from the lines those effects touched (the program's total
    and its lines stay equal). Returns the points cut."""
    effects = [
        a
        for a in evaluation.applied
        if campaign_of_rule(a.rule_id) == code and a.kind in POINTS_EFFECTS and a.points > 0
    ]
    excess = sum(a.points for a in effects) - limit
    if excess <= 0:
        return 0
    program = effects[0].program
    rest = excess
    for effect in reversed(effects):
        cut = min(effect.points, rest)
        if cut:
            effect.points -= cut
            effect.explanation = capped(name, effect.points, limit)
            rest -= cut
    touched = {index for a in effects for index in a.lines}
    # The touched lines first, the most points first; then any line of the program (the
    # program's rounding may have put a point elsewhere).
    order = sorted(
        evaluation.lines,
        key=lambda line: (line.index not in touched, -line.points_earned.get(program, 0)),
    )
    rest = excess
    for line in order:
        have = line.points_earned.get(program, 0)
        cut = min(have, rest)
        if cut:
            line.points_earned[program] = have - cut
            if not line.points_earned[program]:
                del line.points_earned[program]
            rest -= cut
        if not rest:
            break
    taken = excess - rest
    evaluation.earned_by_program[program] = evaluation.earned_by_program.get(program, 0) - taken
    return taken
