"""Lots: each accrual is a lot that becomes spendable at ``available_at`` and expires at
``expires_at``. Spending burns the soonest-expiring active lots first."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class LotStatus(StrEnum):
    PENDING = "pending"  # in the member's pending account
    ACTIVE = "active"  # in the wallet (possibly fully spent: remaining 0)
    EXPIRED = "expired"  # what was left expired
    CLOSED = "closed"  # moved elsewhere (a merge or a reversal of its accrual)


@dataclass(frozen=True)
class Lot:
    id: uuid.UUID
    amount: int
    remaining: int
    status: LotStatus
    available_at: datetime
    expires_at: datetime | None

    def is_spendable(self, now: datetime) -> bool:
        return (
            self.status is LotStatus.ACTIVE
            and self.remaining > 0
            and (self.expires_at is None or self.expires_at > now)
        )


@dataclass(frozen=True)
class Take:
    """``amount`` points taken from lot ``lot_id``."""

    lot_id: uuid.UUID
    amount: int


def burn_order(lots: Iterable[Lot], now: datetime) -> list[Lot]:
    """Spendable lots, soonest-expiring first; lots that never expire go last."""
    spendable = [lot for lot in lots if lot.is_spendable(now)]
    return sorted(
        spendable,
        key=lambda lot: (lot.expires_at is None, lot.expires_at or now, lot.available_at, lot.id),
    )


def allocate(lots: Sequence[Lot], amount: int, now: datetime) -> tuple[list[Take], int]:
    """Take ``amount`` from spendable lots in burn order.

    Returns the takes and the shortfall (0 when the lots covered everything).
    """
    if amount < 0:
        raise ValueError("amount must not be negative")
    takes: list[Take] = []
    left = amount
    for lot in burn_order(lots, now):
        if left == 0:
            break
        take = min(lot.remaining, left)
        takes.append(Take(lot.id, take))
        left -= take
    return takes, left


@dataclass(frozen=True)
class DueTransitions:
    """What the clock has made due: pending lots to activate and lots to expire."""

    activate: list[Lot]
    expire: list[Lot]

    def __bool__(self) -> bool:
        return bool(self.activate or self.expire)


def due_transitions(lots: Iterable[Lot], now: datetime) -> DueTransitions:
    """Pending lots past ``available_at`` activate; lots past ``expires_at`` with points left
    expire. A pending lot already past its expiry expires straight from pending."""
    activate: list[Lot] = []
    expire: list[Lot] = []
    for lot in lots:
        expired = lot.expires_at is not None and lot.expires_at <= now
        if lot.status is LotStatus.PENDING:
            if expired:
                expire.append(lot)
            elif lot.available_at <= now:
                activate.append(lot)
        elif lot.status is LotStatus.ACTIVE and expired and lot.remaining > 0:
            expire.append(lot)
    return DueTransitions(activate, expire)
