"""Pure rules of families, transfers and donations: what a leaving member takes, who put
what into a pool, which lots a payout comes from, and the calendar month of the limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.domain.families.settings import LeaveSplit
from kopilka.domain.ledger.lots import Lot, LotStatus, Take, burn_order
from kopilka.domain.ledger.model import TxnKind

# What a till, an app or a history shows, in both languages.
TEXTS: dict[str, dict[str, str]] = {
    "spend_not_allowed": {
        "ru": "Владелец семейного счёта не разрешил этому участнику оплачивать баллами.",
        "en": "The family account's owner has not allowed this member to pay with points.",
    },
}

# Ledger kinds that put points into a pool, and the sign they count with. Transfers count
# only when they come in (``params["direction"] == "in"``); the moves of joining and leaving
# are counted apart (a member's ``brought`` points), so they are not listed here.
CREDIT_SIGNS: dict[str, int] = {
    TxnKind.ACCRUAL: 1,
    TxnKind.BONUS: 1,
    TxnKind.OPENING_BALANCE: 1,
    TxnKind.ADJUSTMENT: 1,  # signed: a negative correction takes back what it corrects
    TxnKind.MERGE: 1,
    TxnKind.TRANSFER: 1,
    TxnKind.REVERSAL: -1,  # an accrual taken back (a refunded purchase)
}


@dataclass(frozen=True)
class PoolEntry:
    """One ledger transaction of a pool, as the split rule reads it."""

    id: uuid.UUID
    kind: str
    amount: int
    params: Mapping[str, Any]


def credited_points(entry: PoolEntry) -> int:
    """Points ``entry`` put into the pool (negative when it took earned points back)."""
    sign = CREDIT_SIGNS.get(entry.kind, 0)
    if not sign or entry.params.get("family_move"):
        return 0
    if entry.kind == TxnKind.TRANSFER and entry.params.get("direction") != "in":
        return 0
    return sign * entry.amount


def contributions(
    entries: Iterable[PoolEntry],
    holder: uuid.UUID,
    since: Mapping[uuid.UUID, uuid.UUID],
    brought: Mapping[uuid.UUID, int],
) -> dict[uuid.UUID, int]:
    """What each member put into the pool since joining: the points they brought, plus what
    the pool earned in their name (``params["family_member"]``; the owner's own operations
    carry no name, the pool being the owner's account). ``since`` gives each member's
    watermark: only entries after it count, as earlier ones were not made in the family."""
    totals = {member: max(0, brought.get(member, 0)) for member in since}
    for entry in entries:
        named = entry.params.get("family_member")
        member = uuid.UUID(str(named)) if named else holder
        mark = since.get(member)
        if mark is None or entry.id <= mark:
            continue
        totals[member] += credited_points(entry)
    return {member: max(0, points) for member, points in totals.items()}


def leave_share(
    rule: LeaveSplit, contributed: int, total_contributed: int, pool: int, members: int
) -> int:
    """Points a member leaving a family of ``members`` takes out of a ``pool`` of points.

    ``none``: nothing, the points stay with the family. ``equal_share``: an equal part of
    the pool. ``contributed``: what the member put in (brought at joining and earned while
    inside) minus their share of what left the pool meanwhile (spent, expired, given away),
    shared in proportion to what each member put in; never more than the pool holds.
    """
    if pool <= 0 or members <= 0:
        return 0
    if rule == "none":
        return 0
    if rule == "equal_share":
        return pool // members
    if contributed <= 0 or total_contributed <= 0:
        return 0
    if pool >= total_contributed:  # nothing of what the members put in has left the pool
        return min(contributed, pool)
    return min(contributed * pool // total_contributed, pool)


def payout_takes(lots: Iterable[Lot], amount: int, now: datetime) -> tuple[list[Take], int]:
    """Lots a payout of ``amount`` comes from: spendable points in the order the pool spends
    them (soonest-expiring first), then pending points by the day they become spendable.
    Returns the takes and what the lots could not cover."""
    lots = list(lots)
    pending = sorted(
        (
            lot
            for lot in lots
            if lot.status is LotStatus.PENDING
            and lot.remaining > 0
            and (lot.expires_at is None or lot.expires_at > now)
        ),
        key=lambda lot: (lot.available_at, lot.id),
    )
    takes: list[Take] = []
    left = amount
    for lot in [*burn_order(lots, now), *pending]:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        takes.append(Take(lot.id, take))
        left -= take
    return takes, max(left, 0)


def month_start(now: datetime, timezone: str) -> datetime:
    """The first instant of ``now``'s calendar month in the tenant's time zone, in UTC."""
    local = now.astimezone(ZoneInfo(timezone))
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.astimezone(UTC)
