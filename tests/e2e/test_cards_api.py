"""Cards over HTTP: look-up, pre-printed batches, bind, block, unblock, replace, QR tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import (
    accrue,
    assert_problem,
    bad_check_digit,
    balance,
    card,
    enrol,
    error_paths,
    ok,
    writes,
)


def _batch(client: TestClient, m: Merchant, name: str, numbers: list[str]) -> dict[str, object]:
    result: dict[str, object] = ok(
        client.post(
            "/v1/card-batches", headers=m.headers(), json={"name": name, "numbers": numbers}
        ),
        201,
    )
    return result


# ---- look-up -------------------------------------------------------------------------------
def test_lookup_by_number_phone_and_qr(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant, phone="+79161234567")
    number = m["cards"][0]["number"]
    h = merchant.headers("pos")
    by_number = ok(client.get("/v1/cards/lookup", headers=h, params={"number": number}))
    assert by_number["member"]["id"] == m["id"]
    assert by_number["card"]["number"] == number
    by_phone = ok(client.get("/v1/cards/lookup", headers=h, params={"phone": "89161234567"}))
    assert by_phone["member"]["id"] == m["id"]
    assert by_phone["card"] is None
    token = ok(client.get(f"/v1/cards/{number}/qr", headers=h))["token"]
    by_qr = ok(client.get("/v1/cards/lookup", headers=h, params={"qr": token}))
    assert by_qr["member"]["id"] == m["id"]
    assert by_qr["card"]["number"] == number


@pytest.mark.parametrize(
    "params", [{}, {"number": card(1), "phone": "+79161234567"}, {"number": ""}]
)
def test_lookup_needs_exactly_one_key(
    client: TestClient, merchant: Merchant, params: dict[str, str]
) -> None:
    r = client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params=params)
    assert_problem(r, 422, "lookup_needs_one_key")


def test_lookup_misses(client: TestClient, merchant: Merchant) -> None:
    h = merchant.headers("pos")
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"number": card(7)}), 404, "card_not_found"
    )
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"phone": "+79160000000"}),
        404,
        "member_not_found",
    )
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"number": bad_check_digit(card(7))}),
        422,
        "invalid_card_number",
    )
    assert_problem(client.get("/v1/cards/lookup", headers=h, params={"phone": "123"}), 422)
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"qr": "garbage"}), 422, "invalid_qr_token"
    )


def test_lookup_by_an_unbound_card_is_409(client: TestClient, merchant: Merchant) -> None:
    _batch(client, merchant, "b", [card(10)])
    r = client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": card(10)})
    assert_problem(r, 409, "card_unbound")


# ---- batches -------------------------------------------------------------------------------
def test_register_a_range(client: TestClient, merchant: Merchant) -> None:
    first = card(200)
    got = ok(
        client.post(
            "/v1/card-batches",
            headers=merchant.headers(),
            json={"name": "Spring 2026", "first_number": first, "count": 5},
        ),
        201,
    )
    assert got["count"] == 5
    assert got["first_number"] == first
    assert got["last_number"] == card(204)
    unbound = ok(client.get(f"/v1/cards/{card(203)}", headers=merchant.headers("readonly")))
    assert unbound["status"] == "unbound"
    assert unbound["member_id"] is None
    assert unbound["kind"] == "physical"


def test_register_a_list(client: TestClient, merchant: Merchant) -> None:
    got = _batch(client, merchant, "list", [card(300), card(310), card(320)])
    assert got["count"] == 3


def test_batch_refusals(client: TestClient, merchant: Merchant, container: Container) -> None:
    _batch(client, merchant, "first", [card(400), card(401)])
    before = writes(container.engine)
    h = merchant.headers()
    r = client.post("/v1/card-batches", headers=h, json={"name": "first", "numbers": [card(9)]})
    assert_problem(r, 409, "batch_exists")
    r = client.post(
        "/v1/card-batches", headers=h, json={"name": "again", "numbers": [card(401), card(402)]}
    )
    assert assert_problem(r, 409, "card_numbers_taken")["numbers"] == [card(401)]
    r = client.post(
        "/v1/card-batches",
        headers=h,
        json={"name": "bad", "numbers": [card(500), bad_check_digit(card(501))]},
    )
    body = assert_problem(r, 422, "validation_failed")
    assert error_paths(body) == [["numbers", 1]]
    r = client.post(
        "/v1/card-batches", headers=h, json={"name": "dups", "numbers": [card(600), card(600)]}
    )
    assert_problem(r, 422, "validation_failed")
    r = client.post("/v1/card-batches", headers=h, json={"name": "half", "count": 3})
    assert ["first_number"] in error_paths(assert_problem(r, 422))
    r = client.post(
        "/v1/card-batches",
        headers=h,
        json={"name": "past end", "first_number": card(999_999_999_99), "count": 2},
    )
    assert ["count"] in error_paths(assert_problem(r, 422))
    r = client.post(
        "/v1/card-batches",
        headers=h,
        json={"name": "too many", "first_number": card(1), "count": 100_001},
    )
    assert ["body", "count"] in error_paths(assert_problem(r, 422))
    r = client.post(
        "/v1/card-batches", headers=h, json={"name": "letters", "numbers": ["20000000000A8"]}
    )
    assert ["body", "numbers", 0] in error_paths(assert_problem(r, 422))
    assert writes(container.engine) == before


def test_card_numbers_are_ascii_digits_only(client: TestClient, merchant: Merchant) -> None:
    """Unicode digits (e.g. Arabic-Indic) pass ``\\d`` and ``str.isdigit`` but no till
    prints them."""
    arabic = "".join(chr(0x0660 + int(d)) for d in card(700))
    r = client.post(
        "/v1/card-batches", headers=merchant.headers(), json={"name": "arabic", "numbers": [arabic]}
    )
    assert_problem(r, 422)
    r = client.patch("/v1/tenant", headers=merchant.headers(), json={"card_prefix": "\u0662"})
    assert ["body", "card_prefix"] in error_paths(assert_problem(r, 422))


# ---- get, bind, block, unblock -------------------------------------------------------------
def test_get_card(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant)
    number = m["cards"][0]["number"]
    got = ok(client.get(f"/v1/cards/{number}", headers=merchant.headers("readonly")))
    assert got == m["cards"][0]
    assert_problem(
        client.get(f"/v1/cards/{card(42)}", headers=merchant.headers()), 404, "card_not_found"
    )
    body = assert_problem(
        client.get(f"/v1/cards/{bad_check_digit(number)}", headers=merchant.headers()),
        422,
        "invalid_card_number",
    )
    assert error_paths(body) == [["number"]]


def test_bind_a_pre_printed_card(client: TestClient, merchant: Merchant) -> None:
    _batch(client, merchant, "b", [card(800), card(801)])
    m = enrol(client, merchant)
    got = ok(
        client.post(
            f"/v1/cards/{card(800)}/bind",
            headers=merchant.headers("pos"),
            json={"member_id": m["id"]},
        )
    )
    assert got["member_id"] == m["id"]
    assert got["status"] == "active"
    assert got["bound_at"] is not None
    other = enrol(client, merchant)
    r = client.post(
        f"/v1/cards/{card(800)}/bind",
        headers=merchant.headers("pos"),
        json={"member_id": other["id"]},
    )
    assert_problem(r, 409, "card_already_bound")
    r = client.post(
        f"/v1/cards/{card(801)}/bind",
        headers=merchant.headers("pos"),
        json={"member_id": "01900000-0000-7000-8000-000000000000"},
    )
    assert_problem(r, 404, "member_not_found")
    found = ok(
        client.get(
            "/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": card(800)}
        )
    )
    assert found["member"]["id"] == m["id"]


def test_block_and_unblock_a_card(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant)
    number = m["cards"][0]["number"]
    got = ok(client.post(f"/v1/cards/{number}/block", headers=merchant.headers("pos")))
    assert got["status"] == "blocked"
    r = client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": number})
    assert_problem(r, 409, "card_blocked")
    assert_problem(
        client.get(f"/v1/cards/{number}/qr", headers=merchant.headers("pos")), 409, "card_blocked"
    )
    got = ok(client.post(f"/v1/cards/{number}/unblock", headers=merchant.headers()))
    assert got["status"] == "active"
    ok(client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": number}))


def test_blocking_an_unbound_card_is_409(client: TestClient, merchant: Merchant) -> None:
    _batch(client, merchant, "b", [card(900)])
    r = client.post(f"/v1/cards/{card(900)}/block", headers=merchant.headers("pos"))
    assert_problem(r, 409, "card_unbound")


# ---- replace -------------------------------------------------------------------------------
def test_replace_with_a_virtual_card_keeps_balance_and_history(
    client: TestClient, merchant: Merchant
) -> None:
    m = enrol(client, merchant)
    old = m["cards"][0]["number"]
    accrue(client, merchant, m["id"], 250)
    new = ok(client.post(f"/v1/cards/{old}/replace", headers=merchant.headers("pos"), json={}), 201)
    assert new["kind"] == "virtual"
    assert new["member_id"] == m["id"]
    assert new["number"] != old
    lost = ok(client.get(f"/v1/cards/{old}", headers=merchant.headers()))
    assert lost["status"] == "lost"
    assert lost["replaced_by_id"] == new["id"]
    found = ok(
        client.get(
            "/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": new["number"]}
        )
    )
    assert found["member"]["id"] == m["id"]
    assert balance(client, merchant, m["id"])["available"] == 250
    r = client.post(f"/v1/cards/{old}/replace", headers=merchant.headers("pos"), json={})
    assert_problem(r, 409, "card_already_replaced")
    r = client.post(f"/v1/cards/{old}/unblock", headers=merchant.headers())
    assert_problem(r, 409, "card_lost")
    r = client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params={"number": old})
    assert_problem(r, 409, "card_lost")


def test_replace_with_a_pre_printed_card(client: TestClient, merchant: Merchant) -> None:
    _batch(client, merchant, "b", [card(1100)])
    m = enrol(client, merchant)
    old = m["cards"][0]["number"]
    new = ok(
        client.post(
            f"/v1/cards/{old}/replace",
            headers=merchant.headers("pos"),
            json={"new_number": card(1100)},
        ),
        201,
    )
    assert new["number"] == card(1100)
    assert new["kind"] == "physical"
    assert new["status"] == "active"
    assert new["member_id"] == m["id"]


def test_replace_refusals(client: TestClient, merchant: Merchant, container: Container) -> None:
    _batch(client, merchant, "b", [card(1200)])
    m = enrol(client, merchant)
    old = m["cards"][0]["number"]
    before = writes(container.engine)
    h = merchant.headers("pos")
    assert_problem(
        client.post(f"/v1/cards/{card(1200)}/replace", headers=h, json={}), 409, "card_unbound"
    )
    assert_problem(
        client.post(f"/v1/cards/{old}/replace", headers=h, json={"new_number": card(1201)}),
        404,
        "card_not_found",
    )
    assert_problem(
        client.post(
            f"/v1/cards/{old}/replace", headers=h, json={"new_number": bad_check_digit(card(1200))}
        ),
        422,
        "validation_failed",
    )
    assert writes(container.engine) == before
    assert ok(client.get(f"/v1/cards/{old}", headers=h))["status"] == "active"


# ---- QR tokens -----------------------------------------------------------------------------
def test_qr_token_works_only_in_its_time_window(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    m = enrol(client, merchant)
    number = m["cards"][0]["number"]
    h = merchant.headers("pos")
    qr = ok(client.get(f"/v1/cards/{number}/qr", headers=h))
    assert qr["card_number"] == number
    assert 0 < qr["valid_for_seconds"] <= 60
    token = qr["token"]

    def lookup() -> int:
        status: int = client.get("/v1/cards/lookup", headers=h, params={"qr": token}).status_code
        return status

    assert lookup() == 200
    clock.advance(seconds=60)  # the next window: the previous one is still forgiven
    assert lookup() == 200
    clock.advance(seconds=60)  # two windows later: a screenshot no longer works
    r = client.get("/v1/cards/lookup", headers=h, params={"qr": token})
    assert_problem(r, 422, "invalid_qr_token")
    fresh = ok(client.get(f"/v1/cards/{number}/qr", headers=h))["token"]
    assert fresh != token
    assert (
        ok(client.get("/v1/cards/lookup", headers=h, params={"qr": fresh}))["member"]["id"]
        == m["id"]
    )


def test_a_tampered_qr_token_is_refused(client: TestClient, merchant: Merchant) -> None:
    a = enrol(client, merchant)
    b = enrol(client, merchant)
    token = ok(
        client.get(f"/v1/cards/{a['cards'][0]['number']}/qr", headers=merchant.headers("pos"))
    )["token"]
    _, window, signature = token.split(".")
    forged = f"{b['cards'][0]['number']}.{window}.{signature}"
    r = client.get("/v1/cards/lookup", headers=merchant.headers("pos"), params={"qr": forged})
    assert_problem(r, 422, "invalid_qr_token")


def test_qr_window_follows_the_tenant_setting(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    ok(client.patch("/v1/tenant", headers=merchant.headers(), json={"qr_window_seconds": 600}))
    m = enrol(client, merchant)
    h = merchant.headers("pos")
    token = ok(client.get(f"/v1/cards/{m['cards'][0]['number']}/qr", headers=h))["token"]
    clock.advance(timedelta(seconds=900))
    ok(client.get("/v1/cards/lookup", headers=h, params={"qr": token}))
    clock.advance(timedelta(seconds=600))
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"qr": token}), 422, "invalid_qr_token"
    )
