"""Clubs and paid memberships on both databases: joining by invitation, approval, condition
or freely; fees, renewal, grace, lapse and cancellation; the till seeing the clubs; the
lapse job run repeatedly; the savings report; twin requests."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.clubs import club_invitations, club_memberships, club_payments
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation, Conflict, KopilkaError, NotFound
from kopilka.services.context import Actor
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
FEE = 29900
CLUBS: list[dict[str, Any]] = [
    {"code": "open", "name": "Open", "join": "open", "welcome_points": 100},
    {"code": "vip", "name": {"ru": "VIP-клуб", "en": "VIP"}, "join": "invitation"},
    {"code": "pro", "name": "Pro", "join": "approval", "welcome_points": 50},
    {"code": "gold", "name": "Gold", "join": "condition", "condition": {"tiers": ["gold"]}},
    {
        "code": "parents",
        "name": "Parents",
        "join": "condition",
        "condition": {"segments": ["parents"]},
        "fee": {"amount": 9900, "period": "year", "grace_days": 0},
    },
    {
        "code": "plus",
        "name": {"ru": "Плюс", "en": "Plus"},
        "join": "open",
        "fee": {"amount": FEE, "period": "month", "grace_days": 7},
        "welcome_points": 300,
    },
]
# 10% off for the VIP club and Plus, 5% points for everyone; a program only for Plus.
MAIN: dict[str, Any] = {
    "type": "combined",
    "redemption": {"point_value": 100},
    "clubs": CLUBS,
    "rules": [
        {"id": "base", "effects": [{"points_percent": 5}]},
        {
            "id": "members",
            "when": {"club_in": ["vip", "plus"]},
            "effects": [{"discount_percent": 10}],
        },
    ],
}
PLUS_ONLY: dict[str, Any] = {
    "type": "bonus",
    "members_of_club": "plus",
    "redemption": {"enabled": False},
    "rules": [{"id": "double", "effects": [{"points_percent": 5}]}],
}


@pytest.fixture
def m(container: Container) -> Merchant:
    merchant = make_merchant(container, "Coffee One")
    container.programs.publish(merchant.actor, "main", MAIN)
    return merchant


def enrol(c: Container, m: Merchant, **attributes: Any) -> uuid.UUID:
    return c.members.enroll(m.actor, {"attributes": attributes} if attributes else {}).id


def pay(
    c: Container,
    m: Merchant,
    member: uuid.UUID,
    payment_id: str,
    *,
    club: str = "plus",
    amount: int = FEE,
    paid_at: datetime | None = None,
) -> Any:
    return c.clubs.record_payment(
        m.actor,
        member,
        club,
        payment_id=payment_id,
        amount=amount,
        paid_at=paid_at or c.clock.now(),
    )


def buy(c: Container, m: Merchant, member: uuid.UUID, number: str, price: int = 10000) -> Any:
    return c.purchases.confirm(
        m.actor,
        ReceiptInput(
            lines=(LineInput(sku="LATTE", qty=Decimal(1), price=price),),
            member=MemberRef(id=member),
            outlet="OUT-1",
        ),
        number,
    )


def statuses(c: Container, m: Merchant, member: uuid.UUID) -> dict[str, tuple[str, bool]]:
    return {v.club: (v.status, v.benefits) for v in c.clubs.list_member(m.actor, member)}


def trail(c: Container, m: Merchant, member: uuid.UUID) -> list[dict[str, Any]]:
    return [e for e in c.members.audit_trail(m.actor, member) if e["action"].startswith("club.")]


def rows(c: Container, table: sa.Table) -> int:
    with c.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# ---- joining ---------------------------------------------------------------------------
def test_an_open_club_is_joined_at_once_with_its_welcome_points_given_once(
    container: Container, m: Merchant
) -> None:
    member = enrol(container, m)
    view = container.clubs.join(m.actor, member, "open")
    assert (view.status, view.benefits, view.via) == ("active", True, "membership")
    assert view.explanation == {"ru": "Участник клуба «Open»", "en": "Member of the club “Open”"}
    again = container.clubs.join(m.actor, member, "open")  # a retry changes nothing
    assert again == view
    assert container.ledger.balance(m.actor, member).available == 100
    container.clubs.leave(m.actor, member, "open")
    assert statuses(container, m, member)["open"] == ("left", False)
    container.clubs.join(m.actor, member, "open")  # back again: no second welcome
    assert container.ledger.balance(m.actor, member).available == 100
    history = container.ledger.history(m.actor, member, None, 10)
    assert [t.description["en"] for t in history] == ["Welcome to the club “Open”: 100 points"]
    assert [e["action"] for e in trail(container, m, member)] == [
        "club.join",
        "club.leave",
        "club.join",
    ]
    assert trail(container, m, member)[0]["details"]["explanation"] == {
        "ru": "Вступление в клуб «Open»",
        "en": "Joined the club “Open”",
    }


def test_a_closed_club_needs_a_valid_invitation(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    member, other, third = (enrol(container, m) for _ in range(3))
    with pytest.raises(BusinessRuleViolation) as missing:
        container.clubs.join(m.actor, member, "vip")
    assert missing.value.code == "invitation_required"
    assert [e.path for e in missing.value.errors] == [("invitation_code",)]
    with pytest.raises(BusinessRuleViolation) as unknown:
        container.clubs.join(m.actor, member, "vip", "NOPE")
    assert unknown.value.code == "invalid_invitation"
    pro_code = container.clubs.invite(m.actor, "pro").codes[0]
    with pytest.raises(BusinessRuleViolation) as wrong_club:
        container.clubs.join(m.actor, member, "vip", pro_code)
    assert wrong_club.value.code == "invalid_invitation"
    batch = container.clubs.invite(
        m.actor, "vip", count=3, uses=2, expires_at=START + timedelta(days=10)
    )
    assert len(set(batch.codes)) == 3
    code = batch.codes[0]
    spelled = f" {code[:5].lower()}-{code[5:]} "  # as a customer may type it
    assert container.clubs.join(m.actor, member, "vip", spelled).status == "active"
    container.clubs.join(m.actor, member, "vip", spelled)  # a retry takes no second use
    container.clubs.join(m.actor, other, "vip", code)
    with pytest.raises(BusinessRuleViolation) as used_up:
        container.clubs.join(m.actor, third, "vip", code)
    assert used_up.value.code == "invitation_used_up"
    clock.advance(days=10)
    with pytest.raises(BusinessRuleViolation) as expired:
        container.clubs.join(m.actor, third, "vip", batch.codes[1])
    assert expired.value.code == "invitation_expired"
    assert "vip" not in statuses(container, m, third)
    with pytest.raises(BusinessRuleViolation) as not_closed:
        container.clubs.invite(m.actor, "open")
    assert not_closed.value.code == "club_not_by_invitation"


def test_an_approval_club_waits_for_an_admin(container: Container, m: Merchant) -> None:
    member, other, third = (enrol(container, m) for _ in range(3))
    assert container.clubs.join(m.actor, member, "pro").status == "pending"
    assert statuses(container, m, member)["pro"] == ("pending", False)
    approved = container.clubs.approve(m.actor, member, "pro")
    assert (approved.status, approved.benefits) == ("active", True)
    assert container.clubs.approve(m.actor, member, "pro") == approved  # replays
    assert container.ledger.balance(m.actor, member).available == 50
    with pytest.raises(Conflict) as not_pending:
        container.clubs.reject(m.actor, member, "pro")
    assert not_pending.value.code == "membership_not_pending"
    container.clubs.join(m.actor, other, "pro")
    rejected = container.clubs.reject(m.actor, other, "pro", "Professionals only")
    assert (rejected.status, rejected.benefits) == ("rejected", False)
    assert trail(container, m, other)[-1]["details"]["explanation"]["en"] == (
        "Request to join the club “Pro” declined: Professionals only"
    )
    with pytest.raises(Conflict):
        container.clubs.approve(m.actor, other, "pro")
    assert container.clubs.join(m.actor, other, "pro").status == "pending"  # may ask again
    # An invitation admits without the wait.
    code = container.clubs.invite(m.actor, "pro").codes[0]
    assert container.clubs.join(m.actor, third, "pro", code).status == "active"
    with pytest.raises(NotFound) as none:
        container.clubs.approve(m.actor, enrol(container, m), "pro")
    assert none.value.code == "membership_not_found"


def test_a_condition_club_counts_while_the_condition_holds(
    container: Container, m: Merchant
) -> None:
    gold = enrol(container, m, tier="gold")
    silver = enrol(container, m, tier="silver")
    assert statuses(container, m, gold)["gold"] == ("active", True)  # no need to join
    [view] = [v for v in container.clubs.list_member(m.actor, gold) if v.club == "gold"]
    assert view.via == "condition"
    assert "gold" not in statuses(container, m, silver)
    with pytest.raises(BusinessRuleViolation) as refused:
        container.clubs.join(m.actor, silver, "gold")
    assert refused.value.code == "club_condition_not_met"
    assert container.clubs.join(m.actor, gold, "gold").via == "membership"
    # The tier drops: the membership stays on record but gives nothing.
    container.members.update(m.actor, gold, {"attributes": {"tier": "silver"}})
    assert statuses(container, m, gold)["gold"] == ("active", False)
    container.members.update(m.actor, gold, {"attributes": {"tier": "gold"}})
    container.clubs.leave(m.actor, gold, "gold")  # opting out while gold
    assert statuses(container, m, gold)["gold"] == ("left", False)
    with pytest.raises(NotFound):
        container.clubs.leave(m.actor, silver, "gold")


def test_blocked_members_and_unknown_clubs_are_refused(container: Container, m: Merchant) -> None:
    member = enrol(container, m)
    with pytest.raises(NotFound) as unknown:
        container.clubs.join(m.actor, member, "nope")
    assert unknown.value.code == "club_not_found"
    container.members.set_blocked(m.actor, member, True, reason="fraud")
    with pytest.raises(BusinessRuleViolation) as blocked:
        container.clubs.join(m.actor, member, "open")
    assert blocked.value.code == "member_blocked"
    other = make_merchant(container, "Rival Two")
    with pytest.raises(NotFound) as foreign:
        container.clubs.join(other.actor, member, "open")
    assert foreign.value.code == "member_not_found"


# ---- paid memberships -------------------------------------------------------------------
def test_a_fee_buys_a_month_renewals_stack_and_replays_change_nothing(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    member = enrol(container, m)
    assert container.clubs.join(m.actor, member, "plus").status == "unpaid"
    assert statuses(container, m, member)["plus"] == ("unpaid", False)
    first = pay(container, m, member, "p-1")
    assert (first.period_start, first.period_end) == (START, datetime(2026, 2, 15, 9, tzinfo=UTC))
    assert (first.membership.status, first.membership.benefits) == ("active", True)
    assert first.membership.grace_until == datetime(2026, 2, 22, 9, tzinfo=UTC)
    assert container.ledger.balance(m.actor, member).available == 300  # the welcome points
    assert pay(container, m, member, "p-1") == first  # the same payment again: a replay
    clock.advance(days=3)
    second = pay(container, m, member, "p-2")  # paid in advance: from 15 Feb to 15 Mar
    assert (second.period_start, second.period_end) == (
        first.period_end,
        datetime(2026, 3, 15, 9, tzinfo=UTC),
    )
    assert rows(container, club_payments) == 2
    assert container.ledger.balance(m.actor, member).available == 300  # welcome once
    with pytest.raises(Conflict) as reused:
        pay(container, m, member, "p-2", paid_at=START)
    assert reused.value.code == "payment_id_reused"
    with pytest.raises(BusinessRuleViolation) as wrong:
        pay(container, m, member, "p-3", amount=FEE - 1)
    assert wrong.value.code == "payment_amount_mismatch"
    assert [e.path for e in wrong.value.errors] == [("amount",)]
    with pytest.raises(KopilkaError) as future:
        pay(container, m, member, "p-4", paid_at=clock.now() + timedelta(hours=1))
    assert future.value.code == "paid_in_future"
    with pytest.raises(BusinessRuleViolation) as free:
        pay(container, m, member, "p-5", club="open")
    assert free.value.code == "club_has_no_fee"
    with pytest.raises(BusinessRuleViolation) as period:
        container.clubs.record_payment(
            m.actor, member, "plus", payment_id="p-6", amount=FEE, paid_at=START, period="year"
        )
    assert period.value.code == "payment_period_mismatch"
    assert rows(container, club_payments) == 2
    explanations = [e["details"]["explanation"]["ru"] for e in trail(container, m, member)]
    assert explanations[-1] == (
        "Оплачен взнос клуба «Плюс»: 299\u00a0₽ за месяц, членство действует до 15.03.2026 12:00"
    )


def test_paying_joins_an_open_club_but_not_a_closed_one(container: Container, m: Merchant) -> None:
    member = enrol(container, m)
    assert pay(container, m, member, "p-1").membership.status == "active"  # no join needed
    parent = enrol(container, m, segments=["parents"])
    stranger = enrol(container, m)
    joined = pay(container, m, parent, "p-2", club="parents", amount=9900)
    assert joined.membership.benefits
    with pytest.raises(BusinessRuleViolation) as not_met:
        pay(container, m, stranger, "p-3", club="parents", amount=9900)
    assert not_met.value.code == "club_condition_not_met"
    # A paid condition club needs the fee as well as the condition.
    assert statuses(container, m, enrol(container, m, segments=["parents"])) == {}


def test_grace_lapse_and_renewal_over_time(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    member = enrol(container, m)
    pay(container, m, member, "p-1")
    clock.set(datetime(2026, 2, 16, 9, tzinfo=UTC))  # a day past the paid period
    assert statuses(container, m, member)["plus"] == ("grace", True)  # before the job, too
    assert container.jobs.run().steps["clubs_lapsed"] == 1
    assert container.jobs.run().steps["clubs_lapsed"] == 0  # twice: nothing more
    assert trail(container, m, member)[-1]["action"] == "club.grace"
    assert (
        "benefits continue until 2026-02-22 12:00"
        in (trail(container, m, member)[-1]["details"]["explanation"]["en"])
    )
    renewed = pay(container, m, member, "p-2")  # in grace: no free days
    assert renewed.period_start == datetime(2026, 2, 15, 9, tzinfo=UTC)
    assert renewed.membership.status == "active"
    clock.set(datetime(2026, 3, 23, 9, tzinfo=UTC))  # past 15 Mar + 7 days of grace
    assert statuses(container, m, member)["plus"] == ("lapsed", False)  # before the job
    with pytest.raises(Conflict) as expired:
        container.clubs.check(m.actor, member, "plus")
    assert expired.value.code == "membership_expired"
    assert container.jobs.run().steps["clubs_lapsed"] == 1
    assert trail(container, m, member)[-1]["action"] == "club.lapsed"
    assert container.jobs.run().steps["clubs_lapsed"] == 0
    with pytest.raises(Conflict) as cancel:
        container.clubs.cancel(m.actor, member, "plus")
    assert cancel.value.code == "membership_expired"
    back = pay(container, m, member, "p-3")  # a late payment starts afresh
    assert (back.period_start, back.membership.status) == (clock.now(), "active")
    assert container.clubs.check(m.actor, member, "plus").benefits


def test_the_lapse_job_skips_straight_to_lapsed_and_keeps_to_its_tenant(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    member = enrol(container, m)
    pay(container, m, member, "p-1")
    other = make_merchant(container, "Rival Two")
    container.programs.publish(other.actor, "main", MAIN)
    theirs = enrol(container, other)
    pay(container, other, theirs, "p-1")
    clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    assert container.clubs.lapse_due(clock.now(), m.tenant_id) == 1
    assert container.clubs.lapse_due(clock.now(), m.tenant_id) == 0
    assert [e["action"] for e in trail(container, m, member)][-1] == "club.lapsed"
    assert [e["action"] for e in trail(container, other, theirs)][-1] == "club.payment"
    assert container.clubs.lapse_due(clock.now(), None) == 1


def test_cancelling_keeps_the_benefits_to_the_end_of_the_paid_period(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    member = enrol(container, m)
    pay(container, m, member, "p-1")
    cancelled = container.clubs.cancel(m.actor, member, "plus")
    assert (cancelled.status, cancelled.benefits) == ("cancelled", True)
    assert container.clubs.cancel(m.actor, member, "plus") == cancelled
    assert (
        "benefits last until 2026-02-15 12:00"
        in (trail(container, m, member)[-1]["details"]["explanation"]["en"])
    )
    clock.set(datetime(2026, 2, 15, 9, tzinfo=UTC))  # no grace after a cancellation
    with pytest.raises(Conflict) as expired:
        container.clubs.check(m.actor, member, "plus")
    assert expired.value.code == "membership_expired"
    assert container.jobs.run().steps["clubs_lapsed"] == 0  # it stays cancelled
    free = enrol(container, m)
    container.clubs.join(m.actor, free, "open")
    with pytest.raises(Conflict) as not_paid:
        container.clubs.cancel(m.actor, free, "open")
    assert not_paid.value.code == "membership_not_paid"


# ---- at the till -----------------------------------------------------------------------
def test_club_rules_and_closed_programs_apply_to_members_only(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    container.programs.publish(m.actor, "plus-only", PLUS_ONLY)
    member, stranger = enrol(container, m), enrol(container, m)
    legacy = enrol(container, m, clubs=["plus"])  # the merchant's own say still counts
    pay(container, m, member, "p-1")
    mine = buy(container, m, member, "R-1")
    assert mine["totals"]["discount"] == 1000
    assert mine["points_earned_by_program"] == {"main": 4, "plus-only": 4}  # 5% of 90 roubles
    theirs = buy(container, m, stranger, "R-2")
    assert theirs["totals"]["discount"] == 0
    assert theirs["points_earned_by_program"] == {"main": 5}
    assert buy(container, m, legacy, "R-3")["totals"]["discount"] == 1000
    [view] = [v for v in container.clubs.list_member(m.actor, legacy) if v.club == "plus"]
    assert (view.status, view.benefits, view.via) == ("active", True, "attribute")
    clock.set(datetime(2026, 2, 23, 9, tzinfo=UTC))  # lapsed; the job has not run
    late = buy(container, m, member, "R-4")
    assert late["totals"]["discount"] == 0
    assert "plus-only" not in late["points_earned_by_program"]


def test_the_report_sets_what_the_club_gave_against_the_fees(
    container: Container, m: Merchant, clock: FakeClock
) -> None:
    member, stranger = enrol(container, m), enrol(container, m)
    buy(container, m, member, "R-0")  # before joining: not the club's
    pay(container, m, member, "p-1")
    clock.advance(hours=1)
    buy(container, m, member, "R-1", price=100000)  # 10% off: 10 000 (base points: not it)
    receipt = buy(container, m, member, "R-2", price=50000)  # refunded below
    buy(container, m, stranger, "R-3")
    container.purchases.refund(m.actor, uuid.UUID(receipt["receipt"]["id"]), "rf-1", None)
    report = container.clubs.report(m.actor, "plus")
    [line] = report.members
    assert line.member_id == member
    assert (line.payments, line.fees_paid, line.receipts) == (1, FEE, 1)
    assert (line.discount, line.points, line.saved, line.net) == (10000, 0, 10000, 10000 - FEE)
    assert report.totals.members == 1
    assert report.totals.net == 10000 - FEE
    assert report.method == "club_rules"
    later = container.clubs.report(m.actor, "plus", since=START + timedelta(seconds=1))
    assert (later.totals.fees_paid, later.totals.discount) == (0, 10000)
    with pytest.raises(KopilkaError):
        container.clubs.report(m.actor, "plus", since=START, until=START)
    clubs = {c.code: c for c in container.clubs.list_clubs(m.actor)}
    assert clubs["plus"].members == {"active": 1}
    assert clubs["plus"].fee is not None
    assert clubs["gold"].condition is not None
    clock.set(datetime(2026, 2, 16, 9, tzinfo=UTC))
    assert {c.code: c for c in container.clubs.list_clubs(m.actor)}["plus"].members == {"grace": 1}


def test_a_closed_programs_points_count_as_savings(container: Container, m: Merchant) -> None:
    container.programs.publish(m.actor, "plus-only", PLUS_ONLY)
    member = enrol(container, m)
    pay(container, m, member, "p-1")
    buy(container, m, member, "R-1", price=100000)
    [line] = container.clubs.report(m.actor, "plus").members
    # 10 000 off from the club rule; 45 points of the closed program at 1 rouble each.
    assert (line.discount, line.points, line.points_value) == (10000, 45, 4500)
    assert line.saved == 14500


# ---- twins ---------------------------------------------------------------------------------
def _race(n: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except KopilkaError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twin_joins_and_payments_write_once(container: Container, m: Merchant) -> None:
    member = enrol(container, m)
    code = container.clubs.invite(m.actor, "vip", uses=1).codes[0]
    members = [enrol(container, m) for _ in range(4)]
    joined = _race(4, lambda i: container.clubs.join(m.actor, members[i], "vip", code))
    assert sum(1 for r in joined if not isinstance(r, KopilkaError)) == 1
    assert {r.code for r in joined if isinstance(r, KopilkaError)} <= {
        "invitation_used_up",
        "idempotency_in_progress",
    }
    results = _race(4, lambda i: pay(container, m, member, "twin"))
    assert all(
        not isinstance(r, KopilkaError) or r.code == "idempotency_in_progress" for r in results
    )
    assert rows(container, club_payments) == 1
    same = _race(4, lambda i: container.clubs.join(m.actor, member, "open"))
    assert all(not isinstance(r, KopilkaError) for r in same)
    assert rows(container, club_memberships) == 3
    assert container.ledger.balance(m.actor, member).available == 400  # 300 + 100, once each
    with container.engine.connect() as conn:
        uses = conn.execute(sa.select(club_invitations.c.uses_left)).scalar_one()
    assert uses == 0


def test_nothing_is_written_by_a_refused_request(container: Container, m: Merchant) -> None:
    member = enrol(container, m)
    before = [rows(container, t) for t in (club_memberships, club_payments, club_invitations)]
    for call in (
        lambda: container.clubs.join(m.actor, member, "vip", "WRONG"),
        lambda: pay(container, m, member, "p-1", amount=1),
        lambda: container.clubs.invite(m.actor, "vip", expires_at=START - timedelta(days=1)),
        lambda: container.clubs.cancel(m.actor, member, "plus"),
    ):
        with pytest.raises(KopilkaError):
            call()
    after = [rows(container, t) for t in (club_memberships, club_payments, club_invitations)]
    assert after == before


def test_an_actor_of_another_tenant_sees_no_clubs(container: Container, m: Merchant) -> None:
    other = make_merchant(container, "Rival Two")
    assert container.clubs.list_clubs(other.actor) == []
    with pytest.raises(NotFound):
        container.clubs.report(other.actor, "plus")
    member = enrol(container, m)
    with pytest.raises(NotFound):
        container.clubs.list_member(Actor(other.tenant_id, "x"), member)
