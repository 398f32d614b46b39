"""Accounts, transaction kinds and balanced postings."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class AccountKind(StrEnum):
    """Member accounts carry a cached balance; tenant accounts are aggregated, never cached,
    because one row updated by every purchase would serialise the whole tenant."""

    WALLET = "wallet"  # spendable points (active lots)
    PENDING = "pending"  # earned, not yet spendable (the return window)
    HOLD = "hold"  # reserved for an operation in flight
    ISSUED = "issued"  # tenant: points issued to members (the liability's counterpart)
    EXPIRED = "expired"  # tenant: points that expired
    REDEEMED = "redeemed"  # tenant: points spent by members
    ADJUSTMENT = "adjustment"  # tenant: manual corrections

    @property
    def is_member_account(self) -> bool:
        return self in MEMBER_ACCOUNT_KINDS


MEMBER_ACCOUNT_KINDS = frozenset({AccountKind.WALLET, AccountKind.PENDING, AccountKind.HOLD})
TENANT_ACCOUNT_KINDS = frozenset(
    {AccountKind.ISSUED, AccountKind.EXPIRED, AccountKind.REDEEMED, AccountKind.ADJUSTMENT}
)


class TxnKind(StrEnum):
    ACCRUAL = "accrual"
    OPENING_BALANCE = "opening_balance"
    ACTIVATION = "activation"
    REDEMPTION = "redemption"
    REFUND = "refund"  # a redemption given back
    REVERSAL = "reversal"  # an accrual or adjustment taken back
    EXPIRY = "expiry"
    ADJUSTMENT = "adjustment"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    TRANSFER = "transfer"
    MERGE = "merge"
    BONUS = "bonus"  # a reward of a loyalty mechanic: welcome, birthday, referral, tier...
    DONATION = "donation"  # points given to a charity account


class UnbalancedTransaction(ValueError):
    """Postings of one transaction must sum to zero."""


@dataclass(frozen=True)
class Posting:
    """One side of a transaction; positive credits the account, negative debits it."""

    account_id: uuid.UUID
    amount: int


def check_balanced(postings: Iterable[Posting]) -> list[Posting]:
    """Return the postings as a list if they sum to zero and none is zero or float."""
    items = list(postings)
    if len(items) < 2:
        raise UnbalancedTransaction("a transaction needs at least two postings")
    for p in items:
        if type(p.amount) is not int or p.amount == 0:
            raise UnbalancedTransaction(f"posting amount must be a non-zero int: {p.amount!r}")
    if sum(p.amount for p in items) != 0:
        raise UnbalancedTransaction("postings do not sum to zero")
    return items


def transfer(source: uuid.UUID, destination: uuid.UUID, amount: int) -> list[Posting]:
    """The two postings moving ``amount`` from ``source`` to ``destination``."""
    if amount <= 0:
        raise UnbalancedTransaction("transfer amount must be positive")
    return check_balanced([Posting(source, -amount), Posting(destination, amount)])
