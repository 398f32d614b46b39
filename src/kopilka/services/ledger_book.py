"""One member's book inside a unit of work: locked accounts, open lots, and the operations
that turn them into a ledger plan (credit, take, restore, settle)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.domain.errors import InsufficientPoints, NotFound
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.ledger.lots import Lot, LotStatus, Take, allocate, due_transitions
from kopilka.domain.ledger.model import AccountKind, Posting, TxnKind
from kopilka.domain.ledger.plan import AccountState, LedgerPlan, Movement, NewTransaction
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant
from kopilka.services.ports import UnitOfWork


def local_date(moment: datetime | None, timezone: str) -> str | None:
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat() if moment else None


def last_day(expires_at: datetime | None, timezone: str) -> str | None:
    """The last local day points can be used: the day before the first invalid instant
    when that instant is a midnight, which is how customers read "expire on 30 April"."""
    if expires_at is None:
        return None
    return local_date(expires_at - timedelta(microseconds=1), timezone)


class MemberBook:
    """Builds a :class:`LedgerPlan` for one member and currency.

    Opening the book locks the member's accounts (in id order), so every operation below
    sees balances no concurrent request can change until commit.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member_id: uuid.UUID,
        actor: Actor,
        now: datetime,
        *,
        currency: str | None = None,
        load_lots: bool = True,
        spends: bool = True,
        plan: LedgerPlan | None = None,
        accounts: dict[AccountKind, AccountState] | None = None,
    ) -> None:
        self.uow = uow
        self.tenant = tenant
        # The person the operation is for; ``member_id`` is whose accounts hold their points:
        # a family's pool while they are in one (see adapters/db/mechanics/families.py).
        # Callers passing ``accounts`` have chosen the holder themselves.
        self.person_id = member_id
        if accounts is None:
            from kopilka.adapters.db.mechanics import families  # here: no import cycle

            member_id = families.wallet_holder(uow, tenant.id, member_id)
        self.member_id = member_id
        self.actor = actor
        self.now = now
        self.currency = currency or tenant.points_currency
        if accounts is None:
            accounts = uow.ledger.lock_member_accounts(tenant.id, member_id, self.currency)
            if not accounts:
                # A points currency the member has never used: open its accounts now.
                uow.ledger.create_member_accounts(
                    tenant.id, member_id, self.currency, now, tenant.allow_debt
                )
                accounts = uow.ledger.lock_member_accounts(tenant.id, member_id, self.currency)
            if not accounts:
                raise NotFound("Member not found.", code="member_not_found")
            if member_id == self.person_id:  # joined a family while we waited for the lock?
                families.check_still_own(uow, tenant.id, member_id, accounts)
        self.accounts = accounts
        self.plan = plan if plan is not None else LedgerPlan()
        for account in accounts.values():
            self.plan.accounts[account.id] = account
        self.system = uow.ledger.tenant_accounts(tenant.id, self.currency, now)
        # A book opened not to spend (``spends=False``: the till's purchase that pays no
        # points) reads only the lots due to activate or expire, which settling needs; the
        # other open lots, one per purchase a regular customer made, are read when ``take``
        # needs them after all.
        self._open_lots_unread = load_lots and not spends
        if load_lots:
            if spends:
                self._read_open_lots()
            else:
                for lot in uow.ledger.due_lots(tenant.id, member_id, self.currency, now):
                    self.plan.lots.setdefault(lot.id, lot)

    def _read_open_lots(self) -> None:
        # setdefault: a lot the plan already holds may have changed in it (settled, spent).
        for lot in self.uow.ledger.open_lots(self.tenant.id, self.member_id, self.currency):
            self.plan.lots.setdefault(lot.id, lot)
        self._open_lots_unread = False

    # ---- accounts ----------------------------------------------------------------------
    @property
    def wallet(self) -> AccountState:
        return self.accounts[AccountKind.WALLET]

    @property
    def pending(self) -> AccountState:
        return self.accounts[AccountKind.PENDING]

    @property
    def hold_account(self) -> AccountState:
        return self.accounts[AccountKind.HOLD]

    def ensure_lots(self, lot_ids: Sequence[uuid.UUID]) -> None:
        missing = [i for i in lot_ids if i not in self.plan.lots]
        for lot in self.uow.ledger.lots_by_id(self.tenant.id, missing):
            self.plan.lots[lot.id] = lot

    def new_txn(
        self,
        kind: TxnKind,
        amount: int,
        *,
        source_type: str,
        source_id: str | None = None,
        reason: str | None = None,
        reverses_id: uuid.UUID | None = None,
        counterparty: uuid.UUID | None = None,
        params: dict[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> NewTransaction:
        all_params = dict(params or {})
        if reason:
            all_params.setdefault("reason", reason)
        if self.person_id != self.member_id and kind not in (TxnKind.EXPIRY, TxnKind.ACTIVATION):
            # A family member's operation on the pool: named, so it shows in their own
            # history (as counterparty) and counts as theirs when the family splits. The
            # clock's work is the pool's, whoever's operation happened to settle it.
            all_params.setdefault("family_member", str(self.person_id))
            counterparty = counterparty or self.person_id
        return NewTransaction(
            id=new_id(),
            kind=kind.value,
            member_id=self.member_id,
            currency=self.currency,
            amount=amount,
            actor=self.actor.name,
            source_type=source_type,
            source_id=source_id,
            occurred_at=occurred_at or self.now,
            reason=reason,
            reverses_id=reverses_id,
            counterparty_member_id=counterparty,
            params=all_params,
        )

    # ---- the clock's work --------------------------------------------------------------
    def settle(self) -> list[NewTransaction]:
        """Release lapsed holds, then activate pending lots and expire lots that the clock
        has made due."""
        made: list[NewTransaction] = self.release_lapsed_holds()
        due = due_transitions(list(self.plan.lots.values()), self.now)
        for lot in sorted(due.expire, key=lambda item: (item.expires_at or self.now, item.id)):
            account = self.pending if lot.status is LotStatus.PENDING else self.wallet
            amount = min(lot.remaining, max(account.balance, 0))
            txn = self.new_txn(
                TxnKind.EXPIRY,
                lot.remaining,
                source_type="job",
                source_id=str(lot.id),
                params={"expired_on": local_date(lot.expires_at, self.tenant.timezone)},
            )
            if amount:
                self.plan.add_transaction(
                    txn,
                    [
                        Posting(account.id, -amount),
                        Posting(self.system[AccountKind.EXPIRED], amount),
                    ],
                )
            self.plan.change_lot(
                lot.id, -lot.remaining, txn_id=txn.id, origin_id=txn.id, status=LotStatus.EXPIRED
            )
            if amount:
                made.append(txn)
        for lot in sorted(due.activate, key=lambda item: (item.available_at, item.id)):
            txn = self.new_txn(
                TxnKind.ACTIVATION, lot.remaining, source_type="job", source_id=str(lot.id)
            )
            if lot.remaining:
                self.plan.add_transaction(
                    txn,
                    [
                        Posting(self.pending.id, -lot.remaining),
                        Posting(self.wallet.id, lot.remaining),
                    ],
                )
                made.append(txn)
            self.plan.set_lot_status(lot.id, LotStatus.ACTIVE)
            self._pay_debt_from(
                lot.id, lot.remaining, txn.id, balance_before=self.wallet.balance - lot.remaining
            )
        return made

    def release_lapsed_holds(self) -> list[NewTransaction]:
        """Holds past their time give their points back before anything else is decided,
        so the member never waits for the job to spend them."""
        if self.accounts.get(AccountKind.HOLD) is None or self.hold_account.balance <= 0:
            return []  # nothing is held: no query needed
        made = []
        for hold in self.uow.ledger.lapsed_holds(
            self.tenant.id, self.member_id, self.currency, self.now
        ):
            txn = self.new_txn(
                TxnKind.RELEASE,
                hold.amount,
                source_type="hold",
                source_id=str(hold.id),
                reverses_id=hold.hold_transaction_id,
                params={"expired": True},
            )
            self.restore(txn, hold.amount, self.hold_account.id, hold.hold_transaction_id)
            self.uow.ledger.close_hold(self.tenant.id, hold.id, "expired", 0, self.now)
            made.append(txn)
        return made

    def _pay_debt_from(
        self, lot_id: uuid.UUID, credited: int, txn_id: uuid.UUID, *, balance_before: int
    ) -> None:
        """Points credited to a wallet in debt first pay the debt off: the lot keeps less."""
        debt = max(0, -balance_before)
        paid = min(debt, credited, self.plan.lot(lot_id).remaining)
        if paid:
            self.plan.change_lot(lot_id, -paid, txn_id=txn_id, origin_id=txn_id)

    # ---- credits -----------------------------------------------------------------------
    def credit(
        self,
        txn: NewTransaction,
        amount: int,
        counter_kind: AccountKind,
        *,
        available_at: datetime | None = None,
        expires_at: datetime | None = None,
        pending_days: int | None = None,
    ) -> uuid.UUID:
        """Credit ``amount`` as a new lot: pending until ``available_at``, then spendable."""
        if available_at is None:
            days = self.tenant.pending_days if pending_days is None else pending_days
            available_at = self.now + timedelta(days=days)
        if expires_at is None:
            expires_at = policy_expiry(self.tenant.expiry_policy, self.now, self.tenant.timezone)
        is_pending = available_at > self.now
        account = self.pending if is_pending else self.wallet
        txn.params.setdefault("expires_on", last_day(expires_at, self.tenant.timezone))
        if is_pending:
            txn.params.setdefault("available_on", local_date(available_at, self.tenant.timezone))
        balance_before = account.balance
        self.plan.add_transaction(
            txn, [Posting(self.system[counter_kind], -amount), Posting(account.id, amount)]
        )
        lot_id = self.plan.create_lot(
            member_id=self.member_id,
            currency=self.currency,
            amount=amount,
            remaining=amount,
            status=LotStatus.PENDING if is_pending else LotStatus.ACTIVE,
            available_at=available_at,
            expires_at=expires_at,
            source_txn_id=txn.id,
        )
        if not is_pending:
            self._pay_debt_from(lot_id, amount, txn.id, balance_before=balance_before)
        return lot_id

    # ---- debits ------------------------------------------------------------------------
    def take(
        self,
        txn: NewTransaction,
        amount: int,
        destination: uuid.UUID,
        *,
        origin_id: uuid.UUID | None = None,
    ) -> list[Take]:
        """Move ``amount`` out of the wallet, burning soonest-expiring lots first."""
        if self.wallet.balance < amount:
            raise InsufficientPoints(
                f"Not enough points: {max(self.wallet.balance, 0)} available, {amount} asked.",
                extra={"available": max(self.wallet.balance, 0), "requested": amount},
            )
        if self._open_lots_unread:
            self._read_open_lots()
        takes, shortfall = allocate(self.plan.spendable_lots(self.now), amount, self.now)
        if shortfall:
            raise InsufficientPoints(
                f"Not enough spendable points: {amount - shortfall} of {amount}.",
                extra={"available": amount - shortfall, "requested": amount},
            )
        self.plan.add_transaction(
            txn, [Posting(self.wallet.id, -amount), Posting(destination, amount)]
        )
        for take in takes:
            self.plan.change_lot(
                take.lot_id, -take.amount, txn_id=txn.id, origin_id=origin_id or txn.id
            )
        return takes

    def restore(
        self,
        txn: NewTransaction,
        amount: int,
        source: uuid.UUID,
        origin_id: uuid.UUID,
        *,
        destination: uuid.UUID | None = None,
    ) -> None:
        """Give back ``amount`` points an origin took, to the lots they came from.

        The latest-expiring lots are refilled first (the customer keeps points longest);
        a lot that has expired or closed meanwhile, or that is another profile's (a receipt
        of a profile since merged into this one), is replaced by a new lot with the same
        dates, as the finance team expects the original expiry to hold.
        """
        destination = destination or self.wallet.id
        balance_before = self.wallet.balance
        self.plan.add_transaction(txn, [Posting(source, -amount), Posting(destination, amount)])
        net = self.uow.ledger.net_taken_by_origin(self.tenant.id, origin_id)
        self.ensure_lots([taken.lot_id for taken in net])
        left = amount
        debt = max(0, -balance_before) if destination == self.wallet.id else 0
        for lot_id, taken, owner in reversed(net):
            if left == 0:
                break
            give = min(taken, left)
            left -= give
            paid = min(debt, give)
            debt -= paid
            keep = give - paid
            lot = self.plan.lot(lot_id)
            if lot.status is LotStatus.ACTIVE and owner == self.member_id:
                self.plan.change_lot(lot_id, give, txn_id=txn.id, origin_id=origin_id)
                if paid:
                    self.plan.change_lot(lot_id, -paid, txn_id=txn.id, origin_id=txn.id)
            else:
                # Expired, closed or another profile's: the points go to a new lot of this
                # book's member with the same dates.
                # Record the hand-back under the origin (and the move on to the new lot), so a
                # later refund of the same origin does not count these points as still taken.
                self.plan.movements.append(Movement(txn.id, lot_id, give, origin_id))
                self.plan.movements.append(Movement(txn.id, lot_id, -give, txn.id))
                self._replacement_lot(lot, give, keep, txn.id)
        if left:
            # More was taken than lots record (legacy data): keep the books whole anyway.
            self.plan.create_lot(
                member_id=self.member_id,
                currency=self.currency,
                amount=left,
                remaining=max(0, left - debt),
                status=LotStatus.ACTIVE,
                available_at=self.now,
                expires_at=None,
                source_txn_id=txn.id,
            )

    def _replacement_lot(self, lot: Lot, amount: int, keep: int, txn_id: uuid.UUID) -> None:
        self.plan.create_lot(
            member_id=self.member_id,
            currency=self.currency,
            amount=amount,
            remaining=keep,
            status=LotStatus.ACTIVE,
            available_at=lot.available_at,
            expires_at=lot.expires_at,
            source_txn_id=txn_id,
        )

    def take_back_lot(self, txn: NewTransaction, lot_id: uuid.UUID, amount: int) -> int:
        """Take up to ``amount`` from one lot (pending or active); returns what was taken."""
        lot = self.plan.lot(lot_id)
        if lot.status not in (LotStatus.PENDING, LotStatus.ACTIVE):
            return 0
        account = self.pending if lot.status is LotStatus.PENDING else self.wallet
        take = min(lot.remaining, amount, max(account.balance, 0))
        if take:
            self.plan.change_lot(lot_id, -take, txn_id=txn.id, origin_id=txn.id)
        return take
