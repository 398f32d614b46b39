"""Idempotency over HTTP: a retry with the same key and body replays the first answer and
writes nothing; the same key with another body is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from tests.conftest import Merchant
from tests.e2e.helpers import (
    accrue,
    assert_problem,
    balance,
    card,
    count,
    enrol,
    error_paths,
    ok,
    writes,
)

# A case prepares what it needs and returns (method, url, body, a different body).
Prepared = tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]
Setup = Callable[[TestClient, Merchant], Prepared]


def _member_with(client: TestClient, m: Merchant, points: int = 0) -> str:
    member_id: str = enrol(client, m)["id"]
    if points:
        accrue(client, m, member_id, points)
    return member_id


def _hold(client: TestClient, m: Merchant) -> str:
    member = _member_with(client, m, 100)
    hold_id: str = ok(
        client.post(f"/v1/members/{member}/holds", headers=m.headers(), json={"points": 40}), 201
    )["hold"]["id"]
    return hold_id


def _enrol(client: TestClient, m: Merchant) -> Prepared:
    return "POST", "/v1/members", {"phone": "+79161234567"}, {"phone": "+79161234568"}


def _patch(client: TestClient, m: Merchant) -> Prepared:
    return "PATCH", f"/v1/members/{_member_with(client, m)}", {"name": "A"}, {"name": "B"}


def _merge(client: TestClient, m: Merchant) -> Prepared:
    a, b, c = (_member_with(client, m, 10) for _ in range(3))
    return "POST", f"/v1/members/{a}/merge", {"duplicate_id": b}, {"duplicate_id": c}


def _replace(client: TestClient, m: Merchant) -> Prepared:
    ok(
        client.post(
            "/v1/card-batches",
            headers=m.headers(),
            json={"name": "b", "numbers": [card(10), card(11)]},
        ),
        201,
    )
    number = enrol(client, m)["cards"][0]["number"]
    return (
        "POST",
        f"/v1/cards/{number}/replace",
        {"new_number": card(10)},
        {"new_number": card(11)},
    )


def _accrue(client: TestClient, m: Merchant) -> Prepared:
    member = _member_with(client, m)
    return "POST", f"/v1/members/{member}/accruals", {"points": 10}, {"points": 11}


def _redeem(client: TestClient, m: Merchant) -> Prepared:
    member = _member_with(client, m, 100)
    return "POST", f"/v1/members/{member}/redemptions", {"points": 10}, {"points": 11}


def _adjust(client: TestClient, m: Merchant) -> Prepared:
    member = _member_with(client, m, 100)
    return (
        "POST",
        f"/v1/members/{member}/adjustments",
        {"points": -10, "reason": "r"},
        {"points": -10, "reason": "other"},
    )


def _hold_points(client: TestClient, m: Merchant) -> Prepared:
    member = _member_with(client, m, 100)
    return "POST", f"/v1/members/{member}/holds", {"points": 10}, {"points": 10, "ttl_seconds": 60}


def _capture(client: TestClient, m: Merchant) -> Prepared:
    return "POST", f"/v1/holds/{_hold(client, m)}/capture", {"points": 10}, {"points": 11}


def _release(client: TestClient, m: Merchant) -> Prepared:
    first, second = _hold(client, m), _hold(client, m)
    # Release has no body: "another body" is the same key on another hold.
    return "POST", f"/v1/holds/{first}/release", None, {"__url": f"/v1/holds/{second}/release"}


def _reverse(client: TestClient, m: Merchant) -> Prepared:
    member = _member_with(client, m)
    txn = accrue(client, m, member, 100)["transactions"][0]["id"]
    return ("POST", f"/v1/ledger/transactions/{txn}/reversals", {"points": 10}, {"points": 20})


CASES: dict[str, Setup] = {
    "enrol": _enrol,
    "patch": _patch,
    "merge": _merge,
    "replace-card": _replace,
    "accrue": _accrue,
    "redeem": _redeem,
    "adjust": _adjust,
    "hold": _hold_points,
    "capture": _capture,
    "release": _release,
    "reverse": _reverse,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_key_same_body_replays_and_other_body_is_refused(
    client: TestClient, merchant: Merchant, container: Container, name: str
) -> None:
    method, url, body, other = CASES[name](client, merchant)
    h = merchant.headers(**{"Idempotency-Key": f"key-{name}"})
    first = client.request(method, url, headers=h, json=body)
    assert first.status_code in (200, 201), first.text
    after_first = writes(container.engine)
    again = client.request(method, url, headers=h, json=body)
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert writes(container.engine) == after_first  # nothing new: no second transaction
    assert other is not None
    other_url = other.pop("__url", url)
    r = client.request(method, other_url, headers=h, json=other or None)
    assert_problem(r, 422, "idempotency_key_reused")
    assert writes(container.engine) == after_first


def test_one_accrual_for_two_identical_requests(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    member = _member_with(client, merchant)
    before = count(container.engine, "ledger_transactions")
    h = merchant.headers(**{"Idempotency-Key": "purchase-17"})
    answers = [
        client.post(
            f"/v1/members/{member}/accruals", headers=h, json={"points": 250, "reason": "check 17"}
        )
        for _ in range(3)
    ]
    assert {a.status_code for a in answers} == {201}
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert count(container.engine, "ledger_transactions") == before + 1
    assert balance(client, merchant, member)["available"] == 250


def test_a_key_is_scoped_to_the_tenant(
    client: TestClient, merchant: Merchant, other_merchant: Merchant
) -> None:
    """Two merchants may pick the same key: neither sees the other's answer."""
    a = _member_with(client, merchant)
    b = _member_with(client, other_merchant)
    ra = client.post(
        f"/v1/members/{a}/accruals",
        json={"points": 5},
        headers=merchant.headers(**{"Idempotency-Key": "k1"}),
    )
    rb = client.post(
        f"/v1/members/{b}/accruals",
        json={"points": 5},
        headers=other_merchant.headers(**{"Idempotency-Key": "k1"}),
    )
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["transactions"][0]["member_id"] == a
    assert rb.json()["transactions"][0]["member_id"] == b


def test_a_key_used_on_another_operation_is_refused(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    member = _member_with(client, merchant, 100)
    h = merchant.headers(**{"Idempotency-Key": "shared"})
    ok(client.post(f"/v1/members/{member}/accruals", headers=h, json={"points": 10}), 201)
    before = writes(container.engine)
    r = client.post(f"/v1/members/{member}/redemptions", headers=h, json={"points": 10})
    assert_problem(r, 422, "idempotency_key_reused")
    assert writes(container.engine) == before


def test_a_failed_request_does_not_burn_its_key(client: TestClient, merchant: Merchant) -> None:
    member = _member_with(client, merchant)
    h = merchant.headers(**{"Idempotency-Key": "retry-me"})
    url = f"/v1/members/{member}/redemptions"
    assert_problem(client.post(url, headers=h, json={"points": 10}), 422, "insufficient_points")
    accrue(client, merchant, member, 10)
    ok(client.post(url, headers=h, json={"points": 10}), 201)
    assert balance(client, merchant, member)["available"] == 0


def test_a_replay_answers_as_first_even_after_the_state_changed(
    client: TestClient, merchant: Merchant
) -> None:
    member = _member_with(client, merchant)
    h = merchant.headers(**{"Idempotency-Key": "early"})
    first = ok(client.post(f"/v1/members/{member}/accruals", headers=h, json={"points": 7}), 201)
    ok(client.post(f"/v1/members/{member}/block", headers=merchant.headers(), json={}))
    again = ok(client.post(f"/v1/members/{member}/accruals", headers=h, json={"points": 7}), 201)
    assert again == first


@pytest.mark.parametrize(
    ("key", "code", "path"),
    [
        ("", "invalid_idempotency_key", None),
        ("k" * 256, "validation_failed", ["header", "Idempotency-Key"]),
    ],
)
def test_bad_keys_are_refused(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    key: str,
    code: str,
    path: list[str] | None,
) -> None:
    member = _member_with(client, merchant)
    before = writes(container.engine)
    r = client.post(
        f"/v1/members/{member}/accruals",
        json={"points": 7},
        headers=merchant.headers(**{"Idempotency-Key": key}),
    )
    body = assert_problem(r, 422, code)
    if path:
        assert path in error_paths(body)
    assert writes(container.engine) == before


def test_receipt_number_and_refund_number_are_natural_keys(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    member = _member_with(client, merchant)
    ok(
        client.put(
            "/v1/programs/base",
            headers=merchant.headers(),
            json={
                "document": {
                    "type": "bonus",
                    "rules": [{"id": "base", "effects": [{"points_percent": 10}]}],
                }
            },
        )
    )
    body = {
        "member": {"id": member},
        "receipt_number": "R-77",
        "lines": [{"sku": "LATTE", "qty": 2, "price": 25000}],
    }
    h = merchant.headers("pos")
    first = ok(client.post("/v1/purchases", headers=h, json=body), 201)
    after = writes(container.engine)
    assert ok(client.post("/v1/purchases", headers=h, json=body), 201) == first
    assert writes(container.engine) == after
    changed = {**body, "lines": [{"sku": "LATTE", "qty": 3, "price": 25000}]}
    assert_problem(
        client.post("/v1/purchases", headers=h, json=changed), 409, "receipt_number_reused"
    )
    receipt = first["receipt"]["id"]
    refund = ok(
        client.post(f"/v1/purchases/{receipt}/refunds", headers=h, json={"refund_number": "RF-1"}),
        201,
    )
    after = writes(container.engine)
    assert (
        ok(
            client.post(
                f"/v1/purchases/{receipt}/refunds", headers=h, json={"refund_number": "RF-1"}
            ),
            201,
        )
        == refund
    )
    assert writes(container.engine) == after
