"""Families (one pooled balance for up to N members), transfers and donations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field, StringConstraints

from kopilka.api.auth import ANY_ROLE, TILL, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import Points, Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor
from kopilka.services.families import (
    CharityView,
    DonationView,
    FamilyView,
    InvitationView,
    MembershipChange,
    TransferView,
)

router = APIRouter(route_class=StrictJsonRoute, tags=["families"])
FAMILY = "/v1/members/{member_id}/family"


class FamilyCreate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class FamilyPermission(Strict):
    can_spend: Annotated[bool, Field(strict=True)]


class InvitationCreate(Strict):
    invitee_id: uuid.UUID | None = Field(
        default=None, description="Only this member may use the code; null: whoever has it"
    )


class FamilyJoin(Strict):
    code: Annotated[str, StringConstraints(min_length=4, max_length=16, pattern=r"^[A-Za-z0-9]+$")]


class TransferCreate(Strict):
    to_member_id: uuid.UUID
    points: Points


class DonationCreate(Strict):
    charity: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    points: Points


class TransferPage(BaseModel):
    items: list[TransferView]
    next_cursor: str | None


@router.post(
    FAMILY,
    status_code=status.HTTP_201_CREATED,
    response_model=FamilyView,
    operation_id="createFamily",
)
def create_family(
    member_id: uuid.UUID,
    body: FamilyCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> FamilyView:
    """The member founds a family and owns it: their account becomes the family's pool."""
    return c.families.create(actor, member_id, body.name, idempotency_key=idempotency_key)


@router.get(FAMILY, response_model=FamilyView, operation_id="getMemberFamily")
def get_family(
    member_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> FamilyView:
    """The member's family: its members, who may spend, and the pool's balance."""
    return c.families.get(actor, member_id)


@router.patch(FAMILY, response_model=FamilyView, operation_id="setFamilySpending")
def set_spending(
    member_id: uuid.UUID,
    body: FamilyPermission,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> FamilyView:
    """The owner's decision: may this member pay with the family's points."""
    return c.families.set_can_spend(
        actor, member_id, body.can_spend, idempotency_key=idempotency_key
    )


@router.delete(FAMILY, response_model=MembershipChange, operation_id="leaveFamily")
def leave_family(
    member_id: uuid.UUID,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MembershipChange:
    """The member leaves with their share (the program's leave_split); the owner leaving
    dissolves the family."""
    return c.families.leave(actor, member_id, idempotency_key=idempotency_key)


@router.post(
    f"{FAMILY}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationView,
    operation_id="inviteToFamily",
)
def invite(
    member_id: uuid.UUID,
    body: InvitationCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> InvitationView:
    """The owner (``member_id``) gets a one-time code for a new member."""
    return c.families.invite(actor, member_id, body.invitee_id, idempotency_key=idempotency_key)


@router.post(
    f"{FAMILY}/join",
    status_code=status.HTTP_201_CREATED,
    response_model=MembershipChange,
    operation_id="joinFamily",
)
def join_family(
    member_id: uuid.UUID,
    body: FamilyJoin,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MembershipChange:
    """Join with an invitation code; the member's points move into the pool."""
    return c.families.join(actor, member_id, body.code, idempotency_key=idempotency_key)


@router.post(
    "/v1/members/{member_id}/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferView,
    operation_id="transferPoints",
)
def transfer(
    member_id: uuid.UUID,
    body: TransferCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> TransferView:
    """Give points to another member, within the program's limits; they keep their dates."""
    return c.families.transfer(
        actor, member_id, body.to_member_id, body.points, idempotency_key=idempotency_key
    )


@router.get(
    "/v1/members/{member_id}/transfers",
    response_model=TransferPage,
    operation_id="listMemberTransfers",
)
def list_transfers(
    member_id: uuid.UUID,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> TransferPage:
    """Transfers the member sent or received, newest first."""
    items = c.families.transfers(actor, member_id, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return TransferPage(items=page, next_cursor=next_cursor)


@router.post(
    "/v1/members/{member_id}/donations",
    status_code=status.HTTP_201_CREATED,
    response_model=DonationView,
    operation_id="donatePoints",
)
def donate(
    member_id: uuid.UUID,
    body: DonationCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> DonationView:
    """Give points to one of the tenant's charities."""
    return c.families.donate(
        actor, member_id, body.charity, body.points, idempotency_key=idempotency_key
    )


@router.get("/v1/charities", response_model=list[CharityView], operation_id="listCharities")
def list_charities(
    actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> list[CharityView]:
    """The charities members can donate to, and the points each has been given."""
    return c.families.charities(actor)
