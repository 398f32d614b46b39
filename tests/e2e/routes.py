"""The API's routes as the tests expect them: who may call each, and a sample body.

Tests compare this table with the routes the app really has, so a new route fails them
until it is given its roles here (and, with a path parameter, its isolation case).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from tests.e2e.helpers import card

ADMIN = frozenset({"admin"})
TILL = frozenset({"admin", "pos"})
ANY = frozenset({"admin", "pos", "readonly"})
PUBLIC: frozenset[str] = frozenset()
ROLES = ("admin", "pos", "readonly")

PROGRAM = {
    "type": "bonus",
    "name": {"ru": "Бонусы", "en": "Bonus"},
    "rules": [{"id": "base", "name": "Base 5%", "effects": [{"points_percent": 5}]}],
}
LINES = [{"sku": "LATTE", "qty": 1, "price": 25000, "category": "drinks/coffee"}]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    roles: frozenset[str]
    body: dict[str, Any] | None = field(default=None)


ROUTES: dict[str, Route] = {
    "health": Route("GET", "/healthz", PUBLIC),
    # members
    "enrollMember": Route("POST", "/v1/members", TILL, {"name": "x"}),
    "listMembers": Route("GET", "/v1/members", ANY),
    "getMember": Route("GET", "/v1/members/{member_id}", ANY),
    "updateMember": Route("PATCH", "/v1/members/{member_id}", TILL, {"name": "y"}),
    "blockMember": Route("POST", "/v1/members/{member_id}/block", ADMIN, {}),
    "unblockMember": Route("POST", "/v1/members/{member_id}/unblock", ADMIN),
    "eraseMember": Route("POST", "/v1/members/{member_id}/erase", ADMIN),
    "mergeMembers": Route(
        "POST", "/v1/members/{member_id}/merge", ADMIN, {"duplicate_id": str(uuid.UUID(int=1))}
    ),
    "getMemberAuditTrail": Route("GET", "/v1/members/{member_id}/audit", ANY),
    "issueVirtualCard": Route("POST", "/v1/members/{member_id}/cards", TILL),
    # cards
    "lookupMember": Route("GET", "/v1/cards/lookup", ANY),
    "registerCardBatch": Route(
        "POST", "/v1/card-batches", ADMIN, {"name": "b", "numbers": [card(1)]}
    ),
    "getCard": Route("GET", "/v1/cards/{number}", ANY),
    "bindCard": Route(
        "POST", "/v1/cards/{number}/bind", TILL, {"member_id": str(uuid.UUID(int=1))}
    ),
    "blockCard": Route("POST", "/v1/cards/{number}/block", TILL),
    "unblockCard": Route("POST", "/v1/cards/{number}/unblock", ADMIN),
    "replaceCard": Route("POST", "/v1/cards/{number}/replace", TILL, {}),
    "getCardQrToken": Route("GET", "/v1/cards/{number}/qr", ANY),
    # ledger
    "getMemberBalance": Route("GET", "/v1/members/{member_id}/balance", ANY),
    "getMemberLedger": Route("GET", "/v1/members/{member_id}/ledger", ANY),
    "accruePoints": Route("POST", "/v1/members/{member_id}/accruals", ADMIN, {"points": 1}),
    "redeemPoints": Route("POST", "/v1/members/{member_id}/redemptions", TILL, {"points": 1}),
    "adjustPoints": Route(
        "POST", "/v1/members/{member_id}/adjustments", ADMIN, {"points": 1, "reason": "r"}
    ),
    "holdPoints": Route("POST", "/v1/members/{member_id}/holds", TILL, {"points": 1}),
    "getHold": Route("GET", "/v1/holds/{hold_id}", ANY),
    "captureHold": Route("POST", "/v1/holds/{hold_id}/capture", TILL, {}),
    "releaseHold": Route("POST", "/v1/holds/{hold_id}/release", TILL),
    "getTransaction": Route("GET", "/v1/ledger/transactions/{transaction_id}", ANY),
    "reverseTransaction": Route(
        "POST", "/v1/ledger/transactions/{transaction_id}/reversals", ADMIN, {}
    ),
    # set-up
    "getTenant": Route("GET", "/v1/tenant", ADMIN),
    "updateTenant": Route("PATCH", "/v1/tenant", ADMIN, {"locale": "en"}),
    "listOutlets": Route("GET", "/v1/outlets", ADMIN),
    "createOutlet": Route("POST", "/v1/outlets", ADMIN, {"code": "NEW"}),
    "listApiKeys": Route("GET", "/v1/api-keys", ADMIN),
    "createApiKey": Route("POST", "/v1/api-keys", ADMIN, {"role": "readonly"}),
    "revokeApiKey": Route("DELETE", "/v1/api-keys/{api_key_id}", ADMIN),
    # programs and catalogue
    "publishProgram": Route("PUT", "/v1/programs/{code}", ADMIN, {"document": PROGRAM}),
    "validateProgram": Route("POST", "/v1/programs/{code}/validate", ADMIN, {"document": PROGRAM}),
    "listPrograms": Route("GET", "/v1/programs", ANY),
    "getProgram": Route("GET", "/v1/programs/{code}", ANY),
    "upsertProducts": Route("PUT", "/v1/products", ADMIN, {"products": [{"sku": "S1"}]}),
    "listProducts": Route("GET", "/v1/products", ANY),
    # the till
    "calculatePurchase": Route("POST", "/v1/purchases/calculate", TILL, {"lines": LINES}),
    "confirmPurchase": Route(
        "POST", "/v1/purchases", TILL, {"lines": LINES, "receipt_number": "R-1"}
    ),
    "confirmHeldPurchase": Route("POST", "/v1/purchases/{receipt_id}/confirm", TILL),
    "voidPurchase": Route("POST", "/v1/purchases/{receipt_id}/void", TILL),
    "refundPurchase": Route(
        "POST", "/v1/purchases/{receipt_id}/refunds", TILL, {"refund_number": "RF-1"}
    ),
    "cancelPurchase": Route("POST", "/v1/purchases/{receipt_id}/cancel", TILL),
    "getPurchase": Route("GET", "/v1/purchases/{receipt_id}", ANY),
    "listMemberPurchases": Route("GET", "/v1/members/{member_id}/purchases", ANY),
    "explainPurchase": Route("GET", "/v1/members/{member_id}/explain", ANY),
    # loyalty mechanics
    # slot:tiers
    # slot:lifecycle
    # slot:referrals
    # slot:stamps
    # slot:families
    # slot:clubs
    # slot:rewards
    # slot:coupons
    # slot:giftcards
    # slot:campaigns
    # slot:draws
}

SAMPLE_PATH_VALUES = {
    "member_id": str(uuid.UUID(int=2)),
    "hold_id": str(uuid.UUID(int=3)),
    "transaction_id": str(uuid.UUID(int=4)),
    "api_key_id": str(uuid.UUID(int=5)),
    "receipt_id": str(uuid.UUID(int=6)),
    "number": card(2),
    "code": "main",
    # slot:tiers
    # slot:lifecycle
    # slot:referrals
    # slot:stamps
    # slot:families
    # slot:clubs
    # slot:rewards
    # slot:coupons
    # slot:giftcards
    # slot:campaigns
    # slot:draws
}
_PARAM = re.compile(r"{(\w+)}")


def path_params(path: str) -> list[str]:
    return _PARAM.findall(path)


def sample_url(route: Route) -> str:
    return route.path.format(**{p: SAMPLE_PATH_VALUES[p] for p in path_params(route.path)})


@dataclass(frozen=True)
class AppRoute:
    method: str
    path: str
    operation_id: str | None


def app_routes(app: Any) -> set[AppRoute]:
    """Every (method, path, operationId) the app serves, docs pages excluded.

    FastAPI >= 0.16x keeps included routers lazily (``app.routes`` then holds the routers,
    not their routes); ``iter_route_contexts`` flattens them.
    """
    assert isinstance(app, FastAPI)
    routes: Iterable[Any]
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        routes = app.routes
    else:
        routes = iter_route_contexts(app.routes)
    found = set()
    r: Any
    for r in routes:
        if not getattr(r, "include_in_schema", True):
            continue
        for method in getattr(r, "methods", None) or ():
            if method != "HEAD":
                found.add(AppRoute(method, str(r.path), getattr(r, "operation_id", None)))
    return found
