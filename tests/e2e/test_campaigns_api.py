"""Campaigns over HTTP: create (idempotent by code and definition), read and page, edit,
the life cycle with clear 409s, a campaign at the till, its budget, the member list, the
dry-run preview and the control group; bad input answers 4xx with paths and writes
nothing. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, error_paths, ok, writes

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}
SPRING: dict[str, Any] = {
    "code": "spring",
    "name": {"ru": "Весна", "en": "Spring"},
    "schedule": {"start": "2026-01-01T00:00", "end": "2026-02-01T00:00"},
    "budgets": {"points": 150, "per_outlet": {"OUT-1": {"redemptions": 10}}},
    "limits": {"per_member": [{"period": "week", "redemptions": 5}]},
    "rules": [{"id": "bonus", "effects": [{"points_fixed": 100}]}],
}
LINES = [{"sku": "TEA", "qty": 1, "price": 100000}]


def create(client: TestClient, m: Merchant, body: dict[str, Any] = SPRING) -> dict[str, Any]:
    result: dict[str, Any] = ok(client.post("/v1/campaigns", headers=m.headers(), json=body), 201)
    return result


def move(client: TestClient, m: Merchant, code: str, action: str, **headers: str) -> Any:
    return client.post(f"/v1/campaigns/{code}/{action}", headers=m.headers(**headers))


def test_create_read_page_and_edit(client: TestClient, merchant: Merchant) -> None:
    m = merchant
    made = create(client, m)
    assert made["status"] == "draft"
    assert made["code"] == "spring"
    assert made["starts_at"] == "2025-12-31T21:00:00+00:00"  # Moscow midnight
    assert create(client, m)["id"] == made["id"]  # the same again: the same campaign
    other = {**SPRING, "budgets": {"points": 1}}
    assert_problem(
        client.post("/v1/campaigns", headers=m.headers(), json=other), 409, "campaign_exists"
    )
    for i in range(3):
        create(client, m, {**SPRING, "code": f"c{i}"})
    page = ok(client.get("/v1/campaigns", headers=m.headers(), params={"limit": 3}))
    assert [c["code"] for c in page["items"]] == ["c2", "c1", "c0"]
    rest = ok(
        client.get(
            "/v1/campaigns", headers=m.headers(), params={"limit": 3, "cursor": page["next_cursor"]}
        )
    )
    assert [c["code"] for c in rest["items"]] == ["spring"]
    assert rest["next_cursor"] is None
    drafts = ok(client.get("/v1/campaigns", headers=m.headers(), params={"status": "ended"}))
    assert drafts["items"] == []
    patched = ok(
        client.patch(
            "/v1/campaigns/spring",
            headers=m.headers(),
            json={"name": {"ru": "Лето", "en": "Summer"}, "budgets": {"points": 500}},
        )
    )
    assert patched["revision"] == 2
    assert patched["budgets"]["points"] == 500
    assert patched["limits"] == SPRING["limits"] | {"per_receipt": {}}
    got = ok(client.get("/v1/campaigns/spring", headers=m.headers()))
    assert got == patched
    assert_problem(client.get("/v1/campaigns/nope", headers=m.headers()), 404, "campaign_not_found")


def test_bad_input_is_refused_with_paths(client: TestClient, merchant: Merchant) -> None:
    m = merchant
    before = writes(client.app.state.container.engine)  # type: ignore[attr-defined]
    cases: list[tuple[dict[str, Any], list[str | int]]] = [
        ({**SPRING, "code": "Bad Code"}, ["body", "code"]),
        ({**SPRING, "budgets": {"points": -1}}, ["body", "budgets", "points"]),
        ({**SPRING, "budgets": {"points": 10**30}}, ["body", "budgets", "points"]),
        ({**SPRING, "channels": ["fax"]}, ["body", "channels", 0]),
        ({**SPRING, "control_group": {"percent": 90}}, ["body", "control_group", "percent"]),
        ({**SPRING, "limits": {"per_member": [{"period": "year"}]}}, ["body", "limits"]),
        ({**SPRING, "rules": [{"id": "x", "effects": [{"teleport": 1}]}]}, ["rules", 0]),
        ({**SPRING, "schedule": {"start": "2026-02-01", "end": "2026-01-01"}}, ["schedule", "end"]),
        ({**SPRING, "outlets": ["NOWHERE"]}, ["outlets", 0]),
        ({**SPRING, "audience": {"kind": "everyone", "values": ["x"]}}, ["audience", "values"]),
    ]
    for body, path in cases:
        r = client.post("/v1/campaigns", headers=m.headers(), json=body)
        problem = assert_problem(r, 422)
        assert any(p[: len(path)] == path for p in error_paths(problem)), (path, problem)
    r = client.post("/v1/campaigns/BAD CODE/preview", headers=m.headers())
    assert ["path", "code"] in error_paths(assert_problem(r, 422))
    r = client.post("/v1/campaigns/x/preview", headers=m.headers(), params={"days": 0})
    assert ["query", "days"] in error_paths(assert_problem(r, 422))
    assert writes(client.app.state.container.engine) == before  # type: ignore[attr-defined]


def test_life_cycle_at_the_till(client: TestClient, merchant: Merchant) -> None:
    m = merchant
    ok(client.put("/v1/programs/bonus", headers=m.headers(), json={"document": PROGRAM}))
    member = enrol(client, m)["id"]
    create(client, m)
    problem = assert_problem(move(client, m, "spring", "pause"), 409, "campaign_transition_invalid")
    assert problem["campaign_status"] == "draft"
    first = ok(move(client, m, "spring", "schedule", **{"Idempotency-Key": "go-1"}))
    assert first["status"] == "active"  # its window has begun
    assert ok(move(client, m, "spring", "schedule", **{"Idempotency-Key": "go-1"})) == first
    assert_problem(
        client.patch("/v1/campaigns/spring", headers=m.headers(), json={"budgets": {}}),
        409,
        "campaign_not_editable",
    )

    def purchase(number: str) -> dict[str, Any]:
        body = {"member": {"id": member}, "receipt_number": number, "lines": LINES}
        result: dict[str, Any] = ok(
            client.post("/v1/purchases", headers=m.headers("pos"), json=body), 201
        )
        return result

    got = purchase("R-1")
    assert got["totals"]["points_earned"] == 150
    assert got["campaigns"][0] | {"redemption_id": None} == {
        "code": "spring",
        "name": {"ru": "Весна", "en": "Spring"},
        "applied": True,
        "points": 100,
        "discount": 0,
        "reason": None,
        "reason_text": None,
        "redemption_id": None,
    }
    spent = purchase("R-2")  # 50 left of 150: a receipt of 100 does not fit
    assert spent["totals"]["points_earned"] == 50
    assert spent["campaigns"][0]["reason"] == "budget_exhausted"
    assert spent["campaigns"][0]["reason_text"]["ru"] == "Бюджет акции исчерпан"
    budget = ok(client.get("/v1/campaigns/spring/budget", headers=m.headers()))
    assert budget["budgets"] == [
        {
            "kind": "points",
            "outlet": None,
            "cap": 150,
            "used": 100,
            "left": 50,
            "exhausted": False,
            "slots": 16,
        },
        {
            "kind": "redemptions",
            "outlet": "OUT-1",
            "cap": 10,
            "used": 1,
            "left": 9,
            "exhausted": False,
            "slots": 10,
        },
    ]
    assert ok(move(client, m, "spring", "pause"))["status"] == "paused"
    assert ok(move(client, m, "spring", "resume"))["status"] == "active"
    assert ok(move(client, m, "spring", "end"))["status"] == "ended"
    assert_problem(move(client, m, "spring", "resume"), 409, "campaign_transition_invalid")
    assert "campaigns" not in purchase("R-3")


def test_members_preview_and_control_group(client: TestClient, merchant: Merchant) -> None:
    m = merchant
    ok(client.put("/v1/programs/bonus", headers=m.headers(), json={"document": PROGRAM}))
    people = [enrol(client, m, name=f"M{i}")["id"] for i in range(4)]
    for i, person in enumerate(people):
        body = {"member": {"id": person}, "receipt_number": f"R-{i}", "lines": LINES}
        ok(client.post("/v1/purchases", headers=m.headers("pos"), json=body), 201)
    listed = {**SPRING, "audience": {"kind": "members"}, "control_group": {"percent": 50}}
    create(client, m, listed)
    url = "/v1/campaigns/spring/members"
    assert ok(client.put(url, headers=m.headers(), json={"member_ids": people[:3]})) == {
        "code": "spring",
        "members": 3,
    }
    unknown = "00000000-0000-7000-8000-000000000009"
    r = client.put(url, headers=m.headers(), json={"member_ids": [people[0], unknown]})
    assert error_paths(assert_problem(r, 422)) == [["member_ids", 1]]
    preview = ok(client.post("/v1/campaigns/spring/preview", headers=m.headers()))
    assert preview["audience"] == {
        "kind": "members",
        "members": 3,
        "control_group_expected": 1,
        "exposed_expected": 2,
    }
    assert preview["cost"]["receipts_in_period"] == 4
    assert preview["cost"]["redemptions"] == 3
    assert preview["cost"]["points"] == 300
    assert preview["cost"]["budgets"]["points"] == {"cap": 150, "would_run_out": True}
    report = ok(client.get("/v1/campaigns/spring/control-group", headers=m.headers()))
    assert report["percent"] == 50
    assert report["control"]["members"] == report["exposed"]["members"] == 0
    assert_problem(
        client.put(
            "/v1/campaigns/nope/members", headers=m.headers(), json={"member_ids": people[:1]}
        ),
        404,
        "campaign_not_found",
    )
