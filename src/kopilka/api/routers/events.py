"""Member events: record a named event (rewarded by the programs' earning rules), list them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field, StringConstraints

from kopilka.api.auth import ANY_ROLE, TILL, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Moment, Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor
from kopilka.services.member_events import MemberEventView

router = APIRouter(route_class=StrictJsonRoute, prefix="/v1/members", tags=["events"])

EventName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EventCreate(Strict):
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="Your id of the event: sending it again replays the first answer"
    )
    name: EventName = Field(description="A name the programs in force declare in `events`")
    properties: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], Any] = Field(
        default_factory=dict, max_length=50
    )
    occurred_at: Moment | None = Field(default=None, description="Default: now")


class EventPage(BaseModel):
    items: list[MemberEventView]
    next_cursor: str | None


@router.post(
    "/{member_id}/events",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberEventView,
    operation_id="recordMemberEvent",
)
def record_event(
    member_id: uuid.UUID,
    body: EventCreate,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MemberEventView:
    """Record an event (a review left, the app installed...) and give what the programs'
    rules for it earn, within their caps. Idempotent on ``event_id``."""
    return c.lifecycle.events.record(
        actor, member_id, body.event_id, body.name, body.properties, body.occurred_at
    )


@router.get("/{member_id}/events", response_model=EventPage, operation_id="listMemberEvents")
def list_events(
    member_id: uuid.UUID,
    name: EventName | None = Query(default=None),
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> EventPage:
    """The member's events, newest first, with what each earned (or why not)."""
    items = c.lifecycle.events.list(actor, member_id, decode_cursor(cursor), limit + 1, name)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return EventPage(items=page, next_cursor=next_cursor)
