"""The till over HTTP: calculate, confirm, hold then confirm or void, refunds, cancel,
idempotent retries, bad receipts (clear 4xx, nothing written), refund shortfalls, and
tenant isolation. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kopilka.adapters.db.tables import ledger_transactions, receipts, refunds
from kopilka.api.routers.purchases import PurchaseIn
from kopilka.bootstrap import Container
from kopilka.services.idempotency import request_hash
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import (
    accrue,
    assert_problem,
    balance,
    count,
    enrol,
    error_paths,
    ok,
)

# 5% back in points on what is paid in money, 10% off everything but tobacco, a croissant
# for three coffees, points pay up to half of a receipt at 1 rouble (100 kopecks) a point.
MAIN: dict[str, Any] = {
    "type": "combined",
    "name": {"ru": "Кофе", "en": "Coffee"},
    "redemption": {"point_value": 100, "max_percent": 50},
    "pending_days": 0,
    "rules": [
        {"id": "base", "name": "Base 5%", "effects": [{"points_percent": 5}]},
        {
            "id": "card",
            "name": "Card 10%",
            "lines": {"not": {"category": "tobacco"}},
            "effects": [{"discount_percent": 10}],
        },
        {
            "id": "croissant",
            "name": {"ru": "Круассан в подарок", "en": "Free croissant"},
            "when": {"qty_gte": {"of": {"category": "drinks/coffee"}, "value": 3}},
            "effects": [{"gift": {"sku": "CROISSANT"}}],
        },
    ],
}
LATTE = {"sku": "LATTE", "qty": 2, "price": 25000, "category": "drinks/coffee"}
CIG = {
    "sku": "CIG",
    "qty": 1,
    "price": 20000,
    "category": "tobacco",
    "flags": ["no_discount", "no_points"],
}
# What the ledger and the receipts leave behind: equal counts before/after = nothing written.
TABLES = (
    "receipts",
    "receipt_lines",
    "refunds",
    "coupons",
    "ledger_transactions",
    "postings",
    "lots",
    "holds",
    "accounts",
    "idempotency_keys",
    "audit_log",
)


def footprint(engine: sa.Engine) -> dict[str, int]:
    return {table: count(engine, table) for table in TABLES}


def publish(client: TestClient, m: Merchant, document: dict[str, Any], code: str = "main") -> None:
    ok(client.put(f"/v1/programs/{code}", headers=m.headers(), json={"document": document}))


def calc(
    client: TestClient, m: Merchant, body: dict[str, Any], role: str = "pos"
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post("/v1/purchases/calculate", headers=m.headers(role), json=body)
    )
    return result


def buy(
    client: TestClient,
    m: Merchant,
    body: dict[str, Any],
    number: str,
    role: str = "pos",
    **fields: Any,
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(
            "/v1/purchases",
            headers=m.headers(role),
            json={**body, "receipt_number": number, **fields},
        ),
        201,
    )
    return result


def refund(
    client: TestClient,
    m: Merchant,
    receipt_id: str,
    key: str,
    lines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body = {"lines": lines} if lines is not None else {}
    result: dict[str, Any] = ok(
        client.post(
            f"/v1/purchases/{receipt_id}/refunds",
            headers=m.headers("pos", **{"Idempotency-Key": key}),
            json=body,
        ),
        201,
    )
    return result


def post(client: TestClient, m: Merchant, receipt_id: str, action: str) -> Any:
    return client.post(f"/v1/purchases/{receipt_id}/{action}", headers=m.headers("pos"))


def available(client: TestClient, m: Merchant, member_id: str) -> int:
    return int(balance(client, m, member_id)["available"])


def txn_params(engine: sa.Engine, txn_id: str) -> dict[str, Any]:
    """What a ledger transaction recorded about its origin (program, version, rules)."""
    with engine.connect() as conn:
        params: dict[str, Any] = conn.execute(
            sa.select(ledger_transactions.c.params).where(
                ledger_transactions.c.id == uuid.UUID(txn_id)
            )
        ).scalar_one()
    return params


def ledger_ok(container: Container) -> None:
    report = verify_ledger(container.uow_factory)
    assert report.ok, report.checks


@pytest.fixture
def member(client: TestClient, merchant: Merchant) -> str:
    """A member of tenant A with 1,000 points and the main program published."""
    publish(client, merchant, MAIN)
    member_id: str = enrol(client, merchant, phone="89161234567")["id"]
    accrue(client, merchant, member_id, 1000)
    return member_id


@pytest.fixture
def basket(member: str) -> dict[str, Any]:
    return {"member": {"id": member}, "lines": [LATTE, CIG], "redeem_points": "max"}


# ---- calculate and confirm -------------------------------------------------------------------
def test_calculate_writes_nothing(
    client: TestClient, merchant: Merchant, basket: dict[str, Any], engine: sa.Engine
) -> None:
    before = footprint(engine)
    result = calc(client, merchant, {**basket, "member": {"phone": "+7 916 123-45-67"}})
    assert footprint(engine) == before
    assert result["receipt"] == {"id": None, "status": "calculated"}
    assert result["outlet"] == merchant.outlet_code
    assert result["totals"] == {
        "amount": 70000,
        "discount": 5000,
        "points_redeemed": 225,
        "points_money": 22500,
        "pay": 42500,
        "points_earned": 11,
    }
    assert result["max_redeemable"] == 225
    assert result["balance"]["available"] == 1000
    assert [li["discount"] for li in result["lines"]] == [5000, 0]
    assert [li["points_spent"] for li in result["lines"]] == [225, 0]
    assert result["lines"][1]["points_earned"] == 0  # tobacco earns nothing
    near = result["not_applied"]
    assert [(n["rule_id"], n["missing"]) for n in near] == [
        ("croissant", {"kind": "qty", "value": "1"})
    ]
    # Calculating again (and for a member never seen at the till) still writes nothing.
    fresh = enrol(client, merchant)["id"]
    before = footprint(engine)
    again = calc(client, merchant, {**basket, "member": {"id": fresh}})
    assert again["max_redeemable"] == 0
    assert again["totals"]["points_redeemed"] == 0
    assert footprint(engine) == before


def test_the_documented_example_receipts_are_answered(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    """The API document's example bodies for calculate and confirm are real requests (the
    fuzz tests start from them)."""
    schema = ok(client.get("/openapi.json"))["components"]["schemas"]
    h = merchant.headers("pos")
    [calculate] = schema["CalculateIn"]["examples"]
    [confirm] = schema["PurchaseIn"]["examples"]
    enrol(client, merchant, **calculate["member"])
    assert ok(client.post("/v1/purchases/calculate", headers=h, json=calculate))["lines"]
    assert ok(client.post("/v1/purchases", headers=h, json=confirm), 201)["receipt"]["id"]
    assert count(engine, "receipts") == 1


def test_confirm_writes_receipt_and_ledger(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    container: Container,
) -> None:
    expected = calc(client, merchant, basket)
    result = buy(client, merchant, basket, "R-1")
    receipt = result["receipt"]
    assert receipt["status"] == "confirmed"
    assert receipt["receipt_number"] == "R-1"
    assert result["totals"] == expected["totals"]
    assert result["member_id"] == member
    assert available(client, merchant, member) == 1000 - 225 + 11
    assert result["balance"]["available"] == 1000 - 225 + 11
    got = ok(client.get(f"/v1/purchases/{receipt['id']}", headers=merchant.headers("readonly")))
    assert got["receipt"] == receipt
    assert got["totals"] == result["totals"]
    assert got["refunds"] == []
    # The member's history links each entry to the receipt; the accrual names its rules.
    history = ok(client.get(f"/v1/members/{member}/ledger", headers=merchant.headers()))
    from_receipt = [t for t in history["items"] if t["source_type"] == "receipt"]
    assert {t["kind"]: t["amount"] for t in from_receipt} == {"redemption": 225, "accrual": 11}
    assert {t["source_id"] for t in from_receipt} == {receipt["id"]}
    accrual = next(t for t in from_receipt if t["kind"] == "accrual")
    params = txn_params(container.engine, accrual["id"])
    assert params["program"] == "main"
    assert params["version"] == 1
    assert params["rules"] == ["base", "card"]
    applied = {(a["rule_id"], a["effect"]) for a in result["applied"]}
    assert applied == {("base", "points_percent"), ("card", "discount_percent")}
    ledger_ok(container)


def test_gift_and_member_identified_by_card_and_phone(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    card = ok(client.get(f"/v1/members/{member}", headers=merchant.headers()))["cards"][0]
    body = {"member": {"card": card["number"]}, "lines": [{**LATTE, "qty": 3}]}
    result = buy(client, merchant, body, "G-1")
    assert [(g["rule_id"], g["sku"], g["qty"]) for g in result["gifts"]] == [
        ("croissant", "CROISSANT", 1)
    ]
    assert result["not_applied"] == []
    by_phone = buy(client, merchant, {**body, "member": {"phone": "+79161234567"}}, "G-2")
    assert by_phone["member_id"] == member


def test_anonymous_receipt_is_stored(
    client: TestClient, merchant: Merchant, member: str, engine: sa.Engine, container: Container
) -> None:
    ledger_rows = count(engine, "ledger_transactions")
    result = buy(client, merchant, {"lines": [LATTE, CIG]}, "ANON-1")
    assert result["member_id"] is None
    assert result["balance"] is None
    assert result["totals"]["discount"] == 5000  # discounts apply to anyone
    assert result["totals"]["points_redeemed"] == 0
    # No one to credit: it earns nothing, and says so.
    assert result["totals"]["points_earned"] == 0
    assert result["points_earned_by_program"] == {"main": 0}
    assert all(li["points_earned"] == 0 for li in result["lines"])
    assert [a["rule_id"] for a in result["applied"]] == ["card"]
    assert calc(client, merchant, {"lines": [LATTE, CIG]})["totals"] == result["totals"]
    assert count(engine, "ledger_transactions") == ledger_rows
    got = ok(client.get(f"/v1/purchases/{result['receipt']['id']}", headers=merchant.headers()))
    assert got["receipt"]["status"] == "confirmed"
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT member_id, total_amount FROM receipts WHERE receipt_number = 'ANON-1'")
        ).one()
    assert stored.member_id is None
    assert stored.total_amount == 70000
    # Paying with points needs a member.
    r = client.post(
        "/v1/purchases",
        headers=merchant.headers("pos"),
        json={"lines": [LATTE], "redeem_points": 10, "receipt_number": "ANON-2"},
    )
    assert_problem(r, 422, "redeem_not_possible")
    # It refunds without touching any ledger.
    back = refund(client, merchant, result["receipt"]["id"], "anon-rf")
    assert back["money_to_return"] == result["totals"]["pay"]
    assert (back["points_returned"], back["points_taken_back"]) == (0, 0)
    assert back["transactions"] == []
    assert count(engine, "ledger_transactions") == ledger_rows
    ledger_ok(container)


def test_member_purchases_list(
    client: TestClient, merchant: Merchant, member: str, basket: dict[str, Any]
) -> None:
    ids = [
        buy(client, merchant, {**basket, "redeem_points": None}, f"L-{i}")["receipt"]["id"]
        for i in range(3)
    ]
    buy(client, merchant, {"lines": [LATTE]}, "L-anon")
    page = ok(
        client.get(
            f"/v1/members/{member}/purchases",
            params={"limit": 2},
            headers=merchant.headers("readonly"),
        )
    )
    assert [p["id"] for p in page["items"]] == ids[::-1][:2]
    assert page["items"][0]["receipt_number"] == "L-2"
    assert page["items"][0]["status"] == "confirmed"
    rest = ok(
        client.get(
            f"/v1/members/{member}/purchases",
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=merchant.headers("readonly"),
        )
    )
    assert [p["id"] for p in rest["items"]] == ids[:1]
    assert rest["next_cursor"] is None
    assert_problem(
        client.get(f"/v1/members/{uuid.uuid4()}/purchases", headers=merchant.headers()),
        404,
        "member_not_found",
    )


# ---- idempotency -----------------------------------------------------------------------------
def test_retry_with_same_body_replays(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    engine: sa.Engine,
    container: Container,
) -> None:
    first = buy(client, merchant, basket, "R-1")
    before = footprint(engine)
    again = buy(client, merchant, basket, "R-1")
    assert again == first  # the very same answer
    assert footprint(engine) == before
    assert available(client, merchant, member) == 1000 - 225 + 11
    # Another body under the same number is refused, and writes nothing.
    for changed in (
        {**basket, "redeem_points": 10},
        {**basket, "lines": [LATTE]},
        {**basket, "hold": True},
    ):
        r = client.post(
            "/v1/purchases",
            headers=merchant.headers("pos"),
            json={**changed, "receipt_number": "R-1"},
        )
        assert_problem(r, 409, "receipt_number_reused")
    assert footprint(engine) == before
    # The same number at another outlet is another receipt.
    container.tenants.create_outlet(merchant.actor, "OUT-2", name="Outlet two")
    body = {**basket, "outlet": "OUT-2", "redeem_points": None}
    second = buy(client, merchant, body, "R-1", role="admin")
    assert second["receipt"]["id"] != first["receipt"]["id"]
    assert second["outlet"] == "OUT-2"
    # A till key cannot speak for another outlet.
    r = client.post(
        "/v1/purchases", headers=merchant.headers("pos"), json={**body, "receipt_number": "R-9"}
    )
    assert_problem(r, 403, "outlet_not_allowed")


def test_a_retry_replays_even_when_a_new_receipt_would_be_refused(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    engine: sa.Engine,
) -> None:
    """The receipt number is claimed by the receipt's insert, so the work comes first: a
    retry that the rules would now refuse (the member blocked since) still replays."""
    first = buy(client, merchant, basket, "R-1")
    ok(
        client.post(
            f"/v1/members/{member}/block",
            headers=merchant.headers("admin"),
            json={"reason": "fraud check"},
        )
    )
    before = footprint(engine)
    assert buy(client, merchant, basket, "R-1") == first
    r = client.post(
        "/v1/purchases", headers=merchant.headers("pos"), json={**basket, "receipt_number": "R-2"}
    )
    assert_problem(r, 422, "member_blocked")
    changed = {**basket, "redeem_points": 10, "receipt_number": "R-1"}
    r = client.post("/v1/purchases", headers=merchant.headers("pos"), json=changed)
    assert_problem(r, 409, "receipt_number_reused")
    assert footprint(engine) == before


def test_refund_with_same_key_replays(
    client: TestClient, merchant: Merchant, member: str, basket: dict[str, Any], engine: sa.Engine
) -> None:
    rid = buy(client, merchant, basket, "R-1")["receipt"]["id"]
    first = refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": 1}])
    before = footprint(engine)
    again = refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": 1}])
    assert again == first
    assert footprint(engine) == before
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "rf-1"}),
        json={"lines": [{"line": 0, "qty": "0.5"}]},
    )
    assert_problem(r, 422, "idempotency_key_reused")
    # refund_number in the body is the key too.
    body = {"lines": [{"line": 1, "qty": 1}], "refund_number": "RF-2"}
    one = ok(
        client.post(f"/v1/purchases/{rid}/refunds", headers=merchant.headers("pos"), json=body), 201
    )
    two = ok(
        client.post(f"/v1/purchases/{rid}/refunds", headers=merchant.headers("pos"), json=body), 201
    )
    assert one == two
    assert_problem(
        client.post(f"/v1/purchases/{rid}/refunds", headers=merchant.headers("pos"), json={}),
        422,
        "refund_key_required",
    )
    assert len(ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))["refunds"]) == 2


def test_a_retry_spelled_differently_replays(
    client: TestClient, merchant: Merchant, member: str, basket: dict[str, Any], engine: sa.Engine
) -> None:
    """The natural key compares values, not their spelling: a quantity of 2, 2.0 or "2.000",
    and the outlet implied by the till key or named in the body (or by an admin key)."""
    first = buy(client, merchant, basket, "R-1")
    before = footprint(engine)
    for spelled in (
        {**basket, "lines": [{**LATTE, "qty": 2.0}, CIG]},
        {**basket, "lines": [{**LATTE, "qty": "2.000"}, {**CIG, "qty": "1.0"}]},
        {**basket, "outlet": merchant.outlet_code},
    ):
        assert buy(client, merchant, spelled, "R-1") == first
    assert buy(client, merchant, basket, "R-1", role="admin", outlet=merchant.outlet_code) == first
    assert footprint(engine) == before
    r = client.post(
        "/v1/purchases",
        headers=merchant.headers("pos"),
        json={**basket, "lines": [{**LATTE, "qty": "2.001"}, CIG], "receipt_number": "R-1"},
    )
    assert_problem(r, 409, "receipt_number_reused")
    # Refunds too: 1 and "1.000" are one quantity under one key.
    rid = first["receipt"]["id"]
    refunded = refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": 1}])
    assert refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": "1.000"}]) == refunded


def test_quantities_are_answered_in_one_spelling(
    client: TestClient, merchant: Merchant, basket: dict[str, Any]
) -> None:
    """However the till spells a quantity (1E+1, "0.350", 2.0), the answer gives it in one
    spelling: no exponent, no trailing zeros."""
    body = {
        **basket,
        "lines": [
            {**LATTE, "qty": "1E+1"},
            {**LATTE, "qty": "0.350"},
            {**LATTE, "qty": 2.0},
            {**LATTE, "qty": "100.000"},
        ],
    }
    quote = ok(client.post("/v1/purchases/calculate", headers=merchant.headers("pos"), json=body))
    assert [line["qty"] for line in quote["lines"]] == ["10", "0.35", "2", "100"]
    bought = buy(client, merchant, body, "R-Q")
    assert [line["qty"] for line in bought["lines"]] == ["10", "0.35", "2", "100"]
    part = refund(client, merchant, bought["receipt"]["id"], "rf-q", [{"line": 1, "qty": "0.100"}])
    assert [line["qty"] for line in part["lines"]] == ["0.1"]


def test_receipts_and_refunds_stored_with_the_old_digest_still_replay(
    client: TestClient, merchant: Merchant, member: str, basket: dict[str, Any], engine: sa.Engine
) -> None:
    """Digests stored before they were canonical (the quantity as spelled, the outlet as
    named) are still accepted, so a till's retry across the upgrade replays."""
    body = {**basket, "lines": [{**LATTE, "qty": "2.000"}, CIG]}
    first = buy(client, merchant, body, "R-1")
    rid = first["receipt"]["id"]
    refunded = refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": "1.0"}])
    # The request exactly as the route builds it from the body.
    request = PurchaseIn.model_validate({**body, "receipt_number": "R-1"}).to_input()
    legacy = request_hash("purchase", {**request.legacy_fingerprint(), "hold": False})
    assert legacy != request_hash("purchase", {**request.fingerprint(), "hold": False})
    old_refund = request_hash("refund", {"lines": [[0, "1.0"]], "full": False})
    with engine.begin() as conn:
        stored = uuid.UUID(rid)
        conn.execute(sa.update(receipts).where(receipts.c.id == stored).values(request_hash=legacy))
        conn.execute(
            sa.update(refunds).where(refunds.c.receipt_id == stored).values(request_hash=old_refund)
        )
    again = buy(client, merchant, body, "R-1")
    assert again == {**first, "refunds": again["refunds"]}  # the replay lists the refund
    assert [r["id"] for r in again["refunds"]] == [refunded["id"]]
    assert refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": "1.0"}]) == refunded
    r = client.post(
        "/v1/purchases",
        headers=merchant.headers("pos"),
        json={**basket, "redeem_points": 10, "receipt_number": "R-1"},
    )
    assert_problem(r, 409, "receipt_number_reused")


def test_receipts_dated_further_back_than_the_tenant_allows_are_refused(
    client: TestClient,
    merchant: Merchant,
    basket: dict[str, Any],
    engine: sa.Engine,
    clock: FakeClock,
) -> None:
    """A till may date a receipt back ``backdate_days`` (30 by default): older receipts would
    be evaluated with the promotions of their day, so they go through the import instead."""
    day = timedelta(days=1)
    before = footprint(engine)
    old = {**basket, "occurred_at": (clock.now() - 31 * day).isoformat()}
    for path, body in (
        ("/v1/purchases/calculate", old),
        ("/v1/purchases", {**old, "receipt_number": "R-OLD"}),
    ):
        problem = assert_problem(
            client.post(path, headers=merchant.headers("pos"), json=body),
            422,
            "occurred_too_long_ago",
        )
        assert error_paths(problem) == [["occurred_at"]]
    assert footprint(engine) == before
    recent = {**basket, "occurred_at": (clock.now() - 29 * day).isoformat()}
    assert buy(client, merchant, recent, "R-RECENT")["receipt"]["status"] == "confirmed"
    tenant = ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"backdate_days": 90}))
    assert tenant["backdate_days"] == 90
    assert buy(client, merchant, old, "R-OLD")["receipt"]["status"] == "confirmed"
    ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"backdate_days": 0}))
    hour_ago = {**basket, "occurred_at": (clock.now() - timedelta(hours=1)).isoformat()}
    r = client.post("/v1/purchases/calculate", headers=merchant.headers("pos"), json=hour_ago)
    assert_problem(r, 422, "occurred_too_long_ago")
    assert calc(client, merchant, basket)["totals"]  # "now" is always fine
    r = client.patch("/v1/tenant", headers=merchant.headers(), json={"backdate_days": -1})
    assert_problem(r, 422)


# ---- hold ------------------------------------------------------------------------------------
def test_hold_then_confirm(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    container: Container,
) -> None:
    held = buy(client, merchant, basket, "H-1", hold=True)
    rid = held["receipt"]["id"]
    assert held["receipt"]["status"] == "held"
    assert held["receipt"]["hold_expires_at"] is not None
    state = balance(client, merchant, member)
    assert (state["available"], state["held"]) == (1000 - 225, 225)  # nothing earned yet
    confirmed = ok(post(client, merchant, rid, "confirm"))
    assert confirmed["receipt"]["status"] == "confirmed"
    state = balance(client, merchant, member)
    assert (state["available"], state["held"]) == (1000 - 225 + 11, 0)
    assert ok(post(client, merchant, rid, "confirm")) == confirmed  # a retry replays
    assert_problem(post(client, merchant, rid, "void"), 409, "receipt_confirmed")
    got = ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))
    assert got["receipt"]["status"] == "confirmed"
    history = ok(client.get(f"/v1/members/{member}/ledger", headers=merchant.headers()))
    accrual = next(
        t for t in history["items"] if t["kind"] == "accrual" and t["source_type"] == "receipt"
    )
    assert accrual["source_id"] == rid
    assert accrual["amount"] == 11
    params = txn_params(container.engine, accrual["id"])
    assert params["rules"] == ["base", "card"]  # a held receipt keeps its rules too
    # The held-then-confirmed receipt refunds like any other.
    back = refund(client, merchant, rid, "rf")
    assert back["points_returned"] == 225
    assert back["points_taken_back"] == 11
    assert available(client, merchant, member) == 1000
    ledger_ok(container)


@pytest.mark.parametrize("hold", [False, True])
def test_coupon_is_issued_when_the_receipt_is_confirmed(
    client: TestClient, merchant: Merchant, engine: sa.Engine, hold: bool
) -> None:
    doc = {
        "type": "bonus",
        "rules": [
            {
                "id": "next-time",
                "when": {"amount_gte": 50000},
                "effects": [
                    {"issue_coupon": {"benefit": {"discount_percent": 15}, "valid_days": 7}}
                ],
            }
        ],
    }
    publish(client, merchant, doc, code="promo")
    member = enrol(client, merchant)["id"]
    body = {"member": {"id": member}, "lines": [LATTE]}
    result = buy(client, merchant, body, "CP-1", hold=hold)
    if hold:
        assert result["coupons_issued"] == []  # not before the receipt is confirmed
        assert count(engine, "coupons") == 0
        result = ok(post(client, merchant, result["receipt"]["id"], "confirm"))
    [coupon] = result["coupons_issued"]
    assert coupon["benefit"] == {"discount_percent": 15}
    assert (coupon["program"], coupon["rule_id"]) == ("promo", "next-time")
    assert count(engine, "coupons") == 1
    # A retry replays the coupon; it does not issue another.
    again = (
        ok(post(client, merchant, result["receipt"]["id"], "confirm"))
        if hold
        else buy(client, merchant, body, "CP-1")
    )
    assert again["coupons_issued"] == [coupon]
    assert count(engine, "coupons") == 1
    # Voided holds and anonymous receipts issue none.
    held = buy(client, merchant, body, "CP-2", hold=True)["receipt"]["id"]
    ok(post(client, merchant, held, "void"))
    assert buy(client, merchant, {"lines": [LATTE]}, "CP-3")["coupons_issued"] == []
    assert count(engine, "coupons") == 1


def test_hold_then_void(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    container: Container,
) -> None:
    rid = buy(client, merchant, basket, "H-1", hold=True)["receipt"]["id"]
    # While held, it can be neither refunded nor cancelled.
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "k"}),
        json={},
    )
    assert_problem(r, 409, "receipt_held")
    assert_problem(post(client, merchant, rid, "cancel"), 409, "receipt_held")
    voided = ok(post(client, merchant, rid, "void"))
    assert voided["receipt"]["status"] == "voided"
    state = balance(client, merchant, member)
    assert (state["available"], state["held"]) == (1000, 0)
    assert ok(post(client, merchant, rid, "void"))["receipt"]["status"] == "voided"
    assert_problem(post(client, merchant, rid, "confirm"), 409, "receipt_voided")
    assert_problem(post(client, merchant, rid, "cancel"), 409, "receipt_voided")
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "k"}),
        json={},
    )
    assert_problem(r, 409, "receipt_voided")
    ledger_ok(container)


def test_hold_expires_and_is_voided(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    container: Container,
    clock: FakeClock,
) -> None:
    small = {**basket, "redeem_points": 100}
    rid = buy(client, merchant, small, "H-1", hold=True, hold_ttl_seconds=60)["receipt"]["id"]
    late = buy(client, merchant, small, "H-2", hold=True, hold_ttl_seconds=60)["receipt"]["id"]
    expires = ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))
    assert datetime.fromisoformat(expires["receipt"]["hold_expires_at"]) == (
        clock.now() + timedelta(seconds=60)
    )
    assert balance(client, merchant, member)["held"] == 200
    assert container.purchases.void_expired(clock.now()) == 0  # not yet
    clock.advance(seconds=61)
    # Confirming an expired hold voids it instead.
    assert_problem(post(client, merchant, late, "confirm"), 409, "receipt_hold_expired")
    assert (
        ok(client.get(f"/v1/purchases/{late}", headers=merchant.headers()))["receipt"]["status"]
        == "voided"
    )
    assert container.purchases.void_expired(clock.now()) == 1  # the other one
    assert container.purchases.void_expired(clock.now()) == 0  # nothing twice
    got = ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))
    assert got["receipt"]["status"] == "voided"
    state = balance(client, merchant, member)
    assert (state["available"], state["held"]) == (1000, 0)
    assert_problem(post(client, merchant, rid, "confirm"), 409, "receipt_voided")
    ledger_ok(container)


def test_hold_expires_under_the_jobs_run(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    container: Container,
    clock: FakeClock,
) -> None:
    rid = buy(client, merchant, basket, "H-1", hold=True, hold_ttl_seconds=60)["receipt"]["id"]
    clock.advance(minutes=2)
    report = container.jobs.run()
    # The run releases the ledger hold in any case: the points are back.
    state = balance(client, merchant, member)
    assert (state["available"], state["held"]) == (1000, 0)
    status = ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))["receipt"]
    if "held_receipts_voided" in report.steps:  # the purchases step is wired into the run
        assert report.steps["held_receipts_voided"] == 1
        assert status["status"] == "voided"
    else:
        assert container.purchases.void_expired(clock.now()) == 1
    assert (
        ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))["receipt"]["status"]
        == "voided"
    )
    assert available(client, merchant, member) == 1000
    ledger_ok(container)


# ---- refunds and cancel ----------------------------------------------------------------------
def test_partial_then_full_refund(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    container: Container,
) -> None:
    bought = buy(client, merchant, basket, "R-1")
    rid = bought["receipt"]["id"]
    part = refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": 1}])
    assert part["kind"] == "refund"
    assert part["lines"] == [
        {
            "line": 0,
            "qty": "1",
            "money": 11250,
            "points_returned": 112,
            "points_taken_back": {"main": 5},
        }
    ]
    assert part["money_to_return"] == 11250
    assert part["points_returned"] == 112
    assert part["points_taken_back"] == 5
    assert part["shortfall_points"] == 0
    assert available(client, merchant, member) == 1000 - 225 + 11 + 112 - 5
    rest = refund(client, merchant, rid, "rf-2")
    assert rest["points_returned"] == 113
    assert rest["points_taken_back"] == 6
    assert rest["money_to_return"] == 11250 + 20000
    assert part["money_to_return"] + rest["money_to_return"] == bought["totals"]["pay"]
    assert available(client, merchant, member) == 1000
    got = ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))
    assert [r["id"] for r in got["refunds"]] == [part["id"], rest["id"]]
    assert got["receipt"]["status"] == "confirmed"
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "rf-3"}),
        json={},
    )
    assert_problem(r, 422, "nothing_to_refund")
    history = ok(client.get(f"/v1/members/{member}/ledger", headers=merchant.headers()))
    kinds = sorted(t["kind"] for t in history["items"] if t["source_id"] == rid)
    assert kinds == ["accrual", "redemption", "refund", "refund", "reversal", "reversal"]
    ledger_ok(container)


def test_refund_errors_write_nothing(
    client: TestClient, merchant: Merchant, member: str, basket: dict[str, Any], engine: sa.Engine
) -> None:
    rid = buy(client, merchant, basket, "R-1")["receipt"]["id"]
    before = footprint(engine)
    cases: list[tuple[Any, int, str | None]] = [
        ({"lines": [{"line": 0, "qty": 3}]}, 422, "validation_failed"),
        ({"lines": [{"line": 0, "qty": 1}, {"line": 0, "qty": "1.5"}]}, 422, None),
        ({"lines": [{"line": 7, "qty": 1}]}, 422, None),
        ({"lines": [{"line": 0, "qty": 0}]}, 422, None),
        ({"lines": [{"line": 0, "qty": -1}]}, 422, None),
        ({"lines": []}, 422, None),
        ({"lines": [{"line": 0, "qty": 1, "price": 1}]}, 422, None),
    ]
    for i, (body, status, code) in enumerate(cases):
        r = client.post(
            f"/v1/purchases/{rid}/refunds",
            headers=merchant.headers("pos", **{"Idempotency-Key": f"bad-{i}"}),
            json=body,
        )
        assert_problem(r, status, code)
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "x"}),
        json={"lines": [{"line": 0, "qty": 1}, {"line": 0, "qty": "1.5"}]},
    )
    assert error_paths(r.json()) == [["lines", 1, "qty"]]
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "y"}),
        json={"lines": [{"line": 7, "qty": 1}]},
    )
    assert error_paths(r.json()) == [["lines", 0, "line"]]
    assert footprint(engine) == before
    r = client.post(
        f"/v1/purchases/{uuid.uuid4()}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "z"}),
        json={},
    )
    assert_problem(r, 404, "receipt_not_found")
    assert footprint(engine) == before


def test_cancel_same_day_only(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    clock: FakeClock,
    container: Container,
) -> None:
    rid = buy(client, merchant, basket, "C-1")["receipt"]["id"]
    refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": 1}])  # cancel undoes the rest
    cancelled = ok(post(client, merchant, rid, "cancel"))
    assert cancelled["receipt"]["status"] == "cancelled"
    assert available(client, merchant, member) == 1000
    assert ok(post(client, merchant, rid, "cancel"))["receipt"]["status"] == "cancelled"
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=merchant.headers("pos", **{"Idempotency-Key": "k"}),
        json={},
    )
    assert_problem(r, 409, "receipt_cancelled")
    # The keys cancellations use internally are not for refunds.
    other = buy(client, merchant, basket, "C-3")["receipt"]["id"]
    r = client.post(
        f"/v1/purchases/{other}/refunds",
        json={"lines": [{"line": 0, "qty": 1}]},
        headers=merchant.headers("pos", **{"Idempotency-Key": f"cancel:{other}"}),
    )
    assert_problem(r, 422, "refund_key_reserved")
    assert ok(post(client, merchant, other, "cancel"))["receipt"]["status"] == "cancelled"
    # A receipt from yesterday can only be refunded.
    late = buy(client, merchant, basket, "C-2")["receipt"]["id"]
    clock.advance(days=1)
    assert_problem(post(client, merchant, late, "cancel"), 409, "cancel_window_passed")
    assert (
        ok(client.get(f"/v1/purchases/{late}", headers=merchant.headers()))["receipt"]["status"]
        == "confirmed"
    )
    refund(client, merchant, late, "rf")
    assert available(client, merchant, member) == 1000
    ledger_ok(container)


def test_a_receipt_refunded_in_full_cannot_be_cancelled(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    engine: sa.Engine,
    container: Container,
) -> None:
    rid = buy(client, merchant, basket, "C-1")["receipt"]["id"]
    refund(client, merchant, rid, "rf-1")
    before = footprint(engine)
    assert_problem(post(client, merchant, rid, "cancel"), 409, "receipt_refunded")
    assert footprint(engine) == before
    got = ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))
    assert got["receipt"]["status"] == "confirmed"
    assert len(got["refunds"]) == 1
    assert available(client, merchant, member) == 1000
    ledger_ok(container)


def test_cancel_day_is_the_tenant_local_day_of_confirmation(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    clock: FakeClock,
    container: Container,
) -> None:
    clock.set(datetime.fromisoformat("2026-01-15T20:50:00+00:00"))  # 23:50 in Moscow
    rid = buy(client, merchant, basket, "C-1")["receipt"]["id"]
    held = buy(client, merchant, basket, "H-1", hold=True, hold_ttl_seconds=3600)["receipt"]["id"]
    clock.advance(minutes=20)  # 00:10 the next day in Moscow, still the 15th in UTC
    assert_problem(post(client, merchant, rid, "cancel"), 409, "cancel_window_passed")
    # The held receipt is confirmed today: today it may be cancelled.
    ok(post(client, merchant, held, "confirm"))
    assert ok(post(client, merchant, held, "cancel"))["receipt"]["status"] == "cancelled"
    assert available(client, merchant, member) == 1000 - 225 + 11
    ledger_ok(container)


# ---- shortfall ---------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["cash", "debt"])
def test_refund_after_points_were_spent(
    client: TestClient, merchant: Merchant, container: Container, policy: str
) -> None:
    doc = {
        "type": "bonus",
        "refund_shortfall": policy,
        "redemption": {"point_value": 100, "max_percent": 100},
        "rules": [{"id": "ten", "effects": [{"points_percent": 10}]}],
    }
    publish(client, merchant, doc, code="bonus")
    member = enrol(client, merchant)["id"]
    bought = buy(
        client,
        merchant,
        {"member": {"id": member}, "lines": [{"sku": "TV", "qty": 1, "price": 100000}]},
        "T-1",
    )
    assert bought["totals"]["points_earned"] == 100
    # The member spends 80 of the 100 points elsewhere.
    ok(
        client.post(
            f"/v1/members/{member}/redemptions",
            headers=merchant.headers("pos"),
            json={"points": 80},
        ),
        201,
    )
    back = refund(client, merchant, bought["receipt"]["id"], "rf")
    state = balance(client, merchant, member)
    if policy == "cash":
        assert back["shortfall_points"] == 80
        assert back["shortfall_money"] == 8000
        assert back["points_taken_back"] == 20
        assert back["money_refunded_before_shortfall"] == 100000
        assert back["money_to_return"] == 100000 - 8000
        assert (state["available"], state["debt"]) == (0, 0)
    else:
        assert back["shortfall_points"] == 0
        assert back["shortfall_money"] == 0
        assert back["points_taken_back"] == 100
        assert back["money_to_return"] == 100000
        assert (state["available"], state["debt"]) == (0, 80)
        # New points pay the debt first.
        accrue(client, merchant, member, 100)
        state = balance(client, merchant, member)
        assert (state["available"], state["debt"]) == (20, 0)
    ledger_ok(container)


def test_refund_takes_back_points_still_pending(
    client: TestClient, merchant: Merchant, clock: FakeClock, container: Container
) -> None:
    doc = {
        "type": "bonus",
        "pending_days": 14,
        "rules": [{"id": "ten", "effects": [{"points_percent": 10}]}],
    }
    publish(client, merchant, doc, code="bonus")
    member = enrol(client, merchant)["id"]
    body = {"member": {"id": member}, "lines": [{"sku": "A", "qty": 2, "price": 50000}]}
    rid = buy(client, merchant, body, "P-1")["receipt"]["id"]
    state = balance(client, merchant, member)
    assert (state["available"], state["pending"]) == (0, 100)
    half = refund(client, merchant, rid, "rf-1", [{"line": 0, "qty": 1}])
    assert half["points_taken_back"] == 50
    assert half["shortfall_points"] == 0
    state = balance(client, merchant, member)
    assert (state["available"], state["pending"]) == (0, 50)
    clock.advance(days=15)  # the rest has become spendable; the refund takes it from there
    assert available(client, merchant, member) == 50
    refund(client, merchant, rid, "rf-2")
    state = balance(client, merchant, member)
    assert (state["available"], state["pending"]) == (0, 0)
    ledger_ok(container)


def test_partial_refunds_with_shortfall_add_up(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    doc = {
        "type": "bonus",
        "refund_shortfall": "cash",
        "rules": [{"id": "ten", "effects": [{"points_percent": 10}]}],
    }
    publish(client, merchant, doc, code="bonus")
    member = enrol(client, merchant)["id"]
    bought = buy(
        client,
        merchant,
        {"member": {"id": member}, "lines": [{"sku": "A", "qty": 4, "price": 25000}]},
        "T-1",
    )
    ok(
        client.post(
            f"/v1/members/{member}/redemptions",
            headers=merchant.headers("pos"),
            json={"points": 60},
        ),
        201,
    )
    rid = bought["receipt"]["id"]
    results = [refund(client, merchant, rid, f"rf-{i}", [{"line": 0, "qty": 1}]) for i in range(4)]
    assert sum(r["points_taken_back"] + r["shortfall_points"] for r in results) == 100
    assert sum(r["shortfall_points"] for r in results) == 60
    assert sum(r["money_refunded_before_shortfall"] for r in results) == 100000
    assert sum(r["money_to_return"] for r in results) == 100000 - 6000
    assert available(client, merchant, member) == 0
    ledger_ok(container)


# ---- bad receipts ------------------------------------------------------------------------------
BAD_LINES: list[tuple[dict[str, Any], list[str | int]]] = [
    ({"sku": "A", "qty": -1, "price": 100}, ["lines", 0, "qty"]),
    ({"sku": "A", "qty": 0, "price": 100}, ["lines", 0, "qty"]),
    ({"sku": "A", "qty": "0.0001", "price": 100}, ["lines", 0, "qty"]),
    ({"sku": "A", "qty": 1, "price": -5}, ["lines", 0, "price"]),
    ({"sku": "A", "qty": 1, "price": 10.5}, ["lines", 0, "price"]),
    ({"sku": "A", "qty": 1, "price": "100"}, ["lines", 0, "price"]),
    ({"sku": "A", "qty": 1, "price": 10**11 + 1}, ["lines", 0, "price"]),
    ({"sku": "A", "qty": 1_000_001, "price": 1}, ["lines", 0, "qty"]),
    ({"sku": "", "qty": 1, "price": 100}, ["lines", 0, "sku"]),
    ({"sku": "A", "qty": 1, "price": 100, "flags": ["free"]}, ["lines", 0, "flags", 0]),
    ({"sku": "A", "qty": 1, "price": 100, "colour": "red"}, ["lines", 0, "colour"]),
    ({"sku": "A", "qty": "NaN", "price": 100}, ["lines", 0, "qty"]),
    ({"sku": "A", "qty": "Infinity", "price": 100}, ["lines", 0, "qty"]),
]


def test_bad_lines_are_clear_422s(
    client: TestClient, merchant: Merchant, member: str, engine: sa.Engine
) -> None:
    before = footprint(engine)
    for path, (i, (line, where)) in itertools.product(
        ("/v1/purchases/calculate", "/v1/purchases"), enumerate(BAD_LINES)
    ):
        body: dict[str, Any] = {
            "member": {"id": member},
            "lines": [line, {"sku": "OK", "qty": 1, "price": 100}],
        }
        if path == "/v1/purchases":
            body["receipt_number"] = f"B-{i}"
        r = client.post(path, headers=merchant.headers("pos"), json=body)
        problem = assert_problem(r, 422)
        assert error_paths(problem) == [["body", *where]], (line, problem)
    assert footprint(engine) == before


def test_bad_receipts_write_nothing(
    client: TestClient,
    merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    engine: sa.Engine,
    clock: FakeClock,
) -> None:
    before = footprint(engine)
    cases: list[tuple[dict[str, Any], str, int, str | None]] = [
        ({**basket, "lines": []}, "pos", 422, None),
        ({**basket, "redeem_points": 10_000}, "pos", 422, "redeem_exceeds_max"),
        ({**basket, "redeem_points": -1}, "pos", 422, None),
        ({**basket, "redeem_points": "all"}, "pos", 422, None),
        ({**basket, "member": {"id": str(uuid.uuid4())}}, "pos", 404, "member_not_found"),
        ({**basket, "member": {"phone": "+79990000000"}}, "pos", 404, "member_not_found"),
        ({**basket, "member": {"phone": "not a phone"}}, "pos", 422, "invalid_phone"),
        ({**basket, "member": {"card": "2000000000000"}}, "pos", 422, "invalid_card_number"),
        (
            {**basket, "member": {"id": member, "phone": "+79161234567"}},
            "pos",
            422,
            "member_ref_invalid",
        ),
        ({**basket, "member": {}}, "pos", 422, "member_ref_invalid"),
        (
            {**basket, "occurred_at": (clock.now() + timedelta(hours=1)).isoformat()},
            "pos",
            422,
            "occurred_in_future",
        ),
        ({**basket, "occurred_at": "2026-01-15T09:00:00"}, "pos", 422, None),
        ({**basket, "channel": "phone"}, "pos", 422, None),
        ({**basket, "outlet": "NOWHERE"}, "admin", 422, "unknown_outlet"),
        ({**basket, "outlet": "NOWHERE"}, "pos", 403, "outlet_not_allowed"),
        (basket, "admin", 422, "outlet_required"),
        (basket, "readonly", 403, None),
        ({**basket, "hold_ttl_seconds": 5, "hold": True}, "pos", 422, None),
    ]
    for i, (body, role, status, code) in enumerate(cases):
        r = client.post(
            "/v1/purchases",
            headers=merchant.headers(role),
            json={**body, "receipt_number": f"BAD-{i}"},
        )
        assert_problem(r, status, code)
        if "hold" not in body:  # calculate refuses the same, the same way
            r = client.post("/v1/purchases/calculate", headers=merchant.headers(role), json=body)
            assert_problem(r, status, code)
    for number in ("", "x" * 65):
        r = client.post(
            "/v1/purchases",
            headers=merchant.headers("pos"),
            json={**basket, "receipt_number": number},
        )
        assert error_paths(assert_problem(r, 422)) == [["body", "receipt_number"]]
    r = client.post("/v1/purchases", headers=merchant.headers("pos"), json=basket)
    assert error_paths(assert_problem(r, 422)) == [["body", "receipt_number"]]
    r = client.post(
        "/v1/purchases",
        content=b"{oops",
        headers=merchant.headers("pos", **{"Content-Type": "application/json"}),
    )
    assert_problem(r, 400, "malformed_json")
    assert footprint(engine) == before
    # Blocked members neither earn nor spend.
    ok(
        client.post(
            f"/v1/members/{member}/block", headers=merchant.headers(), json={"reason": "test"}
        )
    )
    before = footprint(engine)
    r = client.post(
        "/v1/purchases",
        headers=merchant.headers("pos"),
        json={**basket, "receipt_number": "BLOCKED"},
    )
    assert_problem(r, 422, "member_blocked")
    assert footprint(engine) == before


def test_absurd_totals_are_refused_not_overflowed(
    client: TestClient, merchant: Merchant, member: str, engine: sa.Engine
) -> None:
    # Each line is within limits (a billion roubles times a million units), together they
    # would overflow the database's 64-bit amounts.
    lines = [{"sku": f"S{i}", "qty": 1_000_000, "price": 10**11} for i in range(100)]
    before = footprint(engine)
    for path in ("/v1/purchases/calculate", "/v1/purchases"):
        r = client.post(
            path,
            headers=merchant.headers("pos"),
            json={"member": {"id": member}, "lines": lines, "receipt_number": "HUGE"}
            if path == "/v1/purchases"
            else {"member": {"id": member}, "lines": lines},
        )
        problem = assert_problem(r, 422)
        assert [e["code"] for e in problem["errors"]] == ["receipt_total_too_large"]
        assert error_paths(problem) == [["lines"]]
    # A program earning absurd numbers of points is refused at the till, not a 500.
    greedy = {
        "type": "bonus",
        "rules": [{"id": "greedy", "effects": [{"points_per_unit": 10**12}]}],
    }
    publish(client, merchant, greedy, code="greedy")
    before = footprint(engine)
    lines = [{"sku": f"S{i}", "qty": 1_000_000, "price": 1} for i in range(10)]
    r = client.post(
        "/v1/purchases",
        headers=merchant.headers("pos"),
        json={"member": {"id": member}, "lines": lines, "receipt_number": "GREEDY"},
    )
    assert_problem(r, 422, "points_too_large")
    assert footprint(engine) == before


def test_zero_price_line_is_a_free_item(
    client: TestClient, merchant: Merchant, member: str, container: Container
) -> None:
    body = {
        "member": {"id": member},
        "redeem_points": "max",
        "lines": [{"sku": "GIFT", "qty": 1, "price": 0}, LATTE],
    }
    result = buy(client, merchant, body, "Z-1")
    free = result["lines"][0]
    assert (
        free["amount"],
        free["discount"],
        free["points_spent"],
        free["pay"],
        free["points_earned"],
    ) == (0, 0, 0, 0, 0)
    only_free = buy(
        client,
        merchant,
        {
            "member": {"id": member},
            "redeem_points": "max",
            "lines": [{"sku": "GIFT", "qty": 3, "price": 0}],
        },
        "Z-2",
    )
    assert only_free["totals"] == {
        "amount": 0,
        "discount": 0,
        "points_redeemed": 0,
        "points_money": 0,
        "pay": 0,
        "points_earned": 0,
    }
    back = refund(client, merchant, only_free["receipt"]["id"], "rf")
    assert back["money_to_return"] == 0
    assert back["transactions"] == []
    ledger_ok(container)


def test_excluded_only_basket_earns_nothing(
    client: TestClient, merchant: Merchant, member: str, engine: sa.Engine
) -> None:
    flags = ["no_points", "no_discount"]
    body = {
        "member": {"id": member},
        "redeem_points": "max",
        "lines": [
            {**CIG, "flags": flags},
            {"sku": "LOTTO", "qty": 2, "price": 5000, "flags": flags},
        ],
    }
    calculated = calc(client, merchant, body)
    assert calculated["max_redeemable"] == 0
    result = buy(client, merchant, body, "X-1")
    assert result["totals"] == {
        "amount": 30000,
        "discount": 0,
        "points_redeemed": 0,
        "points_money": 0,
        "pay": 30000,
        "points_earned": 0,
    }
    assert available(client, merchant, member) == 1000
    # Asking for points on such a basket is a clear refusal, not an error.
    r = client.post(
        "/v1/purchases",
        headers=merchant.headers("pos"),
        json={**body, "redeem_points": 1, "receipt_number": "X-2"},
    )
    assert assert_problem(r, 422, "redeem_exceeds_max")["max_redeemable"] == 0


def test_huge_basket(
    client: TestClient, merchant: Merchant, member: str, engine: sa.Engine, container: Container
) -> None:
    lines = [
        {
            "sku": f"SKU-{i}",
            "qty": "1.5",
            "price": 1000 + i,
            "category": "drinks/coffee" if i % 2 else "food",
        }
        for i in range(1001)
    ]
    body = {"member": {"id": member}, "lines": lines, "redeem_points": "max"}
    before = footprint(engine)
    r = client.post("/v1/purchases/calculate", headers=merchant.headers("pos"), json=body)
    assert error_paths(assert_problem(r, 422)) == [["body", "lines"]]
    r = client.post(
        "/v1/purchases", headers=merchant.headers("pos"), json={**body, "receipt_number": "BIG"}
    )
    assert error_paths(assert_problem(r, 422)) == [["body", "lines"]]
    assert footprint(engine) == before
    # One line fewer is fine.
    result = buy(client, merchant, {**body, "lines": lines[:1000]}, "BIG")
    assert len(result["lines"]) == 1000
    assert result["totals"]["points_redeemed"] == 1000  # the whole balance
    assert sum(li["points_spent"] for li in result["lines"]) == 1000
    assert count(engine, "receipt_lines") == before["receipt_lines"] + 1000
    back = refund(client, merchant, result["receipt"]["id"], "rf")
    assert back["points_returned"] == 1000
    assert back["money_to_return"] == result["totals"]["pay"]
    ledger_ok(container)


# ---- tenants -----------------------------------------------------------------------------------
def test_receipts_are_per_tenant(
    client: TestClient,
    merchant: Merchant,
    other_merchant: Merchant,
    member: str,
    basket: dict[str, Any],
    engine: sa.Engine,
) -> None:
    rid = buy(client, merchant, basket, "R-1")["receipt"]["id"]
    held = buy(client, merchant, basket, "R-2", hold=True)["receipt"]["id"]
    before = footprint(engine)
    theirs = other_merchant.headers("pos")
    assert_problem(
        client.get(f"/v1/purchases/{rid}", headers=other_merchant.headers()),
        404,
        "receipt_not_found",
    )
    for action in ("cancel", "confirm", "void"):
        assert_problem(
            client.post(f"/v1/purchases/{held}/{action}", headers=theirs), 404, "receipt_not_found"
        )
    r = client.post(
        f"/v1/purchases/{rid}/refunds",
        headers=other_merchant.headers("pos", **{"Idempotency-Key": "k"}),
        json={},
    )
    assert_problem(r, 404, "receipt_not_found")
    assert_problem(
        client.get(f"/v1/members/{member}/purchases", headers=other_merchant.headers()),
        404,
        "member_not_found",
    )
    # Their till cannot find our member; the same receipt number there is theirs alone.
    r = client.post("/v1/purchases", headers=theirs, json={**basket, "receipt_number": "R-1"})
    assert_problem(r, 404, "member_not_found")
    assert footprint(engine) == before
    mine = buy(client, other_merchant, {"lines": [LATTE]}, "R-1")
    assert mine["receipt"]["id"] != rid
    assert mine["programs"] == []  # our program is not theirs
    assert mine["totals"]["discount"] == 0
    assert (
        ok(client.get(f"/v1/purchases/{rid}", headers=merchant.headers()))["receipt"]["status"]
        == "confirmed"
    )
    # And without a key, nobody gets anything.
    assert_problem(client.post("/v1/purchases/calculate", json=basket), 401)
    assert_problem(client.get(f"/v1/purchases/{rid}"), 401)
