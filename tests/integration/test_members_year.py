"""A member's year across the mechanics, on both databases, driven by the clock: enrolment
with a welcome bonus, a birthday on 29 February in a non-leap year (the bonus job and the
till's birthday rule), purchases crossing into Gold, a refund pulling the qualification
back below it, and the downgrade at the end of the year after the grace period. Every job
runs twice, at the same and at a later time, with the same result, and the ledger stays
verified."""

from __future__ import annotations

import uuid
from typing import Any

from kopilka.bootstrap import Container
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.integration.test_tiers import document, msk, receipt

PROGRAM: dict[str, Any] = document()
PROGRAM["lifecycle"] = {
    "welcome": {"points": 100},
    "birthday": {"points": 500, "days_after": 3},
}
PROGRAM["rules"] = [
    *PROGRAM["rules"],
    {
        "id": "birthday-x3",
        "when": {"birthday_window": {"days": 0}},
        "effects": [{"points_multiplier": 3}],
    },
]


def bonuses(c: Container, m: Merchant, member: uuid.UUID) -> list[tuple[str, int]]:
    """(mechanic, points) of the member's bonus transactions, oldest first."""
    history = c.ledger.history(m.actor, member, None, 100)
    return [
        (str(t.description["en"]).split(":")[0], t.amount)
        for t in reversed(history)
        if t.kind == "bonus"
    ]


def run_jobs(c: Container) -> dict[str, int]:
    report = c.jobs.run()
    assert report.errors == []
    return {k: v for k, v in report.steps.items() if v}


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def test_a_members_year_across_the_mechanics(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    clock.set(msk(2026, 1, 10, 12))
    c.programs.publish(m.actor, "main", PROGRAM)
    anna = c.members.enroll(m.actor, {"name": "Anna", "birthday": "--02-29"}).id
    bob = c.members.enroll(m.actor, {"name": "Bob"}).id
    assert bonuses(c, m, anna) == [("Welcome bonus", 100)]

    # 2026 has no 29 February: the birthday is kept on the 28th, in Moscow's calendar.
    clock.set(msk(2026, 2, 27, 23, 30))
    assert "lifecycle_birthday" not in run_jobs(c)
    clock.set(msk(2026, 2, 28, 0, 5))
    assert run_jobs(c).get("lifecycle_birthday") == 1
    assert run_jobs(c).get("lifecycle_birthday") is None  # twice: nothing more
    assert bonuses(c, m, anna) == [("Welcome bonus", 100), ("Birthday bonus", 500)]
    # At the till that day the birthday rule triples the points; Bob's are plain.
    on_the_day = c.purchases.calculate(m.actor, receipt(anna, 1_000))["totals"]["points_earned"]
    plain = c.purchases.calculate(m.actor, receipt(bob, 1_000))["totals"]["points_earned"]
    assert on_the_day == 3 * plain
    # Editing the birthday does not give a second bonus this year.
    c.members.update(m.actor, anna, {"birthday": "--03-02"})
    clock.set(msk(2026, 3, 2, 9))
    run_jobs(c)
    assert [b for b in bonuses(c, m, anna) if b[0] == "Birthday bonus"] == [("Birthday bonus", 500)]

    # Purchases cross 40 000 ₽: Gold at once.
    clock.set(msk(2026, 4, 1, 12))
    c.purchases.confirm(m.actor, receipt(anna, 25_000), "R-1")
    crossing = c.purchases.confirm(m.actor, receipt(anna, 20_000), "R-2")
    assert crossing["tier"]["upgraded"] is True
    assert c.tiers.status(m.actor, anna).tier.code == "gold"

    # A refund pulls the qualification back below the bar; Gold stays until the evaluation.
    clock.set(msk(2026, 5, 1, 12))
    c.purchases.refund(m.actor, uuid.UUID(crossing["receipt"]["id"]), "RF-1", None)
    status = c.tiers.status(m.actor, anna)
    assert (status.tier.code, status.qualification.value) == ("gold", 2_500_000)
    assert status.keep is not None
    assert status.keep.remaining == 1_500_000

    # The year ends short of Gold: 30 days' grace, then Silver. Jobs twice, and late.
    clock.set(msk(2027, 1, 1, 3))
    assert run_jobs(c).get("tiers_evaluated") == 1
    assert run_jobs(c).get("tiers_evaluated") is None
    assert c.tiers.status(m.actor, anna).tier.code == "gold"
    clock.set(msk(2027, 2, 5, 3))  # days after the grace ended
    assert run_jobs(c).get("tiers_evaluated") == 1
    assert run_jobs(c).get("tiers_evaluated") is None
    assert c.tiers.status(m.actor, anna).tier.code == "silver"
    reasons = [h.reason for h in reversed(c.tiers.history(m.actor, anna, None, 50))]
    assert reasons == ["enrolled", "upgraded", "grace", "downgraded"]
    # The 2027 birthday (2 March now) is a new year's bonus, given once.
    clock.set(msk(2027, 3, 2, 10))
    run_jobs(c)
    run_jobs(c)
    assert [b for b in bonuses(c, m, anna) if b[0] == "Birthday bonus"] == [
        ("Birthday bonus", 500),
        ("Birthday bonus", 500),
    ]
    assert_verified(c)
