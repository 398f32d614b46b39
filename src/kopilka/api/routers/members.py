"""Members: enrol, read, search, change, block, erase, merge; their cards."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel

from kopilka.api.auth import ADMIN, ANY_ROLE, TILL, container
from kopilka.api.deps import DEFAULT_LIMIT, Cursor, IdempotencyKey, Limit
from kopilka.api.pagination import cut_page, decode_cursor
from kopilka.api.schemas import BlockRequest, MemberCreate, MemberPatch, MergeRequest
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor
from kopilka.services.members import CardView, MemberView

router = APIRouter(route_class=StrictJsonRoute, prefix="/v1/members", tags=["members"])


class MemberPage(BaseModel):
    items: list[MemberView]
    next_cursor: str | None


class AuditEntry(BaseModel):
    id: uuid.UUID
    actor: str
    action: str
    details: dict[str, Any]
    created_at: Any


def _profile(body: MemberCreate | MemberPatch) -> dict[str, Any]:
    data = body.model_dump(
        exclude_unset=True,
        exclude={"card", "issue_virtual_card", "referral_code", "fingerprints"},
    )
    if "consents" in data and data["consents"] is not None:
        data["consents"] = {k: v for k, v in data["consents"].items()}
    return data


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=MemberView, operation_id="enrollMember"
)
def enroll_member(
    body: MemberCreate,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MemberView:
    """Enrol a customer; a virtual card is issued unless a physical ``card`` is bound."""
    return c.members.enroll(
        actor,
        _profile(body),
        card_number=body.card,
        issue_virtual_card=body.issue_virtual_card,
        idempotency_key=idempotency_key,
        context={"referral_code": body.referral_code, "fingerprints": body.fingerprints},
    )


@router.get("", response_model=MemberPage, operation_id="listMembers")
def list_members(
    # min_length=1: an empty filter must not turn into "IS NULL" (members without a phone).
    phone: str | None = Query(default=None, min_length=1, max_length=32),
    card: str | None = Query(default=None, min_length=1, max_length=32),
    email: str | None = Query(default=None, min_length=1, max_length=320),
    external_id: str | None = Query(default=None, min_length=1, max_length=128),
    member_status: str | None = Query(default=None, alias="status", min_length=1, max_length=16),
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> MemberPage:
    filters = {
        k: v
        for k, v in {
            "phone": phone,
            "card": card,
            "email": email,
            "external_id": external_id,
            "status": member_status,
        }.items()
        if v is not None
    }
    items = c.members.search(actor, filters, decode_cursor(cursor), limit + 1)
    page, next_cursor = cut_page(items, limit, lambda item: item.id)
    return MemberPage(items=page, next_cursor=next_cursor)


@router.get("/{member_id}", response_model=MemberView, operation_id="getMember")
def get_member(
    member_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> MemberView:
    return c.members.get(actor, member_id)


@router.patch("/{member_id}", response_model=MemberView, operation_id="updateMember")
def update_member(
    member_id: uuid.UUID,
    body: MemberPatch,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(TILL),
    c: Container = Depends(container),
) -> MemberView:
    """Change profile fields; only the fields sent change (null clears one)."""
    return c.members.update(actor, member_id, _profile(body), idempotency_key=idempotency_key)


@router.post("/{member_id}/block", response_model=MemberView, operation_id="blockMember")
def block_member(
    member_id: uuid.UUID,
    body: BlockRequest,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> MemberView:
    """Stop all earning and spending for the member."""
    return c.members.set_blocked(actor, member_id, True, body.reason)


@router.post("/{member_id}/unblock", response_model=MemberView, operation_id="unblockMember")
def unblock_member(
    member_id: uuid.UUID, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> MemberView:
    return c.members.set_blocked(actor, member_id, False)


@router.post("/{member_id}/erase", response_model=MemberView, operation_id="eraseMember")
def erase_member(
    member_id: uuid.UUID, actor: Actor = Depends(ADMIN), c: Container = Depends(container)
) -> MemberView:
    """Pseudonymise personal data on the customer's request; the ledger stays intact."""
    return c.members.erase(actor, member_id)


@router.post("/{member_id}/merge", response_model=MemberView, operation_id="mergeMembers")
def merge_members(
    member_id: uuid.UUID,
    body: MergeRequest,
    idempotency_key: IdempotencyKey = None,
    actor: Actor = Depends(ADMIN),
    c: Container = Depends(container),
) -> MemberView:
    """Fold ``duplicate_id`` into this member: balances, lots, cards and history."""
    return c.members.merge(actor, member_id, body.duplicate_id, idempotency_key=idempotency_key)


@router.get(
    "/{member_id}/audit", response_model=list[AuditEntry], operation_id="getMemberAuditTrail"
)
def member_audit(
    member_id: uuid.UUID, actor: Actor = Depends(ANY_ROLE), c: Container = Depends(container)
) -> list[AuditEntry]:
    return [AuditEntry.model_validate(r) for r in c.members.audit_trail(actor, member_id)]


@router.post(
    "/{member_id}/cards",
    status_code=status.HTTP_201_CREATED,
    response_model=CardView,
    operation_id="issueVirtualCard",
)
def issue_card(
    member_id: uuid.UUID, actor: Actor = Depends(TILL), c: Container = Depends(container)
) -> CardView:
    """Issue another virtual card to the member."""
    return c.members.issue_card(actor, member_id)
