"""Cards: look-up at the till, pre-printed batches, binding, blocking, replacement, QR."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel

from kopilka.api.auth import ADMIN, ANY_ROLE, TILL, container
from kopilka.api.deps import IdempotencyKey
from kopilka.api.schemas import CardBatchCreate, CardBind, CardReplace
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor
from kopilka.services.members import BatchView, CardView, MemberView, QrTokenView

router = APIRouter(route_class=StrictJsonRoute, tags=["cards"])


class LookupResult(BaseModel):
    member: MemberView
    card: CardView | None


@router.get("/v1/cards/lookup", response_model=LookupResult, operation_id="lookupMember")
def lookup(
    number: str | None = Query(default=None, max_length=32),
    phone: str | None = Query(default=None, max_length=32),
    qr: str | None = Query(default=None, max_length=128),
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> LookupResult:
    """Find the member by card number, phone, or a scanned QR token."""
    member, card = c.members.lookup(actor, number=number, phone=phone, qr=qr)
    return LookupResult(member=member, card=card)


@router.post(
    "/v1/card-batches",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchView,
    operation_id="registerCardBatch",
)
def register_batch(
    body: CardBatchCreate, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> BatchView:
    """Register pre-printed cards: a range (first_number + count) or a list of numbers."""
    return c.members.register_batch(
        actor, body.name, first_number=body.first_number, count=body.count, numbers=body.numbers
    )


@router.get("/v1/cards/{number}", response_model=CardView, operation_id="getCard")
def get_card(
    number: str, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> CardView:
    return c.members.get_card(actor, number)


@router.post("/v1/cards/{number}/bind", response_model=CardView, operation_id="bindCard")
def bind_card(
    number: str, body: CardBind, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> CardView:
    """Bind a pre-printed card to a member (at the till)."""
    return c.members.bind_card(actor, number, body.member_id)


@router.post("/v1/cards/{number}/block", response_model=CardView, operation_id="blockCard")
def block_card(
    number: str, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> CardView:
    return c.members.set_card_status(actor, number, "blocked")


@router.post("/v1/cards/{number}/unblock", response_model=CardView, operation_id="unblockCard")
def unblock_card(
    number: str, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> CardView:
    return c.members.set_card_status(actor, number, "active")


@router.post(
    "/v1/cards/{number}/replace",
    status_code=status.HTTP_201_CREATED,
    response_model=CardView,
    operation_id="replaceCard",
)
def replace_card(
    number: str,
    body: CardReplace,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> CardView:
    """Mark the card lost and give the member a new one (a pre-printed ``new_number`` or a
    new virtual card); balance and history stay with the member."""
    return c.members.replace_card(
        actor, number, new_number=body.new_number, idempotency_key=idempotency_key
    )


@router.get("/v1/cards/{number}/qr", response_model=QrTokenView, operation_id="getCardQrToken")
def card_qr(
    number: str, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> QrTokenView:
    """A signed token for the card's QR code, valid for the current time window only."""
    return c.members.qr_token(actor, number)
