"""The PostgreSQL fast path of ``LedgerService.accrue`` and ``redeem``.

The Python side does the cheap part (arguments, ids, lot dates from the tenant's policy,
descriptions, the answer's template), opens no unit of work (the tenant and the tenant's
account ids come from the process caches), and makes ONE call of a PL/pgSQL function that does
the rest in one implicit transaction: the idempotency claim and replay, the member's status,
the account locks, the rows, and the balance for the answer (migration 0010). The answer and
the rows are the very ones the Python path makes; ``tests/integration/test_ledger_fast_path.py``
runs both on the same operations and compares them.

A method returns ``None`` when the fast path does not apply (SQLite, explicit lot dates, a
member in debt, due lots or lapsed holds to settle first, accounts not opened yet...): the
caller then takes the Python path, which handles everything. ``FastLedger.fallbacks`` counts
those by reason (the benchmark reports them).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic_core import to_jsonable_python

from kopilka.clock import Clock
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    InsufficientPoints,
    KopilkaError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.ledger.descriptions import describe
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.ledger.model import AccountKind, TxnKind
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import MAX_KEY_LENGTH, request_hash
from kopilka.services.ledger_book import last_day, local_date
from kopilka.services.ledger_ops import CREDIT_COUNTER
from kopilka.services.ports import UnitOfWorkFactory
from kopilka.services.views import OperationResult

if TYPE_CHECKING:
    from kopilka.adapters.db.pg_ledger import LedgerCall
    from kopilka.adapters.db.pg_ledger import PgLedgerFunctions as LedgerFunctions

EXPIRING_SOON_DAYS = 30  # services.ledger.EXPIRING_SOON_DAYS (not imported: ledger imports us)


def _error(outcome: str, body: Any, points: int) -> KopilkaError | None:
    """The exception the Python path raises for the same state (same code and message)."""
    if outcome == "idempotency_in_progress":
        return Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.",
            code="idempotency_in_progress",
        )
    if outcome == "idempotency_key_reused":
        return ValidationFailed(
            "This Idempotency-Key was already used with a different request.",
            code="idempotency_key_reused",
        )
    if outcome == "member_not_found":
        return NotFound("Member not found.", code="member_not_found")
    if outcome == "member_blocked":
        return BusinessRuleViolation(
            "The member is blocked: no points can be earned or spent.", code="member_blocked"
        )
    if outcome in ("member_merged", "member_erased"):
        status = outcome.removeprefix("member_")
        return BusinessRuleViolation(
            f"The member profile is {status}; use the surviving profile.", code=outcome
        )
    if outcome == "insufficient_points":
        available = int(body["available"])
        return InsufficientPoints(
            f"Not enough points: {available} available, {points} asked.",
            extra={"available": available, "requested": points},
        )
    if outcome == "insufficient_spendable":
        available = int(body["available"])
        return InsufficientPoints(
            f"Not enough spendable points: {available} of {points}.",
            extra={"available": available, "requested": points},
        )
    return None


class FastPlan(NamedTuple):
    """A fast-path write ready to run: the call and the answer's template."""

    functions: LedgerFunctions
    call: LedgerCall
    response: dict[str, Any]
    posting: int  # the member's posting in the answer, whose balance_after the call gives
    points: int


class FastLedger:
    """Accrual and redemption as one database call each (PostgreSQL only)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.calls = 0
        self.fallbacks: Counter[str] = Counter()

    def _finish(
        self,
        done: tuple[str, Any, int | None, dict[str, Any] | None],
        response: dict[str, Any],
        posting: int,
        points: int,
    ) -> OperationResult | None:
        """The answer (the template completed with the function's figures, or the stored
        answer of a replay), None for the Python path, or the error raised."""
        outcome, body, balance_after, balance = done
        if outcome == "ok":
            assert balance is not None
            response["transactions"][0]["postings"][posting]["balance_after"] = balance_after
            response["balance"].update(balance)
            return OperationResult.model_validate(response)
        if outcome == "replay":
            return OperationResult.model_validate(body)
        if outcome.startswith("fallback"):
            self.fallbacks[outcome.partition(":")[2] or "function"] += 1
            return None
        error = _error(outcome, body, points)
        if error is None:  # pragma: no cover - a function newer than this caller
            raise RuntimeError(f"unknown ledger function outcome {outcome!r}")
        raise error

    def _skip(self, reason: str) -> None:
        self.fallbacks[reason] += 1

    def tenant_cached(self, tenant_id: uuid.UUID) -> bool:
        """Whether the fast path has the tenant without reading it (see ``warm_tenant``)."""
        calls = self.uow_factory.ledger_functions()
        return calls is None or isinstance(calls.cache.get(("tenant", tenant_id)), Tenant)

    def warm_tenant(self, tenant_id: uuid.UUID) -> None:
        """Read the tenant into the cache (blocking: an event loop runs it in a thread)."""
        with self.uow_factory(write=False) as uow:
            load_tenant(uow, tenant_id)

    def _open(
        self, actor: Actor, key: str | None, *, load: bool
    ) -> tuple[LedgerFunctions, Tenant] | None:
        """The functions and the caller's tenant, or None (and why) for the Python path.
        ``load``: read the tenant on a cache miss (not on an event loop, which must not
        block: the Python path, in a thread, reads and caches it)."""
        if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
            self._skip("invalid_key")  # the Python path raises the error
            return None
        calls = self.uow_factory.ledger_functions()
        if calls is None:
            self._skip("unsupported_database")
            return None
        tenant = calls.cache.get(("tenant", actor.tenant_id))  # load_tenant's cache entry
        if not isinstance(tenant, Tenant):
            if not load:
                self._skip("cold_cache")
                return None
            with self.uow_factory(write=False) as uow:  # a miss: read (and cache) it first
                tenant = load_tenant(uow, actor.tenant_id)
        return calls, tenant

    def plan_accrual(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str | None,
        kind: TxnKind,
        source_type: str,
        source_id: str | None,
        available_at: datetime | None,
        expires_at: datetime | None,
        pending_days: int | None,
        currency: str | None,
        idempotency_key: str | None,
        body: dict[str, Any],
        load: bool = True,
    ) -> FastPlan | None:
        """``LedgerService.accrue``'s call, to ``run``; None: take the Python path."""
        if available_at is not None or expires_at is not None:
            self._skip("explicit_lot_dates")  # rare (admin API); the Python path checks them
            return None
        key = idempotency_key
        opened = self._open(actor, key, load=load)
        if opened is None:
            return None
        calls, tenant = opened
        digest = request_hash(f"accrue:{kind}", body) if key is not None else None
        now = self.clock.now()
        cur = currency or tenant.points_currency
        counter_kind = CREDIT_COUNTER.get(kind, AccountKind.ISSUED)
        counter = calls.cached_account(tenant.id, counter_kind, cur)
        if counter is None:
            self._skip("cold_cache")  # the Python path opens and caches the accounts
            return None
        tz = tenant.timezone
        days = tenant.pending_days if pending_days is None else pending_days
        available = now + timedelta(days=days)
        expires = policy_expiry(tenant.expiry_policy, now, tz)
        pending = available > now
        params: dict[str, Any] = {"reason": reason} if reason else {}
        params["expires_on"] = last_day(expires, tz)
        if pending:
            params["available_on"] = local_date(available, tz)
        txn_id = new_id()
        member = str(member_id)
        at = to_jsonable_python(now)
        response = _answer_template(
            txn_id,
            kind.value,
            member,
            cur,
            points,
            at,
            actor=actor.name,
            reason=reason,
            source=(source_type, source_id),
            description=describe(kind.value, points, params),
            # (account kind, member, amount); the function fills in the member's balance_after.
            postings=[
                (counter_kind.value, None, -points),
                ("pending" if pending else "wallet", member, points),
            ],
        )
        call = calls.accrual_call(
            tenant_id=tenant.id,
            member_id=member_id,
            currency=cur,
            key=key,
            request_hash=digest,
            now=now,
            txn_id=txn_id,
            lot_id=new_id(),
            kind=kind.value,
            points=points,
            actor=actor.name,
            source_type=source_type,
            source_id=source_id,
            reason=reason,
            params=params,
            pending=pending,
            available_at=available,
            expires_at=expires,
            counter_account=counter,
            timezone=tz,
            soon=now + timedelta(days=EXPIRING_SOON_DAYS),
            response=response,
        )
        return FastPlan(calls, call, response, 1, points)

    def plan_redemption(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        points: int,
        *,
        reason: str | None,
        source_type: str,
        source_id: str | None,
        currency: str | None,
        idempotency_key: str | None,
        body: dict[str, Any],
        load: bool = True,
    ) -> FastPlan | None:
        """``LedgerService.redeem``'s call, to ``run``; None: take the Python path."""
        key = idempotency_key
        opened = self._open(actor, key, load=load)
        if opened is None:
            return None
        calls, tenant = opened
        digest = request_hash("redeem", body) if key is not None else None
        now = self.clock.now()
        cur = currency or tenant.points_currency
        counter = calls.cached_account(tenant.id, AccountKind.REDEEMED, cur)
        if counter is None:
            self._skip("cold_cache")
            return None
        params: dict[str, Any] = {"reason": reason} if reason else {}
        txn_id = new_id()
        member = str(member_id)
        at = to_jsonable_python(now)
        response = _answer_template(
            txn_id,
            TxnKind.REDEMPTION.value,
            member,
            cur,
            points,
            at,
            actor=actor.name,
            reason=reason,
            source=(source_type, source_id),
            description=describe(TxnKind.REDEMPTION.value, points, params),
            postings=[("wallet", member, -points), ("redeemed", None, points)],
        )
        call = calls.redemption_call(
            tenant_id=tenant.id,
            member_id=member_id,
            currency=cur,
            key=key,
            request_hash=digest,
            now=now,
            txn_id=txn_id,
            points=points,
            actor=actor.name,
            source_type=source_type,
            source_id=source_id,
            reason=reason,
            params=params,
            counter_account=counter,
            timezone=tenant.timezone,
            soon=now + timedelta(days=EXPIRING_SOON_DAYS),
            response=response,
        )
        return FastPlan(calls, call, response, 0, points)

    def run(self, plan: FastPlan) -> OperationResult | None:
        """Make the planned call (group commit with this process's concurrent calls); the
        answer, None for the Python path, or the error raised."""
        self.calls += 1
        done = plan.functions.run(plan.call)
        return self._finish(done, plan.response, plan.posting, plan.points)

    async def run_async(self, plan: FastPlan) -> OperationResult | None:
        """``run`` for coroutines (group commit with the event loop's concurrent calls)."""
        self.calls += 1
        done = await plan.functions.run_async(plan.call)
        return self._finish(done, plan.response, plan.posting, plan.points)


def _answer_template(
    txn_id: uuid.UUID,
    kind: str,
    member: str,
    currency: str,
    points: int,
    at: Any,
    *,
    actor: str,
    reason: str | None,
    source: tuple[str, str | None],
    description: dict[str, str],
    postings: list[tuple[str, str | None, int]],
) -> dict[str, Any]:
    """The ``OperationResult`` of a one-transaction write as JSON, with everything Python
    already knows; the function's answer completes the balances."""
    return {
        "transactions": [
            {
                "id": str(txn_id),
                "kind": kind,
                "member_id": member,
                "counterparty_member_id": None,
                "currency": currency,
                "amount": points,
                "reason": reason,
                "actor": actor,
                "source_type": source[0],
                "source_id": source[1],
                "reverses_id": None,
                "occurred_at": at,
                "recorded_at": at,
                "description": description,
                "postings": [
                    {
                        "account_kind": account_kind,
                        "member_id": owner,
                        "amount": amount,
                        "balance_after": None,
                    }
                    for account_kind, owner, amount in postings
                ],
                "shortfall": 0,
                "details": {},
            }
        ],
        "balance": {"member_id": member, "currency": currency, "debt": 0, "as_of": at},
        "hold": None,
        "shortfall": 0,
    }
