"""A ledger plan: everything one business operation writes, computed in memory first.

Services build a plan from locked balances and lots, then the storage adapter writes it in
one database transaction. Building it in pure Python keeps the arithmetic testable and lets
the plan check its own invariants (balanced transactions, no overdrawn lot, no unexpected
negative balance) before anything reaches the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kopilka.domain.ledger.lots import Lot, LotStatus
from kopilka.domain.ledger.model import AccountKind, Posting, UnbalancedTransaction, check_balanced
from kopilka.ids import new_id


@dataclass
class AccountState:
    """A member account as locked for this operation."""

    id: uuid.UUID
    kind: AccountKind
    balance: int
    allow_debt: bool


@dataclass
class NewTransaction:
    id: uuid.UUID
    kind: str
    member_id: uuid.UUID | None
    currency: str
    amount: int
    actor: str
    source_type: str
    source_id: str | None
    occurred_at: datetime
    reason: str | None = None
    reverses_id: uuid.UUID | None = None
    counterparty_member_id: uuid.UUID | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedPosting:
    transaction_id: uuid.UUID
    account_id: uuid.UUID
    amount: int
    balance_after: int | None


@dataclass
class NewLot:
    id: uuid.UUID
    member_id: uuid.UUID
    currency: str
    amount: int
    remaining: int
    status: LotStatus
    available_at: datetime
    expires_at: datetime | None
    source_transaction_id: uuid.UUID


@dataclass(frozen=True)
class Movement:
    """Points taken from (negative) or given back to (positive) a lot.

    ``origin_id`` names the transaction that first took the points (a redemption or a hold),
    so later refunds know how much of each lot is still theirs to give back.
    """

    transaction_id: uuid.UUID
    lot_id: uuid.UUID
    amount: int
    origin_id: uuid.UUID


@dataclass
class LedgerPlan:
    """Accumulates transactions; member balances and lots are tracked as they change."""

    accounts: dict[uuid.UUID, AccountState] = field(default_factory=dict)
    lots: dict[uuid.UUID, Lot] = field(default_factory=dict)
    transactions: list[NewTransaction] = field(default_factory=list)
    postings: list[PlannedPosting] = field(default_factory=list)
    new_lots: dict[uuid.UUID, NewLot] = field(default_factory=dict)
    # lot id -> (remaining, status) after the plan, for existing lots that change
    changed_lots: dict[uuid.UUID, tuple[int, LotStatus]] = field(default_factory=dict)
    movements: list[Movement] = field(default_factory=list)

    # ---- building blocks -------------------------------------------------------------
    def add_transaction(self, txn: NewTransaction, postings: list[Posting]) -> NewTransaction:
        """Record a balanced transaction and move member balances."""
        check_balanced(postings)
        self.transactions.append(txn)
        for p in postings:
            account = self.accounts.get(p.account_id)
            after: int | None = None
            if account is not None:
                account.balance += p.amount
                if account.balance < 0 and not account.allow_debt:
                    raise UnbalancedTransaction(
                        f"account {account.kind} would go negative ({account.balance})"
                    )
                after = account.balance
            self.postings.append(PlannedPosting(txn.id, p.account_id, p.amount, after))
        return txn

    def lot(self, lot_id: uuid.UUID) -> Lot:
        return self.lots[lot_id]

    def _set_lot(self, lot: Lot) -> None:
        self.lots[lot.id] = lot
        if lot.id in self.new_lots:
            planned = self.new_lots[lot.id]
            planned.remaining = lot.remaining
            planned.status = lot.status
        else:
            self.changed_lots[lot.id] = (lot.remaining, lot.status)

    def change_lot(
        self,
        lot_id: uuid.UUID,
        delta: int,
        *,
        txn_id: uuid.UUID,
        origin_id: uuid.UUID,
        status: LotStatus | None = None,
    ) -> None:
        """Add ``delta`` to a lot's remaining points and record the movement."""
        lot = self.lots[lot_id]
        remaining = lot.remaining + delta
        if remaining < 0 or remaining > lot.amount:
            raise UnbalancedTransaction(f"lot {lot_id} would hold {remaining} of {lot.amount}")
        self._set_lot(
            Lot(
                id=lot.id,
                amount=lot.amount,
                remaining=remaining,
                status=status or lot.status,
                available_at=lot.available_at,
                expires_at=lot.expires_at,
            )
        )
        if delta:
            self.movements.append(Movement(txn_id, lot_id, delta, origin_id))

    def set_lot_status(self, lot_id: uuid.UUID, status: LotStatus) -> None:
        lot = self.lots[lot_id]
        self._set_lot(
            Lot(lot.id, lot.amount, lot.remaining, status, lot.available_at, lot.expires_at)
        )

    def create_lot(
        self,
        *,
        member_id: uuid.UUID,
        currency: str,
        amount: int,
        remaining: int,
        status: LotStatus,
        available_at: datetime,
        expires_at: datetime | None,
        source_txn_id: uuid.UUID,
    ) -> uuid.UUID:
        lot_id = new_id()
        self.new_lots[lot_id] = NewLot(
            lot_id,
            member_id,
            currency,
            amount,
            remaining,
            status,
            available_at,
            expires_at,
            source_txn_id,
        )
        self.lots[lot_id] = Lot(lot_id, amount, remaining, status, available_at, expires_at)
        return lot_id

    def spendable_lots(self, now: datetime) -> list[Lot]:
        return [lot for lot in self.lots.values() if lot.is_spendable(now)]
