"""A family's pool under fire on PostgreSQL: members paying at many tills at once, holds,
transfers and donations out of the same pool, joins racing for the last place, and a
member leaving while the others spend. The pool is never overdrawn, nothing is counted
twice, and the ledger stays verified."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import pytest

from kopilka.bootstrap import Container
from kopilka.domain.errors import KopilkaError
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant
from tests.integration.test_purchase_concurrency import race

pytestmark = pytest.mark.postgres_only

START = 1000
MEMBERS = 8
TILLS = 32
SPEND_ONLY: dict[str, Any] = {
    "type": "bonus",
    "redemption": {"point_value": 100, "max_percent": 100},
    "rules": [],  # nothing earned to refill the pool
    "family": {"max_members": MEMBERS},
    "transfers": {},
    "donations": {"charities": [{"code": "fund", "name": "Fund"}]},
}


def basket(member: uuid.UUID, redeem: int) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput(sku="TV", qty=Decimal(1), price=1_000_000),),
        member=MemberRef(id=member),
        redeem_points=redeem,
        outlet="OUT-1",
    )


def make_family(c: Container, m: Merchant, size: int) -> list[uuid.UUID]:
    c.programs.publish(m.actor, "main", SPEND_ONLY)
    people = [c.members.enroll(m.actor, {"name": f"P{i}"}).id for i in range(size)]
    c.ledger.accrue(m.actor, people[0], START)
    c.families.create(m.actor, people[0], "Big family")
    for member in people[1:]:
        c.families.join(m.actor, member, c.families.invite(m.actor, people[0]).code)
    return people


def assert_ledger_ok(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def test_members_spending_at_once_never_overdraw_the_pool(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    people = make_family(c, m, MEMBERS)
    outsider = c.members.enroll(m.actor, {"name": "Friend"}).id
    asks = [random.Random(i).randint(40, 90) for i in range(TILLS)]
    assert sum(asks) > START

    def spend(i: int) -> Any:
        member = people[i % MEMBERS]
        if i % 8 == 3:
            return c.families.transfer(m.actor, member, outsider, asks[i])
        if i % 8 == 5:
            return c.families.donate(m.actor, member, "fund", asks[i])
        return c.purchases.confirm(m.actor, basket(member, asks[i]), f"F-{i}", hold=i % 8 == 1)

    results = race(TILLS, spend)
    assert len(results) == TILLS
    won = [i for i, r in enumerate(results) if not isinstance(r, KopilkaError)]
    lost = [i for i, r in enumerate(results) if isinstance(r, KopilkaError)]
    assert won, "somebody must have been served"
    for i in lost:
        error = results[i]
        assert isinstance(error, KopilkaError)
        assert error.code in ("redeem_exceeds_max", "insufficient_points"), error
    spent = sum(asks[i] for i in won)
    assert spent <= START
    pool = c.ledger.balance(m.actor, people[0])
    held = sum(asks[i] for i in won if i % 8 == 1)
    assert pool.held == held
    assert pool.available == START - spent >= 0
    # Nobody was turned away while the points they asked for were there.
    if lost:
        assert pool.available < min(asks[i] for i in lost)
    for member in people:
        assert c.ledger.balance(m.actor, member).available == pool.available
    transferred = sum(asks[i] for i in won if i % 8 == 3)
    assert c.ledger.balance(m.actor, outsider).available == transferred
    donated = sum(asks[i] for i in won if i % 8 == 5)
    totals = c.families.charities(m.actor)[0].totals
    assert (totals[0].points if totals else 0) == donated
    assert_ledger_ok(c)


def test_joins_racing_for_the_last_places_never_overfill_the_family(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    people = make_family(c, m, 3)  # owner and two members: five places left of eight
    owner = people[0]
    newcomers = [c.members.enroll(m.actor, {"name": f"N{i}"}).id for i in range(12)]
    for i, member in enumerate(newcomers):
        c.ledger.accrue(m.actor, member, 10 + i)
    codes = [c.families.invite(m.actor, owner).code for _ in newcomers]

    results = race(len(newcomers), lambda i: c.families.join(m.actor, newcomers[i], codes[i]))
    joined = [i for i, r in enumerate(results) if not isinstance(r, KopilkaError)]
    refused = [r for r in results if isinstance(r, KopilkaError)]
    assert len(joined) == MEMBERS - 3
    assert {r.code for r in refused} == {"family_full"}
    family = c.families.get(m.actor, owner)
    assert len(family.members) == MEMBERS
    brought = sum(10 + i for i in joined)
    assert c.ledger.balance(m.actor, owner).available == START + brought
    for i, member in enumerate(newcomers):
        expected = START + brought if i in joined else 10 + i
        assert c.ledger.balance(m.actor, member).available == expected
    assert_ledger_ok(c)


def test_a_member_leaving_while_the_others_spend(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    people = make_family(c, m, 4)
    leaver = people[3]
    c.ledger.accrue(m.actor, leaver, 200)  # earned inside: the leaver's stake

    def work(i: int) -> Any:
        if i == 0:
            return c.families.leave(m.actor, leaver)
        return c.purchases.confirm(m.actor, basket(people[i % 3], 30), f"L-{i}")

    results = race(16, work)
    assert not any(isinstance(r, KopilkaError) for r in results), results
    left = results[0]
    taken = left.points.get("points", 0)  # type: ignore[union-attr]
    spent = 30 * 15
    assert 0 < taken <= 200
    assert c.ledger.balance(m.actor, people[0]).available == START + 200 - spent - taken
    assert c.ledger.balance(m.actor, leaver).available == taken
    assert_ledger_ok(c)
