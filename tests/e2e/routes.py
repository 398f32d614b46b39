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
    "getMemberTier": Route("GET", "/v1/members/{member_id}/tier", ANY),
    "setMemberTier": Route(
        "PUT", "/v1/members/{member_id}/tier", ADMIN, {"tier": "gold", "reason": "VIP guest"}
    ),
    "getMemberTierHistory": Route("GET", "/v1/members/{member_id}/tier/history", ANY),
    # slot:lifecycle
    "recordMemberEvent": Route(
        "POST",
        "/v1/members/{member_id}/events",
        TILL,
        {"event_id": "ev-1", "name": "review_left", "properties": {"stars": 5}},
    ),
    "listMemberEvents": Route("GET", "/v1/members/{member_id}/events", ANY),
    # slot:referrals
    "getMemberReferral": Route("GET", "/v1/members/{member_id}/referral", ANY),
    "listMemberReferrals": Route("GET", "/v1/members/{member_id}/referrals", ANY),
    # slot:stamps
    "getMemberStamps": Route("GET", "/v1/members/{member_id}/stamps", ANY),
    "adjustMemberStamps": Route(
        "POST",
        "/v1/members/{member_id}/stamps/adjustments",
        ADMIN,
        {"card": "coffee", "stamps": 1, "reason": "r"},
    ),
    # slot:families
    "createFamily": Route("POST", "/v1/members/{member_id}/family", TILL, {"name": "Ивановы"}),
    "getMemberFamily": Route("GET", "/v1/members/{member_id}/family", ANY),
    "setFamilySpending": Route(
        "PATCH", "/v1/members/{member_id}/family", TILL, {"can_spend": False}
    ),
    "leaveFamily": Route("DELETE", "/v1/members/{member_id}/family", TILL),
    "inviteToFamily": Route("POST", "/v1/members/{member_id}/family/invitations", TILL, {}),
    "joinFamily": Route("POST", "/v1/members/{member_id}/family/join", TILL, {"code": "ABCD2345"}),
    "transferPoints": Route(
        "POST",
        "/v1/members/{member_id}/transfers",
        TILL,
        {"to_member_id": str(uuid.UUID(int=1)), "points": 1},
    ),
    "listMemberTransfers": Route("GET", "/v1/members/{member_id}/transfers", ANY),
    "donatePoints": Route(
        "POST", "/v1/members/{member_id}/donations", TILL, {"charity": "fund", "points": 1}
    ),
    "listCharities": Route("GET", "/v1/charities", ANY),
    # slot:clubs
    "listClubs": Route("GET", "/v1/clubs", ANY),
    "createClubInvitations": Route("POST", "/v1/clubs/{code}/invitations", ADMIN, {"count": 1}),
    "getClubReport": Route("GET", "/v1/clubs/{code}/report", ADMIN),
    "listMemberClubs": Route("GET", "/v1/members/{member_id}/clubs", ANY),
    "joinClub": Route("POST", "/v1/members/{member_id}/clubs", TILL, {"club": "vip"}),
    "getMemberClub": Route("GET", "/v1/members/{member_id}/clubs/{code}", ANY),
    "leaveClub": Route("DELETE", "/v1/members/{member_id}/clubs/{code}", TILL),
    "approveClubMembership": Route("POST", "/v1/members/{member_id}/clubs/{code}/approve", ADMIN),
    "rejectClubMembership": Route("POST", "/v1/members/{member_id}/clubs/{code}/reject", ADMIN, {}),
    "cancelClubMembership": Route("POST", "/v1/members/{member_id}/clubs/{code}/cancel", TILL),
    "recordClubPayment": Route(
        "POST",
        "/v1/members/{member_id}/clubs/{code}/payments",
        ADMIN,
        {"payment_id": "pay-1", "amount": 29900, "paid_at": "2026-01-15T09:00:00Z"},
    ),
    # slot:rewards
    "createReward": Route(
        "POST",
        "/v1/rewards",
        ADMIN,
        {"code": "R1", "kind": "material", "name": {"ru": "Кружка", "en": "Mug"}, "cost": 10},
    ),
    "listRewards": Route("GET", "/v1/rewards", ANY),
    "getReward": Route("GET", "/v1/rewards/{reward_id}", ANY),
    "updateReward": Route("PATCH", "/v1/rewards/{reward_id}", ADMIN, {"cost": 5}),
    "setRewardStock": Route(
        "PUT", "/v1/rewards/{reward_id}/stock", ADMIN, {"location": "WH-1", "quantity": 5}
    ),
    "uploadRewardCodes": Route("POST", "/v1/rewards/{reward_id}/codes", ADMIN, {"codes": ["C1"]}),
    "listMemberRewards": Route("GET", "/v1/members/{member_id}/rewards", ANY),
    "redeemReward": Route(
        "POST", "/v1/members/{member_id}/reward-orders", TILL, {"reward_code": "R1"}
    ),
    "listMemberRewardOrders": Route("GET", "/v1/members/{member_id}/reward-orders", ANY),
    "listRewardOrders": Route("GET", "/v1/reward-orders", ANY),
    "getRewardOrder": Route("GET", "/v1/reward-orders/{order_id}", ANY),
    "markRewardOrderReady": Route("POST", "/v1/reward-orders/{order_id}/ready", TILL, {}),
    "issueRewardOrder": Route("POST", "/v1/reward-orders/{order_id}/issue", TILL),
    "cancelRewardOrder": Route("POST", "/v1/reward-orders/{order_id}/cancel", TILL),
    # slot:coupons
    "createPromoCode": Route(
        "POST", "/v1/coupons", ADMIN, {"code": "SPRING25", "benefit": {"discount_percent": 10}}
    ),
    "getCoupon": Route("GET", "/v1/coupons/{code}", ANY),
    "voidCoupon": Route("POST", "/v1/coupons/{code}/void", ADMIN),
    "createCouponBatch": Route(
        "POST",
        "/v1/coupon-batches",
        ADMIN,
        {"code": "flyer", "count": 1, "benefit": {"discount_percent": 10}},
    ),
    "listCouponBatches": Route("GET", "/v1/coupon-batches", ANY),
    "getCouponBatch": Route("GET", "/v1/coupon-batches/{batch_id}", ANY),
    "voidCouponBatch": Route("POST", "/v1/coupon-batches/{batch_id}/void", ADMIN),
    "exportCouponBatchCsv": Route("GET", "/v1/coupon-batches/{batch_id}/codes.csv", ADMIN),
    "exportCouponBatchImages": Route("GET", "/v1/coupon-batches/{batch_id}/images", ADMIN),
    "issueMemberCoupon": Route(
        "POST", "/v1/members/{member_id}/coupons", ADMIN, {"benefit": {"discount_percent": 10}}
    ),
    "listMemberCoupons": Route("GET", "/v1/members/{member_id}/coupons", ANY),
    # slot:giftcards
    "issueGiftCard": Route(
        "POST",
        "/v1/gift-cards",
        ADMIN,
        {
            "amount": 100000,
            "sale": {"outlet": "OUT-1", "receipt_number": "S-1", "sold_at": "2026-01-15T08:00:00Z"},
        },
    ),
    "getGiftCardPolicy": Route("GET", "/v1/gift-cards/policy", ADMIN),
    "setGiftCardPolicy": Route("PUT", "/v1/gift-cards/policy", ADMIN, {"pin_required": "always"}),
    "getGiftCardLiability": Route("GET", "/v1/gift-cards/liability", ADMIN),
    "checkGiftCardBalance": Route(
        "POST", "/v1/gift-cards/balance", TILL, {"number": "9000000000000001"}
    ),
    "getGiftCard": Route("GET", "/v1/gift-cards/{number}", ADMIN),
    "activateGiftCard": Route("POST", "/v1/gift-cards/{number}/activate", TILL, {}),
    "blockGiftCard": Route("POST", "/v1/gift-cards/{number}/block", ADMIN, {}),
    "unblockGiftCard": Route("POST", "/v1/gift-cards/{number}/unblock", ADMIN),
    "reissueGiftCard": Route("POST", "/v1/gift-cards/{number}/reissue", ADMIN, {}),
    # slot:campaigns
    "createCampaign": Route(
        "POST", "/v1/campaigns", ADMIN, {"code": "spring", "name": {"ru": "Весна", "en": "Spring"}}
    ),
    "listCampaigns": Route("GET", "/v1/campaigns", ADMIN),
    "getCampaign": Route("GET", "/v1/campaigns/{code}", ADMIN),
    "updateCampaign": Route(
        "PATCH", "/v1/campaigns/{code}", ADMIN, {"name": {"ru": "Лето", "en": "Summer"}}
    ),
    "scheduleCampaign": Route("POST", "/v1/campaigns/{code}/schedule", ADMIN),
    "pauseCampaign": Route("POST", "/v1/campaigns/{code}/pause", ADMIN),
    "resumeCampaign": Route("POST", "/v1/campaigns/{code}/resume", ADMIN),
    "endCampaign": Route("POST", "/v1/campaigns/{code}/end", ADMIN),
    "getCampaignBudget": Route("GET", "/v1/campaigns/{code}/budget", ADMIN),
    "previewCampaign": Route("POST", "/v1/campaigns/{code}/preview", ADMIN),
    "setCampaignMembers": Route(
        "PUT", "/v1/campaigns/{code}/members", ADMIN, {"member_ids": [str(uuid.UUID(int=1))]}
    ),
    "getCampaignControlGroup": Route("GET", "/v1/campaigns/{code}/control-group", ADMIN),
    # slot:draws
    "createDraw": Route(
        "POST",
        "/v1/draws",
        ADMIN,
        {
            "code": "spring",
            "name": {"ru": "Весна", "en": "Spring"},
            "starts_on": "2026-03-01",
            "ends_on": "2026-03-31",
            "draw_on": "2026-04-02",
            "prizes": [{"rank": 1, "kind": "points", "points": 1000}],
        },
    ),
    "listDraws": Route("GET", "/v1/draws", ADMIN),
    "getDraw": Route("GET", "/v1/draws/{code}", ADMIN),
    "openDraw": Route("POST", "/v1/draws/{code}/open", ADMIN),
    "freezeDraw": Route("POST", "/v1/draws/{code}/freeze", ADMIN),
    "runDraw": Route("POST", "/v1/draws/{code}/run", ADMIN),
    "getDrawPublication": Route("GET", "/v1/draws/{code}/public", ANY),
    "exportDrawEntries": Route("GET", "/v1/draws/{code}/entries.jsonl", ANY),
    "listMemberDrawEntries": Route("GET", "/v1/members/{member_id}/draw-entries", ANY),
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
    "reward_id": str(uuid.UUID(int=71)),
    "order_id": str(uuid.UUID(int=72)),
    # slot:coupons
    "batch_id": str(uuid.UUID(int=81)),
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
