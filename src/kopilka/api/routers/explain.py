"""Explanations for customers and support: why a receipt earned what it earned."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query

from kopilka.api.auth import ANY_ROLE, container
from kopilka.api.strict_json import StrictJsonRoute
from kopilka.bootstrap import Container
from kopilka.services.context import Actor

router = APIRouter(route_class=StrictJsonRoute, tags=["members"])


@router.get("/v1/members/{member_id}/explain", operation_id="explainPurchase")
def explain_purchase(
    member_id: uuid.UUID,
    purchase: uuid.UUID | None = Query(
        default=None, description="The receipt (default: the latest)"
    ),
    actor: Actor = Depends(ANY_ROLE),
    c: Container = Depends(container),
) -> dict[str, Any]:
    """Why the member got (or did not get) points on a receipt, in ru and en."""
    return c.explanations.purchase(actor, member_id, purchase)
