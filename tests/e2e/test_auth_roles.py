"""Keys and roles on every route: 401 without a valid key, 403 for a role not allowed."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from tests.e2e.helpers import Pair, World, assert_problem, ok, writes
from tests.e2e.routes import ROLES, ROUTES, app_routes, sample_url

PROTECTED = sorted(op for op, route in ROUTES.items() if route.roles)


def test_the_route_table_matches_the_app(client: TestClient) -> None:
    """A new route fails here until ROUTES says who may call it."""
    served = {(r.method, r.path, r.operation_id) for r in app_routes(client.app)}
    expected = {(r.method, r.path, op) for op, r in ROUTES.items()}
    assert served == expected


def test_health_needs_no_key(client: TestClient) -> None:
    body = ok(client.get("/healthz"))
    assert body["status"] == "ok"


@pytest.mark.parametrize("operation", PROTECTED)
def test_keys_and_roles_are_checked(pair: Pair, operation: str) -> None:
    route, client, merchant = ROUTES[operation], pair.client, pair.a.merchant
    url = sample_url(route)
    before = writes(pair.engine)

    def call(headers: dict[str, str]) -> httpx.Response:
        r: httpx.Response = client.request(route.method, url, headers=headers, json=route.body)
        return r

    r = call({})
    assert_problem(r, 401, "missing_api_key")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_problem(call({"Authorization": "Basic dXNlcjpwYXNz"}), 401, "missing_api_key")
    real = merchant.admin_key
    wrong_secret = real[:-1] + ("B" if real.endswith("A") else "A")
    for bad in ("kp_000000000000_nope", "garbage", wrong_secret, real + "x", real + "_x"):
        assert_problem(call({"Authorization": f"Bearer {bad}"}), 401, "invalid_api_key")
    assert_problem(call({"X-Api-Key": "kp_1_2"}), 401, "invalid_api_key")
    for role in sorted(set(ROLES) - route.roles):
        body = assert_problem(call(merchant.headers(role)), 403, "role_not_allowed")
        assert body["title"] == "Forbidden"
    assert writes(pair.engine) == before


def test_read_only_and_till_keys_cannot_touch_real_resources(
    client: TestClient, world: World, container: Container
) -> None:
    """The same refusals with ids that exist: nothing is written and the state is the same."""
    m = world.merchant
    member = f"/v1/members/{world.member_id}"
    before = writes(container.engine)
    balance_before = ok(client.get(f"{member}/balance", headers=m.headers()))
    refused = [
        ("readonly", "POST", f"{member}/redemptions", {"points": 10}),
        ("readonly", "POST", f"{member}/holds", {"points": 10}),
        ("readonly", "PATCH", member, {"name": "ro"}),
        ("readonly", "POST", f"/v1/cards/{world.card_number}/block", None),
        ("readonly", "POST", f"/v1/holds/{world.hold_id}/capture", {}),
        ("readonly", "POST", f"/v1/holds/{world.hold_id}/release", None),
        ("pos", "POST", f"{member}/accruals", {"points": 10}),
        ("pos", "POST", f"{member}/adjustments", {"points": 10, "reason": "r"}),
        ("pos", "POST", f"{member}/block", {}),
        ("pos", "POST", f"{member}/erase", None),
        ("pos", "POST", f"{member}/merge", {"duplicate_id": world.other_member_id}),
        ("pos", "POST", f"/v1/ledger/transactions/{world.transaction_id}/reversals", {}),
        ("pos", "POST", f"/v1/cards/{world.card_number}/unblock", None),
        ("pos", "DELETE", f"/v1/api-keys/{world.api_key_id}", None),
        ("pos", "POST", "/v1/api-keys", {"role": "admin"}),
        ("pos", "PATCH", "/v1/tenant", {"allow_debt": True}),
    ]
    for role, method, url, body in refused:
        r = client.request(method, url, headers=m.headers(role), json=body)
        assert_problem(r, 403, "role_not_allowed")
    assert writes(container.engine) == before
    assert ok(client.get(f"{member}/balance", headers=m.headers())) == balance_before
    assert ok(client.get(f"/v1/holds/{world.hold_id}", headers=m.headers()))["status"] == "active"
