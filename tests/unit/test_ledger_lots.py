"""Lots: burn order, allocation and the clock's due transitions (pure, no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.ledger.lots import (
    Lot,
    LotStatus,
    Take,
    allocate,
    burn_order,
    due_transitions,
)

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def lot(
    remaining: int,
    *,
    expires_in: float | None = None,
    available_in: float = -1,
    status: LotStatus = LotStatus.ACTIVE,
    amount: int | None = None,
    name: int = 0,
) -> Lot:
    """A lot expiring ``expires_in`` days from NOW (never when None)."""
    return Lot(
        id=uuid.UUID(int=name or uuid.uuid4().int),
        amount=amount if amount is not None else max(remaining, 1),
        remaining=remaining,
        status=status,
        available_at=NOW + timedelta(days=available_in),
        expires_at=None if expires_in is None else NOW + timedelta(days=expires_in),
    )


# ---- burn order ---------------------------------------------------------------------------
def test_burn_order_soonest_expiring_first_never_expiring_last() -> None:
    never = lot(10, expires_in=None, name=1)
    late = lot(10, expires_in=90, name=2)
    soon = lot(10, expires_in=3, name=3)
    middle = lot(10, expires_in=30, name=4)
    assert burn_order([never, late, soon, middle], NOW) == [soon, middle, late, never]


def test_burn_order_skips_unspendable_lots() -> None:
    spendable = lot(5, expires_in=10, name=1)
    empty = lot(0, expires_in=1, amount=5, name=2)
    pending = lot(5, expires_in=2, status=LotStatus.PENDING, available_in=1, name=3)
    expired_by_clock = lot(5, expires_in=0, name=4)  # expires exactly now: no longer valid
    expired = lot(5, expires_in=5, status=LotStatus.EXPIRED, name=5)
    closed = lot(5, expires_in=5, status=LotStatus.CLOSED, name=6)
    lots = [spendable, empty, pending, expired_by_clock, expired, closed]
    assert burn_order(lots, NOW) == [spendable]


def test_burn_order_ties_broken_by_availability_then_id() -> None:
    b = Lot(uuid.UUID(int=2), 5, 5, LotStatus.ACTIVE, NOW - timedelta(days=2), NOW + timedelta(1))
    a = Lot(uuid.UUID(int=1), 5, 5, LotStatus.ACTIVE, NOW - timedelta(days=1), NOW + timedelta(1))
    c = Lot(uuid.UUID(int=3), 5, 5, LotStatus.ACTIVE, NOW - timedelta(days=1), NOW + timedelta(1))
    assert burn_order([c, a, b], NOW) == [b, a, c]
    n2 = lot(5, expires_in=None, name=20)
    n1 = lot(5, expires_in=None, name=10)
    assert burn_order([n2, n1], NOW) == [n1, n2]


# ---- allocate -----------------------------------------------------------------------------
def test_allocate_takes_soonest_expiring_first_and_splits_the_last_lot() -> None:
    never = lot(100, expires_in=None, name=1)
    soon = lot(30, expires_in=2, name=2)
    later = lot(50, expires_in=20, name=3)
    takes, shortfall = allocate([never, later, soon], 60, NOW)
    assert takes == [Take(soon.id, 30), Take(later.id, 30)]
    assert shortfall == 0


def test_allocate_uses_never_expiring_lots_last() -> None:
    never = lot(100, expires_in=None, name=1)
    soon = lot(30, expires_in=2, name=2)
    takes, shortfall = allocate([never, soon], 100, NOW)
    assert takes == [Take(soon.id, 30), Take(never.id, 70)]
    assert shortfall == 0


def test_allocate_reports_shortfall_and_takes_everything_spendable() -> None:
    a = lot(10, expires_in=5, name=1)
    b = lot(20, expires_in=None, name=2)
    gone = lot(50, expires_in=-1, name=3)
    takes, shortfall = allocate([a, b, gone], 45, NOW)
    assert takes == [Take(a.id, 10), Take(b.id, 20)]
    assert shortfall == 15


def test_allocate_zero_and_negative() -> None:
    assert allocate([lot(10, name=1)], 0, NOW) == ([], 0)
    assert allocate([], 7, NOW) == ([], 7)
    with pytest.raises(ValueError, match="negative"):
        allocate([lot(10, name=1)], -1, NOW)


def test_allocate_stops_exactly_when_covered() -> None:
    a = lot(10, expires_in=1, name=1)
    b = lot(10, expires_in=2, name=2)
    takes, shortfall = allocate([a, b], 10, NOW)
    assert takes == [Take(a.id, 10)]
    assert shortfall == 0


lot_specs = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=500),  # remaining
        st.one_of(st.none(), st.integers(min_value=-5, max_value=400)),  # expires in days
        st.sampled_from(list(LotStatus)),
    ),
    max_size=12,
)


@given(specs=lot_specs, amount=st.integers(min_value=0, max_value=3000))
def test_allocate_properties(specs: list[tuple[int, int | None, LotStatus]], amount: int) -> None:
    lots = [
        lot(remaining, expires_in=exp, status=status, amount=remaining + 3, name=i + 1)
        for i, (remaining, exp, status) in enumerate(specs)
    ]
    takes, shortfall = allocate(lots, amount, NOW)
    by_id = {item.id: item for item in lots}
    spendable = sum(item.remaining for item in lots if item.is_spendable(NOW))
    taken = sum(t.amount for t in takes)
    # Exactly what was asked, or everything spendable plus the shortfall.
    assert taken + shortfall == amount
    assert taken == min(amount, spendable)
    assert all(t.amount > 0 for t in takes)
    # Only spendable lots, each at most once, never more than it holds.
    assert len({t.lot_id for t in takes}) == len(takes)
    for t in takes:
        assert by_id[t.lot_id].is_spendable(NOW)
        assert t.amount <= by_id[t.lot_id].remaining
    # Every take but the last empties its lot; expiry dates never decrease along the takes.
    for t in takes[:-1]:
        assert t.amount == by_id[t.lot_id].remaining
    far = datetime.max.replace(tzinfo=UTC)
    dates = [by_id[t.lot_id].expires_at or far for t in takes]
    assert dates == sorted(dates)
    # A lot left untouched never expires sooner than one that was drawn from.
    if takes:
        last = dates[-1]
        untouched = [
            item
            for item in lots
            if item.is_spendable(NOW) and item.id not in {t.lot_id for t in takes}
        ]
        assert all((item.expires_at or far) >= last for item in untouched)


# ---- due transitions ----------------------------------------------------------------------
def test_pending_lot_activates_when_its_time_comes() -> None:
    waiting = lot(10, status=LotStatus.PENDING, available_in=1, expires_in=None, name=1)
    due = lot(10, status=LotStatus.PENDING, available_in=0, expires_in=None, name=2)
    assert due_transitions([waiting, due], NOW).activate == [due]
    later = NOW + timedelta(days=1)
    assert due_transitions([waiting, due], later).activate == [waiting, due]


def test_lots_past_expiry_expire_only_with_points_left() -> None:
    full = lot(10, expires_in=-1, name=1)
    spent = lot(0, expires_in=-1, amount=10, name=2)
    at_boundary = lot(10, expires_in=0, name=3)
    future = lot(10, expires_in=1, name=4)
    never = lot(10, expires_in=None, name=5)
    already = lot(0, expires_in=-3, status=LotStatus.EXPIRED, amount=10, name=6)
    closed = lot(10, expires_in=-3, status=LotStatus.CLOSED, name=7)
    due = due_transitions([full, spent, at_boundary, future, never, already, closed], NOW)
    assert due.expire == [full, at_boundary]
    assert due.activate == []
    assert due


def test_pending_lot_past_expiry_expires_straight_from_pending() -> None:
    stale = lot(10, status=LotStatus.PENDING, available_in=-2, expires_in=-1, name=1)
    due = due_transitions([stale], NOW)
    assert due.expire == [stale]
    assert due.activate == []


def test_pending_lot_expiring_before_activation_expires_even_with_nothing_left() -> None:
    # A pending lot wholly reversed keeps status pending; past expiry it is closed off.
    emptied = lot(0, status=LotStatus.PENDING, available_in=5, expires_in=-1, amount=10, name=1)
    assert due_transitions([emptied], NOW).expire == [emptied]


def test_nothing_due_is_falsy() -> None:
    assert not due_transitions([], NOW)
    assert not due_transitions([lot(5, expires_in=3, name=1)], NOW)
