"""Coupons and promo codes: public codes, batches of unique codes (with CSV and printable
image exports), personal coupons of a member, and a coupon by its code."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from kopilka.api.auth import ADMIN, ANY_ROLE, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.coupons.terms import BatchInput, PersonalCouponInput, PromoCodeInput
from kopilka.services.context import Actor
from kopilka.services.coupons import MAX_IMAGES, BatchView, CouponView

router = APIRouter(route_class=StrictJsonRoute, tags=["coupons"])

CodeParam = str  # checked by the service: a malformed code is a 422 with its path


class CouponPage(BaseModel):
    items: list[CouponView]
    next_cursor: str | None


class BatchPage(BaseModel):
    items: list[BatchView]
    next_cursor: str | None


# ---- public promo codes -------------------------------------------------------------------
@router.post(
    "/v1/coupons",
    status_code=status.HTTP_201_CREATED,
    response_model=CouponView,
    operation_id="createPromoCode",
)
def create_promo_code(
    body: PromoCodeInput, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> CouponView:
    """A public promo code (e.g. SPRING25) with its benefit, limits and terms. The code is
    the natural key: the same body again answers the code already there; other terms under
    a code already taken are refused (409 ``coupon_code_taken``)."""
    return c.coupons.create_promo(actor, body)


@router.get("/v1/coupons/{code}", response_model=CouponView, operation_id="getCoupon")
def get_coupon(
    code: CodeParam, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> CouponView:
    """Any coupon by its code (case does not matter): its terms, status, uses left and its
    latest redemptions."""
    return c.coupons.get(actor, code)


@router.post("/v1/coupons/{code}/void", response_model=CouponView, operation_id="voidCoupon")
def void_coupon(
    code: CodeParam, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> CouponView:
    """Cancel a coupon; voiding it again answers the same."""
    return c.coupons.void(actor, code)


# ---- batches ------------------------------------------------------------------------------
@router.post(
    "/v1/coupon-batches",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchView,
    operation_id="createCouponBatch",
)
def create_coupon_batch(
    body: BatchInput, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> BatchView:
    """Generate up to 1,000,000 unique single-use codes at once (about a second per
    100,000 on PostgreSQL). The batch's ``code`` is its natural key: the same body again
    answers the batch already there."""
    return c.coupons.create_batch(actor, body)


@router.get("/v1/coupon-batches", response_model=BatchPage, operation_id="listCouponBatches")
def list_coupon_batches(
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> BatchPage:
    """The tenant's batches, newest first."""
    items = c.coupons.batches(actor, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return BatchPage(items=page, next_cursor=next_cursor)


@router.get(
    "/v1/coupon-batches/{batch_id}", response_model=BatchView, operation_id="getCouponBatch"
)
def get_coupon_batch(
    batch_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> BatchView:
    """A batch's terms and how many of its codes are used or voided."""
    return c.coupons.batch(actor, batch_id)


@router.post(
    "/v1/coupon-batches/{batch_id}/void",
    response_model=BatchView,
    operation_id="voidCouponBatch",
)
def void_coupon_batch(
    batch_id: uuid.UUID, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> BatchView:
    """Cancel the batch and every code of it not yet used; again answers the same."""
    return c.coupons.void_batch(actor, batch_id)


@router.get(
    "/v1/coupon-batches/{batch_id}/codes.csv",
    operation_id="exportCouponBatchCsv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def export_coupon_batch_csv(
    batch_id: uuid.UUID, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> StreamingResponse:
    """Every code of the batch as CSV (code, status, uses_left, valid_from, valid_until),
    streamed: a million codes never sit in memory at once."""
    filename, chunks = c.coupons.export_csv(actor, batch_id)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/v1/coupon-batches/{batch_id}/images",
    operation_id="exportCouponBatchImages",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_coupon_batch_images(
    batch_id: uuid.UUID,
    kind: Literal["qr", "barcode"] = "qr",
    page: int = Query(default=1, ge=1, le=1_000_000),
    per_page: int = Query(default=1000, ge=1, le=MAX_IMAGES),
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> Response:
    """One page of the batch's codes as printable images in a ZIP: a QR code (PNG) or a
    Code 128 barcode (SVG) per code, and ``sheet.html`` laying them out for printing. At
    most 10,000 per request; ``X-Next-Page`` names the next page while there is one."""
    export = c.coupons.export_images(actor, batch_id, kind, page, per_page)
    headers = {
        "Content-Disposition": f'attachment; filename="{export.filename}"',
        "X-Total-Count": str(export.total),
    }
    if export.next_page is not None:
        headers["X-Next-Page"] = str(export.next_page)
    return Response(export.content, media_type="application/zip", headers=headers)


# ---- personal coupons ---------------------------------------------------------------------
@router.post(
    "/v1/members/{member_id}/coupons",
    status_code=status.HTTP_201_CREATED,
    response_model=CouponView,
    operation_id="issueMemberCoupon",
)
def issue_member_coupon(
    member_id: uuid.UUID,
    body: PersonalCouponInput,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> CouponView:
    """A personal coupon for the member, with a generated code; a retry with the same
    Idempotency-Key answers the same coupon."""
    return c.coupons.issue(actor, member_id, body, idempotency_key)


@router.get(
    "/v1/members/{member_id}/coupons",
    response_model=CouponPage,
    operation_id="listMemberCoupons",
)
def list_member_coupons(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> CouponPage:
    """The member's personal coupons, newest first, from every source (rules, stamp cards,
    rewards, birthdays, the admin), each with its status."""
    items = c.coupons.member_coupons(actor, member_id, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return CouponPage(items=page, next_cursor=next_cursor)
