"""Gift cards: sale and activation, balance enquiries (rate-limited), blocking, reissue,
the tenant's policy and the liability report. Paying with a card is part of the till's
purchase requests (``gift_cards`` in calculate and confirm)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from pydantic import Field, StringConstraints

from kopilka.api.auth import ADMIN, TILL, container
from kopilka.api.deps import IdempotencyKey
from kopilka.api.problems import problem
from kopilka.api.schemas import Moment, ShortText, Strict
from kopilka.api.strict_json import StrictJsonRoute, exact_types
from kopilka.bootstrap import Container
from kopilka.domain.giftcards.logic import RateLimited
from kopilka.domain.giftcards.settings import MAX_AMOUNT, GiftCardPolicy
from kopilka.services.context import Actor
from kopilka.services.giftcards import (
    BalanceAnswer,
    GiftCardDetails,
    GiftCardIssued,
    GiftCardView,
    LiabilityView,
    SaleInput,
)

router = APIRouter(route_class=StrictJsonRoute, tags=["gift cards"])

# Checked by the service (check digit, 12 to 19 digits), so a wrong one is counted as an
# attempt and answered with the card-specific code.
Number = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Pin = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SaleIn(Strict):
    outlet: Code = Field(description="Code of the outlet that sold the card")
    receipt_number: Code = Field(description="The sale's receipt number")
    sold_at: Moment


class GiftCardCreate(Strict):
    amount: Annotated[int, Field(ge=1, le=MAX_AMOUNT, strict=True)] = Field(
        description="Face value in minor units (kopecks)"
    )
    number: Number | None = Field(
        default=None, description="A pre-printed number (Luhn check digit); else generated"
    )
    sale: SaleIn


class ActivateIn(Strict):
    outlet: Code | None = Field(default=None, description="Outlet code; implied by a till key")


class BlockIn(Strict):
    reason: ShortText | None = None


class ReissueIn(Strict):
    new_number: Number | None = Field(
        default=None, description="A pre-printed number for the new card; else generated"
    )
    reason: ShortText | None = None


class BalanceIn(Strict):
    number: Number
    pin: Pin | None = Field(default=None, description="Required online, or when the policy says")
    channel: Literal["store", "online", "app"] = "store"


def _rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
    """A 429 problem with ``Retry-After`` (the shared handler sets no headers)."""
    response = problem(request, exc.status, exc.code, exc.title, exc.detail, extra=exc.extra)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@router.post(
    "/v1/gift-cards",
    status_code=status.HTTP_201_CREATED,
    response_model=GiftCardIssued,
    operation_id="issueGiftCard",
)
def issue(
    body: GiftCardCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> GiftCardIssued:
    """Record the sale of a card: ``issued``, not usable until activated at a till. The
    answer shows the PIN once (a replay with the same Idempotency-Key does not)."""
    sale = SaleInput(body.sale.outlet, body.sale.receipt_number, body.sale.sold_at)
    return c.giftcards.issue(
        actor, body.amount, sale, number=body.number, idempotency_key=idempotency_key
    )


@router.get(
    "/v1/gift-cards/policy", response_model=GiftCardPolicy, operation_id="getGiftCardPolicy"
)
def get_policy(actor: Actor = Depends(ADMIN), c: Container = Depends(container)) -> GiftCardPolicy:
    return c.giftcards.get_policy(actor)


@router.put(
    "/v1/gift-cards/policy", response_model=GiftCardPolicy, operation_id="setGiftCardPolicy"
)
def set_policy(
    body: GiftCardPolicy,
    actor: Actor = Depends(ADMIN),
    _exact: None = Depends(exact_types(GiftCardPolicy)),  # after the key's check
    c: Container = Depends(container),
) -> GiftCardPolicy:
    """Replace the policy: validity, where a PIN is needed, amounts, enquiry limits."""
    return c.giftcards.set_policy(actor, body)


@router.get(
    "/v1/gift-cards/liability", response_model=LiabilityView, operation_id="getGiftCardLiability"
)
def liability(actor: Actor = Depends(ADMIN), c: Container = Depends(container)) -> LiabilityView:
    """What the cards can still pay (the liability), and what was loaded, spent, refunded
    and expired, from the ledger; separate from every points balance."""
    return c.giftcards.liability(actor)


@router.post(
    "/v1/gift-cards/balance",
    response_model=BalanceAnswer,
    operation_id="checkGiftCardBalance",
    responses={429: {"description": "Too many enquiries; see Retry-After"}},
)
def balance(
    body: BalanceIn,
    request: Request,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> Any:
    """Balance and validity of a card; rate-limited per card and per API key."""
    try:
        return c.giftcards.balance(actor, body.number, pin=body.pin, channel=body.channel)
    except RateLimited as exc:
        return _rate_limited(request, exc)


@router.get("/v1/gift-cards/{number}", response_model=GiftCardDetails, operation_id="getGiftCard")
def get_card(
    number: str, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> GiftCardDetails:
    """Status, balance and history of a card."""
    return c.giftcards.details(actor, number)


@router.post(
    "/v1/gift-cards/{number}/activate",
    response_model=GiftCardView,
    operation_id="activateGiftCard",
)
def activate(
    number: str,
    body: ActivateIn,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> GiftCardView:
    """Load the face value: the card becomes ``active``; again = no change."""
    return c.giftcards.activate(actor, number, body.outlet)


@router.post(
    "/v1/gift-cards/{number}/block", response_model=GiftCardView, operation_id="blockGiftCard"
)
def block(
    number: str, body: BlockIn, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> GiftCardView:
    return c.giftcards.block(actor, number, body.reason)


@router.post(
    "/v1/gift-cards/{number}/unblock",
    response_model=GiftCardView,
    operation_id="unblockGiftCard",
)
def unblock(
    number: str, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> GiftCardView:
    return c.giftcards.unblock(actor, number)


@router.post(
    "/v1/gift-cards/{number}/reissue",
    status_code=status.HTTP_201_CREATED,
    response_model=GiftCardIssued,
    operation_id="reissueGiftCard",
)
def reissue(
    number: str,
    body: ReissueIn,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> GiftCardIssued:
    """Replace a lost card: a new number and PIN with the remaining balance; the old card
    becomes ``replaced``."""
    return c.giftcards.reissue(
        actor,
        number,
        new_number=body.new_number,
        reason=body.reason,
        idempotency_key=idempotency_key,
    )
