"""Families, transfers and donations over HTTP: the family's life from founding to
dissolving, the till's answer for a member who may not spend, idempotent transfers and
donations, the charities report, and bad input refused with field paths, writing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from tests.conftest import Merchant
from tests.e2e.helpers import accrue, assert_problem, balance, enrol, error_paths, ok, writes

DOCUMENT: dict[str, Any] = {
    "type": "bonus",
    "redemption": {"point_value": 100, "max_percent": 100},
    "rules": [{"id": "base", "effects": [{"points_percent": 10}]}],
    "family": {"max_members": 3, "leave_split": "equal_share"},
    "transfers": {"min_points": 10, "max_points_per_month": 300},
    "donations": {"charities": [{"code": "fund", "name": {"ru": "Фонд", "en": "Fund"}}]},
}


def publish(client: TestClient, m: Merchant, document: dict[str, Any] = DOCUMENT) -> None:
    ok(client.put("/v1/programs/main", headers=m.headers(), json={"document": document}))


def purchase(m: Merchant, member: str, number: str, redeem: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "member": {"id": member},
        "receipt_number": number,
        "lines": [{"sku": "TEA", "qty": 1, "price": 10000}],
    }
    if redeem is not None:
        body["redeem_points"] = redeem
    return body


def test_a_family_from_founding_to_dissolving(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    m = merchant
    publish(client, m)
    owner, kid = enrol(client, m, name="Мама")["id"], enrol(client, m, name="Сын")["id"]
    accrue(client, m, owner, 200)
    accrue(client, m, kid, 40)
    family = ok(
        client.post(f"/v1/members/{owner}/family", headers=m.headers("pos"), json={"name": "Мы"}),
        201,
    )
    assert (family["id"], family["max_members"], family["leave_split"]) == (
        owner,
        3,
        "equal_share",
    )
    invitation = ok(
        client.post(
            f"/v1/members/{owner}/family/invitations",
            headers=m.headers("pos"),
            json={"invitee_id": kid},
        ),
        201,
    )
    joined = ok(
        client.post(
            f"/v1/members/{kid}/family/join",
            headers=m.headers("pos"),
            json={"code": invitation["code"]},
        ),
        201,
    )
    assert (joined["status"], joined["points"]) == ("active", {"points": 40})
    seen = ok(client.get(f"/v1/members/{kid}/family", headers=m.headers("readonly")))
    assert [(p["member_id"], p["role"]) for p in seen["members"]] == [
        (owner, "owner"),
        (kid, "member"),
    ]
    assert seen["balance"]["available"] == 240
    assert balance(client, m, kid)["available"] == 240
    # The owner stops the kid paying with points: the till is told why.
    patched = ok(
        client.patch(
            f"/v1/members/{kid}/family", headers=m.headers("pos"), json={"can_spend": False}
        )
    )
    assert patched["members"][1]["can_spend"] is False
    calc = ok(
        client.post(
            "/v1/purchases/calculate",
            headers=m.headers("pos"),
            json={k: v for k, v in purchase(m, kid, "C", "max").items() if k != "receipt_number"},
        )
    )
    assert calc["max_redeemable"] == 0
    assert set(calc["family"]["reason"]) == {"ru", "en"}
    before = writes(container.engine)
    body = assert_problem(
        client.post("/v1/purchases", headers=m.headers("pos"), json=purchase(m, kid, "R-1", 10)),
        422,
        "family_spend_not_allowed",
    )
    assert set(body["reason"]) == {"ru", "en"}
    assert writes(container.engine) == before
    ok(client.post("/v1/purchases", headers=m.headers("pos"), json=purchase(m, kid, "R-2")), 201)
    assert balance(client, m, owner)["available"] == 250
    # The owner leaving dissolves the family: the kid takes half of the pool.
    done = ok(client.delete(f"/v1/members/{owner}/family", headers=m.headers("pos")))
    assert (done["dissolved"], done["members_left"]) == (True, [kid])
    assert (balance(client, m, kid)["available"], balance(client, m, owner)["available"]) == (
        125,
        125,
    )
    assert_problem(
        client.get(f"/v1/members/{kid}/family", headers=m.headers("readonly")),
        404,
        "family_not_found",
    )
    assert_problem(
        client.delete(f"/v1/members/{kid}/family", headers=m.headers("pos")),
        404,
        "family_not_found",
    )
    audit = ok(client.get(f"/v1/members/{kid}/audit", headers=m.headers()))
    assert [e["action"] for e in audit if e["action"].startswith("family.")] == [
        "family.join",
        "family.permission",
        "family.leave",
    ]


def test_transfers_are_idempotent_limited_and_listed(
    client: TestClient, merchant: Merchant
) -> None:
    m = merchant
    publish(client, m)
    a, b = enrol(client, m, name="A")["id"], enrol(client, m, name="B")["id"]
    accrue(client, m, a, 1000)
    url = f"/v1/members/{a}/transfers"
    h = m.headers("pos", **{"Idempotency-Key": "tr-1"})
    first = ok(client.post(url, headers=h, json={"to_member_id": b, "points": 100}), 201)
    again = ok(client.post(url, headers=h, json={"to_member_id": b, "points": 100}), 201)
    assert again == first
    assert first["balance"]["available"] == 900
    assert_problem(
        client.post(url, headers=h, json={"to_member_id": b, "points": 101}),
        422,
        "idempotency_key_reused",
    )
    for points in (150, 50):
        ok(
            client.post(url, headers=m.headers("pos"), json={"to_member_id": b, "points": points}),
            201,
        )
    assert_problem(
        client.post(url, headers=m.headers("pos"), json={"to_member_id": b, "points": 10}),
        422,
        "transfer_monthly_limit",
    )
    assert_problem(
        client.post(url, headers=m.headers("pos"), json={"to_member_id": a, "points": 10}),
        422,
        "transfer_to_self",
    )
    page = ok(
        client.get(f"/v1/members/{b}/transfers", headers=m.headers("readonly"), params={"limit": 2})
    )
    assert [t["points"] for t in page["items"]] == [50, 150]
    rest = ok(
        client.get(
            f"/v1/members/{b}/transfers",
            headers=m.headers("readonly"),
            params={"cursor": page["next_cursor"]},
        )
    )
    assert [t["points"] for t in rest["items"]] == [100]
    assert rest["next_cursor"] is None
    assert balance(client, m, b)["available"] == 300


def test_donations_and_the_charities_report(client: TestClient, merchant: Merchant) -> None:
    m = merchant
    publish(client, m)
    a = enrol(client, m, name="A")["id"]
    accrue(client, m, a, 100)
    url = f"/v1/members/{a}/donations"
    h = m.headers("pos", **{"Idempotency-Key": "don-1"})
    gift = ok(client.post(url, headers=h, json={"charity": "fund", "points": 30}), 201)
    assert ok(client.post(url, headers=h, json={"charity": "fund", "points": 30}), 201) == gift
    body = assert_problem(
        client.post(url, headers=m.headers("pos"), json={"charity": "zoo", "points": 1}),
        422,
        "unknown_charity",
    )
    assert ["charity"] in error_paths(body)
    assert_problem(
        client.post(url, headers=m.headers("pos"), json={"charity": "fund", "points": 71}),
        422,
        "insufficient_points",
    )
    report = ok(client.get("/v1/charities", headers=m.headers("readonly")))
    assert report == [
        {
            "code": "fund",
            "name": {"ru": "Фонд", "en": "Fund"},
            "listed": True,
            "totals": [{"currency": "points", "points": 30, "donations": 1, "donors": 1}],
        }
    ]
    ledger = ok(client.get(f"/v1/members/{a}/ledger", headers=m.headers("readonly")))
    assert ledger["items"][0]["description"] == {
        "ru": "Пожертвовано 30 баллов",
        "en": "30 points donated",
    }


HUGE = 10**30
BAD: list[tuple[str, str, dict[str, Any], list[str | int]]] = [
    ("POST", "family", {"name": ""}, ["body", "name"]),
    ("POST", "family", {"name": "x" * 201}, ["body", "name"]),
    ("POST", "family", {}, ["body", "name"]),
    ("PATCH", "family", {"can_spend": "no"}, ["body", "can_spend"]),
    ("PATCH", "family", {"can_spend": 0}, ["body", "can_spend"]),
    ("POST", "family/invitations", {"invitee_id": "nobody"}, ["body", "invitee_id"]),
    ("POST", "family/join", {"code": "ab"}, ["body", "code"]),
    ("POST", "family/join", {"code": "ABCD 234"}, ["body", "code"]),
    ("POST", "family/join", {"code": 12345678}, ["body", "code"]),
    ("POST", "transfers", {"to_member_id": "x", "points": 1}, ["body", "to_member_id"]),
    ("POST", "transfers", {"to_member_id": None, "points": 1}, ["body", "to_member_id"]),
    ("POST", "transfers", {"points": HUGE, "to_member_id": None}, ["body", "points"]),
    ("POST", "transfers", {"points": "10", "to_member_id": None}, ["body", "points"]),
    ("POST", "transfers", {"points": 0, "to_member_id": None}, ["body", "points"]),
    ("POST", "donations", {"charity": "fund", "points": -5}, ["body", "points"]),
    ("POST", "donations", {"charity": "", "points": 5}, ["body", "charity"]),
    ("POST", "donations", {"charity": "fund", "points": 1.5}, ["body", "points"]),
]


@pytest.mark.parametrize(
    ("method", "tail", "payload", "path"),
    BAD,
    ids=[f"{m}-{t}-{'.'.join(map(str, p[1:]))}-{i}" for i, (m, t, _, p) in enumerate(BAD)],
)
def test_bad_input_is_refused_with_its_path(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    method: str,
    tail: str,
    payload: dict[str, Any],
    path: list[str | int],
) -> None:
    member = enrol(client, merchant, name="M")["id"]
    before = writes(container.engine)
    r = client.request(
        method, f"/v1/members/{member}/{tail}", headers=merchant.headers(), json=payload
    )
    body = assert_problem(r, 422)
    assert path in error_paths(body), body
    assert writes(container.engine) == before


def test_families_refusals_write_nothing(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    m = merchant
    a, b = enrol(client, m, name="A")["id"], enrol(client, m, name="B")["id"]
    before = writes(container.engine)
    cases = [
        (
            "POST",
            f"/v1/members/{a}/transfers",
            {"to_member_id": b, "points": 10},
            422,
            "transfers_not_enabled",
        ),
        (
            "POST",
            f"/v1/members/{a}/donations",
            {"charity": "fund", "points": 10},
            422,
            "donations_not_enabled",
        ),
        ("POST", f"/v1/members/{a}/family/join", {"code": "ZZZZ2222"}, 404, "invitation_not_found"),
        ("POST", f"/v1/members/{a}/family/invitations", {}, 404, "family_not_found"),
        ("PATCH", f"/v1/members/{a}/family", {"can_spend": True}, 404, "family_not_found"),
        ("GET", f"/v1/members/{a}/family", None, 404, "family_not_found"),
    ]
    for method, url, payload, status, code in cases:
        assert_problem(client.request(method, url, headers=m.headers(), json=payload), status, code)
    assert writes(container.engine) == before
