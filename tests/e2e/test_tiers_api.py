"""Tiers over HTTP on both databases: the status with its progress message, the tier in the
till's answers, setting a tier by hand (idempotent, refused with field paths when wrong),
the history with cursor pages, the audit trail, and bad tier sections in a program."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, error_paths, ok, writes

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "name": {"ru": "Бонусы", "en": "Bonus"},
    "redemption": {"max_percent": 20, "max_percent_by_tier": {"gold": 50}},
    "rules": [
        {"id": "base", "effects": [{"points_percent": 5}]},
        {"id": "gold", "when": {"tier_in": ["gold"]}, "effects": [{"discount_percent": 10}]},
    ],
    "tiers": {
        "metric": "spent",
        "window": {"kind": "calendar", "period": "year"},
        "levels": [
            {"code": "silver", "name": {"ru": "Серебро", "en": "Silver"}, "threshold": 0},
            {"code": "gold", "name": {"ru": "Золото", "en": "Gold"}, "threshold": 4_000_000},
        ],
        "upgrade_applies_to_crossing_receipt": False,
        "downgrade": {"policy": "one_level", "grace_days": 14},
    },
}


def publish(client: TestClient, m: Merchant, document: dict[str, Any]) -> None:
    ok(client.put("/v1/programs/main", headers=m.headers(), json={"document": document}))


def purchase(client: TestClient, m: Merchant, member: str, price: int, number: str) -> Any:
    body = {
        "member": {"id": member},
        "receipt_number": number,
        "lines": [{"sku": "COAT", "qty": 1, "price": price}],
    }
    return ok(client.post("/v1/purchases", headers=m.headers("pos"), json=body), 201)


def test_the_tier_through_the_api(
    client: TestClient, merchant: Merchant, container: Container, clock: FakeClock
) -> None:
    m = merchant
    publish(client, m, PROGRAM)
    member = enrol(client, m, name="Anna")["id"]
    url = f"/v1/members/{member}/tier"
    status = ok(client.get(url, headers=m.headers("readonly")))
    assert status["tier"] == {
        "code": "silver",
        "name": {"ru": "Серебро", "en": "Silver"},
        "threshold": 0,
        "keep_threshold": 0,
    }
    assert status["next"]["remaining"] == 4_000_000
    assert status["next_evaluation"] == "2027-01-01"
    assert status["currency"] == "RUB"
    assert status["message"]["en"] == "Spend 40,000\u00a0₽ more by 31 Dec to reach Gold"

    # The till answers with the tier: no discount on the crossing receipt, Gold at once.
    calculated = ok(
        client.post(
            "/v1/purchases/calculate",
            headers=m.headers("pos"),
            json={
                "member": {"id": member},
                "lines": [{"sku": "COAT", "qty": 1, "price": 4_100_000}],
            },
        )
    )
    assert calculated["tier"]["upgrade_to"] == "gold"
    crossing = purchase(client, m, member, 4_100_000, "R-1")
    assert crossing["totals"]["discount"] == 0
    assert crossing["tier"]["upgraded"] is True
    assert (
        ok(client.get(f"/v1/purchases/{crossing['receipt']['id']}", headers=m.headers()))["tier"][
            "code"
        ]
        == "gold"
    )
    after = purchase(client, m, member, 100_000, "R-2")
    assert after["totals"]["discount"] == 10_000  # Gold's 10% from the next receipt on
    status = ok(client.get(url, headers=m.headers("pos")))
    assert (status["tier"]["code"], status["source"]) == ("gold", "auto")
    assert status["keep"] == {
        "needed": 4_000_000,
        "counted": 4_190_000,
        "remaining": 0,
        "by": "2026-12-31",
    }

    # By hand, locked, with an idempotency key: the retry replays, nothing more is written.
    body = {"tier": "silver", "reason": "Asked to be treated as a regular", "locked_until": None}
    headers = m.headers(**{"Idempotency-Key": "tier-1"})
    first = ok(client.put(url, headers=headers, json=body))
    rows = writes(container.engine)
    assert ok(client.put(url, headers=headers, json=body)) == first
    assert writes(container.engine) == rows
    assert (first["tier"]["code"], first["source"]) == ("silver", "manual")
    set_gold = {"tier": "gold", "reason": "VIP", "locked_until": "2027-06-30", "program": "main"}
    locked = ok(client.put(url, headers=m.headers(), json=set_gold))
    assert (locked["locked_until"], locked["keep"]) == ("2027-06-30", None)

    # History, newest first, in pages.
    page = ok(client.get(f"{url}/history", headers=m.headers("readonly"), params={"limit": 2}))
    assert [i["reason"] for i in page["items"]] == ["manual", "manual"]
    assert page["items"][0]["explanation"] == {
        "ru": "Статус Золото установлен вручную до 30 июня 2027: VIP",
        "en": "Gold set by hand until 30 Jun 2027: VIP",
    }
    rest = ok(
        client.get(f"{url}/history", headers=m.headers(), params={"cursor": page["next_cursor"]})
    )
    assert [i["reason"] for i in rest["items"]] == ["upgraded", "enrolled"]
    assert rest["next_cursor"] is None
    assert rest["items"][0]["explanation"]["en"] == (
        "Upgraded to Gold: you spent 41,000\u00a0₽ of the 40,000\u00a0₽ needed"
    )
    trail = ok(client.get(f"/v1/members/{member}/audit", headers=m.headers()))
    actions = [e["action"] for e in trail if e["action"].startswith("tier.")]
    assert actions == ["tier.start", "tier.upgrade", "tier.set", "tier.set"]

    # The end of the year: 41 900 ₽ keep Gold; the job's second run does nothing.
    clock.set(datetime(2027, 1, 1, 6, tzinfo=UTC))
    assert container.jobs.run().steps["tiers_evaluated"] == 1
    assert container.jobs.run().steps["tiers_evaluated"] == 0
    assert ok(client.get(url, headers=m.headers()))["tier"]["code"] == "gold"
    kept = ok(client.get(f"{url}/history", headers=m.headers(), params={"limit": 1}))
    assert kept["items"][0]["explanation"]["en"] == (
        "Gold kept: you spent 41,900 ₽ of the 40,000 ₽ needed"
    )


def test_bad_tier_requests_are_refused_with_their_paths(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    m = merchant
    member = enrol(client, m)["id"]
    url = f"/v1/members/{member}/tier"
    before = writes(container.engine)
    assert_problem(client.get(url, headers=m.headers()), 422, "tiers_not_configured")
    assert_problem(
        client.put(url, headers=m.headers(), json={"tier": "gold", "reason": "x"}),
        422,
        "tiers_not_configured",
    )
    publish(client, m, PROGRAM)
    before = writes(container.engine)
    body = assert_problem(
        client.put(
            url,
            headers=m.headers(),
            json={"tier": "diamond", "reason": "x", "locked_until": "2020-01-01"},
        ),
        422,
        "validation_failed",
    )
    assert [(e["path"], e["code"]) for e in body["errors"]] == [
        (["tier"], "unknown_tier"),
        (["locked_until"], "invalid_locked_until"),
    ]
    for payload, path in (
        ({"tier": "gold", "reason": "x", "locked_until": "2027-02-30"}, ["body", "locked_until"]),
        ({"tier": "gold", "reason": ""}, ["body", "reason"]),
        ({"tier": "gold"}, ["body", "reason"]),
        ({"tier": "g" * 33, "reason": "x"}, ["body", "tier"]),
        ({"tier": "gold", "reason": "x", "program": ""}, ["body", "program"]),
    ):
        problem = assert_problem(client.put(url, headers=m.headers(), json=payload), 422)
        assert path in error_paths(problem), problem
    assert_problem(
        client.get(url, headers=m.headers(), params={"program": "nope"}),
        422,
        "tiers_not_configured",
    )
    assert_problem(
        client.get(f"{url}/history", headers=m.headers(), params={"cursor": "x"}),
        422,
        "invalid_cursor",
    )
    assert writes(container.engine) == before
    unknown = "01900000-0000-7000-8000-000000000000"
    assert_problem(
        client.get(f"/v1/members/{unknown}/tier", headers=m.headers()), 404, "member_not_found"
    )


def test_a_bad_tiers_section_is_refused_with_its_paths(
    client: TestClient, merchant: Merchant
) -> None:
    tiers = PROGRAM["tiers"]
    document = {
        **PROGRAM,
        "tiers": {
            **tiers,
            "levels": [
                {"code": "silver", "threshold": 10},
                {"code": "silver", "threshold": 5},
            ],
            "window": {"kind": "rolling", "period": "year"},
        },
    }
    r = client.put("/v1/programs/main", headers=merchant.headers(), json={"document": document})
    body = assert_problem(r, 422)
    paths = error_paths(body)
    assert ["tiers", "levels", 0, "threshold"] in paths
    assert ["tiers", "window", "period"] in paths


def test_tier_rows_belong_to_their_tenant(
    client: TestClient, merchant: Merchant, other_merchant: Merchant, container: Container
) -> None:
    for m in (merchant, other_merchant):
        publish(client, m, PROGRAM)
    a = enrol(client, merchant)["id"]
    ok(
        client.put(
            f"/v1/members/{a}/tier",
            headers=merchant.headers(),
            json={"tier": "gold", "reason": "x"},
        )
    )
    assert_problem(
        client.get(f"/v1/members/{a}/tier/history", headers=other_merchant.headers()),
        404,
        "member_not_found",
    )
    with container.engine.connect() as conn:
        owners = conn.execute(sa.text("SELECT DISTINCT tenant_id FROM member_tiers")).scalars()
        assert {str(t) for t in owners} <= {str(merchant.tenant_id), merchant.tenant_id.hex}
