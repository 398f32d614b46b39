"""Contests and prize draws: definition and the draw's steps (admin), the publication anyone
with a key can re-run (``kopilka draw verify``), and a member's entries.

A draw is named by its ``code``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from kopilka.api.auth import ADMIN, ANY_ROLE, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.draws.definition import DrawDefinition
from kopilka.domain.draws.fairness import Publication
from kopilka.services.context import Actor
from kopilka.services.draws import DrawView, MemberDrawView

router = APIRouter(route_class=StrictJsonRoute, tags=["draws"])

DrawCode = Annotated[str, Path(min_length=1, max_length=64, description="The draw's code")]
StatusFilter = Literal["draft", "open", "frozen", "drawn"]


class DrawPage(BaseModel):
    items: list[DrawView]
    next_cursor: str | None


class MemberDrawPage(BaseModel):
    items: list[MemberDrawView]
    next_cursor: str | None


@router.post(
    "/v1/draws",
    status_code=status.HTTP_201_CREATED,
    response_model=DrawView,
    operation_id="createDraw",
)
def create_draw(
    body: DrawDefinition, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> DrawView:
    """Add a draft draw; the same body again (same code) answers the draw already there."""
    return c.draws.create(actor, body)


@router.get("/v1/draws", response_model=DrawPage, operation_id="listDraws")
def list_draws(
    draw_status: StatusFilter | None = Query(default=None, alias="status"),
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> DrawPage:
    """Every draw, oldest first."""
    items = c.draws.list_draws(actor, decode_cursor(cursor), limit + 1, draw_status)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return DrawPage(items=page, next_cursor=next_cursor)


@router.get("/v1/draws/{code}", response_model=DrawView, operation_id="getDraw")
def get_draw(
    code: DrawCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> DrawView:
    """The draw with its winners and the delivery of their prizes."""
    return c.draws.get(actor, code)


@router.post("/v1/draws/{code}/open", response_model=DrawView, operation_id="openDraw")
def open_draw(
    code: DrawCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> DrawView:
    """Commit to a secret seed (its sha256 is published); before the window ends."""
    return c.draws.open(actor, code)


@router.post("/v1/draws/{code}/freeze", response_model=DrawView, operation_id="freezeDraw")
def freeze_draw(
    code: DrawCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> DrawView:
    """Compute the entries and freeze them under a hash; after the window."""
    return c.draws.freeze(actor, code)


@router.post("/v1/draws/{code}/run", response_model=DrawView, operation_id="runDraw")
def run_draw(
    code: DrawCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> DrawView:
    """Reveal the seed, pick the winners (once, from the draw's day) and deliver the prizes
    not yet delivered; calling it again retries those."""
    return c.draws.run(actor, code)


@router.get(
    "/v1/draws/{code}/public", response_model=Publication, operation_id="getDrawPublication"
)
def draw_publication(
    code: DrawCode, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> Publication:
    """Everything needed to re-run the draw (``kopilka draw verify FILE.json``); no personal
    data: members appear under per-draw pseudonyms."""
    return c.draws.publication(actor, code)


@router.get(
    "/v1/draws/{code}/entries.jsonl",
    response_class=PlainTextResponse,
    operation_id="exportDrawEntries",
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def draw_entries(
    code: DrawCode, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> PlainTextResponse:
    """The frozen list exactly as hashed: its sha256 is the published ``entries_hash``."""
    return PlainTextResponse(c.draws.entries_text(actor, code), media_type="application/x-ndjson")


@router.get(
    "/v1/members/{member_id}/draw-entries",
    response_model=MemberDrawPage,
    operation_id="listMemberDrawEntries",
)
def member_draw_entries(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> MemberDrawPage:
    """The draws the member takes part in, newest first: their entries (provisional while
    the draw is open), their pseudonym in the published list, the prizes they won."""
    items = c.draws.member_draws(actor, member_id, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: item.draw_id)
    return MemberDrawPage(items=page, next_cursor=next_cursor)
