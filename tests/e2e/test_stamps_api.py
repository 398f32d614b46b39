"""Stamp cards over HTTP: the document section, the till's answers (balance, stamps to go,
the free item in ``applied``), the member's cards and history with paging, an admin's
idempotent correction, and clear 4xx answers that write nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, error_paths, ok, writes

CARD: dict[str, Any] = {
    "id": "coffee",
    "name": {"ru": "Кофе", "en": "Coffee"},
    "lines": {"category": "drinks/coffee"},
    "stamps": 3,
    "reward": {"free_item": {"max_price": 20000}},
}
PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
    "stamp_cards": [CARD],
}
LATTE = {"sku": "LATTE", "qty": 1, "price": 25000, "category": "drinks/coffee"}


def publish(client: TestClient, m: Merchant, document: dict[str, Any]) -> None:
    ok(client.put("/v1/programs/main", headers=m.headers(), json={"document": document}))


def buy(
    client: TestClient, m: Merchant, member_id: str, number: str, **fields: Any
) -> dict[str, Any]:
    body = {"member": {"id": member_id}, "lines": [LATTE], "receipt_number": number, **fields}
    result: dict[str, Any] = ok(
        client.post("/v1/purchases", headers=m.headers("pos"), json=body), 201
    )
    return result


def stamps(client: TestClient, m: Merchant, member_id: str, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.get(f"/v1/members/{member_id}/stamps", headers=m.headers("readonly"), params=params)
    )
    return result


def test_the_till_shows_the_card_and_gives_the_free_item(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant, PROGRAM)
    member = enrol(client, merchant, name="Anna")["id"]
    for i in range(3):
        [card] = buy(client, merchant, member, f"R{i}")["stamps"]
        assert (card["card"], card["balance_after"], card["to_go"]) == ("coffee", i + 1, 2 - i)
    calc = ok(
        client.post(
            "/v1/purchases/calculate",
            headers=merchant.headers("pos"),
            json={"member": {"id": member}, "lines": [LATTE]},
        )
    )
    [card] = calc["stamps"]
    assert card["reward_applied"]["discount"] == 20000  # capped by max_price
    assert calc["totals"]["pay"] == 5000
    assert any(a["effect"] == "stamp_card_free_item" for a in calc["applied"])
    assert set(card["explanation"]) == {"ru", "en"}
    buy(client, merchant, member, "R3")
    view = stamps(client, merchant, member)
    [mine] = view["cards"]
    assert (mine["balance"], mine["rewards_redeemed"], mine["full"]) == (0, 1, False)
    assert mine["reward"] == {"kind": "free_item", "max_price": 20000}
    assert len(view["history"]) == 4
    assert view["next_cursor"] is None
    # Paging through the history, newest first.
    page = stamps(client, merchant, member, limit=3)
    assert [m["id"] for m in page["history"]] == [m["id"] for m in view["history"][:3]]
    rest = stamps(client, merchant, member, limit=3, cursor=page["next_cursor"])
    assert [m["id"] for m in rest["history"]] == [view["history"][3]["id"]]
    assert stamps(client, merchant, member, card="tea")["history"] == []


def test_a_card_without_auto_redeem_waits_for_the_code(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant, {**PROGRAM, "stamp_cards": [{**CARD, "auto_redeem": False}]})
    member = enrol(client, merchant, name="Anna")["id"]
    for i in range(4):
        [card] = buy(client, merchant, member, f"R{i}")["stamps"]
    assert (card["balance_after"], card["rewards_waiting"], card["rewards"]) == (4, 1, 0)
    [card] = buy(client, merchant, member, "R-CODE", coupons=["stamps-coffee"])["stamps"]
    assert (card["rewards"], card["balance_after"]) == (1, 1)


def test_a_bad_card_is_refused_with_its_path(
    client: TestClient, merchant: Merchant, engine: Engine
) -> None:
    before = writes(engine)
    bad = {**PROGRAM, "stamp_cards": [{**CARD, "lines": {"category": ""}, "stamps": 0}]}
    r = client.put("/v1/programs/main", headers=merchant.headers(), json={"document": bad})
    paths = error_paths(assert_problem(r, 422))
    assert ["stamp_cards", 0, "lines"] in paths
    assert ["stamp_cards", 0, "stamps"] in paths
    assert writes(engine) == before


def test_an_admin_corrects_a_card_once_per_key(
    client: TestClient, merchant: Merchant, engine: Engine
) -> None:
    publish(client, merchant, PROGRAM)
    member = enrol(client, merchant, name="Anna")["id"]
    url = f"/v1/members/{member}/stamps/adjustments"
    body = {"card": "coffee", "stamps": 2, "reason": "Paper card"}
    h = merchant.headers(**{"Idempotency-Key": "adj-1"})
    first = ok(client.post(url, headers=h, json=body), 201)
    assert first["card"]["balance"] == 2
    assert first["movement"]["kind"] == "adjustment"
    assert ok(client.post(url, headers=h, json=body), 201) == first
    assert stamps(client, merchant, member)["cards"][0]["balance"] == 2

    before = writes(engine)
    refusals: list[tuple[dict[str, Any], int, str, list[Any]]] = [
        ({**body, "stamps": 0}, 422, "validation_failed", ["stamps"]),
        ({**body, "stamps": 10**9}, 422, "validation_failed", ["body", "stamps"]),
        ({**body, "stamps": "2"}, 422, "validation_failed", ["body", "stamps"]),
        ({**body, "card": "Кофе"}, 422, "validation_failed", ["body", "card"]),
        ({**body, "reason": ""}, 422, "validation_failed", ["body", "reason"]),
        ({**body, "card": "tea"}, 422, "unknown_stamp_card", ["card"]),
    ]
    for payload, status, code, path in refusals:
        problem = assert_problem(client.post(url, headers=merchant.headers(), json=payload), status)
        assert problem["code"] == code, problem
        assert path in error_paths(problem), problem
    problem = assert_problem(
        client.post(url, headers=merchant.headers(), json={**body, "stamps": -3}),
        422,
        "stamps_insufficient",
    )
    assert problem["balance"] == 2
    assert_problem(
        client.post(
            url,
            headers=merchant.headers(**{"Idempotency-Key": "adj-1"}),
            json={**body, "stamps": 3},
        ),
        422,
        "idempotency_key_reused",
    )
    assert writes(engine) == before
