"""Points over HTTP: balances, history, accruals, redemptions, adjustments, holds, reversals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
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
    writes,
)


@pytest.fixture
def member(client: TestClient, merchant: Merchant) -> str:
    member_id: str = enrol(client, merchant)["id"]
    return member_id


def redeem(
    client: TestClient, m: Merchant, member_id: str, points: int, **fields: Any
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(
            f"/v1/members/{member_id}/redemptions",
            headers=m.headers("pos"),
            json={"points": points, **fields},
        ),
        201,
    )
    return result


def hold(
    client: TestClient, m: Merchant, member_id: str, points: int, **fields: Any
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(
            f"/v1/members/{member_id}/holds",
            headers=m.headers("pos"),
            json={"points": points, **fields},
        ),
        201,
    )
    return result


def reverse(client: TestClient, m: Merchant, txn_id: str, **fields: Any) -> Any:
    return client.post(
        f"/v1/ledger/transactions/{txn_id}/reversals", headers=m.headers(), json=fields
    )


def history(client: TestClient, m: Merchant, member_id: str, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.get(f"/v1/members/{member_id}/ledger", headers=m.headers("readonly"), params=params)
    )
    return result


# ---- balance and history -------------------------------------------------------------------
def test_fresh_balance_is_zero(client: TestClient, merchant: Merchant, member: str) -> None:
    bal = balance(client, merchant, member)
    assert bal["member_id"] == member
    assert bal["currency"] == "points"
    assert (bal["available"], bal["pending"], bal["held"], bal["debt"]) == (0, 0, 0, 0)
    assert bal["expiring_soon"] == []
    assert bal["next_pending"] == []
    assert bal["as_of"] == "2026-01-15T09:00:00Z"


def test_history_is_newest_first_with_ru_and_en_descriptions(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    accrue(client, merchant, member, 1500, reason="purchase 17")
    redeem(client, merchant, member, 120)
    items = history(client, merchant, member)["items"]
    assert [t["kind"] for t in items] == ["redemption", "accrual"]
    assert items[1]["description"] == {
        "ru": "Начислено 1\u00a0500 баллов — purchase 17",
        "en": "1,500 points earned — purchase 17",
    }
    assert items[0]["description"] == {"ru": "Списано 120 баллов", "en": "120 points spent"}
    assert items[1]["reason"] == "purchase 17"
    assert items[1]["actor"].startswith("apikey:")
    assert sum(p["amount"] for p in items[1]["postings"]) == 0  # double entry


def test_history_pages_with_a_cursor(client: TestClient, merchant: Merchant, member: str) -> None:
    made = [accrue(client, merchant, member, i + 1)["transactions"][0]["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page = history(client, merchant, member, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


def test_history_bad_paging_is_422(client: TestClient, merchant: Merchant, member: str) -> None:
    h = merchant.headers()
    url = f"/v1/members/{member}/ledger"
    for cursor in ("x", "!!!!", "AAAA", "A" * 64):
        assert_problem(client.get(url, headers=h, params={"cursor": cursor}), 422, "invalid_cursor")
    body = assert_problem(client.get(url, headers=h, params={"cursor": "A" * 65}), 422)
    assert ["query", "cursor"] in error_paths(body)
    body = assert_problem(client.get(url, headers=h, params={"limit": 201}), 422)
    assert ["query", "limit"] in error_paths(body)


def test_get_transaction(client: TestClient, merchant: Merchant, member: str) -> None:
    made = accrue(client, merchant, member, 40, reason="welcome")["transactions"][0]
    got = ok(
        client.get(f"/v1/ledger/transactions/{made['id']}", headers=merchant.headers("readonly"))
    )
    assert got == made
    r = client.get(
        "/v1/ledger/transactions/01900000-0000-7000-8000-000000000000", headers=merchant.headers()
    )
    assert_problem(r, 404, "transaction_not_found")


# ---- accruals ------------------------------------------------------------------------------
def test_pending_accrual_becomes_spendable_after_pending_days(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock
) -> None:
    result = accrue(client, merchant, member, 100, pending_days=14)
    txn = result["transactions"][0]
    assert "available from 2026-01-29" in txn["description"]["en"]
    assert "станут доступны 2026-01-29" in txn["description"]["ru"]
    bal = result["balance"]
    assert (bal["available"], bal["pending"]) == (0, 100)
    assert bal["next_pending"] == [{"on": "2026-01-29", "amount": 100}]
    r = client.post(
        f"/v1/members/{member}/redemptions", headers=merchant.headers("pos"), json={"points": 1}
    )
    body = assert_problem(r, 422, "insufficient_points")
    assert (body["available"], body["requested"]) == (0, 1)
    clock.advance(days=14)
    bal = balance(client, merchant, member)
    assert (bal["available"], bal["pending"]) == (100, 0)
    assert redeem(client, merchant, member, 40)["balance"]["available"] == 60
    kinds = [t["kind"] for t in history(client, merchant, member)["items"]]
    assert kinds == ["redemption", "activation", "accrual"]


def test_tenant_pending_days_apply_unless_overridden(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"pending_days": 7}))
    assert accrue(client, merchant, member, 10)["balance"]["pending"] == 10
    accrue(client, merchant, member, 5, pending_days=0)
    bal = balance(client, merchant, member)
    assert (bal["available"], bal["pending"]) == (5, 10)


def test_accrual_answer_carries_the_members_whole_balance(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    accrue(client, merchant, member, 100)
    answered = accrue(client, merchant, member, 50)["balance"]
    assert answered == balance(client, merchant, member)  # available 150, not 50


def test_other_write_answers_carry_the_members_whole_balance(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    """Every write answers with the balance a GET then shows."""
    accrue(client, merchant, member, 100)
    accrue(client, merchant, member, 20, pending_days=3)
    h = merchant.headers()
    url = f"/v1/members/{member}"

    def checked(answer: dict[str, Any]) -> dict[str, Any]:
        assert answer["balance"] == balance(client, merchant, member), answer["transactions"]
        return answer

    spent = checked(redeem(client, merchant, member, 10))
    checked(
        ok(client.post(f"{url}/adjustments", headers=h, json={"points": 7, "reason": "r"}), 201)
    )
    checked(
        ok(client.post(f"{url}/adjustments", headers=h, json={"points": -3, "reason": "r"}), 201)
    )
    first = checked(hold(client, merchant, member, 30))["hold"]["id"]
    checked(ok(client.post(f"/v1/holds/{first}/capture", headers=h, json={"points": 5})))
    second = checked(hold(client, merchant, member, 4))["hold"]["id"]
    checked(ok(client.post(f"/v1/holds/{second}/release", headers=h)))
    checked(ok(reverse(client, merchant, spent["transactions"][0]["id"]), 201))
    final = balance(client, merchant, member)
    assert (final["available"], final["pending"], final["held"]) == (99, 20, 0)


def test_accrual_with_dates_expires(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock, container: Container
) -> None:
    accrue(client, merchant, member, 100, expires_at="2026-01-25T09:00:00Z")
    bal = balance(client, merchant, member)
    assert bal["available"] == 100
    assert bal["expiring_soon"] == [{"on": "2026-01-25", "amount": 100}]
    clock.advance(days=11)
    assert balance(client, merchant, member)["available"] == 0
    r = client.post(
        f"/v1/members/{member}/redemptions", headers=merchant.headers("pos"), json={"points": 1}
    )
    assert_problem(r, 422, "insufficient_points")
    container.jobs.run()
    items = history(client, merchant, member)["items"]
    assert items[0]["kind"] == "expiry"
    assert items[0]["description"] == {"ru": "Сгорело 100 баллов", "en": "100 points expired"}


def test_accrual_with_a_future_available_at(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock
) -> None:
    bal = accrue(
        client,
        merchant,
        member,
        30,
        available_at="2026-01-20T00:00:00+03:00",
        expires_at="2026-03-01T00:00:00+03:00",
    )["balance"]
    assert (bal["available"], bal["pending"]) == (0, 30)
    clock.set(clock.now() + timedelta(days=5))
    assert balance(client, merchant, member)["available"] == 30


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"expires_at": "2026-01-01T00:00:00Z"}, "invalid_lot_dates"),
        (
            {"available_at": "2026-02-01T00:00:00Z", "expires_at": "2026-01-20T00:00:00Z"},
            "invalid_lot_dates",
        ),
        ({"expires_at": "2026-02-01T00:00:00"}, "validation_failed"),  # no time zone
        ({"pending_days": 366}, "validation_failed"),
        ({"points": 0}, "validation_failed"),
        ({"points": -5}, "validation_failed"),
        ({"points": "10"}, "validation_failed"),
        ({"points": 10.0}, "validation_failed"),
        ({"points": 10**12 + 1}, "validation_failed"),
        ({"points": 10**30}, "validation_failed"),
    ],
)
def test_accrual_refusals_write_nothing(
    client: TestClient,
    merchant: Merchant,
    member: str,
    container: Container,
    fields: dict[str, Any],
    code: str,
) -> None:
    before = writes(container.engine)
    r = client.post(
        f"/v1/members/{member}/accruals", headers=merchant.headers(), json={"points": 10, **fields}
    )
    body = assert_problem(r, 422, code)
    if code == "validation_failed":
        assert any(p[0] == "body" for p in error_paths(body)), body
    assert writes(container.engine) == before


# ---- redemptions ---------------------------------------------------------------------------
def test_redemption_spends_soonest_expiring_points_first(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock
) -> None:
    accrue(client, merchant, member, 100)
    accrue(client, merchant, member, 50, expires_at="2026-01-25T00:00:00Z")
    result = redeem(client, merchant, member, 60, reference="check-1")
    assert result["balance"]["available"] == 90
    assert result["transactions"][0]["source_id"] == "check-1"
    clock.advance(days=11)
    assert balance(client, merchant, member)["available"] == 90  # the 50 were spent first


def test_redemption_beyond_the_balance_writes_nothing(
    client: TestClient, merchant: Merchant, member: str, container: Container
) -> None:
    accrue(client, merchant, member, 50)
    before = count(container.engine, "ledger_transactions")
    r = client.post(
        f"/v1/members/{member}/redemptions", headers=merchant.headers("pos"), json={"points": 51}
    )
    body = assert_problem(r, 422, "insufficient_points")
    assert (body["available"], body["requested"]) == (50, 51)
    assert count(container.engine, "ledger_transactions") == before
    assert balance(client, merchant, member)["available"] == 50


# ---- adjustments ---------------------------------------------------------------------------
def test_adjustments_are_signed(client: TestClient, merchant: Merchant, member: str) -> None:
    url = f"/v1/members/{member}/adjustments"
    up = ok(
        client.post(url, headers=merchant.headers(), json={"points": 50, "reason": "goodwill"}), 201
    )
    assert up["balance"]["available"] == 50
    assert up["transactions"][0]["description"]["en"] == "Balance adjustment: +50 points — goodwill"
    down = ok(
        client.post(url, headers=merchant.headers(), json={"points": -20, "reason": "typo"}), 201
    )
    assert down["balance"]["available"] == 30
    assert down["transactions"][0]["amount"] == -20
    assert down["transactions"][0]["description"]["ru"] == (
        "Корректировка баланса: -20 баллов — typo"
    )
    r = client.post(url, headers=merchant.headers(), json={"points": -31, "reason": "too much"})
    assert_problem(r, 422, "insufficient_points")


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({"points": 0, "reason": "zero"}, "invalid_points", None),
        ({"points": 5, "reason": "   "}, "reason_required", None),
        ({"points": 5, "reason": ""}, "validation_failed", ["body", "reason"]),
        ({"points": 5}, "validation_failed", ["body", "reason"]),
        ({"points": -(10**13), "reason": "x"}, "validation_failed", ["body", "points"]),
    ],
)
def test_adjustment_refusals(
    client: TestClient,
    merchant: Merchant,
    member: str,
    container: Container,
    body: dict[str, Any],
    code: str,
    path: list[str] | None,
) -> None:
    before = writes(container.engine)
    r = client.post(f"/v1/members/{member}/adjustments", headers=merchant.headers(), json=body)
    problem = assert_problem(r, 422, code)
    if path:
        assert path in error_paths(problem)
    assert writes(container.engine) == before


# ---- holds ---------------------------------------------------------------------------------
def test_hold_and_full_capture(client: TestClient, merchant: Merchant, member: str) -> None:
    accrue(client, merchant, member, 300)
    made = hold(client, merchant, member, 100, reference="order-9")
    h = made["hold"]
    assert (h["amount"], h["captured"], h["status"]) == (100, 0, "active")
    assert h["expires_at"] == "2026-01-15T09:15:00Z"  # the tenant's 900 s
    assert (made["balance"]["available"], made["balance"]["held"]) == (200, 100)
    got = ok(client.get(f"/v1/holds/{h['id']}", headers=merchant.headers("readonly")))
    assert got == h
    cap = ok(client.post(f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={}))
    assert [t["kind"] for t in cap["transactions"]] == ["capture"]
    assert (cap["hold"]["status"], cap["hold"]["captured"]) == ("captured", 100)
    assert (cap["balance"]["available"], cap["balance"]["held"]) == (200, 0)
    r = client.post(f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={})
    assert_problem(r, 409, "hold_captured")
    r = client.post(f"/v1/holds/{h['id']}/release", headers=merchant.headers("pos"))
    assert_problem(r, 409, "hold_captured")
    got = ok(client.get(f"/v1/holds/{h['id']}", headers=merchant.headers()))
    assert got["status"] == "captured"
    assert got["closed_at"] is not None


def test_partial_capture_releases_the_rest(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    accrue(client, merchant, member, 300)
    h = hold(client, merchant, member, 100)["hold"]
    r = client.post(
        f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={"points": 101}
    )
    assert_problem(r, 422, "invalid_points")
    cap = ok(
        client.post(
            f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={"points": 30}
        )
    )
    assert [(t["kind"], t["amount"]) for t in cap["transactions"]] == [
        ("capture", 30),
        ("release", 70),
    ]
    assert (cap["hold"]["captured"], cap["hold"]["status"]) == (30, "captured")
    assert (cap["balance"]["available"], cap["balance"]["held"]) == (270, 0)


def test_release_gives_points_back(client: TestClient, merchant: Merchant, member: str) -> None:
    accrue(client, merchant, member, 100)
    h = hold(client, merchant, member, 80, ttl_seconds=60)["hold"]
    assert h["expires_at"] == "2026-01-15T09:01:00Z"
    rel = ok(client.post(f"/v1/holds/{h['id']}/release", headers=merchant.headers("pos")))
    assert rel["hold"]["status"] == "released"
    assert (rel["balance"]["available"], rel["balance"]["held"]) == (100, 0)
    assert rel["transactions"][0]["description"]["en"] == "Reservation of 80 points released"
    r = client.post(f"/v1/holds/{h['id']}/release", headers=merchant.headers("pos"))
    assert_problem(r, 409, "hold_released")


def test_hold_refusals(client: TestClient, merchant: Merchant, member: str) -> None:
    accrue(client, merchant, member, 10)
    url = f"/v1/members/{member}/holds"
    assert_problem(
        client.post(url, headers=merchant.headers("pos"), json={"points": 11}),
        422,
        "insufficient_points",
    )
    for bad in ({"points": 1, "ttl_seconds": 0}, {"points": 1, "ttl_seconds": 7 * 86400 + 1}):
        assert_problem(
            client.post(url, headers=merchant.headers("pos"), json=bad), 422, "validation_failed"
        )
    r = client.get("/v1/holds/01900000-0000-7000-8000-000000000000", headers=merchant.headers())
    assert_problem(r, 404, "hold_not_found")


def test_stale_hold_is_released_by_the_clock(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock, container: Container
) -> None:
    accrue(client, merchant, member, 100)
    h = hold(client, merchant, member, 40, ttl_seconds=60)["hold"]
    clock.advance(seconds=61)
    assert container.jobs.run().holds_released == 1
    got = ok(client.get(f"/v1/holds/{h['id']}", headers=merchant.headers()))
    assert got["status"] == "expired"
    assert balance(client, merchant, member)["available"] == 100
    r = client.post(f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={})
    assert_problem(r, 409, "hold_expired")


def test_capture_after_the_hold_expired_is_refused_even_before_the_job(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock
) -> None:
    accrue(client, merchant, member, 100)
    h = hold(client, merchant, member, 40, ttl_seconds=60)["hold"]
    clock.advance(seconds=61)
    r = client.post(f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={})
    assert_problem(r, 409, "hold_expired")


def test_points_of_an_expired_hold_come_back_before_the_job(
    client: TestClient, merchant: Merchant, member: str, clock: FakeClock
) -> None:
    accrue(client, merchant, member, 100)
    h = hold(client, merchant, member, 40, ttl_seconds=60)["hold"]
    clock.advance(seconds=61)
    assert ok(client.get(f"/v1/holds/{h['id']}", headers=merchant.headers()))["status"] != "active"
    bal = balance(client, merchant, member)
    assert (bal["available"], bal["held"]) == (100, 0)
    redeem(client, merchant, member, 100)


# ---- reversals -----------------------------------------------------------------------------
def test_partial_then_full_reversal_of_an_accrual(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    txn = accrue(client, merchant, member, 100)["transactions"][0]["id"]
    part = ok(reverse(client, merchant, txn, points=30, reason="returned item"), 201)
    [rev] = part["transactions"]
    assert (rev["kind"], rev["amount"], rev["reverses_id"]) == ("reversal", 30, txn)
    assert rev["description"]["en"] == "30 earned points reversed — returned item"
    assert part["balance"]["available"] == 70
    rest = ok(reverse(client, merchant, txn), 201)
    assert rest["transactions"][0]["amount"] == 70
    assert rest["balance"]["available"] == 0
    body = assert_problem(reverse(client, merchant, txn), 422, "reversal_exceeds_original")
    assert body["reversible"] == 0


def test_reversal_of_a_redemption_refunds(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    accrue(client, merchant, member, 100)
    spent = redeem(client, merchant, member, 40)["transactions"][0]["id"]
    body = assert_problem(
        reverse(client, merchant, spent, points=41), 422, "reversal_exceeds_original"
    )
    assert body["reversible"] == 40
    refund = ok(reverse(client, merchant, spent, points=15), 201)
    assert refund["transactions"][0]["kind"] == "refund"
    assert refund["balance"]["available"] == 75
    assert ok(reverse(client, merchant, spent), 201)["balance"]["available"] == 100


def test_reversal_of_a_partial_capture(client: TestClient, merchant: Merchant, member: str) -> None:
    accrue(client, merchant, member, 100)
    h = hold(client, merchant, member, 60)["hold"]
    cap = ok(
        client.post(
            f"/v1/holds/{h['id']}/capture", headers=merchant.headers("pos"), json={"points": 25}
        )
    )
    capture_id = cap["transactions"][0]["id"]
    assert cap["balance"]["available"] == 75
    refund = ok(reverse(client, merchant, capture_id), 201)
    assert refund["transactions"][0]["amount"] == 25
    assert refund["balance"]["available"] == 100


def test_reversal_shortfall_policies(client: TestClient, merchant: Merchant, member: str) -> None:
    txn = accrue(client, merchant, member, 100)["transactions"][0]["id"]
    redeem(client, merchant, member, 80)
    body = assert_problem(reverse(client, merchant, txn), 422, "reversal_shortfall")
    assert body["shortfall"] == 80
    body = assert_problem(
        reverse(client, merchant, txn, on_shortfall="debt"), 422, "debt_not_allowed"
    )
    capped = ok(reverse(client, merchant, txn, on_shortfall="cap"), 201)
    assert capped["shortfall"] == 80
    assert capped["transactions"][0]["amount"] == 20
    assert capped["balance"]["available"] == 0


def test_reversal_into_debt_when_the_tenant_allows_it(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"allow_debt": True}))
    txn = accrue(client, merchant, member, 100)["transactions"][0]["id"]
    redeem(client, merchant, member, 80)
    result = ok(reverse(client, merchant, txn, on_shortfall="debt"), 201)
    assert result["balance"]["debt"] == 80
    # New points pay the debt off first.
    accrue(client, merchant, member, 100)
    bal = balance(client, merchant, member)
    assert (bal["available"], bal["debt"]) == (20, 0)


def test_some_transactions_cannot_be_reversed(
    client: TestClient, merchant: Merchant, member: str
) -> None:
    accrue(client, merchant, member, 100)
    made = hold(client, merchant, member, 10)["transactions"][0]["id"]
    assert_problem(reverse(client, merchant, made), 422, "not_reversible")
    assert_problem(
        reverse(client, merchant, "01900000-0000-7000-8000-000000000000"),
        404,
        "transaction_not_found",
    )
    body = assert_problem(reverse(client, merchant, made, on_shortfall="maybe"), 422)
    assert ["body", "on_shortfall"] in error_paths(body)
