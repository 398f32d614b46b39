"""A member merge keeps the stamp cards and the clubs of the duplicate profile, on both
databases: cards and history change hands or are combined, refunds of the duplicate's old
receipts still find the stamps, memberships keep the better standing and the paid time,
the welcome points stay once-only, and another tenant's rows are untouched."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.mechanics.clubs import club_memberships, club_payments
from kopilka.adapters.db.mechanics.stamps import stamp_balances, stamp_movements
from kopilka.bootstrap import Container
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

CARD: dict[str, Any] = {
    "id": "coffee",
    "name": {"ru": "Кофейная карта", "en": "Coffee card"},
    "lines": {"category": "drinks/coffee"},
    "stamps": 6,
    "reward": {"free_item": {}},
    "expires_days": 30,
}
FEE = 29900
PROGRAM: dict[str, Any] = {
    "type": "combined",
    "redemption": {"point_value": 100},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
    "stamp_cards": [CARD],
    "clubs": [
        {"code": "open", "name": "Open", "join": "open", "welcome_points": 100},
        {
            "code": "plus",
            "name": {"ru": "Плюс", "en": "Plus"},
            "join": "open",
            "fee": {"amount": FEE, "period": "month", "grace_days": 7},
        },
    ],
}


def setup(c: Container, name: str = "Coffee One") -> Merchant:
    """A merchant with the program, and the merge hooks registered (once: the lead
    registers them in bootstrap)."""
    for hook in (c.stamps.member_hook, c.clubs.member_hook):
        if hook not in c.members.hooks:
            c.members.hooks.append(hook)
    m = make_merchant(c, name)
    c.programs.publish(m.actor, "main", PROGRAM)
    return m


def enrol(c: Container, m: Merchant) -> uuid.UUID:
    return c.members.enroll(m.actor, {}).id


def coffees(c: Container, m: Merchant, member: uuid.UUID, qty: int, number: str) -> Any:
    line = LineInput("LATTE", Decimal(qty), 30000, category="drinks/coffee")
    return c.purchases.confirm(
        m.actor, ReceiptInput(lines=(line,), member=MemberRef(id=member), outlet="OUT-1"), number
    )


def card(c: Container, m: Merchant, member: uuid.UUID) -> dict[str, Any]:
    found: dict[str, Any] = next(
        x for x in c.stamps.member_stamps(m.actor, member)["cards"] if x["card"] == "coffee"
    )
    return found


def rows_of(c: Container, table: sa.Table, member: uuid.UUID) -> int:
    with c.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.member_id == member)
            ).scalar_one()
        )


# ---- stamps ----------------------------------------------------------------------------
def test_a_card_only_the_duplicate_has_moves_with_its_history(container: Container) -> None:
    c = container
    m = setup(c)
    other = setup(c, "Other shop")
    survivor, duplicate = enrol(c, m), enrol(c, m)
    stranger = enrol(c, other)
    coffees(c, m, duplicate, 4, "D1")
    coffees(c, other, stranger, 2, "X1")

    c.members.merge(m.actor, survivor, duplicate)

    view = card(c, m, survivor)
    assert (view["balance"], view["stamps_earned"], view["to_go"]) == (4, 4, 2)
    assert view["expires_at"] is not None
    history = c.stamps.member_stamps(m.actor, survivor)["history"]
    assert [h["kind"] for h in history] == ["purchase"]
    assert rows_of(c, stamp_balances, duplicate) == rows_of(c, stamp_movements, duplicate) == 0
    assert card(c, other, stranger)["balance"] == 2  # another tenant's card untouched
    assert rows_of(c, stamp_movements, stranger) == 1


def test_cards_of_both_profiles_are_combined_and_refunds_still_find_the_stamps(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    coffees(c, m, survivor, 3, "S1")
    clock.advance(days=2)
    bought = coffees(c, m, duplicate, 4, "D1")

    c.members.merge(m.actor, survivor, duplicate)

    view = card(c, m, survivor)
    assert (view["balance"], view["stamps_earned"], view["full"]) == (7, 7, True)
    assert view["rewards_waiting"] == 1
    # The later expiry is kept: the duplicate's stamps were the most recent.
    assert view["last_stamp_at"] == clock.now().isoformat()
    history = c.stamps.member_stamps(m.actor, survivor)["history"]
    assert [h["kind"] for h in history] == ["merge", "purchase", "purchase"]
    merge = history[0]
    assert (merge["stamps"], merge["balance_after"], merge["details"]["stamps_moved"]) == (4, 7, 4)
    assert "перенесено штампов — 4" in merge["description"]["ru"]
    assert "4 stamps moved" in merge["description"]["en"]
    with c.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(stamp_balances)
                .where(stamp_balances.c.tenant_id == m.tenant_id)
            ).scalar_one()
            == 1
        )

    # Refunding the duplicate's old receipt takes its stamps off the survivor's card.
    back = c.purchases.refund(
        m.actor, uuid.UUID(bought["receipt"]["id"]), "RF-1", [(0, Decimal(4))]
    )
    assert back["stamps"][0]["stamps_removed"] == 4
    assert card(c, m, survivor)["balance"] == 3
    assert rows_of(c, stamp_balances, duplicate) == 0


def test_debts_net_out_and_expiries_of_the_same_moment_do_not_clash(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    coffees(c, m, survivor, 2, "S1")
    coffees(c, m, duplicate, 2, "D1")
    clock.advance(days=40)
    assert c.stamps.expire_due(clock.now()) == 2  # both write "expiry:<same moment>"
    c.stamps.adjust(m.actor, duplicate, "coffee", 6, "test")
    c.stamps.adjust(m.actor, survivor, "coffee", 5, "test")

    c.members.merge(m.actor, survivor, duplicate)

    view = card(c, m, survivor)
    assert (view["balance"], view["debt"]) == (11, 0)
    keys = [h["kind"] for h in c.stamps.member_stamps(m.actor, survivor, limit=100)["history"]]
    assert keys.count("expiry") == 2
    assert keys[0] == "merge"


def test_a_debt_is_still_owed_after_the_merge(container: Container) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    six = coffees(c, m, duplicate, 6, "D1")
    assert coffees(c, m, duplicate, 1, "D2")["stamps"][0]["rewards"] == 1  # the free one
    # The six paid coffees come back: their stamps were spent on the free one, a debt.
    c.purchases.refund(m.actor, uuid.UUID(six["receipt"]["id"]), "RF", [(0, Decimal(6))])
    assert (card(c, m, duplicate)["balance"], card(c, m, duplicate)["debt"]) == (0, 6)
    c.stamps.adjust(m.actor, survivor, "coffee", 2, "test")

    c.members.merge(m.actor, survivor, duplicate)

    view = card(c, m, survivor)
    assert (view["balance"], view["debt"], view["to_go"]) == (0, 4, 10)
    # A merge cannot wipe a debt: the next stamps pay it first.
    assert coffees(c, m, survivor, 5, "S1")["stamps"][0]["balance_after"] == 1


# ---- clubs -----------------------------------------------------------------------------
def test_a_club_only_the_duplicate_is_in_moves_and_its_welcome_stays_once_only(
    container: Container,
) -> None:
    c = container
    m = setup(c)
    other = setup(c, "Other shop")
    survivor, duplicate = enrol(c, m), enrol(c, m)
    stranger = enrol(c, other)
    c.clubs.join(m.actor, duplicate, "open")
    c.clubs.join(other.actor, stranger, "open")
    assert c.ledger.balance(m.actor, duplicate).available == 100

    c.members.merge(m.actor, survivor, duplicate)

    assert {v.club: v.status for v in c.clubs.list_member(m.actor, survivor)} == {"open": "active"}
    assert c.ledger.balance(m.actor, survivor).available == 100
    assert rows_of(c, club_memberships, duplicate) == rows_of(c, mechanic_awards, duplicate) == 0
    # Leaving and joining again on the survivor gives no second welcome.
    c.clubs.leave(m.actor, survivor, "open")
    c.clubs.join(m.actor, survivor, "open")
    assert c.ledger.balance(m.actor, survivor).available == 100
    trail = [e for e in c.members.audit_trail(m.actor, survivor) if e["action"] == "club.merge"]
    assert [e["details"]["club"] for e in trail] == ["open"]
    # Another tenant's membership is untouched.
    assert rows_of(c, club_memberships, stranger) == 1
    assert [v.status for v in c.clubs.list_member(other.actor, stranger)] == ["active"]


def test_both_in_a_paid_club_keep_the_better_standing_earliest_join_and_fees(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    c.clubs.join(m.actor, survivor, "plus")  # unpaid
    first_join = clock.now()
    clock.advance(days=3)
    paid = c.clubs.record_payment(
        m.actor, duplicate, "plus", payment_id="pay-1", amount=FEE, paid_at=clock.now()
    )
    assert paid.membership.status == "active"

    c.members.merge(m.actor, survivor, duplicate)

    [view] = [v for v in c.clubs.list_member(m.actor, survivor) if v.club == "plus"]
    assert (view.status, view.benefits) == ("active", True)
    assert view.joined_at == first_join
    assert view.paid_until == paid.period_end
    assert rows_of(c, club_memberships, duplicate) == rows_of(c, club_payments, duplicate) == 0
    report = c.clubs.report(m.actor, "plus")
    assert [(line.member_id, line.fees_paid) for line in report.members] == [(survivor, FEE)]
    # The next payment on the survivor continues the paid period moved over.
    renewed = c.clubs.record_payment(
        m.actor, survivor, "plus", payment_id="pay-2", amount=FEE, paid_at=clock.now()
    )
    assert renewed.period_start == paid.period_end


def test_paid_time_running_on_the_other_profile_is_kept(
    container: Container, clock: FakeClock
) -> None:
    c = container
    m = setup(c)
    survivor, duplicate = enrol(c, m), enrol(c, m)
    c.clubs.record_payment(
        m.actor, survivor, "plus", payment_id="s-1", amount=FEE, paid_at=clock.now()
    )
    clock.advance(days=10)
    later = c.clubs.record_payment(
        m.actor, duplicate, "plus", payment_id="d-1", amount=FEE, paid_at=clock.now()
    )
    c.clubs.cancel(m.actor, duplicate, "plus")  # still runs to its paid end
    c.members.merge(m.actor, survivor, duplicate)
    [view] = [v for v in c.clubs.list_member(m.actor, survivor) if v.club == "plus"]
    assert view.status == "active"  # the survivor's renewing membership wins
    assert view.paid_until == later.period_end  # with the later paid end
    clock.advance(days=25)  # past the survivor's own paid month, within the duplicate's
    assert c.clubs.check(m.actor, survivor, "plus").status == "active"
