"""The reward catalogue over HTTP: the marketing team's catalogue and stock, the member's
catalogue, redemption with an Idempotency-Key, fulfilment and cancellation, pagination, and
bad input (unknown, malformed and other tenants' ids and codes): a clear 4xx with field paths
and nothing written. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant
from tests.e2e.helpers import accrue, assert_problem, balance, enrol, error_paths, ok, writes

MUG: dict[str, Any] = {
    "code": "MUG",
    "kind": "material",
    "name": {"ru": "Кружка", "en": "Mug"},
    "description": {"ru": "Белая, 300 мл", "en": "White, 300 ml"},
    "cost": 500,
    "cost_by_tier": {"gold": 400},
    "limits": {"per_member": 2, "per_member_period": "month"},
    "sku": "MUG-W",
}
COFFEE: dict[str, Any] = {
    "code": "COFFEE",
    "kind": "coupon",
    "name": {"ru": "Кофе в подарок", "en": "Free coffee"},
    "cost": 150,
    "coupon": {"benefit": {"gift": {"sku": "LATTE"}}, "valid_days": 14},
}


def create(client: TestClient, m: Merchant, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = ok(client.post("/v1/rewards", headers=m.headers(), json=body), 201)
    return result


def set_stock(
    client: TestClient, m: Merchant, reward_id: str, location: str, quantity: int, **extra: Any
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.put(
            f"/v1/rewards/{reward_id}/stock",
            headers=m.headers(),
            json={"location": location, "quantity": quantity, **extra},
        )
    )
    return result


def redeem(
    client: TestClient, m: Merchant, member_id: str, body: dict[str, Any], key: str | None = None
) -> Any:
    headers = m.headers("pos", **({"Idempotency-Key": key} if key else {}))
    return client.post(f"/v1/members/{member_id}/reward-orders", headers=headers, json=body)


def order_action(client: TestClient, m: Merchant, order_id: str, action: str, **kw: Any) -> Any:
    return client.post(f"/v1/reward-orders/{order_id}/{action}", headers=m.headers("pos"), **kw)


@pytest.fixture
def mug(client: TestClient, merchant: Merchant) -> dict[str, Any]:
    reward = create(client, merchant, MUG)
    set_stock(client, merchant, reward["id"], "OUT-1", 3)
    return reward


@pytest.fixture
def member(client: TestClient, merchant: Merchant) -> str:
    member_id: str = enrol(client, merchant, phone="+79161234567")["id"]
    accrue(client, merchant, member_id, 2000)
    return member_id


# ---- the catalogue ---------------------------------------------------------------------------
def test_create_read_change_and_archive(client: TestClient, merchant: Merchant) -> None:
    h = merchant.headers()
    reward = create(client, merchant, MUG)
    assert reward["code"] == "MUG"
    assert reward["status"] == "active"
    assert reward["currency"] == "points"  # the tenant's points currency by default
    assert reward["stock"] == []
    assert reward["available"] == 0
    assert reward["visibility"] == {
        "tiers": [],
        "segments": [],
        "clubs": [],
        "from": None,
        "until": None,
    }
    # The same body again answers the same reward; another body under the code is a 409.
    assert ok(client.post("/v1/rewards", headers=h, json=MUG), 201)["id"] == reward["id"]
    assert_problem(
        client.post("/v1/rewards", headers=h, json={**MUG, "cost": 1}), 409, "reward_code_taken"
    )
    assert ok(client.get(f"/v1/rewards/{reward['id']}", headers=merchant.headers("pos"))) == reward
    changed = ok(
        client.patch(
            f"/v1/rewards/{reward['id']}",
            headers=h,
            json={
                "cost": 450,
                "visibility": {"tiers": ["gold"], "from": "2026-01-01T00:00:00+03:00"},
                "description": None,
            },
        )
    )
    assert changed["cost"] == 450
    assert changed["description"] is None
    assert changed["visibility"]["from"] == "2025-12-31T21:00:00Z"
    assert changed["cost_by_tier"] == {"gold": 400}  # untouched
    archived = ok(
        client.patch(f"/v1/rewards/{reward['id']}", headers=h, json={"status": "archived"})
    )
    assert archived["status"] == "archived"
    coffee = create(client, merchant, COFFEE)
    listed = ok(client.get("/v1/rewards", headers=merchant.headers("readonly")))
    assert [r["code"] for r in listed["items"]] == ["MUG", "COFFEE"]
    only = ok(client.get("/v1/rewards", headers=h, params={"status": "active", "kind": "coupon"}))
    assert [r["id"] for r in only["items"]] == [coffee["id"]]
    page = ok(client.get("/v1/rewards", headers=h, params={"limit": 1}))
    assert [r["code"] for r in page["items"]] == ["MUG"]
    rest = ok(client.get("/v1/rewards", headers=h, params={"cursor": page["next_cursor"]}))
    assert [r["code"] for r in rest["items"]] == ["COFFEE"]
    assert rest["next_cursor"] is None


def test_stock_per_location(client: TestClient, merchant: Merchant, mug: dict[str, Any]) -> None:
    view = set_stock(client, merchant, mug["id"], "WH-MAIN", 40, low_stock_threshold=5)
    assert {s["location"]: (s["quantity"], s["low_stock_threshold"]) for s in view["stock"]} == {
        "OUT-1": (3, None),
        "WH-MAIN": (40, 5),
    }
    assert view["available"] == 43
    # Absolute: sending the same level again changes nothing.
    assert set_stock(client, merchant, mug["id"], "WH-MAIN", 40)["available"] == 43


def test_partner_code_upload(client: TestClient, merchant: Merchant) -> None:
    cinema = create(
        client,
        merchant,
        {
            "code": "CINEMA",
            "kind": "partner_code",
            "name": {"ru": "Кино", "en": "Cinema"},
            "cost": 1,
        },
    )
    url = f"/v1/rewards/{cinema['id']}/codes"
    first = ok(client.post(url, headers=merchant.headers(), json={"codes": ["A", "B", "A"]}))
    assert first == {
        "reward_id": cinema["id"],
        "received": 3,
        "added": 2,
        "duplicates": 1,
        "available": 2,
    }
    again = ok(client.post(url, headers=merchant.headers(), json={"codes": ["B", "C"]}))
    assert (again["added"], again["available"]) == (1, 3)
    body = assert_problem(
        client.post(url, headers=merchant.headers(), json={"codes": ["ok", " padded"]}), 422
    )
    assert error_paths(body) == [["codes", 1]]


# ---- members ---------------------------------------------------------------------------------
def test_redeem_pick_up_and_list(
    client: TestClient,
    merchant: Merchant,
    mug: dict[str, Any],
    member: str,
    container: Container,
) -> None:
    create(client, merchant, COFFEE)
    catalogue = ok(client.get(f"/v1/members/{member}/rewards", headers=merchant.headers("pos")))
    by_code = {r["code"]: r for r in catalogue["items"]}
    assert set(by_code) == {"MUG", "COFFEE"}
    assert by_code["MUG"]["cost"] == 500
    assert by_code["MUG"]["affordable"] is True
    assert by_code["MUG"]["per_member_left"] == 2
    assert by_code["MUG"]["available"] == 3
    assert by_code["MUG"]["locations"] == [{"location": "OUT-1", "quantity": 3}]
    assert by_code["MUG"]["description"]["en"] == "White, 300 ml"
    assert by_code["COFFEE"]["available"] is None  # no stock to run out of

    r = redeem(client, merchant, member, {"reward_id": mug["id"]}, key="order-1")
    order = ok(r, 201)
    assert order["status"] == "pending"
    assert order["location"] == "OUT-1"
    assert order["status_text"] == {
        "ru": "Заказ принят и готовится к выдаче",
        "en": "Order placed, being prepared",
    }
    assert balance(client, merchant, member)["available"] == 1500
    # A retry with the same key replays the answer and writes nothing.
    before = writes(container.engine)
    replay = ok(redeem(client, merchant, member, {"reward_id": mug["id"]}, key="order-1"), 201)
    assert replay == order
    assert writes(container.engine) == before
    assert_problem(
        redeem(client, merchant, member, {"reward_code": "MUG"}, key="order-1"),
        422,
        "idempotency_key_reused",
    )

    ready = ok(order_action(client, merchant, order["id"], "ready", json={}))
    assert (ready["status"], ready["pickup_outlet"]) == ("ready", "OUT-1")
    issued = ok(order_action(client, merchant, order["id"], "issue"))
    assert issued["status"] == "issued"
    assert_problem(order_action(client, merchant, order["id"], "cancel"), 409, "order_issued")

    coupon = ok(redeem(client, merchant, member, {"reward_code": "COFFEE", "quantity": 2}), 201)
    assert coupon["status"] == "issued"
    assert len(coupon["coupons"]) == 2
    assert coupon["coupons"][0]["benefit"] == {"gift": {"sku": "LATTE"}}

    h = merchant.headers("readonly")
    assert ok(client.get(f"/v1/reward-orders/{order['id']}", headers=h)) == issued
    mine = ok(client.get(f"/v1/members/{member}/reward-orders", headers=h, params={"limit": 1}))
    assert [o["id"] for o in mine["items"]] == [coupon["id"]]  # newest first
    older = ok(
        client.get(
            f"/v1/members/{member}/reward-orders", headers=h, params={"cursor": mine["next_cursor"]}
        )
    )
    assert [o["id"] for o in older["items"]] == [order["id"]]
    issued_only = ok(client.get("/v1/reward-orders", headers=h, params={"status": "issued"}))
    assert {o["id"] for o in issued_only["items"]} == {order["id"], coupon["id"]}
    at_outlet = ok(client.get("/v1/reward-orders", headers=h, params={"location": "OUT-1"}))
    assert [o["id"] for o in at_outlet["items"]] == [order["id"]]
    # The ledger tells the member what the points bought.
    history = ok(client.get(f"/v1/members/{member}/ledger", headers=h))["items"]
    assert history[0]["description"]["ru"] == "Списано 300 баллов — Кофе в подарок"
    report = verify_ledger(container.uow_factory)
    assert report.ok, report.checks


def test_cancel_returns_points_and_stock(
    client: TestClient, merchant: Merchant, mug: dict[str, Any], member: str
) -> None:
    order = ok(redeem(client, merchant, member, {"reward_code": "MUG", "quantity": 2}), 201)
    assert ok(client.get(f"/v1/rewards/{mug['id']}", headers=merchant.headers()))["available"] == 1
    cancelled = ok(order_action(client, merchant, order["id"], "cancel"))
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_text"]["ru"] == "Отменён, баллы возвращены"
    assert ok(order_action(client, merchant, order["id"], "cancel")) == cancelled
    assert balance(client, merchant, member)["available"] == 2000
    assert ok(client.get(f"/v1/rewards/{mug['id']}", headers=merchant.headers()))["available"] == 3
    assert_problem(order_action(client, merchant, order["id"], "issue"), 409, "order_cancelled")
    assert_problem(
        order_action(client, merchant, order["id"], "ready", json={}), 409, "order_cancelled"
    )


def test_business_refusals(
    client: TestClient, merchant: Merchant, mug: dict[str, Any], container: Container
) -> None:
    poor = enrol(client, merchant)["id"]
    accrue(client, merchant, poor, 100)
    before = writes(container.engine)
    body = assert_problem(
        redeem(client, merchant, poor, {"reward_id": mug["id"]}), 422, "insufficient_points"
    )
    assert (body["available"], body["requested"]) == (100, 500)
    accrue(client, merchant, poor, 5000)
    before = writes(container.engine)
    assert_problem(
        redeem(client, merchant, poor, {"reward_id": mug["id"], "quantity": 3}),
        422,
        "member_limit_reached",
    )
    assert_problem(
        redeem(client, merchant, poor, {"reward_id": mug["id"], "location": "WH-9"}),
        422,
        "out_of_stock",
    )
    assert writes(container.engine) == before
    fund = create(
        client,
        merchant,
        {
            "code": "FUND",
            "kind": "charity",
            "name": {"ru": "Фонд", "en": "Fund"},
            "cost": 10,
            "charity": {"code": "kids"},
        },
    )
    before = writes(container.engine)
    body = assert_problem(
        redeem(client, merchant, poor, {"reward_id": fund["id"], "location": "OUT-1"}), 422
    )
    assert [(e["path"], e["code"]) for e in body["errors"]] == [
        (["location"], "location_not_applicable")
    ]
    assert_problem(
        client.put(
            f"/v1/rewards/{fund['id']}/stock",
            headers=merchant.headers(),
            json={"location": "OUT-1", "quantity": 1},
        ),
        422,
        "not_a_material_reward",
    )
    assert writes(container.engine) == before


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "paths"),
    [
        ({"kind": "coupon"}, [["coupon"]]),
        ({"kind": "charity", "charity": {"code": "with space"}}, [["body", "charity", "code"]]),
        ({"cost": -1}, [["body", "cost"]]),
        ({"cost": 10**30}, [["body", "cost"]]),
        ({"cost": "500"}, [["body", "cost"]]),
        ({"name": {"ru": "Только по-русски"}}, [["body", "name", "en"]]),
        ({"code": ""}, [["body", "code"]]),
        ({"code": "x" * 65}, [["body", "code"]]),
        ({"limits": {"per_member": 0}}, [["body", "limits", "per_member"]]),
        ({"visibility": {"from": "tomorrow"}}, [["body", "visibility", "from"]]),
        (
            {"kind": "coupon", "coupon": {"benefit": {"discount_percent": 0}}},
            [["coupon", "benefit", "discount_percent"]],
        ),
        ({"cost_by_tier": {"gold": 1.5}}, [["body", "cost_by_tier", "gold"]]),
    ],
)
def test_bad_definitions_are_422_with_paths(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    patch: dict[str, Any],
    paths: list[list[str | int]],
) -> None:
    before = writes(container.engine)
    body = assert_problem(
        client.post("/v1/rewards", headers=merchant.headers(), json={**MUG, **patch}), 422
    )
    assert all(any(p[: len(want)] == want for p in error_paths(body)) for want in paths), body
    assert writes(container.engine) == before


def test_bad_patches_are_422_with_paths(
    client: TestClient, merchant: Merchant, mug: dict[str, Any], container: Container
) -> None:
    url = f"/v1/rewards/{mug['id']}"
    before = writes(container.engine)
    for patch, path, code in [
        ({"code": "NEW"}, ["body", "code"], "unknown_field"),
        ({"kind": "coupon"}, ["body", "kind"], "unknown_field"),
        ({"status": "deleted"}, ["body", "status"], "literal_error"),
        ({"coupon": {"benefit": {"points_fixed": 5}}}, ["coupon"], "section_not_allowed"),
        ({"name": None}, ["name"], "invalid"),
        ({"limits": {"per_member_period": "week"}}, ["limits", "per_member_period"], None),
    ]:
        body = assert_problem(client.patch(url, headers=merchant.headers(), json=patch), 422)
        assert path in error_paths(body), (patch, body)
        if code is not None:
            assert code in {e["code"] for e in body["errors"]}, body
    assert writes(container.engine) == before


def test_unknown_and_malformed_ids_and_codes(
    client: TestClient, merchant: Merchant, mug: dict[str, Any], member: str, container: Container
) -> None:
    h = merchant.headers()
    unknown = str(uuid.uuid4())
    before = writes(container.engine)
    for method, url, payload, code in [
        ("GET", f"/v1/rewards/{unknown}", None, "reward_not_found"),
        ("PATCH", f"/v1/rewards/{unknown}", {"cost": 1}, "reward_not_found"),
        (
            "PUT",
            f"/v1/rewards/{unknown}/stock",
            {"location": "A", "quantity": 1},
            "reward_not_found",
        ),
        ("POST", f"/v1/rewards/{unknown}/codes", {"codes": ["A"]}, "reward_not_found"),
        ("GET", f"/v1/members/{unknown}/rewards", None, "member_not_found"),
        ("GET", f"/v1/members/{unknown}/reward-orders", None, "member_not_found"),
        (
            "POST",
            f"/v1/members/{unknown}/reward-orders",
            {"reward_code": "MUG"},
            "member_not_found",
        ),
        ("POST", f"/v1/members/{member}/reward-orders", {"reward_id": unknown}, "reward_not_found"),
        (
            "POST",
            f"/v1/members/{member}/reward-orders",
            {"reward_code": "NOPE"},
            "reward_not_found",
        ),
        ("GET", f"/v1/reward-orders/{unknown}", None, "reward_order_not_found"),
        ("POST", f"/v1/reward-orders/{unknown}/ready", {}, "reward_order_not_found"),
        ("POST", f"/v1/reward-orders/{unknown}/issue", None, "reward_order_not_found"),
        ("POST", f"/v1/reward-orders/{unknown}/cancel", None, "reward_order_not_found"),
    ]:
        assert_problem(client.request(method, url, headers=h, json=payload), 404, code)
    for bad in ("not-a-uuid", "1", "' OR 1=1 --", "0190000-0000-7000-8000-00000000000g"):
        for method, template, param in [
            ("GET", "/v1/rewards/{}", "reward_id"),
            ("PUT", "/v1/rewards/{}/stock", "reward_id"),
            ("GET", "/v1/reward-orders/{}", "order_id"),
            ("POST", "/v1/reward-orders/{}/cancel", "order_id"),
        ]:
            body = assert_problem(
                client.request(
                    method,
                    template.format(bad),
                    headers=h,
                    json={"location": "A", "quantity": 1},
                ),
                422,
                "validation_failed",
            )
            assert ["path", param] in error_paths(body)
    orders: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"reward_id": "not-a-uuid"}, ["body", "reward_id"]),
        ({"reward_id": 12}, ["body", "reward_id"]),
        ({"reward_code": ""}, ["body", "reward_code"]),
        ({"reward_code": "MUG", "quantity": 0}, ["body", "quantity"]),
        ({"reward_code": "MUG", "quantity": 101}, ["body", "quantity"]),
        ({"reward_code": "MUG", "quantity": "1"}, ["body", "quantity"]),
        ({"reward_code": "MUG", "location": "x" * 65}, ["body", "location"]),
        ({"reward_code": "MUG", "location": "two words"}, ["location"]),
        ({}, ["reward_id"]),
        ({"reward_code": "MUG", "reward_id": mug["id"]}, ["reward_id"]),
    ]
    for payload, path in orders:
        body = assert_problem(redeem(client, merchant, member, payload), 422)
        assert path in error_paths(body), (payload, body)
    levels: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"location": "WH", "quantity": -1}, ["body", "quantity"]),
        ({"location": "WH", "quantity": 10**10}, ["body", "quantity"]),
        ({"location": "WH", "quantity": 1.5}, ["body", "quantity"]),
        ({"location": "", "quantity": 1}, ["body", "location"]),
        ({"location": "W H", "quantity": 1}, ["location"]),
        (
            {"location": "WH", "quantity": 1, "low_stock_threshold": -2},
            ["body", "low_stock_threshold"],
        ),
        ({"quantity": 1}, ["body", "location"]),
    ]
    for payload, path in levels:
        body = assert_problem(
            client.put(f"/v1/rewards/{mug['id']}/stock", headers=h, json=payload), 422
        )
        assert path in error_paths(body), (payload, body)
    filters: list[tuple[dict[str, str], list[str | int] | None]] = [
        ({"status": "lost"}, ["query", "status"]),
        ({"kind": "teleport"}, ["query", "kind"]),
        ({"cursor": "x"}, None),
    ]
    for params, where in filters:
        r = client.get("/v1/rewards", headers=h, params=params)
        body = assert_problem(r, 422)
        if where is not None:
            assert where in error_paths(body)
    assert_problem(client.get("/v1/reward-orders", headers=h, params={"reward_id": "nope"}), 422)
    assert writes(container.engine) == before


def test_another_tenants_rewards_members_and_orders_are_not_found(
    client: TestClient,
    merchant: Merchant,
    other_merchant: Merchant,
    mug: dict[str, Any],
    member: str,
    container: Container,
) -> None:
    """A's key naming B's reward (by id or by code), B's member or B's order: 404, nothing
    written, and B's lists never show in A's."""
    b_reward = create(client, other_merchant, {**MUG, "code": "B-ONLY"})
    set_stock(client, other_merchant, b_reward["id"], "OUT-1", 5)
    b_member = enrol(client, other_merchant)["id"]
    accrue(client, other_merchant, b_member, 1000)
    b_order = ok(redeem(client, other_merchant, b_member, {"reward_code": "B-ONLY"}), 201)
    h = merchant.headers()
    before = writes(container.engine)
    for method, url, payload, code in [
        (
            "POST",
            f"/v1/members/{member}/reward-orders",
            {"reward_id": b_reward["id"]},
            "reward_not_found",
        ),
        (
            "POST",
            f"/v1/members/{member}/reward-orders",
            {"reward_code": "B-ONLY"},
            "reward_not_found",
        ),
        (
            "POST",
            f"/v1/members/{b_member}/reward-orders",
            {"reward_code": "MUG"},
            "member_not_found",
        ),
        ("GET", f"/v1/rewards/{b_reward['id']}", None, "reward_not_found"),
        (
            "PUT",
            f"/v1/rewards/{b_reward['id']}/stock",
            {"location": "OUT-1", "quantity": 0},
            "reward_not_found",
        ),
        ("GET", f"/v1/reward-orders/{b_order['id']}", None, "reward_order_not_found"),
        ("POST", f"/v1/reward-orders/{b_order['id']}/cancel", None, "reward_order_not_found"),
    ]:
        assert_problem(client.request(method, url, headers=h, json=payload), 404, code)
    assert writes(container.engine) == before
    assert [r["code"] for r in ok(client.get("/v1/rewards", headers=h))["items"]] == ["MUG"]
    assert ok(client.get("/v1/reward-orders", headers=h))["items"] == []
    # A's catalogue and B's stock are untouched.
    catalogue = ok(client.get(f"/v1/members/{member}/rewards", headers=h))["items"]
    assert [r["code"] for r in catalogue] == ["MUG"]
    b_view = ok(client.get(f"/v1/rewards/{b_reward['id']}", headers=other_merchant.headers()))
    assert b_view["available"] == 4


def test_member_catalogue_pages(client: TestClient, merchant: Merchant, member: str) -> None:
    h = merchant.headers()
    for i in range(5):
        create(
            client,
            merchant,
            {
                "code": f"FUND-{i}",
                "kind": "charity",
                "name": {"ru": f"Фонд {i}", "en": f"Fund {i}"},
                "cost": 10,
                "charity": {"code": f"f{i}"},
                # Every other one is for gold members only: the pages skip them.
                **({"visibility": {"tiers": ["gold"]}} if i % 2 else {}),
            },
        )
    codes: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ok(client.get(f"/v1/members/{member}/rewards", headers=h, params=params))
        codes += [r["code"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert codes == ["FUND-0", "FUND-2", "FUND-4"]
    for limit in ("0", "201", "x"):
        assert_problem(
            client.get(f"/v1/members/{member}/rewards", headers=h, params={"limit": limit}), 422
        )


def test_row_counts_never_change_on_refused_roles(
    client: TestClient, merchant: Merchant, mug: dict[str, Any], member: str, container: Container
) -> None:
    order = ok(redeem(client, merchant, member, {"reward_id": mug["id"]}), 201)
    before = writes(container.engine)
    for role, method, url, payload in [
        ("readonly", "POST", f"/v1/members/{member}/reward-orders", {"reward_id": mug["id"]}),
        ("readonly", "POST", f"/v1/reward-orders/{order['id']}/cancel", None),
        ("pos", "PUT", f"/v1/rewards/{mug['id']}/stock", {"location": "OUT-1", "quantity": 99}),
        ("pos", "PATCH", f"/v1/rewards/{mug['id']}", {"cost": 1}),
        ("pos", "POST", "/v1/rewards", {**MUG, "code": "NEW"}),
    ]:
        r = client.request(method, url, headers=merchant.headers(role), json=payload)
        assert_problem(r, 403, "role_not_allowed")
    assert writes(container.engine) == before
    with container.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM reward_orders")).scalar_one() == 1
