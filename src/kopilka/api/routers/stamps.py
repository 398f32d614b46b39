"""Stamp cards: a member's cards and their history; an admin's correction."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import Field, StringConstraints

from kopilka.api.auth import ADMIN, ANY_ROLE, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.stamps.settings import CARD_ID_PATTERN
from kopilka.services.context import Actor
from kopilka.services.stamps import MAX_ADJUSTMENT

router = APIRouter(route_class=StrictJsonRoute, tags=["stamps"])

CardId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=CARD_ID_PATTERN)]


class StampAdjustment(Strict):
    card: CardId = Field(description="The stamp card's id in the program")
    stamps: Annotated[int, Field(ge=-MAX_ADJUSTMENT, le=MAX_ADJUSTMENT, strict=True)] = Field(
        description="Stamps to add (positive) or take off (negative), not 0"
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


@router.get("/v1/members/{member_id}/stamps", operation_id="getMemberStamps")
def get_stamps(
    member_id: uuid.UUID,
    card: CardId | None = Query(default=None, description="Only this card's history"),
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """The member's stamp cards (balance, stamps to go, rewards waiting, expiry) and their
    history, newest first, each movement described in ru and en."""
    found = c.stamps.member_stamps(actor, member_id, card, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(found["history"], limit, lambda m: uuid.UUID(m["id"]))
    return {**found, "history": page, "next_cursor": next_cursor}


@router.post(
    "/v1/members/{member_id}/stamps/adjustments",
    status_code=status.HTTP_201_CREATED,
    operation_id="adjustMemberStamps",
)
def adjust_stamps(
    member_id: uuid.UUID,
    body: StampAdjustment,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """Add stamps to a card or take some off, with a reason (written to its history)."""
    return c.stamps.adjust(
        actor, member_id, body.card, body.stamps, body.reason, idempotency_key=idempotency_key
    )
