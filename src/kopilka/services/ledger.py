"""Ledger use cases: accrue, redeem, adjust, hold/capture/release, reverse, balances, history,
and the clock's work (activation, expiry, stale holds)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.adapters.db.mechanics.families import pool_of, wallet_holder
from kopilka.clock import Clock
from kopilka.domain.errors import BusinessRuleViolation, Conflict, InsufficientPoints, NotFound
from kopilka.domain.families.rules import TEXTS as FAMILY_TEXTS
from kopilka.domain.ledger.descriptions import describe
from kopilka.domain.ledger.lots import LotStatus
from kopilka.domain.ledger.model import AccountKind, TxnKind
from kopilka.domain.ledger.plan import NewTransaction
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ledger_fast import FastLedger, FastPlan
from kopilka.services.ledger_ops import (
    CREDIT_COUNTER,
    Shortfall,
    capture_hold,
    refund_spend,
    release_hold,
    reverse_credit,
)
from kopilka.services.members import points_holder_profile
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.views import (
    BalanceView,
    ExpiringAmount,
    HoldView,
    OperationResult,
    PostingView,
    TransactionView,
)

MAX_POINTS = 10**12
EXPIRING_SOON_DAYS = 30


@dataclass(frozen=True, slots=True)
class _Accrual:
    """``LedgerService.accrue``'s arguments, checked."""

    actor: Actor
    member_id: uuid.UUID
    points: int
    reason: str | None
    kind: TxnKind
    source_type: str
    source_id: str | None
    available_at: datetime | None
    expires_at: datetime | None
    pending_days: int | None
    currency: str | None
    idempotency_key: str | None

    def __post_init__(self) -> None:
        _check_points(self.points)

    def body(self) -> dict[str, Any]:
        """What the idempotency hash covers."""
        return {
            "member_id": self.member_id,
            "points": self.points,
            "reason": self.reason,
            "kind": self.kind,
            "available_at": self.available_at,
            "expires_at": self.expires_at,
            "pending_days": self.pending_days,
            "currency": self.currency,
            "source": [self.source_type, self.source_id],
        }


@dataclass(frozen=True, slots=True)
class _Redemption:
    """``LedgerService.redeem``'s arguments, checked."""

    actor: Actor
    member_id: uuid.UUID
    points: int
    reason: str | None
    source_type: str
    source_id: str | None
    currency: str | None
    idempotency_key: str | None

    def __post_init__(self) -> None:
        _check_points(self.points)

    def body(self) -> dict[str, Any]:
        """What the idempotency hash covers."""
        return {
            "member_id": self.member_id,
            "points": self.points,
            "reason": self.reason,
            "currency": self.currency,
            "source": [self.source_type, self.source_id],
        }


# The shortfall policies and credit counter-accounts live with the plan-building operations.
ShortfallPolicy = Shortfall
CREDIT_SOURCE = CREDIT_COUNTER


def _ensure_member_can_transact(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID
) -> None:
    member = uow.directory.member(tenant_id, member_id)
    if member is None:
        raise NotFound("Member not found.", code="member_not_found")
    if member["status"] == "blocked":
        raise BusinessRuleViolation(
            "The member is blocked: no points can be earned or spent.", code="member_blocked"
        )
    if member["status"] in ("merged", "erased"):
        raise BusinessRuleViolation(
            f"The member profile is {member['status']}; use the surviving profile.",
            code=f"member_{member['status']}",
        )


def ensure_may_spend(uow: UnitOfWork, book: MemberBook) -> None:
    """A family member spends the pool only if the owner allows it (no query otherwise)."""
    if (
        book.person_id != book.member_id
        and not pool_of(uow, book.tenant.id, book.person_id).can_spend
    ):
        raise BusinessRuleViolation(
            "The family's owner has not allowed this member to pay with points.",
            code="family_spend_not_allowed",
            extra={"reason": dict(FAMILY_TEXTS["spend_not_allowed"])},
        )


def _check_points(points: int) -> None:
    if points <= 0 or points > MAX_POINTS:
        raise BusinessRuleViolation(
            f"Points must be between 1 and {MAX_POINTS}.", code="invalid_points"
        )


class LedgerService:
    """Ledger operations; each is one database transaction, idempotent on its key."""

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, *, fast_path: bool = True
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        # On PostgreSQL, accruals and redemptions as one database call (ledger_fast.py).
        self.fast = FastLedger(uow_factory, clock) if fast_path else None

    # ---- plumbing ----------------------------------------------------------------------
    def _write(
        self,
        actor: Actor,
        scope: str,
        body: Any,
        idempotency_key: str | None,
        work: Callable[[UnitOfWork, Tenant, datetime], OperationResult],
    ) -> OperationResult:
        digest = request_hash(scope, body)
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return OperationResult.model_validate(stored)
            now = self.clock.now()
            tenant = load_tenant(uow, actor.tenant_id)
            result = work(uow, tenant, now)
            remember(uow, actor.tenant_id, idempotency_key, digest, result.to_json(), now)
            uow.commit()
            return result

    def _finish(
        self,
        uow: UnitOfWork,
        book: MemberBook,
        headline: list[NewTransaction],
        *,
        hold: HoldView | None = None,
        shortfall: int = 0,
    ) -> OperationResult:
        uow.ledger.apply(book.tenant.id, book.plan, book.now)
        views = _views_of_planned(book, headline)
        return OperationResult(
            transactions=views,
            balance=_balance_from_plan(book),
            hold=hold,
            shortfall=shortfall,
        )

    # ---- credits -----------------------------------------------------------------------
    def accrue(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str | None = None,
        kind: TxnKind = TxnKind.ACCRUAL,
        source_type: str = "api",
        source_id: str | None = None,
        available_at: datetime | None = None,
        expires_at: datetime | None = None,
        pending_days: int | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """Credit points as a new lot (pending first if the tenant or caller says so)."""
        credit = _Accrual(
            actor, member_id, points, reason, kind, source_type, source_id,
            available_at, expires_at, pending_days, currency, idempotency_key,
        )  # fmt: skip
        if self.fast is not None:
            plan = self._plan_accrual(self.fast, credit, load=True)
            done = self.fast.run(plan) if plan is not None else None
            if done is not None:
                return done
        return self._accrue_python(credit)

    async def accrue_async(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str | None = None,
        kind: TxnKind = TxnKind.ACCRUAL,
        source_type: str = "api",
        source_id: str | None = None,
        available_at: datetime | None = None,
        expires_at: datetime | None = None,
        pending_days: int | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """``accrue`` for an event loop: the fast path's call is awaited and shares its
        commit with the loop's concurrent calls; anything else runs in a worker thread."""
        credit = _Accrual(
            actor, member_id, points, reason, kind, source_type, source_id,
            available_at, expires_at, pending_days, currency, idempotency_key,
        )  # fmt: skip
        if self.fast is not None:
            await self._warm(self.fast, actor)
            plan = self._plan_accrual(self.fast, credit, load=False)
            done = await self.fast.run_async(plan) if plan is not None else None
            if done is not None:
                return done
        return await asyncio.to_thread(self._accrue_python, credit)

    @staticmethod
    async def _warm(fast: FastLedger, actor: Actor) -> None:
        """The tenant for the fast path, read in a thread when its cache entry lapsed (every
        few seconds), so the loop's calls do not all fall back to the Python path then."""
        if not fast.tenant_cached(actor.tenant_id):
            await asyncio.to_thread(fast.warm_tenant, actor.tenant_id)

    @staticmethod
    def _plan_accrual(fast: FastLedger, credit: _Accrual, *, load: bool) -> FastPlan | None:
        return fast.plan_accrual(
            credit.actor,
            credit.member_id,
            credit.points,
            reason=credit.reason,
            kind=credit.kind,
            source_type=credit.source_type,
            source_id=credit.source_id,
            available_at=credit.available_at,
            expires_at=credit.expires_at,
            pending_days=credit.pending_days,
            currency=credit.currency,
            idempotency_key=credit.idempotency_key,
            body=credit.body(),
            load=load,
        )

    def _accrue_python(self, credit: _Accrual) -> OperationResult:
        """The accrual in a unit of work (SQLite, and what the fast path hands over)."""
        actor, member_id, kind = credit.actor, credit.member_id, credit.kind

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            _ensure_member_can_transact(uow, tenant.id, member_id)
            # Lots are loaded so the answer carries the member's whole balance.
            book = MemberBook(uow, tenant, member_id, actor, now, currency=credit.currency)
            _check_dates(now, credit.available_at, credit.expires_at)
            txn = book.new_txn(
                kind,
                credit.points,
                source_type=credit.source_type,
                source_id=credit.source_id,
                reason=credit.reason,
            )
            book.credit(
                txn,
                credit.points,
                CREDIT_SOURCE.get(kind, AccountKind.ISSUED),
                available_at=credit.available_at,
                expires_at=credit.expires_at,
                pending_days=credit.pending_days,
            )
            return self._finish(uow, book, [txn])

        return self._write(actor, f"accrue:{kind}", credit.body(), credit.idempotency_key, work)

    # ---- debits ------------------------------------------------------------------------
    def redeem(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str | None = None,
        source_type: str = "api",
        source_id: str | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """Spend points, soonest-expiring first; never below zero."""
        spend = _Redemption(
            actor, member_id, points, reason, source_type, source_id, currency, idempotency_key
        )
        if self.fast is not None:
            plan = self._plan_redemption(self.fast, spend, load=True)
            done = self.fast.run(plan) if plan is not None else None
            if done is not None:
                return done
        return self._redeem_python(spend)

    async def redeem_async(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str | None = None,
        source_type: str = "api",
        source_id: str | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """``redeem`` for an event loop (see ``accrue_async``)."""
        spend = _Redemption(
            actor, member_id, points, reason, source_type, source_id, currency, idempotency_key
        )
        if self.fast is not None:
            await self._warm(self.fast, actor)
            plan = self._plan_redemption(self.fast, spend, load=False)
            done = await self.fast.run_async(plan) if plan is not None else None
            if done is not None:
                return done
        return await asyncio.to_thread(self._redeem_python, spend)

    @staticmethod
    def _plan_redemption(fast: FastLedger, spend: _Redemption, *, load: bool) -> FastPlan | None:
        return fast.plan_redemption(
            spend.actor,
            spend.member_id,
            spend.points,
            reason=spend.reason,
            source_type=spend.source_type,
            source_id=spend.source_id,
            currency=spend.currency,
            idempotency_key=spend.idempotency_key,
            body=spend.body(),
            load=load,
        )

    def _redeem_python(self, spend: _Redemption) -> OperationResult:
        """The redemption in a unit of work (SQLite, and what the fast path hands over)."""
        actor, member_id = spend.actor, spend.member_id

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            _ensure_member_can_transact(uow, tenant.id, member_id)
            book = MemberBook(uow, tenant, member_id, actor, now, currency=spend.currency)
            ensure_may_spend(uow, book)
            book.settle()
            txn = book.new_txn(
                TxnKind.REDEMPTION,
                spend.points,
                source_type=spend.source_type,
                source_id=spend.source_id,
                reason=spend.reason,
            )
            book.take(txn, spend.points, book.system[AccountKind.REDEEMED])
            return self._finish(uow, book, [txn])

        return self._write(actor, "redeem", spend.body(), spend.idempotency_key, work)

    def adjust(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str,
        available_at: datetime | None = None,
        expires_at: datetime | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """A manual correction: positive credits a lot, negative burns lots."""
        if points == 0 or abs(points) > MAX_POINTS:
            raise BusinessRuleViolation(
                f"Adjustment must be non-zero and at most {MAX_POINTS} in size.",
                code="invalid_points",
            )
        if not reason or not reason.strip():
            raise BusinessRuleViolation("An adjustment needs a reason.", code="reason_required")
        body = {
            "member_id": member_id,
            "points": points,
            "reason": reason,
            "available_at": available_at,
            "expires_at": expires_at,
            "currency": currency,
        }

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            member = uow.directory.member(tenant.id, member_id)
            if member is None or member["status"] in ("merged", "erased"):
                raise NotFound("Member not found.", code="member_not_found")
            book = MemberBook(uow, tenant, member_id, actor, now, currency=currency)
            book.settle()
            txn = book.new_txn(
                TxnKind.ADJUSTMENT,
                points,
                source_type="admin",
                reason=reason,
                params={"reason": reason},
            )
            if points > 0:
                _check_dates(now, available_at, expires_at)
                book.credit(
                    txn,
                    points,
                    AccountKind.ADJUSTMENT,
                    available_at=available_at,
                    expires_at=expires_at,
                )
            else:
                book.take(txn, -points, book.system[AccountKind.ADJUSTMENT])
            uow.directory.audit(
                tenant.id,
                actor.name,
                "ledger.adjust",
                "member",
                member_id,
                {"points": points, "reason": reason, "transaction_id": str(txn.id)},
                now,
            )
            return self._finish(uow, book, [txn])

        return self._write(actor, "adjust", body, idempotency_key, work)

    # ---- holds -------------------------------------------------------------------------
    def hold(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        ttl_seconds: int | None = None,
        reference: str | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """Reserve points for an operation in flight; released by itself when it expires."""
        _check_points(points)
        if ttl_seconds is not None and not 1 <= ttl_seconds <= 7 * 86400:
            raise BusinessRuleViolation(
                "ttl_seconds must be between 1 second and 7 days.", code="invalid_ttl"
            )
        body = {
            "member_id": member_id,
            "points": points,
            "ttl": ttl_seconds,
            "reference": reference,
            "currency": currency,
        }

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            _ensure_member_can_transact(uow, tenant.id, member_id)
            book = MemberBook(uow, tenant, member_id, actor, now, currency=currency)
            ensure_may_spend(uow, book)
            book.settle()
            hold_id = new_id()
            txn = book.new_txn(
                TxnKind.HOLD,
                points,
                source_type="hold",
                source_id=str(hold_id),
                reason=reference,
            )
            book.take(txn, points, book.hold_account.id)
            expires = now + timedelta(seconds=ttl_seconds or tenant.hold_ttl_seconds)
            row = {
                "id": hold_id,
                "tenant_id": tenant.id,
                "member_id": book.member_id,  # the holder: a family's pool holds its holds
                "currency": book.currency,
                "amount": points,
                "captured": 0,
                "status": "active",
                "reference": reference,
                "expires_at": expires,
                "hold_transaction_id": txn.id,
                "created_at": now,
                "closed_at": None,
            }
            uow.ledger.insert_hold(row)
            return self._finish(uow, book, [txn], hold=_hold_view(row))

        return self._write(actor, "hold", body, idempotency_key, work)

    def capture(
        self,
        actor: Actor,
        hold_id: uuid.UUID,
        points: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """Spend held points (all, or part with the rest released)."""
        body = {"hold_id": hold_id, "points": points}

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            hold, book = self._open_hold(uow, tenant, actor, hold_id, now)
            if hold.expires_at <= now:
                # The reservation lapsed: its points belong to the member again, even if the
                # job has not released them yet.
                raise Conflict("The hold expired; reserve the points again.", code="hold_expired")
            amount = hold.amount if points is None else points
            if not 1 <= amount <= hold.amount:
                raise BusinessRuleViolation(
                    f"Capture between 1 and {hold.amount} points.", code="invalid_points"
                )
            made = capture_hold(book, hold, amount, str(hold.id))
            uow.ledger.close_hold(tenant.id, hold.id, "captured", amount, now)
            view = _hold_view(
                {**hold.__dict__, "status": "captured", "captured": amount, "closed_at": now}
            )
            return self._finish(uow, book, made, hold=view)

        return self._write(actor, "capture", body, idempotency_key, work)

    def release(
        self,
        actor: Actor,
        hold_id: uuid.UUID,
        *,
        idempotency_key: str | None = None,
        status: str = "released",
    ) -> OperationResult:
        """Give held points back to the wallet, to the lots they came from."""
        body = {"hold_id": hold_id}

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            hold, book = self._open_hold(uow, tenant, actor, hold_id, now)
            txn = release_hold(book, hold, hold.amount, str(hold.id), expired=status == "expired")
            uow.ledger.close_hold(tenant.id, hold.id, status, 0, now)
            view = _hold_view({**hold.__dict__, "status": status, "closed_at": now})
            return self._finish(uow, book, [txn], hold=view)

        return self._write(actor, f"release:{status}", body, idempotency_key, work)

    def _open_hold(
        self, uow: UnitOfWork, tenant: Tenant, actor: Actor, hold_id: uuid.UUID, now: datetime
    ) -> tuple[Any, MemberBook]:
        hold = uow.ledger.get_hold(tenant.id, hold_id, lock=False)
        if hold is None:
            raise NotFound("Hold not found.", code="hold_not_found")
        book = MemberBook(uow, tenant, hold.member_id, actor, now, currency=hold.currency)
        # Re-read under the member's lock: a concurrent capture may have closed it.
        hold = uow.ledger.get_hold(tenant.id, hold_id, lock=True)
        assert hold is not None
        if hold.status != "active":
            raise Conflict(f"The hold is already {hold.status}.", code=f"hold_{hold.status}")
        return hold, book

    def get_hold(self, actor: Actor, hold_id: uuid.UUID) -> HoldView:
        with self.uow_factory(write=False) as uow:
            hold = uow.ledger.get_hold(actor.tenant_id, hold_id, lock=False)
            if hold is None:
                raise NotFound("Hold not found.", code="hold_not_found")
            return _hold_view(hold.__dict__, self.clock.now())

    # ---- reversals ---------------------------------------------------------------------
    def reverse(
        self,
        actor: Actor,
        transaction_id: uuid.UUID,
        points: int | None = None,
        *,
        reason: str | None = None,
        on_shortfall: ShortfallPolicy = ShortfallPolicy.FAIL,
        source_type: str = "api",
        source_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> OperationResult:
        """Undo a transaction, fully or in part, by a new transaction (entries are never
        edited). Redemptions and captures give points back to their lots; accruals and
        adjustments take their points back, from their own lot first."""
        body = {
            "transaction_id": transaction_id,
            "points": points,
            "reason": reason,
            "on_shortfall": on_shortfall,
            "source": [source_type, source_id],
        }

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> OperationResult:
            original = uow.ledger.get_transaction(tenant.id, transaction_id)
            if original is None or original.member_id is None:
                raise NotFound("Transaction not found.", code="transaction_not_found")
            if uow.directory.member(tenant.id, original.member_id) is None:
                # A gift card's money (its wallet is the card's, not a member's): undone only
                # through the gift card API, which keeps the card's own records in step.
                raise BusinessRuleViolation(
                    "A gift card transaction is undone through the gift card API.",
                    code="not_reversible",
                )
            # A profile merged since: its points live with the profile it was merged into.
            holder = points_holder_profile(uow, tenant.id, original.member_id)
            book = MemberBook(uow, tenant, holder, actor, now, currency=original.currency)
            book.settle()
            done = sum(
                t.amount
                for t in uow.ledger.reversals_of(tenant.id, original.id)
                if t.kind in (TxnKind.REFUND, TxnKind.REVERSAL)
            )
            kind = TxnKind(original.kind)
            signed = original.amount
            if kind is TxnKind.ADJUSTMENT and signed < 0:
                kind, signed = TxnKind.REDEMPTION, -signed  # a debit adjustment undoes like a spend
            left = signed - done
            amount = left if points is None else points
            if kind not in REVERSIBLE:
                raise BusinessRuleViolation(
                    f"A {original.kind} transaction cannot be reversed.", code="not_reversible"
                )
            if amount <= 0 or amount > left:
                raise BusinessRuleViolation(
                    f"Up to {left} points of this transaction can still be reversed.",
                    code="reversal_exceeds_original",
                    extra={"reversible": left},
                )
            if kind in (TxnKind.REDEMPTION, TxnKind.CAPTURE):
                return self._refund_spend(
                    uow, book, original, kind, amount, reason, source_type, source_id
                )
            return self._reverse_credit(
                uow, book, original, amount, reason, on_shortfall, source_type, source_id
            )

        return self._write(actor, "reverse", body, idempotency_key, work)

    def _refund_spend(
        self,
        uow: UnitOfWork,
        book: MemberBook,
        original: Any,
        kind: TxnKind,
        amount: int,
        reason: str | None,
        source_type: str,
        source_id: str | None,
    ) -> OperationResult:
        txn = refund_spend(
            book, original, amount, source_type=source_type, source_id=source_id, reason=reason
        )
        return self._finish(uow, book, [txn])

    def _reverse_credit(
        self,
        uow: UnitOfWork,
        book: MemberBook,
        original: Any,
        amount: int,
        reason: str | None,
        on_shortfall: ShortfallPolicy,
        source_type: str,
        source_id: str | None,
    ) -> OperationResult:
        reversal = reverse_credit(
            book,
            original,
            amount,
            on_shortfall,
            source_type=source_type,
            source_id=source_id,
            reason=reason,
        )
        if reversal.txn is None:
            raise InsufficientPoints(
                "Nothing is left to reverse: the points were already spent.",
                code="reversal_shortfall",
                extra={"shortfall": reversal.shortfall},
            )
        return self._finish(uow, book, [reversal.txn], shortfall=reversal.shortfall)

    # ---- reads -------------------------------------------------------------------------
    def balance(
        self, actor: Actor, member_id: uuid.UUID, currency: str | None = None
    ) -> BalanceView:
        """Balances as of now, counting lots the clock has made due (even before the job)."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            if uow.directory.member(tenant.id, member_id) is None:
                raise NotFound("Member not found.", code="member_not_found")
            now = self.clock.now()
            cur = currency or tenant.points_currency
            holder = wallet_holder(uow, tenant.id, member_id)  # a family member sees the pool
            # The lots it lists one by one, and the sum of the rest (see read_member_balance).
            accounts, lots, lasting = uow.ledger.read_member_balance(
                tenant.id, holder, cur, now + timedelta(days=EXPIRING_SOON_DAYS)
            )
            returning = lapsed_hold_points(uow, tenant.id, holder, cur, accounts, now)
            return balance_view(
                tenant, member_id, cur, accounts, lots, now, returning, lasting=lasting
            )

    def transaction(self, actor: Actor, transaction_id: uuid.UUID) -> TransactionView:
        with self.uow_factory(write=False) as uow:
            row = uow.ledger.get_transaction(actor.tenant_id, transaction_id)
            if row is None:
                raise NotFound("Transaction not found.", code="transaction_not_found")
            return transaction_views(uow, actor.tenant_id, [row])[0]

    def history(
        self, actor: Actor, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[TransactionView]:
        with self.uow_factory(write=False) as uow:
            member = uow.directory.member(actor.tenant_id, member_id)
            if member is None:
                raise NotFound("Member not found.", code="member_not_found")
            ids = [member_id, *uow.directory.merged_into(actor.tenant_id, member_id)]
            rows = uow.ledger.history(actor.tenant_id, ids, before, limit)
            return transaction_views(uow, actor.tenant_id, rows)

    # ---- the clock's work --------------------------------------------------------------
    def settle_member(self, actor: Actor, member_id: uuid.UUID, currency: str) -> int:
        """Activate and expire what is due for one member; returns transactions made."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            book = MemberBook(uow, tenant, member_id, actor, now, currency=currency)
            made = book.settle()
            if made or book.plan.changed_lots:
                uow.ledger.apply(tenant.id, book.plan, now)
                uow.commit()
            return len(made)


REVERSIBLE = frozenset(
    {
        TxnKind.ACCRUAL,
        TxnKind.OPENING_BALANCE,
        TxnKind.BONUS,
        TxnKind.ADJUSTMENT,
        TxnKind.REDEMPTION,
        TxnKind.CAPTURE,
    }
)


def _check_dates(now: datetime, available_at: datetime | None, expires_at: datetime | None) -> None:
    if available_at is not None and expires_at is not None and expires_at <= available_at:
        raise BusinessRuleViolation(
            "expires_at must be after available_at.", code="invalid_lot_dates"
        )
    if expires_at is not None and expires_at <= now:
        raise BusinessRuleViolation("expires_at must be in the future.", code="invalid_lot_dates")


def _details(params: dict[str, Any]) -> dict[str, Any]:
    """The parts of a transaction's parameters worth showing: program, version, rules."""
    return {k: params[k] for k in ("program", "version", "rules") if k in params}


def _hold_view(row: dict[str, Any], now: datetime | None = None) -> HoldView:
    status = row["status"]
    if status == "active" and now is not None and row["expires_at"] <= now:
        status = "expired"  # lapsed: the points are free again, whether or not the job ran
    return HoldView(
        id=row["id"],
        member_id=row["member_id"],
        currency=row["currency"],
        amount=row["amount"],
        captured=row["captured"],
        status=status,
        reference=row["reference"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )


def lapsed_hold_points(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    member_id: uuid.UUID,
    currency: str,
    accounts: dict[AccountKind, Any],
    now: datetime,
) -> tuple[int, int]:
    """(points coming back to spendable lots, points no longer held) from holds whose time
    is up but which the job has not released yet."""
    hold_account = accounts.get(AccountKind.HOLD)
    if hold_account is None or hold_account.balance <= 0:
        return 0, 0
    back = unheld = 0
    for hold in uow.ledger.lapsed_holds(tenant_id, member_id, currency, now):
        unheld += hold.amount
        net = uow.ledger.net_taken_by_origin(tenant_id, hold.hold_transaction_id)
        found = {lot.id: lot for lot in uow.ledger.lots_by_id(tenant_id, [t.lot_id for t in net])}
        for lot_id, amount, _member in net:
            lot = found.get(lot_id)
            if lot is not None and (lot.expires_at is None or lot.expires_at > now):
                back += amount
    return back, unheld


def balance_view(
    tenant: Tenant,
    member_id: uuid.UUID,
    currency: str,
    accounts: dict[AccountKind, Any],
    lots: list[Any],
    now: datetime,
    returning: tuple[int, int] = (0, 0),
    *,
    lasting: int = 0,
) -> BalanceView:
    """Project balances from lots as of ``now``; equal to the cached balances once the
    clock's work has run. ``lasting``: points of active lots that expire after the
    expiring-soon window (or never), summed by the caller instead of passed as lots."""
    tz = ZoneInfo(tenant.timezone)
    wallet = accounts.get(AccountKind.WALLET)
    hold = accounts.get(AccountKind.HOLD)
    available, pending = lasting, 0
    expiring: dict[Any, int] = defaultdict(int)
    upcoming: dict[Any, int] = defaultdict(int)
    soon = now + timedelta(days=EXPIRING_SOON_DAYS)
    live = [lot for lot in lots if lot.expires_at is None or lot.expires_at > now]
    # Due activations pay a debt off first, in the order settling takes them.
    debt = max(0, -(wallet.balance if wallet else 0))
    paid: dict[uuid.UUID, int] = {}
    due = [lot for lot in live if lot.status is LotStatus.PENDING and lot.available_at <= now]
    for lot in sorted(due, key=lambda item: (item.available_at, item.id)):
        paid[lot.id] = min(debt, lot.remaining)
        debt -= paid[lot.id]
    for lot in live:
        # (UUID hashing is Python code: skipped when no debt is being paid, the usual case.)
        remaining = lot.remaining - paid.get(lot.id, 0) if paid else lot.remaining
        if lot.status is LotStatus.PENDING and lot.available_at > now:
            pending += remaining
            upcoming[lot.available_at.astimezone(tz).date()] += remaining
            continue
        available += remaining
        if lot.expires_at is not None and lot.expires_at <= soon and remaining:
            # The last day the points can be used, in the tenant's calendar.
            last_day = (lot.expires_at - timedelta(microseconds=1)).astimezone(tz).date()
            expiring[last_day] += remaining
    back, unheld = returning  # lapsed holds: their points pay any debt first
    paid_back = min(debt, back)
    debt -= paid_back
    available += back - paid_back
    return BalanceView(
        member_id=member_id,
        currency=currency,
        available=available,
        pending=pending,
        held=(hold.balance if hold else 0) - unheld,
        debt=debt,
        expiring_soon=[ExpiringAmount(on=d, amount=a) for d, a in sorted(expiring.items())],
        next_pending=[ExpiringAmount(on=d, amount=a) for d, a in sorted(upcoming.items())],
        as_of=now,
    )


def _balance_from_plan(book: MemberBook) -> BalanceView:
    lots = [
        lot
        for lot in book.plan.lots.values()
        if lot.status is LotStatus.PENDING or (lot.status is LotStatus.ACTIVE and lot.remaining)
    ]
    return balance_view(book.tenant, book.member_id, book.currency, book.accounts, lots, book.now)


def _views_of_planned(book: MemberBook, txns: list[NewTransaction]) -> list[TransactionView]:
    kinds: dict[uuid.UUID, tuple[str, uuid.UUID | None]] = {
        a.id: (a.kind.value, book.member_id) for a in book.accounts.values()
    }
    kinds.update({acc_id: (kind.value, None) for kind, acc_id in book.system.items()})
    views = []
    for txn in txns:
        postings = [
            PostingView(
                account_kind=kinds.get(p.account_id, ("unknown", None))[0],
                member_id=kinds.get(p.account_id, ("", None))[1],
                amount=p.amount,
                balance_after=p.balance_after,
            )
            for p in book.plan.postings
            if p.transaction_id == txn.id
        ]
        views.append(
            TransactionView(
                id=txn.id,
                kind=txn.kind,
                member_id=txn.member_id,
                counterparty_member_id=txn.counterparty_member_id,
                currency=txn.currency,
                amount=txn.amount,
                reason=txn.reason,
                actor=txn.actor,
                source_type=txn.source_type,
                source_id=txn.source_id,
                reverses_id=txn.reverses_id,
                occurred_at=txn.occurred_at,
                recorded_at=book.now,
                description=describe(txn.kind, txn.amount, txn.params),
                postings=postings,
                shortfall=int(txn.params.get("shortfall", 0)),
                details=_details(txn.params),
            )
        )
    return views


def transaction_views(
    uow: UnitOfWork, tenant_id: uuid.UUID, rows: list[Any]
) -> list[TransactionView]:
    by_txn: dict[uuid.UUID, list[PostingView]] = defaultdict(list)
    for p in uow.ledger.postings_of(tenant_id, [r.id for r in rows]):
        by_txn[p.transaction_id].append(
            PostingView(
                account_kind=p.kind,
                member_id=p.member_id,
                amount=p.amount,
                balance_after=p.balance_after,
            )
        )
    return [
        TransactionView(
            id=r.id,
            kind=r.kind,
            member_id=r.member_id,
            counterparty_member_id=r.counterparty_member_id,
            currency=r.currency,
            amount=r.amount,
            reason=r.reason,
            actor=r.actor,
            source_type=r.source_type,
            source_id=r.source_id,
            reverses_id=r.reverses_id,
            occurred_at=r.occurred_at,
            recorded_at=r.recorded_at,
            description=describe(r.kind, r.amount, r.params),
            postings=by_txn[r.id],
            shortfall=int(r.params.get("shortfall", 0)),
            details=_details(r.params),
        )
        for r in rows
    ]
