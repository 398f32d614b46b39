"""Gift cards over HTTP, on SQLite and PostgreSQL: sale, activation at a till, payment and
refund through the till's receipts, balance enquiries (rate-limited: 429 + Retry-After),
blocking, reissue, the policy and the liability; and bad input: unknown, malformed and
other tenants' numbers answer 404/422 with a code and a field path and write nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from kopilka.adapters.db.tables import metadata
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, enrol, error_paths, ok

SALE = {"outlet": "OUT-1", "receipt_number": "S-1", "sold_at": "2026-01-15T08:00:00Z"}
UNKNOWN = "9000000000000001"  # a right check digit, no such card
MALFORMED = ["9000000000000002", "12345", "abcdabcdabcdabcd", "9" * 25]


def sell(client: TestClient, m: Merchant, amount: int, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(
            "/v1/gift-cards", headers=m.headers(), json={"amount": amount, "sale": SALE, **body}
        ),
        201,
    )
    return result


def live_card(client: TestClient, m: Merchant, amount: int) -> dict[str, Any]:
    card = sell(client, m, amount)
    ok(client.post(f"/v1/gift-cards/{card['number']}/activate", headers=m.headers("pos"), json={}))
    return card


def receipt(price: int, *cards: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"lines": [{"sku": "MUG", "qty": 1, "price": price}], "gift_cards": list(cards), **extra}


def table_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables
        }


# ---- the life cycle --------------------------------------------------------------------------
def test_a_card_is_sold_activated_spent_refunded_and_reported(
    client: TestClient, merchant: Merchant
) -> None:
    m = merchant
    key = {"Idempotency-Key": "sale-42"}
    sold = ok(
        client.post(
            "/v1/gift-cards",
            headers=m.headers(**key),
            json={"amount": 200000, "sale": SALE},
        ),
        201,
    )
    assert (sold["status"], sold["balance"], sold["amount"]) == ("issued", 0, 200000)
    assert len(sold["pin"]) == 8
    assert sold["sale"] == {"outlet": "OUT-1", "receipt_number": "S-1", "sold_at": SALE["sold_at"]}
    replay = ok(
        client.post(
            "/v1/gift-cards", headers=m.headers(**key), json={"amount": 200000, "sale": SALE}
        ),
        201,
    )
    assert replay == {**sold, "pin": None}  # the PIN is shown once, never stored
    number = sold["number"]

    # Not usable until activated at a till.
    refused = client.post(
        "/v1/purchases/calculate", headers=m.headers("pos"), json=receipt(5000, {"number": number})
    )
    body = assert_problem(refused, 422, "gift_card_not_activated")
    assert error_paths(body) == [["gift_cards", 0, "number"]]
    active = ok(client.post(f"/v1/gift-cards/{number}/activate", headers=m.headers("pos"), json={}))
    assert (active["status"], active["balance"], active["valid_through"]) == (
        "active",
        200000,
        "2027-01-15",
    )
    enquiry = ok(
        client.post("/v1/gift-cards/balance", headers=m.headers("pos"), json={"number": number})
    )
    assert enquiry == {
        "number": "*" * 12 + number[-4:],
        "status": "active",
        "balance": 200000,
        "currency": "RUB",
        "valid_through": "2027-01-15",
        "message": {
            "ru": "На карте 2\u00a0000\u00a0₽, действует до 2027-01-15 включительно",
            "en": "2\u00a0000\u00a0₽ on the card, valid through 2027-01-15",
        },
    }

    # An anonymous receipt of 2 500 roubles: the card pays 2 000, the till the rest.
    calc = ok(
        client.post(
            "/v1/purchases/calculate",
            headers=m.headers("pos"),
            json=receipt(250000, {"number": number}),
        )
    )
    assert calc["payments"]["to_pay"] == 50000
    assert calc["payments"]["debited"] is False
    bought = ok(
        client.post(
            "/v1/purchases",
            headers=m.headers("pos"),
            json={**receipt(250000, {"number": number}), "receipt_number": "R-1"},
        ),
        201,
    )
    assert bought["payments"]["gift_cards"][0]["amount"] == 200000
    assert bought["payments"]["debited"] is True
    # Half the receipt comes back: all of it to the card.
    back = ok(
        client.post(
            f"/v1/purchases/{bought['receipt']['id']}/refunds",
            headers=m.headers("pos", **{"Idempotency-Key": "ref-1"}),
            json={"lines": [{"line": 0, "qty": "0.5"}]},
        ),
        201,
    )
    assert back["money_to_return"] == 125000
    assert [g["amount"] for g in back["payments"]["gift_cards"]] == [125000]
    assert back["payments"]["to_return"] == 0
    seen = ok(client.get(f"/v1/purchases/{bought['receipt']['id']}", headers=m.headers()))
    assert seen["refunds"][0]["payments"] == back["payments"]

    details = ok(client.get(f"/v1/gift-cards/{number}", headers=m.headers()))
    assert details["balance"] == 125000
    assert [(h["kind"], h["amount"]) for h in details["history"]] == [
        ("refund", 125000),
        ("payment", -200000),
        ("activated", 200000),
        ("issued", None),
    ]
    assert (
        details["history"][1]["description"]["ru"] == "Оплата покупки: 2\u00a0000\u00a0₽, чек R-1"
    )
    liability = ok(client.get("/v1/gift-cards/liability", headers=m.headers()))
    assert {k: liability[k] for k in ("outstanding", "loaded", "spent", "refunded")} == {
        "outstanding": 125000,
        "loaded": 200000,
        "spent": 200000,
        "refunded": 125000,
    }
    assert liability["balanced"] is True
    assert liability["cards"] == {"active": 1}

    # Lost: blocked, then reissued with the balance; the old number is done.
    ok(client.post(f"/v1/gift-cards/{number}/block", headers=m.headers(), json={"reason": "lost"}))
    again = client.post(
        "/v1/purchases/calculate", headers=m.headers("pos"), json=receipt(100, {"number": number})
    )
    assert_problem(again, 422, "gift_card_blocked")
    new = ok(client.post(f"/v1/gift-cards/{number}/reissue", headers=m.headers(), json={}), 201)
    assert (new["status"], new["balance"], new["moved"], new["replaces"]) == (
        "active",
        125000,
        125000,
        number,
    )
    assert len(new["pin"]) == 8
    assert_problem(
        client.post(f"/v1/gift-cards/{number}/unblock", headers=m.headers()),
        409,
        "gift_card_replaced",
    )
    online = receipt(100, {"number": new["number"], "pin": new["pin"]}, channel="online")
    assert (
        ok(client.post("/v1/purchases/calculate", headers=m.headers("pos"), json=online))[
            "payments"
        ]["gift_cards"][0]["amount"]
        == 100
    )


def test_the_policy_is_the_tenants_own(
    client: TestClient, merchant: Merchant, other_merchant: Merchant
) -> None:
    default = ok(client.get("/v1/gift-cards/policy", headers=merchant.headers()))
    assert default["validity"] == {"kind": "rolling", "days": 365}
    document = {
        "validity": {"kind": "calendar", "period": "year", "extra_periods": 1},
        "pin_required": "always",
        "min_amount": 50000,
        "max_amount": 1500000,
        "number_prefix": "77",
    }
    saved = ok(client.put("/v1/gift-cards/policy", headers=merchant.headers(), json=document))
    assert {k: saved[k] for k in document} == document
    assert ok(client.get("/v1/gift-cards/policy", headers=merchant.headers())) == saved
    assert ok(client.get("/v1/gift-cards/policy", headers=other_merchant.headers())) == default
    card = sell(client, merchant, 50000)
    assert card["number"].startswith("77")
    activated = ok(
        client.post(
            f"/v1/gift-cards/{card['number']}/activate",
            headers=merchant.headers(),
            json={"outlet": "OUT-1"},
        )
    )
    assert activated["valid_through"] == "2027-12-31"  # the end of next year, Moscow time
    # Now a PIN is needed at the till as well.
    r = client.post(
        "/v1/purchases/calculate",
        headers=merchant.headers("pos"),
        json=receipt(100, {"number": card["number"]}),
    )
    assert error_paths(assert_problem(r, 422, "gift_card_pin_required")) == [
        ["gift_cards", 0, "pin"]
    ]
    r = client.post(
        "/v1/gift-cards", headers=merchant.headers(), json={"amount": 100, "sale": SALE}
    )
    assert error_paths(assert_problem(r, 422, "validation_failed")) == [["amount"]]
    r = client.put(
        "/v1/gift-cards/policy",
        headers=merchant.headers(),
        json={"min_amount": 500, "max_amount": 100},
    )
    assert_problem(r, 422, "validation_failed")


def test_balance_enquiries_answer_429_with_retry_after(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    m = merchant
    ok(
        client.put(
            "/v1/gift-cards/policy",
            headers=m.headers(),
            json={"enquiry_limits": {"window_seconds": 600, "per_card": 2, "per_key": 50}},
        )
    )
    card = live_card(client, m, 10000)
    for _ in range(2):
        ok(
            client.post(
                "/v1/gift-cards/balance", headers=m.headers("pos"), json={"number": card["number"]}
            )
        )
    r = client.post(
        "/v1/gift-cards/balance", headers=m.headers("pos"), json={"number": card["number"]}
    )
    body = assert_problem(r, 429, "rate_limited")
    assert r.headers["retry-after"] == "600"  # the window opened at 09:00:00
    assert body["retry_after"] == 600
    # The limit is per card, and it lifts with the next window.
    other = live_card(client, m, 10000)
    ok(client.post("/v1/gift-cards/balance", headers=m.headers(), json={"number": other["number"]}))
    clock.advance(seconds=600)
    ok(client.post("/v1/gift-cards/balance", headers=m.headers(), json={"number": card["number"]}))


# ---- bad input -------------------------------------------------------------------------------
def test_unknown_malformed_and_other_tenants_numbers_are_refused_and_write_nothing(
    client: TestClient, merchant: Merchant, other_merchant: Merchant, engine: sa.Engine
) -> None:
    m = merchant
    theirs = live_card(client, other_merchant, 50000)["number"]
    mine = live_card(client, m, 50000)["number"]
    member = enrol(client, m)["id"]
    before = table_counts(engine)
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "", None),
        ("POST", "/activate", {}),
        ("POST", "/block", {"reason": "x"}),
        ("POST", "/unblock", None),
        ("POST", "/reissue", {}),
    ]
    for method, tail, body in routes:
        for number in (UNKNOWN, theirs):
            r = client.request(
                method, f"/v1/gift-cards/{number}{tail}", headers=m.headers(), json=body
            )
            assert_problem(r, 404, "gift_card_not_found")
        for number in MALFORMED:
            r = client.request(
                method, f"/v1/gift-cards/{number}{tail}", headers=m.headers(), json=body
            )
            problem = assert_problem(r, 422, "invalid_gift_card_number")
            assert error_paths(problem) == [["number"]]
    # At the till, each bad card is named by its place in the request.
    for path, extra in (
        ("/v1/purchases/calculate", {}),
        ("/v1/purchases", {"receipt_number": "X"}),
    ):
        r = client.post(
            path,
            headers=m.headers("pos"),
            json={
                **receipt(1000, {"number": mine}, {"number": UNKNOWN}, {"number": theirs}),
                "gift_cards": [
                    {"number": mine},
                    {"number": UNKNOWN},
                    {"number": theirs},
                    {"number": MALFORMED[0]},
                    {"number": mine, "amount": 5},
                ],
                "member": {"id": member},
                **extra,
            },
        )
        problem = assert_problem(r, 422, "gift_card_not_found")
        assert [(e["path"], e["code"]) for e in problem["errors"]] == [
            (["gift_cards", 1, "number"], "gift_card_not_found"),
            (["gift_cards", 2, "number"], "gift_card_not_found"),
            (["gift_cards", 3, "number"], "invalid_gift_card_number"),
            (["gift_cards", 4, "number"], "duplicate_gift_card"),
        ]
    r = client.post(
        "/v1/purchases/calculate",
        headers=m.headers("pos"),
        json=receipt(1000, {"number": mine, "amount": 0}),
    )
    assert ["body", "gift_cards", 0, "amount"] in error_paths(assert_problem(r, 422))
    assert table_counts(engine) == before
    # Balance enquiries refuse the same way; only their attempts are counted.
    for number, status, code in (
        (UNKNOWN, 404, "gift_card_not_found"),
        (theirs, 404, "gift_card_not_found"),
        (MALFORMED[0], 422, "invalid_gift_card_number"),
    ):
        r = client.post("/v1/gift-cards/balance", headers=m.headers("pos"), json={"number": number})
        assert_problem(r, status, code)
    r = client.post("/v1/gift-cards/balance", headers=m.headers("pos"), json={"number": 16})
    assert error_paths(assert_problem(r, 422, "validation_failed")) == [["body", "number"]]
    after = table_counts(engine)
    assert after.pop("gift_card_attempts") > before.pop("gift_card_attempts")
    assert after == before


def test_bad_sales_are_refused_with_their_paths(
    client: TestClient, merchant: Merchant, engine: sa.Engine
) -> None:
    m = merchant
    taken = sell(client, m, 10000)["number"]
    before = table_counts(engine)
    cases: list[tuple[dict[str, Any], int, str, list[str]]] = [
        ({"amount": 10**9, "sale": SALE}, 422, "validation_failed", ["amount"]),
        (
            {"amount": 10000, "sale": {**SALE, "outlet": "NOPE"}},
            422,
            "validation_failed",
            ["sale", "outlet"],
        ),
        (
            {"amount": 10000, "sale": {**SALE, "sold_at": "2026-02-01T00:00:00Z"}},
            422,
            "validation_failed",
            ["sale", "sold_at"],
        ),
        (
            {"amount": 10000, "sale": SALE, "number": MALFORMED[0]},
            422,
            "validation_failed",
            ["number"],
        ),
        ({"amount": 10000, "sale": SALE, "number": taken}, 409, "gift_card_number_taken", []),
        ({"amount": 10000}, 422, "validation_failed", ["body", "sale"]),
        ({"amount": "100", "sale": SALE}, 422, "validation_failed", ["body", "amount"]),
    ]
    for body, status, code, path in cases:
        problem = assert_problem(
            client.post("/v1/gift-cards", headers=m.headers(), json=body), status, code
        )
        if path:
            assert path in error_paths(problem), problem
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ({"validity": {"kind": "rolling", "days": "30"}}, ["body", "validity", "rolling", "days"]),
        ({"validity": {"kind": "rolling", "days": True}}, ["body", "validity", "rolling", "days"]),
        (
            {"validity": {"kind": "calendar", "period": "year", "extra_periods": 1.0}},
            ["body", "validity", "calendar", "extra_periods"],
        ),
        ({"enquiry_limits": {"per_card": "5"}}, ["body", "enquiry_limits", "per_card"]),
    ],
)
def test_the_policy_takes_exact_types(
    client: TestClient, merchant: Merchant, engine: sa.Engine, policy: dict[str, Any], path: Any
) -> None:
    """The policy is stored as a document: "30" or true are not taken for 30 or 1 days."""
    before = table_counts(engine)
    r = client.put("/v1/gift-cards/policy", headers=merchant.headers(), json=policy)
    assert error_paths(assert_problem(r, 422, "validation_failed")) == [path]
    assert table_counts(engine) == before
    # And the check comes after the key's: no key, no word on the body.
    assert_problem(client.put("/v1/gift-cards/policy", json=policy), 401)
