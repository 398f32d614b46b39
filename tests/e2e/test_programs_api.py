"""Programs and the catalogue over HTTP: publish (JSON or YAML), validate, immutable and
scheduled versions, two programs at once, rules by catalogue category, tenant isolation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, count, enrol, error_paths, ok

BONUS: dict[str, Any] = {
    "type": "bonus",
    "name": {"ru": "Бонусы", "en": "Bonus"},
    "redemption": {"point_value": 100, "max_percent": 50},
    "rules": [{"id": "base", "name": "5% back", "effects": [{"points_percent": 5}]}],
}
CARD: dict[str, Any] = {
    "type": "discount",
    "name": "Discount card",
    "rules": [{"id": "card", "name": "Card 10%", "effects": [{"discount_percent": 10}]}],
}
YAML_DOC = """\
document:
  type: combined
  name: {ru: Кофейня, en: Coffee shop}
  redemption: {point_value: 100, max_percent: 30}
  rules:
    - id: coffee
      name: Coffee 10%
      lines: {category: drinks/coffee}
      effects: [{discount_percent: 10}]
    - id: base
      effects: [{points_percent: 5}]
"""
LATTE = {"sku": "LATTE", "qty": 1, "price": 10000}


def publish(
    client: TestClient, m: Merchant, code: str, document: dict[str, Any], **schedule: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"document": document}
    body.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in schedule.items()})
    result: dict[str, Any] = ok(client.put(f"/v1/programs/{code}", headers=m.headers(), json=body))
    return result


def calculate(
    client: TestClient, m: Merchant, lines: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(
            "/v1/purchases/calculate", headers=m.headers("pos"), json={"lines": lines, **fields}
        )
    )
    return result


def in_force(result: dict[str, Any]) -> dict[str, int]:
    return {p["code"]: p["version"] for p in result["programs"]}


# ---- publishing ------------------------------------------------------------------------------
def test_publish_json_then_read_it_back(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    view = publish(client, merchant, "bonus", BONUS)
    assert view["code"] == "bonus"
    assert view["version"] == 1
    assert view["document"] == BONUS
    assert view["ends_at"] is None
    assert datetime.fromisoformat(view["starts_at"]) == clock.now()
    assert len(view["digest"]) == 64
    got = ok(client.get("/v1/programs/bonus", headers=merchant.headers("readonly")))
    assert got == view
    listed = ok(client.get("/v1/programs", headers=merchant.headers("pos")))
    assert [(p["code"], p["version"]) for p in listed] == [("bonus", 1)]
    assert listed[0]["document"] is None  # the list is a directory, not the documents


def test_publish_yaml_body(client: TestClient, merchant: Merchant) -> None:
    r = client.put(
        "/v1/programs/coffee",
        headers=merchant.headers(**{"Content-Type": "application/yaml"}),
        content=YAML_DOC.encode(),
    )
    view = ok(r)
    document = yaml.safe_load(YAML_DOC)["document"]
    assert view["version"] == 1
    assert view["document"] == document
    # The same document in JSON is the same version: the digest is of the content.
    again = publish(client, merchant, "coffee", document)
    assert again["version"] == 1
    assert again["digest"] == view["digest"]
    # And the YAML program works at the till.
    result = calculate(client, merchant, [{**LATTE, "category": "drinks/coffee"}])
    assert result["totals"]["discount"] == 1000
    assert in_force(result) == {"coffee": 1}


def test_yaml_clock_times_and_moments_need_no_quotes(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    """YAML 1.1 reads ``8:00`` as 480 and ``2026-01-15`` as a date: a program's YAML keeps
    them as the text its fields parse (kopilka.adapters.documents.yaml_text)."""
    starts = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    body = f"""\
starts_at: {starts}
document:
  type: bonus
  rules:
    - id: morning
      when:
        all:
          - hours: {{from: 8:00, to: 11:30}}
          - date_between: {{from: 2026-01-01, to: 2026-12-31}}
      effects: [{{points_percent: 10}}]
"""
    h = merchant.headers(**{"Content-Type": "application/yaml"})
    report = ok(client.post("/v1/programs/morning/validate", headers=h, content=body.encode()))
    assert report == {"valid": True, "errors": []}
    view = ok(client.put("/v1/programs/morning", headers=h, content=body.encode()))
    when = view["document"]["rules"][0]["when"]["all"]
    assert when[0]["hours"] == {"from": "8:00", "to": "11:30"}
    assert when[1]["date_between"] == {"from": "2026-01-01", "to": "2026-12-31"}
    assert datetime.fromisoformat(view["starts_at"]) == clock.now()


def test_yaml_with_charset_and_malformed_bodies(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    r = client.put(
        "/v1/programs/coffee",
        content=YAML_DOC.encode(),
        headers=merchant.headers(**{"Content-Type": "application/x-yaml; charset=utf-8"}),
    )
    assert ok(r)["version"] == 1
    before = count(engine, "programs")
    # A body that does not parse is a 400, like anywhere else in the API.
    for content, kind, code in (
        (b"document: [unclosed", "application/yaml", "malformed_document"),
        (b"\xff\xfe", "text/yaml", "malformed_document"),
        (b"{not json", "application/json", "malformed_json"),
    ):
        r = client.put(
            "/v1/programs/other",
            content=content,
            headers=merchant.headers(**{"Content-Type": kind}),
        )
        assert_problem(r, 400, code)
        r = client.post(
            "/v1/programs/other/validate",
            content=content,
            headers=merchant.headers(**{"Content-Type": kind}),
        )
        assert_problem(r, 400, code)
    # Well-formed but not a publish request.
    for body in ([1, 2], {"document": "text"}, {"document": BONUS, "extra": 1}, {}):
        r = client.put("/v1/programs/other", json=body, headers=merchant.headers())
        problem = assert_problem(r, 422)
        assert problem["errors"], problem
    r = client.put(
        "/v1/programs/other", json={"document": BONUS, "extra": 1}, headers=merchant.headers()
    )
    assert ["extra"] in error_paths(r.json())
    # YAML's binary and set values parse, but JSON cannot hold them: a 422 at their path.
    for tagged in ("!!binary gIA=", "!!set {a: null}"):
        yaml_body = f"document:\n  type: bonus\n  rules:\n    - id: r\n      note: {tagged}\n"
        h = merchant.headers(**{"Content-Type": "application/yaml"})
        for r in (
            client.put("/v1/programs/other", content=yaml_body.encode(), headers=h),
            client.post("/v1/programs/other/validate", content=yaml_body.encode(), headers=h),
        ):
            if r.status_code == 200:  # validate answers with its report
                assert [e["path"] for e in r.json()["errors"]] == [["rules", 0, "note"]]
            else:
                assert error_paths(assert_problem(r, 422)) == [["rules", 0, "note"]]
    assert count(engine, "programs") == before


def test_versions_are_immutable_and_republishing_is_idempotent(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    first = publish(client, merchant, "bonus", BONUS)
    # Key order does not matter: the digest is over a canonical form.
    reordered = dict(reversed(list(BONUS.items())))
    second = publish(client, merchant, "bonus", reordered)
    assert second["version"] == first["version"] == 1
    assert count(engine, "programs") == 1
    changed = {**BONUS, "rules": [{"id": "base", "effects": [{"points_percent": 7}]}]}
    third = publish(client, merchant, "bonus", changed)
    assert third["version"] == 2
    # Publishing the first document again is a new version (it is newer than v2 now).
    fourth = publish(client, merchant, "bonus", BONUS)
    assert fourth["version"] == 3
    assert count(engine, "programs") == 3
    # Every version stays as it was published.
    v1 = ok(client.get("/v1/programs/bonus", params={"version": 1}, headers=merchant.headers()))
    assert v1["document"] == BONUS
    assert v1 == {**first, "in_force": False}  # v3, published later, is in force now
    v2 = ok(client.get("/v1/programs/bonus", params={"version": 2}, headers=merchant.headers()))
    assert v2["document"] == changed
    latest = ok(client.get("/v1/programs/bonus", headers=merchant.headers()))
    assert latest == fourth
    assert_problem(
        client.get("/v1/programs/bonus", params={"version": 4}, headers=merchant.headers()),
        404,
        "program_not_found",
    )
    assert_problem(
        client.get("/v1/programs/bonus", params={"version": 0}, headers=merchant.headers()), 422
    )
    # There is no route to change or delete a version.
    assert client.delete("/v1/programs/bonus", headers=merchant.headers()).status_code == 405
    assert (
        client.patch(
            "/v1/programs/bonus", headers=merchant.headers(), json={"document": changed}
        ).status_code
        == 405
    )


def test_publish_refusals_write_nothing(
    client: TestClient, merchant: Merchant, clock: FakeClock, engine: sa.Engine
) -> None:
    for role in ("pos", "readonly"):
        r = client.put(
            "/v1/programs/bonus", headers=merchant.headers(role), json={"document": BONUS}
        )
        assert_problem(r, 403)
        r = client.put(
            "/v1/products", headers=merchant.headers(role), json={"products": [{"sku": "A"}]}
        )
        assert_problem(r, 403)
    assert_problem(client.put("/v1/programs/bonus", json={"document": BONUS}), 401)
    assert count(engine, "programs") == 0
    assert count(engine, "products") == 0
    for code in ("Bonus", "-x", "a" * 65, "sp ace"):
        r = client.put(f"/v1/programs/{code}", headers=merchant.headers(), json={"document": BONUS})
        assert_problem(r, 422, "invalid_program_code")
    now = clock.now()
    r = client.put(
        "/v1/programs/bonus",
        headers=merchant.headers(),
        json={"document": BONUS, "starts_at": now.isoformat(), "ends_at": now.isoformat()},
    )
    assert_problem(r, 422, "invalid_schedule")
    r = client.put(
        "/v1/programs/bonus",
        headers=merchant.headers(),
        json={"document": BONUS, "starts_at": "2026-01-15T09:00:00"},
    )  # no time zone
    assert ["starts_at"] in error_paths(assert_problem(r, 422))
    assert count(engine, "programs") == 0


# ---- validation ------------------------------------------------------------------------------
BROKEN: dict[str, Any] = {
    "type": "loyalty",
    "redemption": {"point_value": 0},
    "colour": "red",
    "rules": [
        {"id": "ok", "effects": [{"points_percent": 5}]},
        {"id": "Bad Id", "effects": []},
        {
            "id": "ok",
            "when": {"qty_gte": {"of": {"colour": "red"}, "value": 3}},
            "effects": [{"discount_percent": 150}, {"teleport": 1}],
        },
    ],
}


def test_validate_lists_every_error_with_its_path(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    r = client.post(
        "/v1/programs/bonus/validate", headers=merchant.headers(), json={"document": BROKEN}
    )
    report = ok(r)
    assert report["valid"] is False
    paths = {tuple(e["path"]): e["code"] for e in report["errors"]}
    assert paths[("type",)] == "invalid"
    assert paths[("redemption", "point_value")] == "invalid"
    assert paths[("colour",)] == "unknown_field"
    assert paths[("rules", 1, "id")] == "invalid_rule_id"
    assert paths[("rules", 1, "effects")] == "effects_required"
    assert paths[("rules", 2, "id")] == "duplicate_rule_id"
    assert ("rules", 2, "when", "qty_gte", "of", "colour") in paths
    assert paths[("rules", 2, "effects", 0, "discount_percent")] == "invalid_effect_value"
    assert paths[("rules", 2, "effects", 1, "teleport")] == "unknown_effect"
    for error in report["errors"]:
        assert error["message"]
    # Nothing was published.
    assert count(engine, "programs") == 0
    assert_problem(
        client.get("/v1/programs/bonus", headers=merchant.headers()), 404, "program_not_found"
    )
    # A bare document (no envelope) and YAML are validated too.
    assert ok(
        client.post("/v1/programs/bonus/validate", headers=merchant.headers(), json=BONUS)
    ) == {"valid": True, "errors": []}
    r = client.post(
        "/v1/programs/coffee/validate",
        content=YAML_DOC.encode(),
        headers=merchant.headers(**{"Content-Type": "application/yaml"}),
    )
    assert ok(r) == {"valid": True, "errors": []}
    r = client.post("/v1/programs/x/validate", json=[1], headers=merchant.headers())
    report = ok(r)
    assert report["valid"] is False
    assert report["errors"][0]["path"] == []
    assert count(engine, "programs") == 0
    # So the published document promises no body shape for validate (it promised publish's).
    body = ok(client.get("/openapi.json"))["paths"]["/v1/programs/{code}/validate"]["post"]
    for content in body["requestBody"]["content"].values():
        assert {} in content["schema"]["anyOf"]
    # Publishing the broken document reports the same paths and publishes nothing.
    r = client.put("/v1/programs/bonus", headers=merchant.headers(), json={"document": BROKEN})
    problem = assert_problem(r, 422)
    assert {tuple(path) for path in error_paths(problem)} == set(paths)
    assert count(engine, "programs") == 0


def test_values_need_their_exact_json_type(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    """A document is stored as given: "7" or 7.0 for days and "yes" for a flag are refused by
    validate and publish alike, not stored to be read leniently later."""
    loose = {
        **BONUS,
        "pending_days": "7",
        "redemption": {"enabled": "yes", "point_value": 100.0},
        "expiry": {"kind": "rolling", "days": True},
    }
    expected = [
        ["expiry", "days"],
        ["pending_days"],
        ["redemption", "enabled"],
        ["redemption", "point_value"],
    ]
    report = ok(
        client.post(
            "/v1/programs/bonus/validate", headers=merchant.headers(), json={"document": loose}
        )
    )
    assert sorted(e["path"] for e in report["errors"]) == expected
    r = client.put("/v1/programs/bonus", headers=merchant.headers(), json={"document": loose})
    assert sorted(error_paths(assert_problem(r, 422))) == expected
    assert count(engine, "programs") == 0


# ---- schedule --------------------------------------------------------------------------------
def test_receipt_uses_version_in_force_at_its_time(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    start = clock.now()
    publish(client, merchant, "bonus", BONUS)  # v1 from now, open-ended
    later = start + timedelta(days=10)
    ten = {**BONUS, "rules": [{"id": "base", "effects": [{"points_percent": 10}]}]}
    v2 = publish(client, merchant, "bonus", ten, starts_at=later, ends_at=later + timedelta(days=5))
    assert v2["version"] == 2
    assert datetime.fromisoformat(v2["starts_at"]) == later
    member = {"id": enrol(client, merchant)["id"]}

    def earned(**fields: Any) -> tuple[dict[str, int], int]:
        result = calculate(client, merchant, [LATTE], member=member, **fields)
        return in_force(result), result["totals"]["points_earned"]

    assert earned() == ({"bonus": 1}, 5)  # v2 is not in force yet
    clock.advance(days=10)
    assert earned() == ({"bonus": 2}, 10)
    # A receipt dated before v2 started is computed with v1.
    assert earned(occurred_at=(later - timedelta(hours=1)).isoformat()) == ({"bonus": 1}, 5)
    # A confirmed receipt keeps its version for good.
    r = ok(
        client.post(
            "/v1/purchases",
            headers=merchant.headers("pos"),
            json={"lines": [LATTE], "member": member, "receipt_number": "S-1"},
        ),
        201,
    )
    assert in_force(r) == {"bonus": 2}
    clock.advance(days=5)  # v2 ended: v1 is in force again
    assert earned() == ({"bonus": 1}, 5)
    got = ok(client.get(f"/v1/purchases/{r['receipt']['id']}", headers=merchant.headers()))
    assert in_force(got) == {"bonus": 2}
    # Listing shows both versions with their windows.
    listed = ok(client.get("/v1/programs", headers=merchant.headers()))
    assert [(p["version"], p["ends_at"] is None) for p in listed] == [(1, True), (2, False)]


def test_the_version_in_force_is_marked_and_can_be_asked_for(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    """The latest version may be scheduled for later: ``in_force`` tells which one the till
    uses now, and ``?in_force=true`` fetches it."""
    h = merchant.headers("readonly")
    later = clock.now() + timedelta(days=10)
    assert publish(client, merchant, "bonus", BONUS)["in_force"] is True
    ten = {**BONUS, "rules": [{"id": "base", "effects": [{"points_percent": 10}]}]}
    v2 = publish(client, merchant, "bonus", ten, starts_at=later, ends_at=later + timedelta(days=5))
    assert v2["in_force"] is False

    def versions() -> list[tuple[int, bool]]:
        listed = ok(client.get("/v1/programs", headers=h))
        return [(p["version"], p["in_force"]) for p in listed]

    latest = ok(client.get("/v1/programs/bonus", headers=h))
    assert (latest["version"], latest["in_force"]) == (2, False)
    live = ok(client.get("/v1/programs/bonus?in_force=true", headers=h))
    assert (live["version"], live["in_force"]) == (1, True)
    assert live["document"]["rules"][0]["effects"] == [{"points_percent": 5}]
    assert versions() == [(1, True), (2, False)]
    clock.advance(days=10)
    assert versions() == [(1, False), (2, True)]
    assert ok(client.get("/v1/programs/bonus?version=1", headers=h))["in_force"] is False
    clock.advance(days=5)
    assert versions() == [(1, True), (2, False)]
    # A program whose only version is over: nothing in force.
    publish(client, merchant, "promo", CARD, ends_at=clock.now() + timedelta(days=1))
    clock.advance(days=1)
    r = client.get("/v1/programs/promo?in_force=true", headers=h)
    assert_problem(r, 404, "program_not_in_force")
    assert ok(client.get("/v1/programs/promo", headers=h))["in_force"] is False
    assert_problem(client.get("/v1/programs/nothing?in_force=true", headers=h), 404)


def test_schedule_edges(client: TestClient, merchant: Merchant, clock: FakeClock) -> None:
    # The same document with another schedule is a new version.
    start = clock.now() + timedelta(days=1)
    v1 = publish(client, merchant, "bonus", BONUS, starts_at=start)
    assert publish(client, merchant, "bonus", BONUS, starts_at=start)["version"] == v1["version"]
    v2 = publish(
        client, merchant, "bonus", BONUS, starts_at=start, ends_at=start + timedelta(days=3)
    )
    assert v2["version"] == 2
    # A program that ended applies no more.
    publish(client, merchant, "promo", CARD, ends_at=clock.now() + timedelta(days=1))
    assert calculate(client, merchant, [LATTE])["totals"]["discount"] == 1000
    clock.advance(days=1)
    result = calculate(client, merchant, [LATTE])
    assert in_force(result) == {"bonus": 2}
    assert result["totals"]["discount"] == 0


# ---- two programs, catalogue ------------------------------------------------------------------
def test_discount_card_and_bonus_together(client: TestClient, merchant: Merchant) -> None:
    publish(client, merchant, "card", CARD)
    publish(client, merchant, "bonus", BONUS)
    member = enrol(client, merchant)["id"]
    client.post(f"/v1/members/{member}/accruals", headers=merchant.headers(), json={"points": 1000})
    result = calculate(
        client, merchant, [{**LATTE, "qty": 2}], member={"id": member}, redeem_points="max"
    )
    assert in_force(result) == {"bonus": 1, "card": 1}
    assert result["points_program"] == "bonus"  # the discount card has no points
    totals = result["totals"]
    assert totals["amount"] == 20000
    assert totals["discount"] == 2000  # card: 10%
    assert totals["points_redeemed"] == 90  # bonus: up to 50% of 18,000 at 100 per point
    assert totals["points_money"] == 9000
    assert totals["pay"] == 9000
    assert totals["points_earned"] == 4  # 5% of what is paid in money: 450 → 4 points
    assert result["points_earned_by_program"] == {"bonus": 4, "card": 0}
    applied = {(a["program"], a["rule_id"], a["effect"]) for a in result["applied"]}
    assert applied == {("card", "card", "discount_percent"), ("bonus", "base", "points_percent")}


def test_rules_by_category_from_the_catalogue(client: TestClient, merchant: Merchant) -> None:
    products = [
        {"sku": "LATTE", "name": "Latte", "category": "drinks/coffee", "price": 25000},
        {"sku": "TEA", "category": "drinks/tea"},
        {"sku": "CIG", "category": "tobacco", "no_discount": True, "no_points": True},
        {"sku": "BUN", "category": "bakery", "min_price": 9000},
    ]
    assert ok(
        client.put("/v1/products", headers=merchant.headers(), json={"products": products})
    ) == {"upserted": 4}
    doc = {
        "type": "combined",
        "rules": [
            {
                "id": "coffee",
                "lines": {"category": "drinks/coffee"},
                "effects": [{"discount_percent": 20}],
            },
            {
                "id": "bakery",
                "lines": {"category": "bakery"},
                "effects": [{"discount_percent": 50}],
            },
            {"id": "drinks", "lines": {"category": "drinks"}, "effects": [{"points_per_unit": 3}]},
            {"id": "all", "effects": [{"points_fixed": 1}]},
        ],
    }
    publish(client, merchant, "main", doc)
    member = enrol(client, merchant)["id"]
    lines = [
        {"sku": "LATTE", "qty": 1, "price": 25000},  # category from the catalogue
        {"sku": "TEA", "qty": 2, "price": 10000},
        {"sku": "CIG", "qty": 1, "price": 20000, "category": "drinks/coffee"},
        {"sku": "BUN", "qty": 1, "price": 10000},
        {"sku": "UNKNOWN", "qty": 1, "price": 5000},
    ]
    result = calculate(client, merchant, lines, member={"id": member})
    by_line = {li["sku"]: li for li in result["lines"]}
    assert by_line["LATTE"]["discount"] == 5000
    assert by_line["TEA"]["discount"] == 0
    assert by_line["CIG"]["discount"] == 0  # the catalogue says no discount, whatever the till
    assert by_line["CIG"]["points_earned"] == 0
    assert by_line["BUN"]["discount"] == 1000  # 50% would go below the minimum price
    assert by_line["LATTE"]["points_earned"] >= 3
    assert by_line["TEA"]["points_earned"] >= 6
    assert by_line["UNKNOWN"]["discount"] == 0
    # A till category overrides the catalogue's (but not its flags).
    tea_as_coffee = calculate(
        client, merchant, [{"sku": "TEA", "qty": 1, "price": 10000, "category": "drinks/coffee"}]
    )
    assert tea_as_coffee["lines"][0]["discount"] == 2000
    # Updating the catalogue changes what the rules see.
    ok(
        client.put(
            "/v1/products",
            headers=merchant.headers(),
            json={"products": [{"sku": "TEA", "category": "drinks/coffee"}]},
        )
    )
    again = calculate(client, merchant, [{"sku": "TEA", "qty": 1, "price": 10000}])
    assert again["lines"][0]["discount"] == 2000
    page = ok(client.get("/v1/products", params={"limit": 2}, headers=merchant.headers()))
    assert [p["sku"] for p in page["items"]] == ["BUN", "CIG"]
    rest = ok(
        client.get(
            "/v1/products", params={"cursor": page["next_cursor"]}, headers=merchant.headers()
        )
    )
    assert [p["sku"] for p in rest["items"]] == ["LATTE", "TEA"]
    assert rest["next_cursor"] is None


def test_products_reject_bad_input(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    bodies: list[dict[str, Any]] = [
        {"products": []},
        {"products": [{"sku": ""}]},
        {"products": [{"sku": "A", "price": -1}]},
        {"products": [{"sku": "A", "price": 1.5}]},
        {"products": [{"sku": "A"}], "extra": True},
    ]
    for body in bodies:
        assert_problem(client.put("/v1/products", headers=merchant.headers(), json=body), 422)
    assert count(engine, "products") == 0


# ---- tenants ---------------------------------------------------------------------------------
def test_programs_are_per_tenant(
    client: TestClient, merchant: Merchant, other_merchant: Merchant
) -> None:
    publish(client, merchant, "bonus", BONUS)
    ok(
        client.put(
            "/v1/products",
            headers=merchant.headers(),
            json={"products": [{"sku": "LATTE", "category": "drinks/coffee"}]},
        )
    )
    assert_problem(
        client.get("/v1/programs/bonus", headers=other_merchant.headers()), 404, "program_not_found"
    )
    assert ok(client.get("/v1/programs", headers=other_merchant.headers())) == []
    assert ok(client.get("/v1/products", headers=other_merchant.headers()))["items"] == []
    # The other tenant's till sees none of it.
    result = calculate(client, other_merchant, [LATTE])
    assert result["programs"] == []
    # Publishing the same code there is that tenant's own version 1.
    mine = publish(client, other_merchant, "bonus", CARD)
    assert mine["version"] == 1
    assert ok(client.get("/v1/programs/bonus", headers=merchant.headers()))["document"] == BONUS


def test_document_limits(client: TestClient, merchant: Merchant, engine: sa.Engine) -> None:
    rules = [
        {"id": f"r{i}", "lines": {"sku": f"S{i}"}, "effects": [{"points_fixed": 1}]}
        for i in range(2001)
    ]
    r = client.put(
        "/v1/programs/big",
        headers=merchant.headers(),
        json={"document": {"type": "bonus", "rules": rules}},
    )
    assert ["rules"] in error_paths(assert_problem(r, 422))
    huge = b'{"document": {"type": "bonus", "name": "' + b"x" * 1_000_001 + b'"}}'
    r = client.put("/v1/programs/big", headers=merchant.headers(), content=huge)
    assert_problem(r, 422, "document_too_large")
    assert count(engine, "programs") == 0
    r = client.put(
        "/v1/programs/big",
        headers=merchant.headers(),
        json={"document": {"type": "bonus", "rules": rules[:2000]}},
    )
    assert ok(r)["version"] == 1
    member = enrol(client, merchant)["id"]
    result = calculate(
        client, merchant, [{"sku": "S1999", "qty": 1, "price": 100}], member={"id": member}
    )
    assert result["totals"]["points_earned"] == 1


def _nested_not(depth: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"sku": "TEA"}
    for _ in range(depth):
        condition = {"not": condition}
    return condition


def test_documents_json_cannot_hold_are_refused_by_validate_and_publish_alike(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    """Deep nesting, lone surrogates and non-finite numbers (YAML's ``.nan``): validate lists
    them with their paths, publish refuses them (422) and writes nothing; none answers 500."""
    deep = {"type": "bonus", "rules": [{"id": "r", "when": _nested_not(900), "effects": []}]}
    surrogate = {**BONUS, "name": "\ud800"}
    cases: list[tuple[bytes, str, str, list[Any]]] = [
        (json.dumps({"document": deep}).encode(), "application/json", "too_deep", []),
        (
            json.dumps({"document": surrogate}).encode(),
            "application/json",
            "string_unicode",
            ["name"],
        ),
        (
            b"document:\n  type: bonus\n  name: .nan\n  rules: []\n",
            "application/yaml",
            "not_finite",
            ["name"],
        ),
    ]
    for body, kind, code, path in cases:
        h = merchant.headers(**{"Content-Type": kind})
        report = ok(client.post("/v1/programs/odd/validate", headers=h, content=body))
        assert report["valid"] is False
        assert code in [e["code"] for e in report["errors"]], report
        if path:
            assert path in [e["path"] for e in report["errors"]], report
        problem = assert_problem(client.put("/v1/programs/odd", headers=h, content=body), 422)
        assert code in [e["code"] for e in problem["errors"]], problem
    # Deeper than the JSON parser goes: malformed, not a 500.
    very_deep = (
        '{"document": {"rules": [{"when": ' + '{"not": ' * 5_000 + "{}" + "}" * 5_000 + "}]}}"
    )
    r = client.put(
        "/v1/programs/odd",
        headers=merchant.headers(**{"Content-Type": "application/json"}),
        content=very_deep.encode(),
    )
    assert_problem(r, 400, "malformed_json")
    r = client.put(
        "/v1/programs/odd",
        headers=merchant.headers(**{"Content-Type": "application/yaml"}),
        content=yaml.safe_dump({"document": {"name": "x"}})
        .encode()
        .replace(b"x", b"[" * 5_000 + b"]" * 5_000),
    )
    assert_problem(r, 400, "malformed_document")
    assert count(engine, "programs") == 0
