"""Campaigns (admin): definitions, life cycle, member lists, budgets, the dry-run preview
and the control group's report."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import Field

from kopilka.api.auth import ADMIN, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.campaigns.definition import CODE_PATTERN, CampaignCreate, CampaignPatch
from kopilka.services.campaigns import MAX_LISTED_MEMBERS, MAX_PREVIEW_DAYS
from kopilka.services.context import Actor

router = APIRouter(route_class=StrictJsonRoute, tags=["campaigns"])

CampaignCode = Annotated[
    str, Path(min_length=1, max_length=64, pattern=CODE_PATTERN, description="The campaign's code")
]
StatusFilter = Literal["draft", "scheduled", "paused", "ended"]


class MemberList(Strict):
    member_ids: list[uuid.UUID] = Field(max_length=MAX_LISTED_MEMBERS)


@router.post("/v1/campaigns", status_code=status.HTTP_201_CREATED, operation_id="createCampaign")
def create_campaign(
    body: CampaignCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """A new campaign, as a draft; the same code and definition again answers it as it is."""
    return c.campaigns.create(actor, body, idempotency_key=idempotency_key)


@router.get("/v1/campaigns", operation_id="listCampaigns")
def list_campaigns(
    campaign_status: StatusFilter | None = Query(default=None, alias="status"),
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """Every campaign, newest first (``status`` filters on the stored status)."""
    items = c.campaigns.list_campaigns(actor, decode_cursor(cursor), limit + 1, campaign_status)
    page, next_cursor = cut_page(items, limit, lambda item: uuid.UUID(item["id"]))
    return {"items": page, "next_cursor": next_cursor}


@router.get("/v1/campaigns/{code}", operation_id="getCampaign")
def get_campaign(
    code: CampaignCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> dict[str, Any]:
    return c.campaigns.get(actor, code)


@router.patch("/v1/campaigns/{code}", operation_id="updateCampaign")
def update_campaign(
    code: CampaignCode,
    body: CampaignPatch,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """Change fields of a draft, a scheduled campaign not started yet, or a paused one."""
    return c.campaigns.update(actor, code, body, idempotency_key=idempotency_key)


def _transition(action: str, summary: str) -> None:
    def move(
        code: CampaignCode,
        idempotency_key: IdempotencyKey = None,
        actor: Actor = Depends(ADMIN),
        c: Container = Depends(container),
    ) -> dict[str, Any]:
        return c.campaigns.transition(actor, code, action, idempotency_key=idempotency_key)

    move.__doc__ = summary
    router.post(f"/v1/campaigns/{{code}}/{action}", operation_id=f"{action}Campaign")(move)


_transition("schedule", "Draft -> scheduled: active from its start, ended after its end.")
_transition("pause", "Active -> paused: it stops applying at once.")
_transition("resume", "Paused -> scheduled (active again while in its window).")
_transition("end", "Any -> ended, for good.")


@router.get("/v1/campaigns/{code}/budget", operation_id="getCampaignBudget")
def get_budget(
    code: CampaignCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> dict[str, Any]:
    """Used and left of each budget, overall and per outlet."""
    return c.campaigns.budget(actor, code)


@router.post("/v1/campaigns/{code}/preview", operation_id="previewCampaign")
def preview_campaign(
    code: CampaignCode,
    days: Annotated[int, Query(ge=1, le=MAX_PREVIEW_DAYS)] = 30,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """A dry run (writes nothing): the audience's size, and what the campaign would have
    given on the last ``days`` days of receipts."""
    return c.campaigns.preview(actor, code, days)


@router.put("/v1/campaigns/{code}/members", operation_id="setCampaignMembers")
def set_members(
    code: CampaignCode,
    body: MemberList,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """Replace the member list of a campaign whose audience is a list of members."""
    return c.campaigns.set_members(actor, code, body.member_ids, idempotency_key=idempotency_key)


@router.get("/v1/campaigns/{code}/control-group", operation_id="getCampaignControlGroup")
def get_control_group(
    code: CampaignCode, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> dict[str, Any]:
    """Held-out and exposed members so far, and their purchases during the campaign."""
    return c.campaigns.control_group(actor, code)
