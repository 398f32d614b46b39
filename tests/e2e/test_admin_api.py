"""The merchant's set-up over HTTP: tenant settings, outlets, API keys."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.domain.errors import Unauthorized
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import accrue, assert_problem, enrol, error_paths, ok, writes


# ---- tenant --------------------------------------------------------------------------------
def test_get_tenant(client: TestClient, merchant: Merchant) -> None:
    t = ok(client.get("/v1/tenant", headers=merchant.headers()))
    assert t["id"] == str(merchant.tenant_id)
    assert t["name"] == "Coffee One"
    assert (t["currency"], t["timezone"], t["locale"]) == ("RUB", "Europe/Moscow", "ru")
    assert t["expiry_policy"] == {"kind": "never"}
    assert "qr_secret" not in t


def test_patch_tenant_settings(client: TestClient, merchant: Merchant) -> None:
    change = {
        "locale": "en",
        "timezone": "Asia/Yekaterinburg",
        "pending_days": 3,
        "expiry_policy": {"kind": "rolling", "days": 30},
        "allow_debt": True,
        "hold_ttl_seconds": 120,
        "qr_window_seconds": 30,
    }
    t = ok(client.patch("/v1/tenant", headers=merchant.headers(), json=change))
    for key, value in change.items():
        assert t[key] == value, key
    assert ok(client.get("/v1/tenant", headers=merchant.headers())) == t
    # null means "leave as is"; an empty patch changes nothing.
    assert ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"timezone": None})) == t
    assert ok(client.patch("/v1/tenant", headers=merchant.headers(), json={})) == t


def test_tenant_settings_take_effect(client: TestClient, merchant: Merchant) -> None:
    ok(
        client.patch(
            "/v1/tenant",
            headers=merchant.headers(),
            json={
                "expiry_policy": {"kind": "rolling", "days": 30},
                "card_prefix": "77",
                "hold_ttl_seconds": 120,
            },
        )
    )
    m = enrol(client, merchant)
    assert m["cards"][0]["number"].startswith("77")
    txn = accrue(client, merchant, m["id"], 10)["transactions"][0]
    assert "expire on 2026-02-14" in txn["description"]["en"]  # the last usable day
    held = ok(
        client.post(f"/v1/members/{m['id']}/holds", headers=merchant.headers(), json={"points": 1}),
        201,
    )
    assert held["hold"]["expires_at"] == "2026-01-15T09:02:00Z"


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"timezone": "Mars/Olympus"}, ["timezone"], "invalid_timezone"),
        ({"timezone": ""}, ["timezone"], "invalid_timezone"),
        ({"timezone": "../../etc/passwd"}, ["timezone"], "invalid_timezone"),
        (
            {"expiry_policy": {"kind": "rolling", "days": 0}},
            ["expiry_policy", "days"],
            "invalid_expiry_policy",
        ),
        ({"expiry_policy": {"kind": "bogus"}}, ["expiry_policy", "kind"], "invalid_expiry_policy"),
        # Stored as a document, so exact JSON types: no "30" for 30 days, no true for 1.
        (
            {"expiry_policy": {"kind": "rolling", "days": "30"}},
            ["expiry_policy", "days"],
            "invalid_expiry_policy",
        ),
        (
            {"expiry_policy": {"kind": "rolling", "days": True}},
            ["expiry_policy", "days"],
            "invalid_expiry_policy",
        ),
        (
            {"expiry_policy": {"kind": "calendar", "period": "month", "extra_periods": 1.0}},
            ["expiry_policy", "extra_periods"],
            "invalid_expiry_policy",
        ),
        ({"locale": "de"}, ["body", "locale"], "literal_error"),
        ({"pending_days": -1}, ["body", "pending_days"], "greater_than_equal"),
        ({"hold_ttl_seconds": 10**30}, ["body", "hold_ttl_seconds"], "less_than_equal"),
        ({"card_scheme": "visa"}, ["body", "card_scheme"], "literal_error"),
        ({"card_prefix": "1234567"}, ["body", "card_prefix"], "string_pattern_mismatch"),
        ({"name": "renamed"}, ["body", "name"], "unknown_field"),
        ({"qr_secret": "x"}, ["body", "qr_secret"], "unknown_field"),
    ],
)
def test_patch_tenant_refusals(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    body: dict[str, Any],
    path: list[str],
    code: str,
) -> None:
    before = ok(client.get("/v1/tenant", headers=merchant.headers()))
    rows = writes(container.engine)
    problem = assert_problem(client.patch("/v1/tenant", headers=merchant.headers(), json=body), 422)
    assert {"path": path, "code": code} in [
        {"path": e["path"], "code": e["code"]} for e in problem["errors"]
    ], problem
    assert ok(client.get("/v1/tenant", headers=merchant.headers())) == before
    assert writes(container.engine) == rows


def test_the_expiry_policy_is_stored_in_its_canonical_form(
    client: TestClient, merchant: Merchant
) -> None:
    """Defaults spelled out, so what the tenant reads back is what every process applies."""
    body = {"expiry_policy": {"kind": "calendar", "period": "quarter"}}
    updated = ok(client.patch("/v1/tenant", headers=merchant.headers(), json=body))
    assert updated["expiry_policy"] == {"kind": "calendar", "period": "quarter", "extra_periods": 0}
    updated = ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"expiry_policy": {}}))
    assert updated["expiry_policy"] == {"kind": "never"}


def test_card_scheme_is_locked_once_cards_exist(client: TestClient, merchant: Merchant) -> None:
    """Existing numbers carry the old check digit, so the scheme may not change under them."""
    m = enrol(client, merchant)
    number = m["cards"][0]["number"]
    r = client.patch("/v1/tenant", headers=merchant.headers(), json={"card_scheme": "luhn"})
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "card_scheme_locked"
    r = client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": number})
    assert r.status_code == 200, r.text


# ---- outlets -------------------------------------------------------------------------------
def test_outlets(client: TestClient, merchant: Merchant) -> None:
    h = merchant.headers()
    assert [o["code"] for o in ok(client.get("/v1/outlets", headers=h))] == ["OUT-1"]
    made = ok(
        client.post(
            "/v1/outlets",
            headers=h,
            json={
                "code": "EKB_2",
                "name": "Yekaterinburg",
                "region": "Ural",
                "timezone": "Asia/Yekaterinburg",
                "tags": ["mall", "24h", "mall"],
            },
        ),
        201,
    )
    assert made["tags"] == ["24h", "mall"]
    assert made["timezone"] == "Asia/Yekaterinburg"
    plain = ok(client.post("/v1/outlets", headers=h, json={"code": "MSK-3"}), 201)
    assert plain["name"] == "MSK-3"
    assert plain["timezone"] == "Europe/Moscow"
    assert [o["code"] for o in ok(client.get("/v1/outlets", headers=h))] == [
        "EKB_2",
        "MSK-3",
        "OUT-1",
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"code": "OUT-1"}, 409, "outlet_exists"),
        ({"code": "two words"}, 422, "validation_failed"),
        ({"code": ""}, 422, "validation_failed"),
        ({"code": "X", "timezone": "Nowhere/City"}, 422, "validation_failed"),
        ({"code": "X", "tags": ["t"] * 51}, 422, "validation_failed"),
        ({"code": "X", "extra": 1}, 422, "validation_failed"),
    ],
)
def test_outlet_refusals(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    rows = writes(container.engine)
    assert_problem(client.post("/v1/outlets", headers=merchant.headers(), json=body), status, code)
    assert writes(container.engine) == rows


# ---- API keys ------------------------------------------------------------------------------
def test_create_list_and_revoke_api_keys(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    h = merchant.headers()
    made = ok(
        client.post(
            "/v1/api-keys", headers=h, json={"role": "pos", "outlet": "OUT-1", "name": "till 2"}
        ),
        201,
    )
    assert made["role"] == "pos"
    assert made["name"] == "till 2"
    assert made["outlet_id"]
    assert made["key"].startswith("kp_")
    assert made["revoked_at"] is None
    listed = ok(client.get("/v1/api-keys", headers=h))
    assert len(listed) == 4  # admin, pos, readonly from the fixture, and this one
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    assert made["id"] in {k["id"] for k in listed}
    new_key = {"Authorization": f"Bearer {made['key']}"}
    ok(client.get("/v1/members", headers=new_key))
    clock.advance(seconds=5)
    revoked = ok(client.delete(f"/v1/api-keys/{made['id']}", headers=h))
    assert revoked["revoked_at"] == "2026-01-15T09:00:05Z"
    assert_problem(client.get("/v1/members", headers=new_key), 401, "api_key_revoked")
    # Revoking again keeps the first moment.
    clock.advance(seconds=5)
    again = ok(client.delete(f"/v1/api-keys/{made['id']}", headers=h))
    assert again["revoked_at"] == "2026-01-15T09:00:05Z"
    assert_problem(
        client.delete("/v1/api-keys/01900000-0000-7000-8000-000000000000", headers=h),
        404,
        "api_key_not_found",
    )


def test_a_key_can_be_sent_as_x_api_key(client: TestClient, merchant: Merchant) -> None:
    ok(client.get("/v1/tenant", headers={"X-Api-Key": merchant.admin_key}))


def test_last_used_at_is_recorded_once_a_minute(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    h = merchant.headers()
    made = ok(client.post("/v1/api-keys", headers=h, json={"role": "readonly"}), 201)
    assert made["last_used_at"] is None

    def last_used() -> str | None:
        keys = {k["id"]: k for k in ok(client.get("/v1/api-keys", headers=h))}
        value: str | None = keys[made["id"]]["last_used_at"]
        return value

    headers = {"Authorization": f"Bearer {made['key']}"}
    clock.advance(seconds=10)
    ok(client.get("/v1/members", headers=headers))
    assert last_used() == "2026-01-15T09:00:10Z"
    clock.advance(seconds=30)
    ok(client.get("/v1/members", headers=headers))
    assert last_used() == "2026-01-15T09:00:10Z"  # not rewritten on every request
    clock.advance(seconds=61)
    ok(client.get("/v1/members", headers=headers))
    assert last_used() == "2026-01-15T09:01:41Z"


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ({"role": "pos"}, 422, "validation_failed", ["outlet"]),
        ({"role": "pos", "outlet": "NOPE"}, 404, "outlet_not_found", None),
        ({"role": "admin", "outlet": "OUT-1"}, 422, "validation_failed", ["outlet"]),
        ({"role": "root"}, 422, "validation_failed", ["body", "role"]),
        ({}, 422, "validation_failed", ["body", "role"]),
    ],
)
def test_api_key_refusals(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    body: dict[str, Any],
    status: int,
    code: str,
    path: list[str] | None,
) -> None:
    rows = writes(container.engine)
    problem = assert_problem(
        client.post("/v1/api-keys", headers=merchant.headers(), json=body), status, code
    )
    if path:
        assert path in error_paths(problem)
    assert writes(container.engine) == rows


def test_a_cached_key_is_checked_without_the_database(
    client: TestClient, merchant: Merchant, container: Container, clock: FakeClock
) -> None:
    """The API checks a cached key on the event loop (authenticate_cached); a key not
    cached, or whose last-used time is due, goes to the database. Errors are the same."""
    tenants = container.tenants
    made = ok(
        client.post("/v1/api-keys", headers=merchant.headers(), json={"role": "readonly"}), 201
    )
    key = made["key"]
    container.uow_factory.cache.clear()
    assert tenants.authenticate_cached(key) is None  # not cached: the database decides
    actor = tenants.authenticate(key)  # reads, records last use, caches
    cached = tenants.authenticate_cached(key)
    assert cached == actor
    with pytest.raises(Unauthorized) as wrong:
        tenants.authenticate_cached(key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert wrong.value.code == "invalid_api_key"
    with pytest.raises(Unauthorized) as malformed:
        tenants.authenticate_cached("nonsense")
    assert malformed.value.code == "invalid_api_key"
    clock.advance(seconds=61)
    assert tenants.authenticate_cached(key) is None  # last use due: the database writes it
    tenants.authenticate(key)
    assert tenants.authenticate_cached(key) == actor
    ok(client.delete(f"/v1/api-keys/{made['id']}", headers=merchant.headers()))
    assert tenants.authenticate_cached(key) is None  # revoking empties this process's cache
    for check in (tenants.authenticate, tenants.authenticate_cached):  # then read, cached
        with pytest.raises(Unauthorized) as revoked:
            check(key)
        assert revoked.value.code == "api_key_revoked"
