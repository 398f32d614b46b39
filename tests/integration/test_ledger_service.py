"""Ledger use cases on both databases: pending points, expiry, burn order, refunds,
reversals with each shortfall policy, holds, blocked members, idempotent replays."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.tables import holds, ledger_transactions, lot_movements, lots, postings
from kopilka.bootstrap import Container
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    InsufficientPoints,
    ValidationFailed,
)
from kopilka.services.ledger import ShortfallPolicy
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

# FakeClock starts at 2026-01-15 09:00 UTC, which is noon in Moscow (the tenant's zone).
START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


# ---- helpers -----------------------------------------------------------------------------
def enroll(c: Container, m: Merchant, phone: str = "+79161234567") -> uuid.UUID:
    return c.members.enroll(m.actor, {"phone": phone}).id


def accounts_of(c: Container, member: uuid.UUID) -> dict[str, int]:
    """Cached member balances by account kind."""
    with c.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT kind, balance FROM accounts WHERE member_id = :m"),
            {"m": member.hex if c.engine.dialect.name == "sqlite" else member},
        ).all()
    return {r.kind: int(r.balance) for r in rows}


def lot_of(c: Container, txn_id: uuid.UUID) -> Any:
    """The lot a transaction created."""
    with c.engine.connect() as conn:
        return conn.execute(sa.select(lots).where(lots.c.source_transaction_id == txn_id)).one()


def tenant_total(c: Container, m: Merchant, kind: str) -> int:
    """A tenant account's balance: the sum of its postings."""
    with c.engine.connect() as conn:
        value = conn.execute(
            sa.text(
                "SELECT COALESCE(SUM(p.amount), 0) FROM postings p JOIN accounts a "
                "ON a.id = p.account_id WHERE a.owner = 'tenant' AND a.kind = :k "
                "AND a.tenant_id = :t"
            ),
            {"k": kind, "t": m.tenant_id.hex if c.engine.dialect.name == "sqlite" else m.tenant_id},
        ).scalar_one()
    return int(value)


def row_counts(c: Container) -> dict[str, int]:
    with c.engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (ledger_transactions, postings, lots, lot_movements, holds)
        }


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def only_txn(result: Any) -> uuid.UUID:
    assert len(result.transactions) == 1
    txn_id: uuid.UUID = result.transactions[0].id
    return txn_id


# ---- pending points ----------------------------------------------------------------------
def test_pending_points_become_available_only_when_the_clock_passes_the_period(
    container: Container, clock: FakeClock
) -> None:
    m = make_merchant(container, "Pending", pending_days=14)
    member = enroll(container, m)
    result = container.ledger.accrue(m.actor, member, 100, reason="Покупка")
    assert (result.balance.available, result.balance.pending) == (0, 100)  # type: ignore[union-attr]
    lot = lot_of(container, only_txn(result))
    assert lot.status == "pending"
    assert lot.available_at == START + timedelta(days=14)
    assert result.balance.next_pending[0].on == date(2026, 1, 29)  # type: ignore[union-attr]
    assert "станут доступны 2026-01-29" in result.transactions[0].description["ru"]

    clock.advance(days=14, microseconds=-1)
    view = container.ledger.balance(m.actor, member)
    assert (view.available, view.pending) == (0, 100)
    assert container.jobs.run().transactions == 0
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(m.actor, member, 1)
    assert accounts_of(container, member) == {"wallet": 0, "pending": 100, "hold": 0}

    clock.advance(microseconds=1)
    # The projection counts the lot at once; the cached balances move when the job runs.
    view = container.ledger.balance(m.actor, member)
    assert (view.available, view.pending) == (100, 0)
    assert accounts_of(container, member)["wallet"] == 0
    assert_verified(container)
    report = container.jobs.run()
    assert (report.members_settled, report.transactions) == (1, 1)
    assert accounts_of(container, member) == {"wallet": 100, "pending": 0, "hold": 0}
    assert lot_of(container, lot.source_transaction_id).status == "active"
    assert container.ledger.balance(m.actor, member).model_dump(exclude={"as_of"}) == (
        view.model_dump(exclude={"as_of"})
    )
    assert_verified(container)


def test_first_spend_after_the_pending_period_settles_without_the_job(
    container: Container, clock: FakeClock
) -> None:
    m = make_merchant(container, "Pending", pending_days=7)
    member = enroll(container, m)
    container.ledger.accrue(m.actor, member, 100)
    clock.advance(days=7)
    result = container.ledger.redeem(m.actor, member, 60)
    assert [t.kind for t in result.transactions] == ["redemption"]
    assert result.balance.available == 40  # type: ignore[union-attr]
    assert accounts_of(container, member) == {"wallet": 40, "pending": 0, "hold": 0}
    assert container.jobs.run().transactions == 0
    assert_verified(container)


def test_per_call_pending_days_and_available_at(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 10)  # tenant default: no pending period
    container.ledger.accrue(merchant.actor, member, 20, pending_days=3)
    container.ledger.accrue(merchant.actor, member, 30, available_at=START + timedelta(hours=5))
    view = container.ledger.balance(merchant.actor, member)
    assert (view.available, view.pending) == (10, 50)
    clock.advance(hours=5)
    assert container.ledger.balance(merchant.actor, member).available == 40
    clock.advance(days=3)
    assert container.ledger.balance(merchant.actor, member).available == 60
    container.jobs.run()
    assert accounts_of(container, member) == {"wallet": 60, "pending": 0, "hold": 0}
    assert_verified(container)


def test_lot_dates_are_checked(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    with pytest.raises(BusinessRuleViolation) as err:
        container.ledger.accrue(merchant.actor, member, 10, expires_at=START)
    assert err.value.code == "invalid_lot_dates"
    with pytest.raises(BusinessRuleViolation):
        container.ledger.accrue(
            merchant.actor,
            member,
            10,
            available_at=START + timedelta(2),
            expires_at=START + timedelta(1),
        )
    for bad in (0, -5, 10**12 + 1):
        with pytest.raises(BusinessRuleViolation):
            container.ledger.accrue(merchant.actor, member, bad)
    assert row_counts(container)["ledger_transactions"] == 0


# ---- expiry ------------------------------------------------------------------------------
def test_expiry_burns_what_is_left_of_a_lot(container: Container, clock: FakeClock) -> None:
    m = make_merchant(container, "Rolling", expiry_policy={"kind": "rolling", "days": 30})
    member = enroll(container, m)
    accrual = only_txn(container.ledger.accrue(m.actor, member, 100))
    # Earned at noon on 15 January in Moscow: usable through 14 February, Moscow time.
    lot = lot_of(container, accrual)
    assert lot.expires_at == datetime(2026, 2, 14, 21, 0, tzinfo=UTC)
    container.ledger.redeem(m.actor, member, 30)

    clock.set(datetime(2026, 2, 14, 20, 59, 59, tzinfo=UTC))
    view = container.ledger.balance(m.actor, member)
    assert view.available == 70
    assert [(e.on, e.amount) for e in view.expiring_soon] == [(date(2026, 2, 14), 70)]
    assert container.jobs.run().transactions == 0

    clock.set(datetime(2026, 2, 14, 21, 0, tzinfo=UTC))
    assert container.ledger.balance(m.actor, member).available == 0  # projected
    assert accounts_of(container, member)["wallet"] == 70  # cached, until the job runs
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(m.actor, member, 1)
    report = container.jobs.run()
    assert report.transactions == 1
    assert accounts_of(container, member)["wallet"] == 0
    expired = lot_of(container, accrual)
    assert (expired.status, expired.remaining) == ("expired", 0)
    assert tenant_total(container, m, "expired") == 70
    assert tenant_total(container, m, "redeemed") == 30
    assert tenant_total(container, m, "issued") == -100
    history = container.ledger.history(m.actor, member, None, 10)
    assert [t.kind for t in history] == ["expiry", "redemption", "accrual"]
    assert history[0].amount == 70
    assert history[0].description["en"] == "70 points expired"
    assert_verified(container)


def test_pending_lot_that_expires_before_activation_expires_from_pending(
    container: Container, clock: FakeClock
) -> None:
    m = make_merchant(
        container, "Short", pending_days=10, expiry_policy={"kind": "rolling", "days": 5}
    )
    member = enroll(container, m)
    container.ledger.accrue(m.actor, member, 100)
    clock.advance(days=30)
    view = container.ledger.balance(m.actor, member)
    assert (view.available, view.pending) == (0, 0)
    report = container.jobs.run()
    assert report.transactions == 1
    assert accounts_of(container, member) == {"wallet": 0, "pending": 0, "hold": 0}
    history = container.ledger.history(m.actor, member, None, 10)
    assert [t.kind for t in history] == ["expiry", "accrual"]
    assert_verified(container)


def test_calendar_expiry_in_the_tenant_time_zone(container: Container, clock: FakeClock) -> None:
    m = make_merchant(container, "Monthly", expiry_policy={"kind": "calendar", "period": "month"})
    member = enroll(container, m)
    # 22:30 UTC on 31 January is already February in Moscow: expires at the end of February.
    clock.set(datetime(2026, 1, 31, 22, 30, tzinfo=UTC))
    lot = lot_of(container, only_txn(container.ledger.accrue(m.actor, member, 10)))
    assert lot.expires_at == datetime(2026, 2, 28, 21, 0, tzinfo=UTC)


# ---- burn order and refunds --------------------------------------------------------------
def _three_lots(c: Container, m: Merchant, member: uuid.UUID) -> tuple[uuid.UUID, ...]:
    never = only_txn(c.ledger.accrue(m.actor, member, 100))
    late = only_txn(c.ledger.accrue(m.actor, member, 100, expires_at=START + timedelta(days=60)))
    soon = only_txn(c.ledger.accrue(m.actor, member, 100, expires_at=START + timedelta(days=10)))
    return never, late, soon


def _remaining(c: Container, *txns: uuid.UUID) -> list[int]:
    return [int(lot_of(c, t).remaining) for t in txns]


def test_spending_burns_soonest_expiring_first(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    never, late, soon = _three_lots(container, merchant, member)
    container.ledger.redeem(merchant.actor, member, 150)
    assert _remaining(container, soon, late, never) == [0, 50, 100]
    container.ledger.redeem(merchant.actor, member, 60)
    assert _remaining(container, soon, late, never) == [0, 0, 90]
    view = container.ledger.balance(merchant.actor, member)
    assert view.available == 90
    assert view.expiring_soon == []
    assert_verified(container)


def test_refund_restores_the_lots_the_spend_came_from(
    container: Container, merchant: Merchant
) -> None:
    member = enroll(container, merchant)
    never, late, soon = _three_lots(container, merchant, member)
    spend = only_txn(container.ledger.redeem(merchant.actor, member, 150))
    container.ledger.redeem(merchant.actor, member, 20)  # another spend, from `late`
    assert _remaining(container, soon, late, never) == [0, 30, 100]

    # Part of the refund: the latest-expiring lot is refilled first, with what it gave.
    refund = container.ledger.reverse(merchant.actor, spend, 70, reason="Возврат")
    assert refund.transactions[0].kind == "refund"
    assert refund.transactions[0].reverses_id == spend
    assert _remaining(container, soon, late, never) == [20, 80, 100]
    # The rest of it.
    container.ledger.reverse(merchant.actor, spend)
    assert _remaining(container, soon, late, never) == [100, 80, 100]
    assert container.ledger.balance(merchant.actor, member).available == 280
    with pytest.raises(BusinessRuleViolation) as err:
        container.ledger.reverse(merchant.actor, spend, 1)
    assert err.value.code == "reversal_exceeds_original"
    assert err.value.extra == {"reversible": 0}
    assert tenant_total(container, merchant, "redeemed") == 20
    assert_verified(container)


def test_partial_refunds_never_exceed_what_was_spent(
    container: Container, merchant: Merchant
) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 500)
    spend = only_txn(container.ledger.redeem(merchant.actor, member, 100))
    container.ledger.reverse(merchant.actor, spend, 60)
    before = row_counts(container)
    for too_much in (41, 100, 0, -1):
        with pytest.raises(BusinessRuleViolation) as err:
            container.ledger.reverse(merchant.actor, spend, too_much)
        assert err.value.code == "reversal_exceeds_original"
        assert err.value.extra["reversible"] == 40
    assert row_counts(container) == before
    container.ledger.reverse(merchant.actor, spend, 40)
    for again in (1, None):
        with pytest.raises(BusinessRuleViolation):
            container.ledger.reverse(merchant.actor, spend, again)
    assert accounts_of(container, member)["wallet"] == 500
    assert tenant_total(container, merchant, "redeemed") == 0
    assert_verified(container)


def test_refund_after_the_lot_expired_makes_a_new_lot_with_the_original_dates(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, merchant)
    short = only_txn(
        container.ledger.accrue(merchant.actor, member, 100, expires_at=START + timedelta(days=10))
    )
    never = only_txn(container.ledger.accrue(merchant.actor, member, 100))
    spend = only_txn(container.ledger.redeem(merchant.actor, member, 60))
    assert _remaining(container, short, never) == [40, 100]
    clock.advance(days=11)
    container.jobs.run()  # the 40 left in the short lot expire
    assert lot_of(container, short).status == "expired"
    assert accounts_of(container, member)["wallet"] == 100

    refund = only_txn(container.ledger.reverse(merchant.actor, spend, 25))
    replacement = lot_of(container, refund)
    original = lot_of(container, short)
    assert (replacement.amount, replacement.remaining, replacement.status) == (25, 25, "active")
    assert replacement.expires_at == original.expires_at
    assert replacement.available_at == original.available_at
    assert original.remaining == 0  # the expired lot itself is never reopened
    # The original expiry holds: the refunded points are already past it.
    assert container.ledger.balance(merchant.actor, member).available == 100
    assert_verified(container)
    container.jobs.run()
    assert accounts_of(container, member)["wallet"] == 100
    assert lot_of(container, refund).status == "expired"
    assert tenant_total(container, merchant, "expired") == 65
    assert_verified(container)


def test_refund_to_a_lot_whose_expiry_passed_while_spent_out(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, merchant)
    short = only_txn(
        container.ledger.accrue(merchant.actor, member, 100, expires_at=START + timedelta(days=10))
    )
    container.ledger.accrue(merchant.actor, member, 100)
    spend = only_txn(container.ledger.redeem(merchant.actor, member, 100))
    clock.advance(days=11)
    container.jobs.run()  # nothing was left in the short lot: nothing expires
    assert lot_of(container, short).status == "active"
    container.ledger.reverse(merchant.actor, spend)
    assert lot_of(container, short).remaining == 100
    assert container.ledger.balance(merchant.actor, member).available == 100
    container.jobs.run()
    assert (lot_of(container, short).status, accounts_of(container, member)["wallet"]) == (
        "expired",
        100,
    )
    assert_verified(container)


def test_refunds_across_an_expired_lot_keep_to_what_each_lot_gave(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    """Repeated partial refunds must not give one lot more than the spend took from it."""
    member = enroll(container, merchant)
    soon_at, later_at = START + timedelta(days=5), START + timedelta(days=10)
    soon = only_txn(container.ledger.accrue(merchant.actor, member, 100, expires_at=soon_at))
    later = only_txn(container.ledger.accrue(merchant.actor, member, 150, expires_at=later_at))
    container.ledger.accrue(merchant.actor, member, 100)
    spend = only_txn(container.ledger.redeem(merchant.actor, member, 200))  # 100 + 100
    assert _remaining(container, soon, later) == [0, 50]
    clock.advance(days=11)
    container.jobs.run()  # `later` expires with 50 left; `soon` was spent out
    assert [lot_of(container, t).status for t in (soon, later)] == ["active", "expired"]

    refunds = [only_txn(container.ledger.reverse(merchant.actor, spend, 50)) for _ in range(4)]
    # `later` gave 100: it gets 100 back, in new lots with its dates. `soon` gets the other
    # 100: the third refund refills it in place; the fourth first settles it (those 50 are
    # past its expiry) and so puts its 50 in a new lot with its dates.
    with container.engine.connect() as conn:
        rows = conn.execute(
            sa.select(lots.c.expires_at, sa.func.sum(lots.c.amount).label("total"))
            .where(lots.c.source_transaction_id.in_(refunds))
            .group_by(lots.c.expires_at)
        ).all()
    assert {r.expires_at: int(r.total) for r in rows} == {later_at: 100, soon_at: 50}
    assert (lot_of(container, soon).status, lot_of(container, soon).remaining) == ("expired", 0)
    assert container.ledger.balance(merchant.actor, member).available == 100
    assert_verified(container)
    container.jobs.run()
    assert accounts_of(container, member)["wallet"] == 100
    assert_verified(container)


def test_refund_of_a_capture_goes_back_to_the_held_lots(
    container: Container, merchant: Merchant
) -> None:
    member = enroll(container, merchant)
    never, late, soon = _three_lots(container, merchant, member)
    hold = container.ledger.hold(merchant.actor, member, 150).hold
    assert hold is not None
    assert _remaining(container, soon, late, never) == [0, 50, 100]
    captured = container.ledger.capture(merchant.actor, hold.id, 120)
    capture_txn = captured.transactions[0].id
    # The 30 not captured went back to the latest-expiring lot the hold drew on.
    assert _remaining(container, soon, late, never) == [0, 80, 100]
    container.ledger.reverse(merchant.actor, capture_txn, 100)
    assert _remaining(container, soon, late, never) == [80, 100, 100]
    container.ledger.reverse(merchant.actor, capture_txn)
    assert _remaining(container, soon, late, never) == [100, 100, 100]
    with pytest.raises(BusinessRuleViolation):
        container.ledger.reverse(merchant.actor, capture_txn, 1)
    with pytest.raises(BusinessRuleViolation) as err:
        container.ledger.reverse(merchant.actor, captured.transactions[1].id)  # the release
    assert err.value.code == "not_reversible"
    assert_verified(container)


def test_refund_of_a_debit_adjustment(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 100)
    debit = only_txn(container.ledger.adjust(merchant.actor, member, -40, reason="Ошибка"))
    assert accounts_of(container, member)["wallet"] == 60
    assert tenant_total(container, merchant, "adjustment") == 40
    container.ledger.reverse(merchant.actor, debit)
    assert accounts_of(container, member)["wallet"] == 100
    assert tenant_total(container, merchant, "adjustment") == 0
    with pytest.raises(BusinessRuleViolation) as err:
        container.ledger.adjust(merchant.actor, member, 10, reason="  ")
    assert err.value.code == "reason_required"
    assert_verified(container)


# ---- reversals of credits ----------------------------------------------------------------
def _spent_accrual(c: Container, m: Merchant) -> tuple[uuid.UUID, uuid.UUID]:
    """An accrual of 100 of which 80 were spent, beside another lot of 50."""
    member = enroll(c, m)
    accrual = only_txn(c.ledger.accrue(m.actor, member, 100, expires_at=START + timedelta(days=5)))
    c.ledger.accrue(m.actor, member, 50)
    c.ledger.redeem(m.actor, member, 80)  # all from the accrual's lot (sooner expiry)
    return member, accrual


def test_reversal_of_an_unspent_accrual(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    accrual = only_txn(container.ledger.accrue(merchant.actor, member, 100))
    result = container.ledger.reverse(merchant.actor, accrual, 30)
    assert (result.transactions[0].kind, result.transactions[0].amount) == ("reversal", 30)
    assert lot_of(container, accrual).remaining == 70
    container.ledger.reverse(merchant.actor, accrual)
    assert lot_of(container, accrual).remaining == 0
    assert accounts_of(container, member)["wallet"] == 0
    assert tenant_total(container, merchant, "issued") == 0
    with pytest.raises(BusinessRuleViolation):
        container.ledger.reverse(merchant.actor, accrual, 1)
    assert_verified(container)


def test_reversal_of_a_pending_accrual_takes_from_pending(container: Container) -> None:
    m = make_merchant(container, "Pending", pending_days=14)
    member = enroll(container, m)
    accrual = only_txn(container.ledger.accrue(m.actor, member, 100))
    result = container.ledger.reverse(m.actor, accrual, 40)
    kinds = {p.account_kind: p.amount for p in result.transactions[0].postings}
    assert kinds == {"pending": -40, "issued": 40}
    assert accounts_of(container, member) == {"wallet": 0, "pending": 60, "hold": 0}
    assert_verified(container)


def test_reversal_shortfall_fail_refuses_and_writes_nothing(
    container: Container, merchant: Merchant
) -> None:
    member, accrual = _spent_accrual(container, merchant)
    before = row_counts(container)
    with pytest.raises(InsufficientPoints) as err:
        container.ledger.reverse(merchant.actor, accrual, on_shortfall=ShortfallPolicy.FAIL)
    assert err.value.code == "reversal_shortfall"
    assert err.value.extra == {"shortfall": 30}  # 20 left in its lot + 50 elsewhere
    assert row_counts(container) == before
    assert accounts_of(container, member)["wallet"] == 70
    # What can be covered still goes through under "fail".
    container.ledger.reverse(merchant.actor, accrual, 70, on_shortfall=ShortfallPolicy.FAIL)
    assert accounts_of(container, member)["wallet"] == 0
    assert_verified(container)


def test_reversal_shortfall_cap_takes_what_is_there(
    container: Container, merchant: Merchant
) -> None:
    member, accrual = _spent_accrual(container, merchant)
    result = container.ledger.reverse(merchant.actor, accrual, on_shortfall=ShortfallPolicy.CAP)
    assert result.shortfall == 30
    txn = result.transactions[0]
    assert (txn.amount, txn.shortfall) == (70, 30)
    assert accounts_of(container, member)["wallet"] == 0
    assert tenant_total(container, merchant, "issued") == -80
    # The 30 not taken may still be reversed later, but nothing is there to take now.
    with pytest.raises(InsufficientPoints):
        container.ledger.reverse(merchant.actor, accrual, on_shortfall=ShortfallPolicy.CAP)
    assert_verified(container)


def test_reversal_shortfall_debt_needs_the_tenant_to_allow_it(
    container: Container, merchant: Merchant
) -> None:
    _, accrual = _spent_accrual(container, merchant)
    before = row_counts(container)
    with pytest.raises(BusinessRuleViolation) as err:
        container.ledger.reverse(merchant.actor, accrual, on_shortfall=ShortfallPolicy.DEBT)
    assert err.value.code == "debt_not_allowed"
    assert err.value.extra == {"shortfall": 30}
    assert row_counts(container) == before
    assert_verified(container)


def test_reversal_shortfall_debt_and_later_credits_pay_it_off(
    container: Container, clock: FakeClock
) -> None:
    m = make_merchant(container, "Lender", allow_debt=True)
    member, accrual = _spent_accrual(container, m)
    result = container.ledger.reverse(m.actor, accrual, on_shortfall=ShortfallPolicy.DEBT)
    assert (result.transactions[0].amount, result.shortfall) == (100, 0)
    assert accounts_of(container, member)["wallet"] == -30
    view = container.ledger.balance(m.actor, member)
    assert (view.available, view.debt) == (0, 30)
    assert_verified(container)
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(m.actor, member, 1)

    # A credit pays the debt off first; the lot keeps the rest.
    credit = only_txn(container.ledger.accrue(m.actor, member, 20))
    assert lot_of(container, credit).remaining == 0
    assert accounts_of(container, member)["wallet"] == -10
    credit = only_txn(container.ledger.accrue(m.actor, member, 25))
    assert lot_of(container, credit).remaining == 15
    view = container.ledger.balance(m.actor, member)
    assert (view.available, view.debt) == (15, 0)
    assert_verified(container)


def test_debt_is_paid_by_an_activation_too(container: Container, clock: FakeClock) -> None:
    m = make_merchant(container, "Lender", allow_debt=True)
    member, accrual = _spent_accrual(container, m)
    container.ledger.reverse(m.actor, accrual, on_shortfall=ShortfallPolicy.DEBT)
    pending = only_txn(container.ledger.accrue(m.actor, member, 50, pending_days=3))
    assert accounts_of(container, member) == {"wallet": -30, "pending": 50, "hold": 0}
    clock.advance(days=3)
    container.jobs.run()
    assert accounts_of(container, member) == {"wallet": 20, "pending": 0, "hold": 0}
    assert lot_of(container, pending).remaining == 20
    view = container.ledger.balance(m.actor, member)
    assert (view.available, view.debt) == (20, 0)
    assert_verified(container)


def test_balance_projection_counts_a_due_activation_against_debt(
    container: Container, clock: FakeClock
) -> None:
    """Before the job runs, the projection must already net a due activation with the debt."""
    m = make_merchant(container, "Lender", allow_debt=True)
    member, accrual = _spent_accrual(container, m)
    container.ledger.reverse(m.actor, accrual, on_shortfall=ShortfallPolicy.DEBT)
    container.ledger.accrue(m.actor, member, 50, pending_days=3)
    container.ledger.accrue(m.actor, member, 10, pending_days=5)
    clock.advance(days=3)
    projected = container.ledger.balance(m.actor, member)
    container.jobs.run()
    settled = container.ledger.balance(m.actor, member)
    assert (projected.available, projected.pending, projected.debt) == (20, 10, 0)
    assert projected.model_dump(exclude={"as_of"}) == settled.model_dump(exclude={"as_of"})


# ---- holds -------------------------------------------------------------------------------
def test_hold_and_full_capture(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 150)
    held = container.ledger.hold(merchant.actor, member, 100, reference="order-1")
    assert held.hold is not None
    assert (held.hold.status, held.hold.amount, held.hold.captured) == ("active", 100, 0)
    assert held.hold.expires_at == START + timedelta(seconds=900)
    view = container.ledger.balance(merchant.actor, member)
    assert (view.available, view.held) == (50, 100)
    with pytest.raises(InsufficientPoints):
        container.ledger.redeem(merchant.actor, member, 51)

    captured = container.ledger.capture(merchant.actor, held.hold.id)
    assert [t.kind for t in captured.transactions] == ["capture"]
    assert captured.hold is not None
    assert (captured.hold.status, captured.hold.captured) == ("captured", 100)
    assert accounts_of(container, member) == {"wallet": 50, "pending": 0, "hold": 0}
    assert tenant_total(container, merchant, "redeemed") == 100
    assert container.ledger.get_hold(merchant.actor, held.hold.id).status == "captured"

    with pytest.raises(Conflict) as err:
        container.ledger.capture(merchant.actor, held.hold.id)
    assert err.value.code == "hold_captured"
    with pytest.raises(Conflict):
        container.ledger.release(merchant.actor, held.hold.id)
    assert_verified(container)


def test_partial_capture_releases_the_rest(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 150)
    hold = container.ledger.hold(merchant.actor, member, 100).hold
    assert hold is not None
    for bad in (0, 101, -1):
        with pytest.raises(BusinessRuleViolation) as err:
            container.ledger.capture(merchant.actor, hold.id, bad)
        assert err.value.code == "invalid_points"
    result = container.ledger.capture(merchant.actor, hold.id, 60)
    assert [(t.kind, t.amount) for t in result.transactions] == [("capture", 60), ("release", 40)]
    assert result.hold is not None
    assert (result.hold.status, result.hold.captured) == ("captured", 60)
    assert accounts_of(container, member) == {"wallet": 90, "pending": 0, "hold": 0}
    assert result.balance is not None
    assert (result.balance.available, result.balance.held) == (90, 0)
    assert tenant_total(container, merchant, "redeemed") == 60
    assert_verified(container)


def test_release_gives_the_points_back_to_their_lots(
    container: Container, merchant: Merchant
) -> None:
    member = enroll(container, merchant)
    never, late, soon = _three_lots(container, merchant, member)
    hold = container.ledger.hold(merchant.actor, member, 250).hold
    assert hold is not None
    assert _remaining(container, soon, late, never) == [0, 0, 50]
    released = container.ledger.release(merchant.actor, hold.id)
    assert released.hold is not None
    assert released.hold.status == "released"
    assert _remaining(container, soon, late, never) == [100, 100, 100]
    assert accounts_of(container, member) == {"wallet": 300, "pending": 0, "hold": 0}
    with pytest.raises(Conflict) as err:
        container.ledger.capture(merchant.actor, hold.id)
    assert err.value.code == "hold_released"
    assert_verified(container)


def test_stale_hold_is_released_by_the_job_after_its_ttl(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 100)
    hold = container.ledger.hold(merchant.actor, member, 70, ttl_seconds=60).hold
    keeper = container.ledger.hold(merchant.actor, member, 10, ttl_seconds=600).hold
    assert hold is not None
    assert keeper is not None
    clock.advance(seconds=59)
    assert container.jobs.run().holds_released == 0
    clock.advance(seconds=1)
    assert container.jobs.run().holds_released == 1
    assert container.ledger.get_hold(merchant.actor, hold.id).status == "expired"
    assert container.ledger.get_hold(merchant.actor, keeper.id).status == "active"
    assert accounts_of(container, member) == {"wallet": 90, "pending": 0, "hold": 10}
    history = container.ledger.history(merchant.actor, member, None, 1)
    assert history[0].kind == "release"
    assert history[0].actor == "job:scheduler"
    counts = row_counts(container)
    assert container.jobs.run().holds_released == 0
    assert row_counts(container) == counts
    with pytest.raises(Conflict) as err:
        container.ledger.capture(merchant.actor, hold.id)
    assert err.value.code == "hold_expired"
    assert_verified(container)


def test_hold_limits(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 100)
    with pytest.raises(InsufficientPoints):
        container.ledger.hold(merchant.actor, member, 101)
    for ttl in (0, 7 * 86400 + 1):
        with pytest.raises(BusinessRuleViolation) as err:
            container.ledger.hold(merchant.actor, member, 10, ttl_seconds=ttl)
        assert err.value.code == "invalid_ttl"
    assert row_counts(container)["holds"] == 0


# ---- blocked members ---------------------------------------------------------------------
def test_blocked_member_can_neither_earn_nor_spend(
    container: Container, merchant: Merchant
) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 100)
    container.members.set_blocked(merchant.actor, member, True, reason="fraud check")
    before = row_counts(container)
    attempts: list[Callable[[], object]] = [
        lambda: container.ledger.accrue(merchant.actor, member, 10),
        lambda: container.ledger.redeem(merchant.actor, member, 10),
        lambda: container.ledger.hold(merchant.actor, member, 10),
    ]
    for attempt in attempts:
        with pytest.raises(BusinessRuleViolation) as err:
            attempt()
        assert err.value.code == "member_blocked"
    assert row_counts(container) == before
    assert container.ledger.balance(merchant.actor, member).available == 100
    container.members.set_blocked(merchant.actor, member, False)
    container.ledger.redeem(merchant.actor, member, 10)
    assert accounts_of(container, member)["wallet"] == 90
    assert_verified(container)


# ---- idempotency -------------------------------------------------------------------------
def test_same_key_replays_the_first_answer(container: Container, merchant: Merchant) -> None:
    member = enroll(container, merchant)
    container.ledger.accrue(merchant.actor, member, 100)
    first = container.ledger.redeem(merchant.actor, member, 30, idempotency_key="till-1:42")
    counts = row_counts(container)
    again = container.ledger.redeem(merchant.actor, member, 30, idempotency_key="till-1:42")
    assert again == first
    assert row_counts(container) == counts
    assert accounts_of(container, member)["wallet"] == 70
    with pytest.raises(ValidationFailed) as err:
        container.ledger.redeem(merchant.actor, member, 31, idempotency_key="till-1:42")
    assert err.value.code == "idempotency_key_reused"
    assert_verified(container)
