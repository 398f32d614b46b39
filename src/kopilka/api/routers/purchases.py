"""The till: calculate, confirm (or hold then confirm/void), refund, cancel.

The till's operations are ``async def`` and call the (blocking) service directly, on the
event loop: a server process works on one till request at a time, and concurrency comes
from worker processes (``kopilka serve --workers N``, each its own socket). A plain
``def`` would run in the thread pool, and with Python's GIL the threads only took turns
on the one core a process can use while every request paid two thread hand-offs and the
switching between them: measured with bench/purchases.py, server CPU per purchase went
from 3.9-4.2 to 2.5-3.3 ms and the open-loop p99 at 70 % of the peak from 65 to 16 ms.
They are short (milliseconds); the back office's slow operations (imports, reports) stay
plain functions in the thread pool, which the event loop keeps serving between till
requests.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.config import JsonDict

from kopilka.api.auth import ANY_ROLE, TILL, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Flag, Moment
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.errors import ValidationFailed
from kopilka.services.context import Actor
from kopilka.services.purchases import GiftCardUse, LineInput, MemberRef, ReceiptInput

router = APIRouter(route_class=StrictJsonRoute, tags=["purchases"])
Qty = Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=10, decimal_places=3)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberRefIn(_Strict):
    card: Annotated[str, StringConstraints(max_length=32)] | None = None
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    id: uuid.UUID | None = None
    qr: Annotated[str, StringConstraints(max_length=128)] | None = None


class LineIn(_Strict):
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    qty: Qty
    price: Annotated[int, Field(ge=0, le=10**11, strict=True)] = Field(
        description="Price per unit in minor units (kopecks)"
    )
    name: Annotated[str, StringConstraints(max_length=300)] | None = None
    category: Annotated[str, StringConstraints(max_length=300)] | None = None
    brand: Annotated[str, StringConstraints(max_length=200)] | None = None
    flags: list[Literal["no_discount", "no_points"]] = Field(default_factory=list, max_length=2)


class GiftCardUseIn(_Strict):
    number: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    pin: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = Field(
        default=None, description="Required online; at a till the card itself is the proof"
    )
    amount: Annotated[int, Field(gt=0, le=10**11, strict=True)] | None = Field(
        default=None, description="Minor units to pay with the card; default: as much as it can"
    )


_RECEIPT_EXAMPLE: JsonDict = {
    "member": {"phone": "+79161234567"},
    "redeem_points": "max",
    "lines": [{"sku": "LATTE", "qty": 2, "price": 25000, "category": "drinks/coffee"}],
}


class CalculateIn(_Strict):
    # The examples show in the API docs, and schema-driven clients and fuzzers start from them.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_RECEIPT_EXAMPLE]})
    member: MemberRefIn | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=1000)
    redeem_points: Annotated[int, Field(ge=0, le=10**12, strict=True)] | Literal["max"] | None = (
        None
    )
    coupons: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    gift_cards: list[GiftCardUseIn] = Field(
        default_factory=list, max_length=5, description="Gift cards paying for the receipt"
    )
    payment_method: Annotated[str, StringConstraints(max_length=32)] | None = None
    channel: Literal["store", "online", "app"] = "store"
    occurred_at: Moment | None = None
    outlet: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Outlet code; implied by a till key"
    )

    def to_input(self) -> ReceiptInput:
        member = None
        if self.member is not None:
            member = MemberRef(
                card=self.member.card, phone=self.member.phone, id=self.member.id, qr=self.member.qr
            )
        return ReceiptInput(
            lines=tuple(
                LineInput(
                    sku=li.sku,
                    qty=li.qty,
                    price=li.price,
                    name=li.name,
                    category=li.category,
                    brand=li.brand,
                    flags=tuple(li.flags),
                )
                for li in self.lines
            ),
            member=member,
            redeem_points=self.redeem_points or None,
            coupons=tuple(self.coupons),
            gift_cards=tuple(
                GiftCardUse(number=g.number, pin=g.pin, amount=g.amount) for g in self.gift_cards
            ),
            payment_method=self.payment_method,
            channel=self.channel,
            occurred_at=self.occurred_at,
            outlet=self.outlet,
        )


class PurchaseIn(CalculateIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{**_RECEIPT_EXAMPLE, "receipt_number": "R-1042"}]},
    )
    receipt_number: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    hold: Flag = False
    hold_ttl_seconds: Annotated[int, Field(ge=10, le=86400, strict=True)] | None = None


class RefundLineIn(_Strict):
    line: Annotated[int, Field(ge=0, le=10_000, strict=True)]
    qty: Qty


class RefundIn(_Strict):
    lines: list[RefundLineIn] | None = Field(default=None, min_length=1, max_length=1000)
    refund_number: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class PurchasePage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


@router.post("/v1/purchases/calculate", operation_id="calculatePurchase")
async def calculate(
    body: CalculateIn, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> dict[str, Any]:
    """Discounts per line, points to earn, and how much may be paid with points. No writes."""
    return c.purchases.calculate(actor, body.to_input())


@router.post("/v1/purchases", status_code=status.HTTP_201_CREATED, operation_id="confirmPurchase")
async def confirm(
    body: PurchaseIn, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> dict[str, Any]:
    """Register the receipt and its points in one transaction; idempotent on outlet +
    receipt_number. With ``hold``, points to spend are only reserved."""
    return c.purchases.confirm(
        actor,
        body.to_input(),
        body.receipt_number,
        hold=body.hold,
        hold_ttl_seconds=body.hold_ttl_seconds,
    )


@router.post("/v1/purchases/{receipt_id}/confirm", operation_id="confirmHeldPurchase")
async def confirm_held(
    receipt_id: uuid.UUID, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> dict[str, Any]:
    return c.purchases.confirm_held(actor, receipt_id)


@router.post("/v1/purchases/{receipt_id}/void", operation_id="voidPurchase")
async def void(
    receipt_id: uuid.UUID, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> dict[str, Any]:
    return c.purchases.void(actor, receipt_id)


@router.post(
    "/v1/purchases/{receipt_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    operation_id="refundPurchase",
)
async def refund(
    receipt_id: uuid.UUID,
    body: RefundIn,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """Refund the whole receipt (no ``lines``) or some lines and quantities."""
    key = body.refund_number or idempotency_key
    if not key:
        raise ValidationFailed(
            "Give refund_number or an Idempotency-Key header.", code="refund_key_required"
        )
    lines = [(li.line, li.qty) for li in body.lines] if body.lines else None
    return c.purchases.refund(actor, receipt_id, key, lines)


@router.post("/v1/purchases/{receipt_id}/cancel", operation_id="cancelPurchase")
async def cancel(
    receipt_id: uuid.UUID, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> dict[str, Any]:
    """Undo a receipt confirmed by mistake, the same day, in full."""
    return c.purchases.cancel(actor, receipt_id)


@router.get("/v1/purchases/{receipt_id}", operation_id="getPurchase")
def get_purchase(
    receipt_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> dict[str, Any]:
    return c.purchases.get(actor, receipt_id)


@router.get(
    "/v1/members/{member_id}/purchases",
    response_model=PurchasePage,
    operation_id="listMemberPurchases",
)
def member_purchases(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> PurchasePage:
    items = c.purchases.member_purchases(actor, member_id, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: uuid.UUID(item["id"]))
    return PurchasePage(items=page, next_cursor=next_cursor)
