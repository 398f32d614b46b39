"""`GET /v1/members/{id}/explain`: why a receipt earned what it earned, from what was stored.
Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, ok
from tests.e2e.test_purchases_api import CIG, LATTE, MAIN, buy, publish, refund

NEAR_MISS: dict[str, Any] = {
    **MAIN,
    "rules": [
        *MAIN["rules"],
        {
            "id": "big",
            "name": {"ru": "Бонус за 1000 ₽", "en": "Big basket bonus"},
            "when": {"amount_gte": 100000},
            "effects": [{"points_fixed": 100}],
        },
    ],
}


def explain(
    client: TestClient, m: Merchant, member: str, receipt: str | None = None
) -> dict[str, Any]:
    query = f"?purchase={receipt}" if receipt else ""
    result: dict[str, Any] = ok(
        client.get(f"/v1/members/{member}/explain{query}", headers=m.headers("readonly"))
    )
    return result


def codes(answer: dict[str, Any]) -> list[str]:
    return [r["code"] for r in answer["reasons"]]


def test_explains_points_exclusions_near_misses_and_refunds(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant, NEAR_MISS)
    member = enrol(client, merchant, phone="+79160000001")["id"]
    receipt = buy(client, merchant, {"member": {"id": member}, "lines": [LATTE, CIG]}, "R-1")[
        "receipt"
    ]["id"]

    answer = explain(client, merchant, member, receipt)
    assert answer["status"] == "confirmed"
    assert answer["points"]["earned"] == answer["points"]["net"] > 0
    assert "lines_without_points" in codes(answer)  # the tobacco line
    assert "near_miss" in codes(answer)  # 1,000 ₽ basket bonus not reached
    assert answer["summary"]["en"].startswith("This purchase earned")
    assert "баллов" in answer["summary"]["ru"] or "балла" in answer["summary"]["ru"]
    assert [t["kind"] for t in answer["transactions"]] == ["accrual"]
    assert explain(client, merchant, member) == answer  # the latest receipt by default

    refund(client, merchant, receipt, "RF-1")
    after = explain(client, merchant, member, receipt)
    assert after["points"]["taken_back"] == answer["points"]["earned"]
    assert after["points"]["net"] == 0
    assert "refunded" in codes(after)
    assert after["summary"]["en"] == "This purchase earned no points."
    assert {t["kind"] for t in after["transactions"]} == {"accrual", "reversal"}


def test_explains_a_receipt_without_a_program(client: TestClient, merchant: Merchant) -> None:
    member = enrol(client, merchant, phone="+79160000002")["id"]
    receipt = buy(client, merchant, {"member": {"id": member}, "lines": [LATTE]}, "R-2")
    answer = explain(client, merchant, member, receipt["receipt"]["id"])
    assert codes(answer) == ["no_program"]
    assert answer["points"]["net"] == 0


def test_another_members_receipt_or_none_is_not_found(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant, MAIN)
    member = enrol(client, merchant, phone="+79160000003")["id"]
    other = enrol(client, merchant, phone="+79160000004")["id"]
    assert_problem(
        client.get(f"/v1/members/{member}/explain", headers=merchant.headers()),
        404,
        "receipt_not_found",
    )
    receipt = buy(client, merchant, {"member": {"id": other}, "lines": [LATTE]}, "R-3")
    assert_problem(
        client.get(
            f"/v1/members/{member}/explain?purchase={receipt['receipt']['id']}",
            headers=merchant.headers(),
        ),
        404,
        "receipt_not_found",
    )
    assert_problem(
        client.get(
            f"/v1/members/{member}/explain?purchase={uuid.uuid4()}", headers=merchant.headers()
        ),
        404,
        "receipt_not_found",
    )
    response = client.get(
        f"/v1/members/{member}/explain?purchase=not-a-uuid", headers=merchant.headers()
    )
    assert response.status_code == 422
