"""Tiers: a member's status and progress, its history, and setting it by hand."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StringConstraints

from kopilka.api.auth import ADMIN, ANY_ROLE, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.iso_text import IsoDayText
from kopilka.services.context import Actor
from kopilka.services.tiers import TierHistoryItem, TierStatusView

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/v1/members/{member_id}/tier", tags=["tiers"]
)

ProgramCode = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="A program with tiers (default: the first)"),
]


class TierSet(Strict):
    tier: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="Why, in plain words: kept in the history and the audit trail"
    )
    locked_until: Annotated[date, IsoDayText] | None = Field(
        default=None, description="Not lowered by evaluations up to this day (tenant-local)"
    )
    program: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class TierHistoryPage(BaseModel):
    items: list[TierHistoryItem]
    next_cursor: str | None


@router.get("", response_model=TierStatusView, operation_id="getMemberTier")
def get_tier(
    member_id: uuid.UUID,
    program: ProgramCode = None,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> TierStatusView:
    """The current tier, the progress to the next one, what keeps it by when, and the date
    of the next evaluation, with a message in ru and en."""
    return c.tiers.status(actor, member_id, program)


@router.put("", response_model=TierStatusView, operation_id="setMemberTier")
def set_tier(
    member_id: uuid.UUID,
    body: TierSet,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> TierStatusView:
    """Set the tier by hand, with a reason; optionally locked against downgrades."""
    return c.tiers.set_tier(
        actor,
        member_id,
        tier=body.tier,
        reason=body.reason,
        locked_until=body.locked_until,
        program=body.program,
        idempotency_key=idempotency_key,
    )


@router.get("/history", response_model=TierHistoryPage, operation_id="getMemberTierHistory")
def get_tier_history(
    member_id: uuid.UUID,
    program: ProgramCode = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> TierHistoryPage:
    """Tier changes and evaluations, newest first, each explained in ru and en."""
    items = c.tiers.history(actor, member_id, decode_cursor(cursor), limit + 1, program)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return TierHistoryPage(items=page, next_cursor=next_cursor)
