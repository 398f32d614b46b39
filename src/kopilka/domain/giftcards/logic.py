"""Pure arithmetic of gift card payments: the split at the till, the share of a refund,
and the rate-limit windows. Amounts are integer minor units."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kopilka.domain.errors import KopilkaError


def split_payment(to_pay: int, cards: Sequence[tuple[int | None, int]]) -> list[int]:
    """What each card pays, in the order given: ``min(asked or balance, balance, left)``.

    ``cards`` are (amount asked, or None for "as much as possible"; balance). Never more
    than the receipt, never more than a card holds, never negative.
    """
    left = max(to_pay, 0)
    amounts = []
    for asked, balance in cards:
        want = balance if asked is None else asked
        pay = max(min(want, balance, left), 0)
        amounts.append(pay)
        left -= pay
    return amounts


def refund_shares(money: int, paid: Sequence[tuple[int, int, bool]]) -> list[int]:
    """How much of a refund of ``money`` goes back to each card, gift cards first.

    ``paid`` are (paid with the card, already refunded to it, can it take money back); the
    cards are filled in the order they paid, each up to what it still has to get back. The
    rest (``money - sum``) is the till's to return in its own tender.
    """
    left = max(money, 0)
    shares = []
    for amount, refunded, usable in paid:
        give = min(max(amount - refunded, 0), left) if usable else 0
        shares.append(give)
        left -= give
    return shares


@dataclass(frozen=True)
class Window:
    """A fixed rate-limit window: [start, start + seconds)."""

    start: datetime
    seconds: int

    @classmethod
    def at(cls, moment: datetime, seconds: int) -> Window:
        epoch = int(moment.timestamp())
        return cls(datetime.fromtimestamp(epoch - epoch % seconds, UTC), seconds)

    def retry_after(self, moment: datetime) -> int:
        """Whole seconds until the next window opens (at least 1)."""
        end = self.start + timedelta(seconds=self.seconds)
        return max(1, math.ceil((end - moment).total_seconds()))


class RateLimited(KopilkaError):
    """Too many attempts in the current window: 429, with when to try again."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})
        self.retry_after = retry_after
