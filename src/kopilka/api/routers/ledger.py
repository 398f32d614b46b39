"""Points: balances, history, accruals, redemptions, adjustments, holds, reversals."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel

from kopilka.api.auth import ADMIN, ANY_ROLE, TILL, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import (
    AccrualCreate,
    AdjustmentCreate,
    HoldCapture,
    HoldCreate,
    RedemptionCreate,
    ReversalCreate,
)
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor
from kopilka.services.ledger import ShortfallPolicy
from kopilka.services.views import BalanceView, HoldView, OperationResult, TransactionView

router = APIRouter(route_class=StrictJsonRoute, tags=["ledger"])


class LedgerPage(BaseModel):
    items: list[TransactionView]
    next_cursor: str | None


@router.get(
    "/v1/members/{member_id}/balance", response_model=BalanceView, operation_id="getMemberBalance"
)
def get_balance(
    member_id: uuid.UUID,
    currency: str | None = Query(default=None, max_length=16),
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> BalanceView:
    """Available, pending, held and soon-expiring points."""
    return c.ledger.balance(actor, member_id, currency)


@router.get(
    "/v1/members/{member_id}/ledger", response_model=LedgerPage, operation_id="getMemberLedger"
)
def get_ledger(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> LedgerPage:
    """The member's history, newest first, each entry described in ru and en."""
    items = c.ledger.history(actor, member_id, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return LedgerPage(items=page, next_cursor=next_cursor)


@router.post(
    "/v1/members/{member_id}/accruals",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationResult,
    operation_id="accruePoints",
)
async def accrue(
    member_id: uuid.UUID,
    body: AccrualCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> OperationResult:
    """Credit points as a lot: pending for the tenant's pending period unless told otherwise."""
    # On the event loop: the PostgreSQL fast path shares commits with this worker's other
    # writes (group commit); anything else runs in a worker thread (services/ledger.py).
    return await c.ledger.accrue_async(
        actor,
        member_id,
        body.points,
        reason=body.reason,
        available_at=body.available_at,
        expires_at=body.expires_at,
        pending_days=body.pending_days,
        currency=body.currency,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/v1/members/{member_id}/redemptions",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationResult,
    operation_id="redeemPoints",
)
async def redeem(
    member_id: uuid.UUID,
    body: RedemptionCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> OperationResult:
    """Spend points now, soonest-expiring lots first."""
    return await c.ledger.redeem_async(
        actor,
        member_id,
        body.points,
        reason=body.reason,
        source_id=body.reference,
        currency=body.currency,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/v1/members/{member_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationResult,
    operation_id="adjustPoints",
)
def adjust(
    member_id: uuid.UUID,
    body: AdjustmentCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> OperationResult:
    """A signed manual correction with a reason and optional lot dates."""
    return c.ledger.adjust(
        actor,
        member_id,
        body.points,
        reason=body.reason,
        available_at=body.available_at,
        expires_at=body.expires_at,
        currency=body.currency,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/v1/members/{member_id}/holds",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationResult,
    operation_id="holdPoints",
)
def hold(
    member_id: uuid.UUID,
    body: HoldCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> OperationResult:
    """Reserve points; capture or release them later, or they come back by themselves."""
    return c.ledger.hold(
        actor,
        member_id,
        body.points,
        ttl_seconds=body.ttl_seconds,
        reference=body.reference,
        currency=body.currency,
        idempotency_key=idempotency_key,
    )


@router.get("/v1/holds/{hold_id}", response_model=HoldView, operation_id="getHold")
def get_hold(
    hold_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> HoldView:
    return c.ledger.get_hold(actor, hold_id)


@router.post(
    "/v1/holds/{hold_id}/capture", response_model=OperationResult, operation_id="captureHold"
)
def capture(
    hold_id: uuid.UUID,
    body: HoldCapture,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> OperationResult:
    """Spend held points: all, or ``points`` with the rest released."""
    return c.ledger.capture(actor, hold_id, body.points, idempotency_key=idempotency_key)


@router.post(
    "/v1/holds/{hold_id}/release", response_model=OperationResult, operation_id="releaseHold"
)
def release(
    hold_id: uuid.UUID,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> OperationResult:
    return c.ledger.release(actor, hold_id, idempotency_key=idempotency_key)


@router.get(
    "/v1/ledger/transactions/{transaction_id}",
    response_model=TransactionView,
    operation_id="getTransaction",
)
def get_transaction(
    transaction_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> TransactionView:
    return c.ledger.transaction(actor, transaction_id)


@router.post(
    "/v1/ledger/transactions/{transaction_id}/reversals",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationResult,
    operation_id="reverseTransaction",
)
def reverse(
    transaction_id: uuid.UUID,
    body: ReversalCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> OperationResult:
    """Undo a transaction (fully or ``points`` of it) with a new, reversing transaction."""
    return c.ledger.reverse(
        actor,
        transaction_id,
        body.points,
        reason=body.reason,
        on_shortfall=ShortfallPolicy(body.on_shortfall),
        idempotency_key=idempotency_key,
    )
