"""The reward catalogue: rewards and their stock (admin), the member's catalogue,
redemptions and the orders' fulfilment (pending, ready for pickup, issued, cancelled)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field, StringConstraints

from kopilka.api.auth import ADMIN, ANY_ROLE, TILL, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.rewards.definition import MAX_QUANTITY, RewardDefinition, RewardPatch
from kopilka.services.context import Actor
from kopilka.services.rewards import (
    MAX_CODES_PER_UPLOAD,
    MAX_ORDER_QUANTITY,
    CodesUploaded,
    MemberRewardView,
    RedeemInput,
    RewardOrderView,
    RewardView,
    StockInput,
)

router = APIRouter(route_class=StrictJsonRoute, tags=["rewards"])

LocationCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY, strict=True)]
KindFilter = Literal["material", "coupon", "privilege", "partner_code", "charity"]
OrderStatusFilter = Literal["pending", "ready", "issued", "cancelled"]


class StockSet(Strict):
    location: LocationCode = Field(description="An outlet code or a warehouse code")
    quantity: Quantity = Field(description="The absolute number of units there now")
    low_stock_threshold: Quantity | None = Field(
        default=None, description="Raise reward.low_stock at or below this; null removes it"
    )


class CodesUpload(Strict):
    codes: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=MAX_CODES_PER_UPLOAD
    )


class OrderCreate(Strict):
    reward_id: uuid.UUID | None = None
    reward_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    location: LocationCode | None = Field(
        default=None, description="Where to take a material reward from"
    )
    quantity: Annotated[int, Field(ge=1, le=MAX_ORDER_QUANTITY, strict=True)] = 1


class OrderReady(Strict):
    outlet: LocationCode | None = Field(
        default=None, description="The pickup outlet's code (a till key's own by default)"
    )


class RewardPage(BaseModel):
    items: list[RewardView]
    next_cursor: str | None


class MemberRewardPage(BaseModel):
    items: list[MemberRewardView]
    next_cursor: str | None


class RewardOrderPage(BaseModel):
    items: list[RewardOrderView]
    next_cursor: str | None


# ---- the catalogue (marketing) ------------------------------------------------------------
@router.post(
    "/v1/rewards",
    status_code=status.HTTP_201_CREATED,
    response_model=RewardView,
    operation_id="createReward",
)
def create_reward(
    body: RewardDefinition, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> RewardView:
    """Add a reward; the same body again (same code) answers the reward already there."""
    return c.rewards.create(actor, body)


@router.get("/v1/rewards", response_model=RewardPage, operation_id="listRewards")
def list_rewards(
    reward_status: Literal["active", "archived"] | None = Query(default=None, alias="status"),
    kind: KindFilter | None = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> RewardPage:
    """Every reward, archived ones too, with stock and totals."""
    items = c.rewards.list_rewards(
        actor, decode_cursor(cursor), limit + 1, status=reward_status, kind=kind
    )
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return RewardPage(items=page, next_cursor=next_cursor)


@router.get("/v1/rewards/{reward_id}", response_model=RewardView, operation_id="getReward")
def get_reward(
    reward_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> RewardView:
    return c.rewards.get(actor, reward_id)


@router.patch("/v1/rewards/{reward_id}", response_model=RewardView, operation_id="updateReward")
def update_reward(
    reward_id: uuid.UUID,
    body: RewardPatch,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> RewardView:
    """Change fields (only those sent), or archive: ``{"status": "archived"}``."""
    return c.rewards.update(actor, reward_id, body)


@router.put(
    "/v1/rewards/{reward_id}/stock", response_model=RewardView, operation_id="setRewardStock"
)
def set_reward_stock(
    reward_id: uuid.UUID,
    body: StockSet,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> RewardView:
    """Set the quantity at one location (absolute, so retries are harmless)."""
    given = "low_stock_threshold" in body.model_fields_set
    return c.rewards.set_stock(
        actor,
        reward_id,
        StockInput(body.location, body.quantity, body.low_stock_threshold, given),
    )


@router.post(
    "/v1/rewards/{reward_id}/codes",
    response_model=CodesUploaded,
    operation_id="uploadRewardCodes",
)
def upload_reward_codes(
    reward_id: uuid.UUID,
    body: CodesUpload,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> CodesUploaded:
    """Add partner codes to the pool; codes already there are skipped."""
    return c.rewards.upload_codes(actor, reward_id, body.codes)


# ---- members ------------------------------------------------------------------------------
@router.get(
    "/v1/members/{member_id}/rewards",
    response_model=MemberRewardPage,
    operation_id="listMemberRewards",
)
def list_member_rewards(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> MemberRewardPage:
    """The rewards this member sees: their price, what is left, whether they can buy now."""
    items = c.rewards.catalogue(actor, member_id, decode_cursor(cursor), limit)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return MemberRewardPage(items=page, next_cursor=next_cursor)


@router.post(
    "/v1/members/{member_id}/reward-orders",
    status_code=status.HTTP_201_CREATED,
    response_model=RewardOrderView,
    operation_id="redeemReward",
)
def redeem_reward(
    member_id: uuid.UUID,
    body: OrderCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> RewardOrderView:
    """Buy a reward with points: the order is pending for material rewards (until handed
    over), issued at once for the others."""
    return c.rewards.redeem(
        actor,
        member_id,
        RedeemInput(body.reward_id, body.reward_code, body.location, body.quantity),
        idempotency_key=idempotency_key,
    )


@router.get(
    "/v1/members/{member_id}/reward-orders",
    response_model=RewardOrderPage,
    operation_id="listMemberRewardOrders",
)
def list_member_reward_orders(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> RewardOrderPage:
    """The member's orders, newest first."""
    items = c.rewards.orders(actor, decode_cursor(cursor), limit + 1, member_id=member_id)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return RewardOrderPage(items=page, next_cursor=next_cursor)


# ---- orders -------------------------------------------------------------------------------
@router.get("/v1/reward-orders", response_model=RewardOrderPage, operation_id="listRewardOrders")
def list_reward_orders(
    order_status: OrderStatusFilter | None = Query(default=None, alias="status"),
    reward_id: uuid.UUID | None = None,
    location: LocationCode | None = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> RewardOrderPage:
    """The tenant's orders, newest first: e.g. ``?status=pending&location=WH-1`` is a
    warehouse's queue."""
    items = c.rewards.orders(
        actor,
        decode_cursor(cursor),
        limit + 1,
        reward_id=reward_id,
        status=order_status,
        location=location,
    )
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return RewardOrderPage(items=page, next_cursor=next_cursor)


@router.get(
    "/v1/reward-orders/{order_id}", response_model=RewardOrderView, operation_id="getRewardOrder"
)
def get_reward_order(
    order_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> RewardOrderView:
    return c.rewards.order(actor, order_id)


@router.post(
    "/v1/reward-orders/{order_id}/ready",
    response_model=RewardOrderView,
    operation_id="markRewardOrderReady",
)
def mark_reward_order_ready(
    order_id: uuid.UUID,
    body: OrderReady,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> RewardOrderView:
    """The item waits for the member at an outlet."""
    return c.rewards.mark_ready(actor, order_id, body.outlet)


@router.post(
    "/v1/reward-orders/{order_id}/issue",
    response_model=RewardOrderView,
    operation_id="issueRewardOrder",
)
def issue_reward_order(
    order_id: uuid.UUID, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> RewardOrderView:
    """The member has the item."""
    return c.rewards.issue(actor, order_id)


@router.post(
    "/v1/reward-orders/{order_id}/cancel",
    response_model=RewardOrderView,
    operation_id="cancelRewardOrder",
)
def cancel_reward_order(
    order_id: uuid.UUID, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> RewardOrderView:
    """Cancel a pending or ready order: the points and the stock come back."""
    return c.rewards.cancel(actor, order_id)
