"""Closed clubs and paid memberships: joining, approval, leaving, fees, invitations, reports.

A club is named by its ``code`` from the program document.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import Field, StringConstraints

from kopilka.api.auth import ADMIN, ANY_ROLE, TILL, container
from kopilka.api.deps import IdempotencyKey
from kopilka.api.schemas import Moment, Strict
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.domain.clubs.settings import MAX_FEE
from kopilka.services.clubs import (
    ClubReport,
    ClubView,
    InvitationBatchView,
    MembershipView,
    PaymentView,
)
from kopilka.services.context import Actor

router = APIRouter(route_class=StrictJsonRoute, tags=["clubs"])

ClubCode = Annotated[str, Path(min_length=1, max_length=64, description="The club's code")]
Text64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MEMBER_CLUB = "/v1/members/{member_id}/clubs/{code}"


class ClubJoin(Strict):
    club: Text64
    invitation_code: Text64 | None = None


class ClubReject(Strict):
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class ClubPayment(Strict):
    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="The payment's id in the merchant's system: a retry with it replays"
    )
    amount: Annotated[int, Field(ge=1, le=MAX_FEE, strict=True)] = Field(
        description="Minor units; must be the club's fee"
    )
    paid_at: Moment
    period: Literal["month", "year"] | None = Field(
        default=None, description="If given, must be the fee's period"
    )


class InvitationCreate(Strict):
    count: Annotated[int, Field(ge=1, le=1000, strict=True)] = 1
    uses: Annotated[int, Field(ge=1, le=100_000, strict=True)] = Field(
        default=1, description="How many members may join with each code"
    )
    expires_at: Moment | None = None


@router.get("/v1/clubs", response_model=list[ClubView], operation_id="listClubs")
def list_clubs(
    actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> list[ClubView]:
    """The clubs of the programs in force, with their memberships by state."""
    return c.clubs.list_clubs(actor)


@router.post(
    "/v1/clubs/{code}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationBatchView,
    operation_id="createClubInvitations",
)
def create_invitations(
    code: ClubCode,
    body: InvitationCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> InvitationBatchView:
    """Make invitation codes for a club joined by invitation (or to skip its approval)."""
    return c.clubs.invite(
        actor,
        code,
        count=body.count,
        uses=body.uses,
        expires_at=body.expires_at,
        idempotency_key=idempotency_key,
    )


@router.get("/v1/clubs/{code}/report", response_model=ClubReport, operation_id="getClubReport")
def club_report(
    code: ClubCode,
    since: Annotated[Moment | None, Query(alias="from")] = None,
    until: Annotated[Moment | None, Query(alias="to")] = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> ClubReport:
    """What each member saved through the club, against the fees paid."""
    return c.clubs.report(actor, code, since, until)


@router.get(
    "/v1/members/{member_id}/clubs",
    response_model=list[MembershipView],
    operation_id="listMemberClubs",
)
def list_member_clubs(
    member_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> list[MembershipView]:
    """The member's clubs: joined, by condition, waiting, ended."""
    return c.clubs.list_member(actor, member_id)


@router.post(
    "/v1/members/{member_id}/clubs",
    status_code=status.HTTP_201_CREATED,
    response_model=MembershipView,
    operation_id="joinClub",
)
def join_club(
    member_id: uuid.UUID,
    body: ClubJoin,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MembershipView:
    """Join a club (with an invitation code if it is closed), or ask to join it."""
    return c.clubs.join(actor, member_id, body.club, body.invitation_code)


@router.get(MEMBER_CLUB, response_model=MembershipView, operation_id="getMemberClub")
def get_member_club(
    member_id: uuid.UUID,
    code: ClubCode,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> MembershipView:
    """The member's standing in a club; 409 ``membership_expired`` when it ran out."""
    return c.clubs.check(actor, member_id, code)


@router.delete(MEMBER_CLUB, response_model=MembershipView, operation_id="leaveClub")
def leave_club(
    member_id: uuid.UUID,
    code: ClubCode,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MembershipView:
    """Leave at once (a paid period left over is forfeited; ``cancel`` keeps it)."""
    return c.clubs.leave(actor, member_id, code)


@router.post(
    f"{MEMBER_CLUB}/approve",
    response_model=MembershipView,
    operation_id="approveClubMembership",
)
def approve(
    member_id: uuid.UUID,
    code: ClubCode,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> MembershipView:
    return c.clubs.approve(actor, member_id, code)


@router.post(
    f"{MEMBER_CLUB}/reject", response_model=MembershipView, operation_id="rejectClubMembership"
)
def reject(
    member_id: uuid.UUID,
    code: ClubCode,
    body: ClubReject,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> MembershipView:
    return c.clubs.reject(actor, member_id, code, body.reason)


@router.post(
    f"{MEMBER_CLUB}/cancel", response_model=MembershipView, operation_id="cancelClubMembership"
)
def cancel(
    member_id: uuid.UUID,
    code: ClubCode,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MembershipView:
    """No renewal: the benefits last until the end of the paid period."""
    return c.clubs.cancel(actor, member_id, code)


@router.post(
    f"{MEMBER_CLUB}/payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentView,
    operation_id="recordClubPayment",
)
def record_payment(
    member_id: uuid.UUID,
    code: ClubCode,
    body: ClubPayment,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> PaymentView:
    """A fee paid in the merchant's system: extends the membership by one period."""
    return c.clubs.record_payment(
        actor,
        member_id,
        code,
        payment_id=body.payment_id,
        amount=body.amount,
        paid_at=body.paid_at,
        period=body.period,
    )
