"""Invite a friend: a member's code, share link and counts, and the friends it brought."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from kopilka.api.auth import ANY_ROLE, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor
from kopilka.services.referrals import ReferralSummaryView, ReferralView

router = APIRouter(route_class=StrictJsonRoute, tags=["referrals"])

ReferralStatus = Literal[
    "awaiting_purchase", "pending", "rewarded", "voided", "blocked", "capped", "inactive"
]


class ReferralPage(BaseModel):
    items: list[ReferralView]
    next_cursor: str | None


@router.get(
    "/v1/members/{member_id}/referral",
    response_model=ReferralSummaryView,
    operation_id="getMemberReferral",
)
def get_referral(
    member_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> ReferralSummaryView:
    """The member's referral code and share link, the offer in force (ru and en), how many
    friends it brought in each status, and who brought the member."""
    return c.referrals.summary(actor, member_id)


@router.get(
    "/v1/members/{member_id}/referrals",
    response_model=ReferralPage,
    operation_id="listMemberReferrals",
)
def list_referrals(
    member_id: uuid.UUID,
    referral_status: ReferralStatus | None = Query(default=None, alias="status"),
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> ReferralPage:
    """The friends the member brought, newest first, each with its status explained."""
    items = c.referrals.referees(
        actor, member_id, decode_cursor(cursor), limit + 1, referral_status
    )
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return ReferralPage(items=page, next_cursor=next_cursor)
