"""Tenant isolation: with tenant A's key, tenant B's ids answer 404 on every route that takes
one, B's data never shows in A's lists, and B's state never changes."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.helpers import Pair, World, assert_problem, ok, writes
from tests.e2e.routes import PROGRAM, app_routes, path_params

# Which World attribute names B's resource for each path parameter.
DEFAULT_ATTR = {
    "member_id": "member_id",
    "number": "card_number",
    "hold_id": "hold_id",
    "transaction_id": "transaction_id",
    "api_key_id": "api_key_id",
    "receipt_id": "receipt_id",
    "code": "program_code",
    # slot:tiers
    # slot:lifecycle
    # slot:referrals
    # slot:stamps
    # slot:families
    # slot:clubs
    # slot:rewards
    # slot:coupons
    "batch_id": "batch_id",
    # slot:giftcards
    # slot:campaigns
    # slot:draws
}


@dataclass(frozen=True)
class Case:
    """A's request naming B's resource: the body (built from A's own world), what B's
    resource is for each parameter, and the answer expected."""

    body: Callable[[World], Any] | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    status: int = 404
    code: str | None = None


def _member(code: str = "member_not_found") -> Case:
    return Case(code=code)


ISOLATION: dict[tuple[str, str], Case] = {
    ("GET", "/v1/members/{member_id}"): _member(),
    ("PATCH", "/v1/members/{member_id}"): Case(
        lambda a: {"name": "taken over"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/block"): Case(
        lambda a: {"reason": "x"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/unblock"): _member(),
    ("POST", "/v1/members/{member_id}/erase"): _member(),
    ("POST", "/v1/members/{member_id}/merge"): Case(
        lambda a: {"duplicate_id": a.other_member_id}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/audit"): _member(),
    ("POST", "/v1/members/{member_id}/cards"): _member(),
    ("GET", "/v1/members/{member_id}/balance"): _member(),
    ("GET", "/v1/members/{member_id}/ledger"): _member(),
    ("GET", "/v1/members/{member_id}/purchases"): _member(),
    ("GET", "/v1/members/{member_id}/explain"): _member(),
    ("POST", "/v1/members/{member_id}/accruals"): Case(
        lambda a: {"points": 10}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/redemptions"): Case(
        lambda a: {"points": 10}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/adjustments"): Case(
        lambda a: {"points": -10, "reason": "x"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/holds"): Case(
        lambda a: {"points": 10}, code="member_not_found"
    ),
    ("GET", "/v1/cards/{number}"): Case(code="card_not_found"),
    ("POST", "/v1/cards/{number}/bind"): Case(
        lambda a: {"member_id": a.other_member_id},
        attrs={"number": "unbound_card"},
        code="card_not_found",
    ),
    ("POST", "/v1/cards/{number}/block"): Case(code="card_not_found"),
    ("POST", "/v1/cards/{number}/unblock"): Case(code="card_not_found"),
    ("POST", "/v1/cards/{number}/replace"): Case(lambda a: {}, code="card_not_found"),
    ("GET", "/v1/cards/{number}/qr"): Case(code="card_not_found"),
    ("GET", "/v1/holds/{hold_id}"): Case(code="hold_not_found"),
    ("POST", "/v1/holds/{hold_id}/capture"): Case(lambda a: {}, code="hold_not_found"),
    ("POST", "/v1/holds/{hold_id}/release"): Case(code="hold_not_found"),
    ("GET", "/v1/ledger/transactions/{transaction_id}"): Case(code="transaction_not_found"),
    ("POST", "/v1/ledger/transactions/{transaction_id}/reversals"): Case(
        lambda a: {"points": 10}, code="transaction_not_found"
    ),
    ("DELETE", "/v1/api-keys/{api_key_id}"): Case(code="api_key_not_found"),
    ("GET", "/v1/purchases/{receipt_id}"): Case(code="receipt_not_found"),
    ("POST", "/v1/purchases/{receipt_id}/confirm"): Case(code="receipt_not_found"),
    ("POST", "/v1/purchases/{receipt_id}/void"): Case(code="receipt_not_found"),
    ("POST", "/v1/purchases/{receipt_id}/cancel"): Case(code="receipt_not_found"),
    ("POST", "/v1/purchases/{receipt_id}/refunds"): Case(
        lambda a: {"refund_number": "RF-X"}, code="receipt_not_found"
    ),
    # A program code is a name, not an id: A's key sees only A's programs by that name.
    ("GET", "/v1/programs/{code}"): Case(code="program_not_found"),
    # Publishing under B's code makes A's own version 1; validating reads no data.
    ("PUT", "/v1/programs/{code}"): Case(
        lambda a: {"document": PROGRAM}, attrs={"code": "spare_program_code"}, status=200
    ),
    ("POST", "/v1/programs/{code}/validate"): Case(lambda a: {"document": PROGRAM}, status=200),
    # loyalty mechanics
    # slot:tiers
    ("GET", "/v1/members/{member_id}/tier"): _member(),
    ("PUT", "/v1/members/{member_id}/tier"): Case(
        lambda a: {"tier": "gold", "reason": "taken over"}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/tier/history"): _member(),
    # slot:lifecycle
    ("POST", "/v1/members/{member_id}/events"): Case(
        lambda a: {"event_id": "iso-1", "name": "review_left"}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/events"): _member(),
    # slot:referrals
    ("GET", "/v1/members/{member_id}/referral"): _member(),
    ("GET", "/v1/members/{member_id}/referrals"): _member(),
    # slot:stamps
    ("GET", "/v1/members/{member_id}/stamps"): _member(),
    ("POST", "/v1/members/{member_id}/stamps/adjustments"): Case(
        lambda a: {"card": "coffee", "stamps": 1, "reason": "x"}, code="member_not_found"
    ),
    # slot:families
    ("POST", "/v1/members/{member_id}/family"): Case(
        lambda a: {"name": "x"}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/family"): _member(),
    ("PATCH", "/v1/members/{member_id}/family"): Case(
        lambda a: {"can_spend": False}, code="member_not_found"
    ),
    ("DELETE", "/v1/members/{member_id}/family"): _member(),
    ("POST", "/v1/members/{member_id}/family/invitations"): Case(
        lambda a: {}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/family/join"): Case(
        lambda a: {"code": "ABCD2345"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/transfers"): Case(
        lambda a: {"to_member_id": a.other_member_id, "points": 10}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/transfers"): _member(),
    ("POST", "/v1/members/{member_id}/donations"): Case(
        lambda a: {"charity": "fund", "points": 10}, code="member_not_found"
    ),
    # slot:clubs
    # A club is named by its code: A's key finds A's member or club by that name, never B's.
    ("GET", "/v1/members/{member_id}/clubs"): _member(),
    ("POST", "/v1/members/{member_id}/clubs"): Case(
        lambda a: {"club": a.extra["club_code"]}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/clubs/{code}"): Case(
        attrs={"code": "club_code"}, code="member_not_found"
    ),
    ("DELETE", "/v1/members/{member_id}/clubs/{code}"): Case(
        attrs={"code": "club_code"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/clubs/{code}/approve"): Case(
        attrs={"code": "club_code"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/clubs/{code}/reject"): Case(
        lambda a: {"reason": "x"}, attrs={"code": "club_code"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/clubs/{code}/cancel"): Case(
        attrs={"code": "club_code"}, code="member_not_found"
    ),
    ("POST", "/v1/members/{member_id}/clubs/{code}/payments"): Case(
        lambda a: {"payment_id": "iso-1", "amount": 29900, "paid_at": "2026-01-15T09:00:00Z"},
        attrs={"code": "club_code"},
        code="member_not_found",
    ),
    ("POST", "/v1/clubs/{code}/invitations"): Case(
        lambda a: {"count": 1}, attrs={"code": "club_code"}, code="club_not_found"
    ),
    ("GET", "/v1/clubs/{code}/report"): Case(attrs={"code": "club_code"}, code="club_not_found"),
    # slot:rewards
    ("GET", "/v1/rewards/{reward_id}"): Case(code="reward_not_found"),
    ("PATCH", "/v1/rewards/{reward_id}"): Case(lambda a: {"cost": 1}, code="reward_not_found"),
    ("PUT", "/v1/rewards/{reward_id}/stock"): Case(
        lambda a: {"location": "OUT-1", "quantity": 0}, code="reward_not_found"
    ),
    ("POST", "/v1/rewards/{reward_id}/codes"): Case(
        lambda a: {"codes": ["X-1"]}, code="reward_not_found"
    ),
    ("GET", "/v1/members/{member_id}/rewards"): _member(),
    ("POST", "/v1/members/{member_id}/reward-orders"): Case(
        lambda a: {"reward_id": a.extra["reward_id"]}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/reward-orders"): _member(),
    ("GET", "/v1/reward-orders/{order_id}"): Case(code="reward_order_not_found"),
    ("POST", "/v1/reward-orders/{order_id}/ready"): Case(
        lambda a: {"outlet": "OUT-1"}, code="reward_order_not_found"
    ),
    ("POST", "/v1/reward-orders/{order_id}/issue"): Case(code="reward_order_not_found"),
    ("POST", "/v1/reward-orders/{order_id}/cancel"): Case(code="reward_order_not_found"),
    # slot:coupons
    # A coupon is named by its code: A's key looks the code up among A's coupons only.
    ("GET", "/v1/coupons/{code}"): Case(attrs={"code": "coupon_code"}, code="coupon_not_found"),
    ("POST", "/v1/coupons/{code}/void"): Case(
        attrs={"code": "coupon_code"}, code="coupon_not_found"
    ),
    ("GET", "/v1/coupon-batches/{batch_id}"): Case(code="coupon_batch_not_found"),
    ("POST", "/v1/coupon-batches/{batch_id}/void"): Case(code="coupon_batch_not_found"),
    ("GET", "/v1/coupon-batches/{batch_id}/codes.csv"): Case(code="coupon_batch_not_found"),
    ("GET", "/v1/coupon-batches/{batch_id}/images"): Case(code="coupon_batch_not_found"),
    ("POST", "/v1/members/{member_id}/coupons"): Case(
        lambda a: {"benefit": {"discount_percent": 10}}, code="member_not_found"
    ),
    ("GET", "/v1/members/{member_id}/coupons"): _member(),
    # slot:giftcards
    ("GET", "/v1/gift-cards/{number}"): Case(
        attrs={"number": "gift_card_number"}, code="gift_card_not_found"
    ),
    ("POST", "/v1/gift-cards/{number}/activate"): Case(
        lambda a: {}, attrs={"number": "gift_card_number"}, code="gift_card_not_found"
    ),
    ("POST", "/v1/gift-cards/{number}/block"): Case(
        lambda a: {"reason": "x"}, attrs={"number": "gift_card_number"}, code="gift_card_not_found"
    ),
    ("POST", "/v1/gift-cards/{number}/unblock"): Case(
        attrs={"number": "gift_card_number"}, code="gift_card_not_found"
    ),
    ("POST", "/v1/gift-cards/{number}/reissue"): Case(
        lambda a: {}, attrs={"number": "gift_card_number"}, code="gift_card_not_found"
    ),
    # slot:campaigns
    # A campaign is named by its code: A's key finds only A's campaigns by that name.
    ("GET", "/v1/campaigns/{code}"): Case(
        attrs={"code": "campaign_code"}, code="campaign_not_found"
    ),
    ("PATCH", "/v1/campaigns/{code}"): Case(
        lambda a: {"name": {"ru": "Чужая", "en": "Taken over"}},
        attrs={"code": "campaign_code"},
        code="campaign_not_found",
    ),
    **{
        ("POST", f"/v1/campaigns/{{code}}/{action}"): Case(
            attrs={"code": "campaign_code"}, code="campaign_not_found"
        )
        for action in ("schedule", "pause", "resume", "end", "preview")
    },
    ("GET", "/v1/campaigns/{code}/budget"): Case(
        attrs={"code": "campaign_code"}, code="campaign_not_found"
    ),
    ("PUT", "/v1/campaigns/{code}/members"): Case(
        lambda a: {"member_ids": [a.member_id]},
        attrs={"code": "campaign_code"},
        code="campaign_not_found",
    ),
    ("GET", "/v1/campaigns/{code}/control-group"): Case(
        attrs={"code": "campaign_code"}, code="campaign_not_found"
    ),
    # slot:draws
    # A draw is named by its code: A's key looks the code up among A's draws only.
    ("GET", "/v1/draws/{code}"): Case(attrs={"code": "draw_code"}, code="draw_not_found"),
    ("POST", "/v1/draws/{code}/open"): Case(attrs={"code": "draw_code"}, code="draw_not_found"),
    ("POST", "/v1/draws/{code}/freeze"): Case(attrs={"code": "draw_code"}, code="draw_not_found"),
    ("POST", "/v1/draws/{code}/run"): Case(attrs={"code": "draw_code"}, code="draw_not_found"),
    ("GET", "/v1/draws/{code}/public"): Case(attrs={"code": "draw_code"}, code="draw_not_found"),
    ("GET", "/v1/draws/{code}/entries.jsonl"): Case(
        attrs={"code": "draw_code"}, code="draw_not_found"
    ),
    ("GET", "/v1/members/{member_id}/draw-entries"): _member(),
}


def _resource(world: World, name: str) -> str:
    """B's resource: a World attribute, or one a mechanic put in ``world.extra``."""
    value = world.extra.get(name) if name in world.extra else getattr(world, name)
    assert isinstance(value, str)
    return value


def tenant_state(client: TestClient, w: World) -> dict[str, Any]:
    """What B's own admin sees of its resources (plus row counts)."""
    h = w.merchant.headers()
    keys = ok(client.get("/v1/api-keys", headers=h))
    return {
        "member": ok(client.get(f"/v1/members/{w.member_id}", headers=h)),
        "other": ok(client.get(f"/v1/members/{w.other_member_id}", headers=h)),
        "balance": ok(client.get(f"/v1/members/{w.member_id}/balance", headers=h)),
        "unbound": ok(client.get(f"/v1/cards/{w.unbound_card}", headers=h)),
        "hold": ok(client.get(f"/v1/holds/{w.hold_id}", headers=h)),
        "receipt": ok(client.get(f"/v1/purchases/{w.receipt_id}", headers=h)),
        "program": ok(client.get(f"/v1/programs/{w.program_code}", headers=h)),
        "keys": [{k: v for k, v in key.items() if k != "last_used_at"} for key in keys],
    }


def test_every_route_with_a_path_parameter_has_an_isolation_case(pair: Pair) -> None:
    """A new route taking an id fails here until it gets a case above."""
    with_params = {(r.method, r.path) for r in app_routes(pair.client.app) if path_params(r.path)}
    assert set(ISOLATION) == with_params


@pytest.mark.parametrize("route", sorted(ISOLATION), ids=lambda r: f"{r[0]} {r[1]}")
def test_tenant_a_cannot_reach_tenant_b_by_id(pair: Pair, route: tuple[str, str]) -> None:
    method, template = route
    case = ISOLATION[route]
    client, a, b = pair.client, pair.a, pair.b
    values = {
        p: _resource(b, case.attrs.get(p, DEFAULT_ATTR.get(p, p))) for p in path_params(template)
    }
    before_rows = writes(pair.engine, b.merchant.tenant_id)
    before = tenant_state(client, b)
    r = client.request(
        method,
        template.format(**values),
        headers=a.merchant.headers(),
        json=case.body(a) if case.body else None,
    )
    if case.status == 404:
        assert_problem(r, 404, case.code)
    else:
        assert r.status_code == case.status, r.text
        if method == "PUT":  # A's own program, not a new version of B's
            assert r.json()["version"] == 1
    assert tenant_state(client, b) == before
    assert writes(pair.engine, b.merchant.tenant_id) == before_rows
    # B's spare key still works.
    ok(client.get("/v1/members", headers={"Authorization": f"Bearer {b.api_key}"}))


@pytest.mark.parametrize(
    "case",
    [
        "merge_b_as_duplicate",
        "bind_to_b_member",
        "enrol_with_b_card",
        "replace_with_b_card",
        "purchase_for_b_member",
        "purchase_with_b_card",
    ],
)
def test_b_ids_in_a_request_body_are_not_found(pair: Pair, case: str) -> None:
    client, a, b = pair.client, pair.a, pair.b
    request: dict[str, tuple[str, str, dict[str, Any], str]] = {
        "merge_b_as_duplicate": (
            "POST",
            f"/v1/members/{a.member_id}/merge",
            {"duplicate_id": b.member_id},
            "member_not_found",
        ),
        "bind_to_b_member": (
            "POST",
            f"/v1/cards/{a.unbound_card}/bind",
            {"member_id": b.member_id},
            "member_not_found",
        ),
        "enrol_with_b_card": ("POST", "/v1/members", {"card": b.unbound_card}, "card_not_found"),
        "replace_with_b_card": (
            "POST",
            f"/v1/cards/{a.card_number}/replace",
            {"new_number": b.spare_card},
            "card_not_found",
        ),
        "purchase_for_b_member": (
            "POST",
            "/v1/purchases",
            {
                "member": {"id": b.member_id},
                "receipt_number": "X-1",
                "outlet": "OUT-1",
                "lines": [{"sku": "A", "qty": 1, "price": 100}],
            },
            "member_not_found",
        ),
        "purchase_with_b_card": (
            "POST",
            "/v1/purchases/calculate",
            {
                "member": {"card": b.card_number},
                "outlet": "OUT-1",
                "lines": [{"sku": "A", "qty": 1, "price": 100}],
            },
            "card_not_found",
        ),
    }
    method, url, body, code = request[case]
    before = writes(pair.engine)
    assert_problem(client.request(method, url, headers=a.merchant.headers(), json=body), 404, code)
    assert writes(pair.engine) == before


def test_lookups_do_not_find_b(pair: Pair) -> None:
    client, b = pair.client, pair.b
    h = pair.a.merchant.headers("pos")
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"number": b.card_number}),
        404,
        "card_not_found",
    )
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"phone": b.phone}),
        404,
        "member_not_found",
    )
    # B's QR token is signed with B's secret: A cannot even read the card number from it.
    body = assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"qr": b.qr_token}),
        422,
        "invalid_qr_token",
    )
    assert b.member_id not in str(body)


def test_lists_show_only_the_tenants_own_data(pair: Pair) -> None:
    client, a, b = pair.client, pair.a, pair.b
    h = a.merchant.headers()
    members = ok(client.get("/v1/members", headers=h, params={"limit": 200}))["items"]
    assert {m["id"] for m in members} == {a.member_id, a.other_member_id}
    for params in ({"phone": b.phone}, {"card": b.card_number}, {"card": b.unbound_card}):
        assert ok(client.get("/v1/members", headers=h, params=params))["items"] == []
    # A cursor made from B's id pages through A's members only.
    cursor = base64.urlsafe_b64encode(uuid.UUID(b.member_id).bytes).decode().rstrip("=")
    paged = ok(client.get("/v1/members", headers=h, params={"cursor": cursor}))["items"]
    assert {m["id"] for m in paged} <= {a.member_id, a.other_member_id}
    b_outlets = {o["id"] for o in ok(client.get("/v1/outlets", headers=b.merchant.headers()))}
    a_outlets = {o["id"] for o in ok(client.get("/v1/outlets", headers=h))}
    assert a_outlets
    assert not a_outlets & b_outlets
    a_keys = {k["id"] for k in ok(client.get("/v1/api-keys", headers=h))}
    assert b.api_key_id not in a_keys
    assert a.api_key_id in a_keys
    programs = {p["code"] for p in ok(client.get("/v1/programs", headers=h))}
    assert b.program_code not in programs
    assert a.program_code in programs
    skus = {p["sku"] for p in ok(client.get("/v1/products", headers=h))["items"]}
    assert skus == {a.sku}
    history = ok(client.get(f"/v1/members/{a.member_id}/ledger", headers=h))["items"]
    assert b.transaction_id not in {t["id"] for t in history}
    purchases = ok(client.get(f"/v1/members/{a.member_id}/purchases", headers=h))["items"]
    assert {p["id"] for p in purchases} == {a.receipt_id}
    trail = ok(client.get(f"/v1/members/{a.member_id}/audit", headers=h))
    assert all(b.member_id not in str(e["details"]) for e in trail)


def test_a_key_from_one_tenant_never_acts_for_another(pair: Pair) -> None:
    """B's spare key, presented to A's resources, is just another stranger."""
    client, a, b = pair.client, pair.a, pair.b
    headers = {"Authorization": f"Bearer {b.api_key}"}
    assert_problem(
        client.get(f"/v1/members/{a.member_id}", headers=headers), 404, "member_not_found"
    )
    assert_problem(client.get(f"/v1/cards/{a.card_number}", headers=headers), 404, "card_not_found")
