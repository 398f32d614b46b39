"""Families, transfers and donations on both databases, driven by the clock: pooled
earning and spending, permissions at the till, joining and leaving with each split rule,
refunds across a membership change, holds, limits, expiry, and the ledger kept verified."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.families import check_still_own
from kopilka.adapters.db.tables import lots
from kopilka.bootstrap import Container
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    InsufficientPoints,
    KopilkaError,
    NotFound,
    ValidationFailed,
)
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
BONUS: dict[str, Any] = {
    "type": "bonus",
    "redemption": {"point_value": 100, "max_percent": 100},
    "rules": [{"id": "base", "effects": [{"points_percent": 10}]}],
}


# ---- helpers -----------------------------------------------------------------------------
def enroll(c: Container, m: Merchant, name: str) -> uuid.UUID:
    return c.members.enroll(m.actor, {"name": name}).id


def publish(c: Container, m: Merchant, **sections: Any) -> None:
    c.programs.publish(m.actor, "main", {**BONUS, **sections})


def available(c: Container, m: Merchant, member: uuid.UUID) -> int:
    return c.ledger.balance(m.actor, member).available


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def family_of(c: Container, m: Merchant, *balances: int) -> list[uuid.UUID]:
    """An owner and members, each credited ``balances[i]`` first, all in one family."""
    people = []
    for i, points in enumerate(balances):
        member = enroll(c, m, f"P{i}")
        if points:
            c.ledger.accrue(m.actor, member, points)
        people.append(member)
    c.families.create(m.actor, people[0], "Ивановы")
    for member in people[1:]:
        code = c.families.invite(m.actor, people[0]).code
        c.families.join(m.actor, member, code)
    return people


def basket(member: uuid.UUID, redeem: int | str | None = None, price: int = 10000) -> ReceiptInput:
    return ReceiptInput(
        lines=(LineInput(sku="TEA", qty=Decimal(1), price=price),),
        member=MemberRef(id=member),
        redeem_points=redeem,  # type: ignore[arg-type]
        outlet="OUT-1",
    )


def lot_dates(c: Container, holder: uuid.UUID) -> list[tuple[int, datetime | None]]:
    """(remaining, expires_at) of the holder's live lots, by expiry."""
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.select(lots.c.remaining, lots.c.expires_at)
            .where(lots.c.member_id == holder, lots.c.remaining > 0, lots.c.status == "active")
            .order_by(lots.c.expires_at, lots.c.remaining)
        ).all()
    return [(int(r.remaining), r.expires_at) for r in rows]


# ---- the pool ----------------------------------------------------------------------------
def test_joining_moves_points_into_the_pool_keeping_their_expiry(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    owner, kid = enroll(c, m, "Owner"), enroll(c, m, "Kid")
    c.ledger.accrue(m.actor, owner, 100)
    soon = START + timedelta(days=10)
    c.ledger.accrue(m.actor, kid, 40, expires_at=soon)
    c.ledger.accrue(m.actor, kid, 25, pending_days=3)
    c.ledger.redeem(m.actor, kid, 5)
    family = c.families.create(m.actor, owner, "  Ивановы ")
    assert (family.id, family.owner_id, family.name) == (owner, owner, "Ивановы")
    assert family.balance is not None
    assert family.balance.available == 100
    invitation = c.families.invite(m.actor, owner)
    assert invitation.expires_at == START + timedelta(days=7)
    joined = c.families.join(m.actor, kid, invitation.code.lower())
    assert joined.points == {"points": 60}
    assert len(joined.transactions) == 2  # one ledger transaction per lot
    for member in (owner, kid):
        view = c.ledger.balance(m.actor, member)
        assert (view.available, view.pending) == (135, 25), member
        assert view.member_id == member
    assert (35, soon) in lot_dates(c, owner)  # the kid's lot kept its expiry
    assert lot_dates(c, kid) == []
    assert [p.member_id for p in c.families.get(m.actor, kid).members] == [owner, kid]
    # Joining again with the same code answers the membership as it is.
    again = c.families.join(m.actor, kid, invitation.code)
    assert (again.status, again.points) == ("active", {"points": 60})
    assert_verified(c)
    # The kid's own history still shows the moves; the pool's shows them too.
    kid_history = c.ledger.history(m.actor, kid, None, 50)
    assert {t.kind for t in kid_history} >= {"transfer"}
    assert {t.id for t in kid_history if t.kind == "transfer"} == set(joined.transactions)


def test_members_earn_into_and_spend_from_the_pool(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m)
    owner, kid = family_of(c, m, 0, 0)
    c.purchases.confirm(m.actor, basket(kid), "R-1")  # 10% of 100.00 = 10 points
    c.purchases.confirm(m.actor, basket(owner), "R-2")
    assert available(c, m, owner) == available(c, m, kid) == 20
    paid = c.purchases.confirm(m.actor, basket(kid, redeem=15), "R-3")
    assert paid["totals"]["points_redeemed"] == 15
    assert paid["family"] == {"family_id": str(owner), "can_spend": True}
    assert available(c, m, owner) == 5 + 8  # what was left, and 10% of the 85.00 paid
    calc = c.purchases.calculate(m.actor, basket(owner, redeem="max"))
    assert calc["max_redeemable"] == 13
    assert calc["balance"]["available"] == 13
    # The kid's entries on the pool carry the kid's name (and show in the kid's history).
    history = c.ledger.history(m.actor, kid, None, 50)
    kinds = sorted(t.kind for t in history if t.member_id == owner)
    assert kinds == ["accrual", "accrual", "redemption"]
    assert_verified(c)


def test_a_member_without_permission_cannot_pay_with_points(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, family={"new_members_can_spend": False}, transfers={}, donations=CHARITIES)
    owner, kid = family_of(c, m, 500, 0)
    assert c.families.get(m.actor, kid).members[1].can_spend is False
    calc = c.purchases.calculate(m.actor, basket(kid, redeem="max"))
    assert calc["max_redeemable"] == 0
    assert calc["family"]["can_spend"] is False
    assert calc["family"]["reason"]["en"].startswith("The family account's owner")
    assert calc["balance"]["available"] == 500  # the kid sees the pool...
    for call in (
        lambda: c.purchases.calculate(m.actor, basket(kid, redeem=10)),
        lambda: c.purchases.confirm(m.actor, basket(kid, redeem=10), "R-1"),
        lambda: c.purchases.confirm(m.actor, basket(kid, redeem=10), "R-2", hold=True),
        lambda: c.families.transfer(m.actor, kid, owner, 10),
        lambda: c.families.donate(m.actor, kid, "fund", 10),
    ):
        with pytest.raises(BusinessRuleViolation) as refused:
            call()
        assert refused.value.code == "family_spend_not_allowed"
    # ...and earns into it, paying with money.
    done = c.purchases.confirm(m.actor, basket(kid, redeem="max"), "R-3")
    assert done["totals"]["points_redeemed"] == 0
    assert available(c, m, owner) == 510
    c.families.set_can_spend(m.actor, kid, True)
    assert (
        c.purchases.confirm(m.actor, basket(kid, redeem=10), "R-4")["totals"]["points_redeemed"]
        == 10
    )
    with pytest.raises(BusinessRuleViolation) as owner_refused:
        c.families.set_can_spend(m.actor, owner, False)
    assert owner_refused.value.code == "family_owner_always_spends"
    assert_verified(c)


def test_joining_is_refused_when_it_cannot_be_clean(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m, family={"max_members": 2, "invitation_days": 1})
    owner, kid, third = enroll(c, m, "O"), enroll(c, m, "K"), enroll(c, m, "T")
    c.families.create(m.actor, owner, "F")
    with pytest.raises(Conflict) as twice:
        c.families.create(m.actor, owner, "F2")
    assert twice.value.code == "member_in_family"
    with pytest.raises(NotFound) as no_code:
        c.families.join(m.actor, kid, "NOSUCHCODE")
    assert no_code.value.code == "invitation_not_found"
    personal = c.families.invite(m.actor, owner, invitee_id=third)
    with pytest.raises(BusinessRuleViolation) as other:
        c.families.join(m.actor, kid, personal.code)
    assert other.value.code == "invitation_for_another_member"
    late = c.families.invite(m.actor, owner)
    clock.advance(days=1)
    with pytest.raises(BusinessRuleViolation) as expired:
        c.families.join(m.actor, kid, late.code)
    assert expired.value.code == "invitation_expired"
    c.ledger.accrue(m.actor, kid, 50)
    c.ledger.hold(m.actor, kid, 10, ttl_seconds=600)
    code = c.families.invite(m.actor, owner).code
    with pytest.raises(Conflict) as held:
        c.families.join(m.actor, kid, code)
    assert held.value.code == "member_has_active_holds"
    clock.advance(seconds=600)  # the hold lapses: its points are the kid's again
    joined = c.families.join(m.actor, kid, code)
    assert joined.points == {"points": 50}
    with pytest.raises(Conflict) as used:
        c.families.join(m.actor, third, code)
    assert used.value.code == "invitation_used"
    with pytest.raises(BusinessRuleViolation) as full:
        c.families.invite(m.actor, owner)
    assert full.value.code == "family_full"
    with pytest.raises(BusinessRuleViolation) as not_owner:
        c.families.invite(m.actor, kid)
    assert not_owner.value.code == "family_owner_only"
    assert_verified(c)


def test_families_can_be_switched_off(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(c, m, family={"enabled": False})
    owner = enroll(c, m, "O")
    with pytest.raises(BusinessRuleViolation) as off:
        c.families.create(m.actor, owner, "F")
    assert off.value.code == "families_not_enabled"
    with pytest.raises(ValidationFailed):
        c.families.create(m.actor, owner, "   ")


# ---- leaving -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "kid_takes"),
    [("none", 0), ("equal_share", 300 // 2), ("contributed", 150 * 300 // 400)],
)
def test_leaving_takes_the_share_the_rule_gives(
    container: Container, merchant: Merchant, rule: str, kid_takes: int
) -> None:
    c, m = container, merchant
    publish(c, m, family={"leave_split": rule})
    owner, kid = family_of(c, m, 250, 100)  # the kid brings 100
    c.purchases.confirm(m.actor, basket(kid, price=50000), "R-1")  # and earns 50 inside
    c.ledger.redeem(m.actor, owner, 100)  # 100 of the 400 put in is spent
    assert available(c, m, kid) == 300
    left = c.families.leave(m.actor, kid)
    assert (left.status, left.split) == ("left", rule)
    assert left.points == ({"points": kid_takes} if kid_takes else {})
    assert available(c, m, kid) == kid_takes
    assert available(c, m, owner) == 300 - kid_takes
    with pytest.raises(NotFound):
        c.families.get(m.actor, kid)
    with pytest.raises(NotFound) as again:
        c.families.leave(m.actor, kid)
    assert again.value.code == "family_not_found"
    # The kid's next purchase earns on the kid's own account.
    c.purchases.confirm(m.actor, basket(kid), "R-2")
    assert available(c, m, kid) == kid_takes + 10
    assert available(c, m, owner) == 300 - kid_takes
    assert_verified(c)


def test_the_owner_leaving_dissolves_the_family(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(c, m, family={"leave_split": "equal_share"})
    owner, a, b = family_of(c, m, 300, 0, 0)
    done = c.families.leave(m.actor, owner)
    assert done.dissolved is True
    assert set(done.members_left) == {a, b}
    assert done.points == {}
    # Shares in turn: 300 / 3, then 200 / 2; the rest stays on the owner's account.
    assert (available(c, m, a), available(c, m, b), available(c, m, owner)) == (100, 100, 100)
    for member in (owner, a, b):
        with pytest.raises(NotFound):
            c.families.get(m.actor, member)
    # Founded again, with a fresh invitation (the old ones died with the family).
    again = c.families.create(m.actor, owner, "Again")
    assert [p.member_id for p in again.members] == [owner]
    assert_verified(c)


def test_refunds_follow_the_account_the_points_were_booked_on(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, family={"leave_split": "none"})
    owner, kid = enroll(c, m, "O"), enroll(c, m, "K")
    c.ledger.accrue(m.actor, kid, 100)
    before = c.purchases.confirm(m.actor, basket(kid, redeem=100), "R-OLD")  # spent alone
    c.families.create(m.actor, owner, "F")
    c.families.join(m.actor, kid, c.families.invite(m.actor, owner).code)
    inside = c.purchases.confirm(m.actor, basket(kid, price=20000), "R-IN")  # 20 to the pool
    # A refund of the purchase made before joining gives the points to the pool.
    c.purchases.refund(m.actor, uuid.UUID(before["receipt"]["id"]), "RF-1", None)
    assert available(c, m, owner) == 120
    assert_verified(c)
    c.families.leave(m.actor, kid)
    assert available(c, m, kid) == 0
    # A refund of the purchase made inside takes the points back from the pool.
    c.purchases.refund(m.actor, uuid.UUID(inside["receipt"]["id"]), "RF-2", None)
    assert available(c, m, owner) == 100
    assert available(c, m, kid) == 0
    assert_verified(c)


def test_holds_of_a_member_live_on_the_pool(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    publish(c, m)
    owner, kid = family_of(c, m, 200, 0)
    held = c.purchases.confirm(m.actor, basket(kid, redeem=50), "R-H", hold=True)
    assert c.ledger.balance(m.actor, owner).held == 50
    with pytest.raises(Conflict) as busy:
        c.families.leave(m.actor, kid)
    assert busy.value.code == "member_has_active_holds"
    c.purchases.confirm_held(m.actor, uuid.UUID(held["receipt"]["id"]))
    assert c.ledger.balance(m.actor, kid).held == 0
    direct = c.ledger.hold(m.actor, kid, 30, ttl_seconds=60)
    assert direct.hold is not None
    assert direct.hold.member_id == owner
    assert available(c, m, owner) == 200 - 50 + 5 - 30
    clock.advance(seconds=61)
    assert c.jobs.run().holds_released == 1
    c.families.leave(m.actor, kid)
    assert_verified(c)


def test_the_pool_expires_and_activates_on_the_clock(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    owner, kid = family_of(c, m, 0, 0)
    c.ledger.accrue(m.actor, kid, 70, expires_at=START + timedelta(days=2))
    c.ledger.accrue(m.actor, kid, 30, pending_days=1)
    assert c.ledger.balance(m.actor, owner).pending == 30
    clock.advance(days=3)
    first = c.jobs.run()
    assert first.errors == []
    assert available(c, m, kid) == 30
    second = c.jobs.run()
    assert (second.members_settled, second.transactions) == (0, 0)
    assert_verified(c)


# ---- transfers ---------------------------------------------------------------------------
TRANSFERS = {"min_points": 10, "max_points_per_transfer": 300, "max_points_per_month": 500}


def test_transfers_within_limits_keep_the_points_dates(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    c, m = container, merchant
    a, b = enroll(c, m, "A"), enroll(c, m, "B")
    c.ledger.accrue(m.actor, a, 1000, expires_at=START + timedelta(days=30))
    with pytest.raises(BusinessRuleViolation) as off:
        c.families.transfer(m.actor, a, b, 10)
    assert off.value.code == "transfers_not_enabled"
    publish(c, m, transfers=TRANSFERS)
    sent = c.families.transfer(m.actor, a, b, 200, idempotency_key="t-1")
    assert sent.balance is not None
    assert sent.balance.available == 800
    assert c.families.transfer(m.actor, a, b, 200, idempotency_key="t-1") == sent  # replayed
    assert available(c, m, b) == 200
    assert lot_dates(c, b) == [(200, START + timedelta(days=30))]
    for points, code in ((5, "transfer_below_minimum"), (301, "transfer_above_maximum")):
        with pytest.raises(BusinessRuleViolation) as refused:
            c.families.transfer(m.actor, a, b, points)
        assert refused.value.code == code
    c.families.transfer(m.actor, a, b, 300)
    with pytest.raises(BusinessRuleViolation) as monthly:
        c.families.transfer(m.actor, a, b, 10)
    assert monthly.value.code == "transfer_monthly_limit"
    assert monthly.value.extra["left"] == 0
    with pytest.raises(BusinessRuleViolation) as self_transfer:
        c.families.transfer(m.actor, a, a, 10)
    assert self_transfer.value.code == "transfer_to_self"
    # A new month in Moscow begins at 21:00 UTC on the last day of the old one.
    clock.set(datetime(2026, 1, 31, 20, 59, tzinfo=UTC))
    with pytest.raises(BusinessRuleViolation):
        c.families.transfer(m.actor, a, b, 10)
    clock.set(datetime(2026, 1, 31, 21, 0, tzinfo=UTC))
    c.families.transfer(m.actor, a, b, 10)
    with pytest.raises(InsufficientPoints):
        c.families.transfer(m.actor, enroll(c, m, "Empty"), a, 10)
    listed = c.families.transfers(m.actor, b, None, 10)
    assert [t.points for t in listed] == [10, 300, 200]
    audit = c.members.audit_trail(m.actor, b)
    assert sum(1 for e in audit if e["action"] == "points.transfer") == 3
    history = c.ledger.history(m.actor, b, None, 50)
    assert {t.kind for t in history} == {"transfer"}
    # Both sides of each transfer: out of A's account (naming B), into B's (naming A).
    assert len(history) == 6
    assert all({t.member_id, t.counterparty_member_id} == {a, b} for t in history)
    assert_verified(c)


def test_transfers_go_from_pool_to_pool(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    publish(c, m, transfers={})
    owner, kid = family_of(c, m, 100, 0)
    friend = enroll(c, m, "Friend")
    with pytest.raises(BusinessRuleViolation) as same:
        c.families.transfer(m.actor, kid, owner, 10)
    assert same.value.code == "transfer_within_family"
    c.families.transfer(m.actor, kid, friend, 40)
    assert (available(c, m, owner), available(c, m, friend)) == (60, 40)
    c.families.transfer(m.actor, friend, kid, 15)
    assert available(c, m, owner) == 75
    other = c.members.enroll(m.actor, {"name": "Other"}).id
    c.members.set_blocked(m.actor, other, True)
    with pytest.raises(BusinessRuleViolation) as blocked:
        c.families.transfer(m.actor, kid, other, 10)
    assert blocked.value.code == "member_blocked"
    with pytest.raises(NotFound):
        c.families.transfer(m.actor, kid, uuid.uuid4(), 10)
    assert_verified(c)


# ---- donations ---------------------------------------------------------------------------
CHARITIES = {
    "min_points": 5,
    "charities": [
        {"code": "fund", "name": {"ru": "Фонд", "en": "Fund"}},
        {"code": "shelter", "name": "Приют"},
    ],
}


def test_donations_count_per_charity(container: Container, merchant: Merchant) -> None:
    c, m = container, merchant
    a, b = enroll(c, m, "A"), enroll(c, m, "B")
    c.ledger.accrue(m.actor, a, 100)
    c.ledger.accrue(m.actor, b, 100)
    with pytest.raises(BusinessRuleViolation) as off:
        c.families.donate(m.actor, a, "fund", 10)
    assert off.value.code == "donations_not_enabled"
    assert c.families.charities(m.actor) == []
    publish(c, m, donations=CHARITIES)
    gift = c.families.donate(m.actor, a, "fund", 30, idempotency_key="d-1")
    assert gift.charity_name == {"ru": "Фонд", "en": "Fund"}
    assert gift.balance is not None
    assert gift.balance.available == 70
    assert c.families.donate(m.actor, a, "fund", 30, idempotency_key="d-1") == gift
    c.families.donate(m.actor, b, "fund", 20)
    c.families.donate(m.actor, b, "shelter", 5)
    with pytest.raises(ValidationFailed) as unknown:
        c.families.donate(m.actor, a, "nope", 10)
    assert unknown.value.code == "unknown_charity"
    with pytest.raises(BusinessRuleViolation) as small:
        c.families.donate(m.actor, a, "fund", 4)
    assert small.value.code == "donation_below_minimum"
    with pytest.raises(InsufficientPoints):
        c.families.donate(m.actor, a, "fund", 71)
    report = {v.code: v for v in c.families.charities(m.actor)}
    assert report["fund"].totals[0].model_dump() == {
        "currency": "points",
        "points": 50,
        "donations": 2,
        "donors": 2,
    }
    assert report["shelter"].name == {"ru": "Приют", "en": "Приют"}
    history = c.ledger.history(m.actor, a, None, 10)
    assert history[0].kind == "donation"
    assert history[0].description["en"] == "30 points donated"
    # A charity dropped from the program still shows what it was given.
    publish(c, m, donations={"charities": [{"code": "shelter", "name": "Приют"}]})
    dropped = {v.code: v for v in c.families.charities(m.actor)}["fund"]
    assert (dropped.listed, dropped.totals[0].points) == (False, 50)
    assert_verified(c)


def test_other_tenants_members_are_not_found(
    container: Container, merchant: Merchant, other_merchant: Merchant
) -> None:
    c, m = container, merchant
    publish(c, m, transfers={})
    mine = enroll(c, m, "Mine")
    c.ledger.accrue(m.actor, mine, 100)
    theirs = enroll(c, other_merchant, "Theirs")
    c.families.create(other_merchant.actor, theirs, "B")
    calls: list[Any] = [
        lambda: c.families.transfer(m.actor, mine, theirs, 10),
        lambda: c.families.get(m.actor, theirs),
        lambda: c.families.invite(m.actor, mine, invitee_id=theirs),
        lambda: c.families.leave(m.actor, theirs),
        lambda: c.families.set_can_spend(m.actor, theirs, False),
        lambda: c.families.create(m.actor, theirs, "x"),
    ]
    for call in calls:
        with pytest.raises(KopilkaError) as refused:
            call()
        assert refused.value.code in ("member_not_found", "family_not_found"), refused.value
    code = c.families.invite(other_merchant.actor, theirs).code
    with pytest.raises(NotFound) as foreign:
        c.families.join(m.actor, mine, code)
    assert foreign.value.code == "invitation_not_found"
    assert available(c, m, mine) == 100


@pytest.mark.postgres_only
def test_a_book_opened_while_the_member_joined_is_retried(
    container: Container, merchant: Merchant
) -> None:
    """PostgreSQL reads committed data per statement: a book that found the member outside
    any family, then waited for the account lock while the member joined, must not book on
    the emptied own account (the next refund would look for its lots in the pool)."""
    c, m = container, merchant
    owner, kid = family_of(c, m, 100, 50)
    with c.uow_factory(write=True) as uow:
        own = uow.ledger.lock_member_accounts(m.tenant_id, kid, "points")
        with pytest.raises(Conflict) as stale:
            check_still_own(uow, m.tenant_id, kid, own)
        assert stale.value.code == "family_changed"
        pool = uow.ledger.lock_member_accounts(m.tenant_id, owner, "points")
        check_still_own(uow, m.tenant_id, owner, pool)  # the owner's own account is the pool
