"""Bad input never answers 500: malformed JSON, wrong types, huge numbers, unknown fields,
bad phones, dates, card numbers, ids, cursors and page sizes answer 4xx with field paths,
and a refused write writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopilka.api.middleware import MAX_BODY_BYTES
from kopilka.api.strict_json import StrictJsonRoute
from tests.conftest import Merchant
from tests.e2e.helpers import (
    Pair,
    World,
    assert_problem,
    bad_check_digit,
    card,
    enrol,
    error_paths,
    ok,
    writes,
)
from tests.e2e.routes import LINES, ROUTES, path_params, sample_url

WITH_BODY = sorted(op for op, r in ROUTES.items() if r.body is not None)
UUID_PARAMS = {"member_id", "hold_id", "transaction_id", "api_key_id", "receipt_id"}
WITH_UUID = sorted(op for op, r in ROUTES.items() if UUID_PARAMS & set(path_params(r.path)))
PAGED = ["listMembers", "getMemberLedger", "listMemberPurchases", "listProducts"]


def _url(operation: str, w: World | None = None) -> str:
    route = ROUTES[operation]
    if w is None:
        return sample_url(route)
    values = {
        "member_id": w.member_id,
        "hold_id": w.hold_id,
        "receipt_id": w.receipt_id,
        "transaction_id": w.transaction_id,
        "api_key_id": w.api_key_id,
        "number": w.card_number,
        "code": w.program_code,
        **w.extra,
    }
    return route.path.format(**{p: values[p] for p in path_params(route.path)})


# ---- unparsable bodies ---------------------------------------------------------------------
# What Python's json module would take but JSON (and the database) cannot hold: NaN and the
# infinities, a number beyond a double's range, nesting past the parser's recursion limit,
# an integer of more digits than Python converts.
NOT_JSON = (
    b'{"points": NaN}',
    b'{"attributes": {"x": Infinity}}',
    b'{"attributes": {"x": -Infinity}}',
    b'{"attributes": {"x": 1e400}}',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"points": ' + b"9" * 5_000 + b"}",
)


@pytest.mark.parametrize("operation", ["enrollMember", "upsertProducts", "calculatePurchase"])
def test_a_body_over_16_mb_is_413_and_writes_nothing(pair: Pair, operation: str) -> None:
    route, client, merchant = ROUTES[operation], pair.client, pair.a.merchant
    before = writes(pair.engine)
    huge = b'{"name": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    r = client.request(
        route.method,
        sample_url(route),
        headers=merchant.headers(**{"Content-Type": "application/json"}),
        content=huge,
    )
    assert_problem(r, 413, "body_too_large")
    assert writes(pair.engine) == before


def test_every_route_parses_its_body_as_strict_json(client: TestClient) -> None:
    """The routers' route class (kopilka.api.strict_json) is on every route with a body."""
    routes: list[APIRoute] = []
    pending = list(client.app.routes)  # type: ignore[attr-defined]
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute):
            routes.append(route)
        elif hasattr(route, "original_router"):  # an included router (FastAPI 0.16x)
            pending.extend(route.original_router.routes)
    assert len(routes) > 50
    assert [r.path for r in routes if r.body_field and not isinstance(r, StrictJsonRoute)] == []


@pytest.mark.parametrize("operation", WITH_BODY)
def test_malformed_json_is_400_everywhere(pair: Pair, operation: str) -> None:
    route, client, merchant = ROUTES[operation], pair.client, pair.a.merchant
    before = writes(pair.engine)
    h = merchant.headers(**{"Content-Type": "application/json"})
    for raw in (b'{"points": ', b"{'single': 'quotes'}", b"\xff\xfe{}", *NOT_JSON, b""):
        r = client.request(route.method, sample_url(route), headers=h, content=raw)
        if raw:
            assert_problem(r, 400, "malformed_json")
        else:  # no body: "required" (422), or unparsable where the route parses it itself
            assert_problem(r, r.status_code)
            assert r.status_code in (400, 422)
    if operation != "validateProgram":  # which reports document errors in a 200 answer
        r = client.request(route.method, sample_url(route), headers=merchant.headers(), json=[1])
        assert_problem(r, 422)
    assert writes(pair.engine) == before


@pytest.mark.parametrize("operation", sorted(set(WITH_BODY) - {"validateProgram"}))
def test_unknown_fields_are_refused_with_their_path(pair: Pair, operation: str) -> None:
    """(validateProgram reports document errors in a 200 answer by design.)"""
    route, client, world = ROUTES[operation], pair.client, pair.a
    assert route.body is not None
    before = writes(pair.engine)
    r = client.request(
        route.method,
        _url(operation, world),
        headers=world.merchant.headers(),
        json={**route.body, "surprise": 1},
    )
    body = assert_problem(r, 422)
    assert any(
        e["path"][-1] == "surprise" and e["code"] == "unknown_field" for e in body["errors"]
    ), body
    assert writes(pair.engine) == before


# ---- numbers and types ---------------------------------------------------------------------
HUGE = 10**30
NUMBERS: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("accruePoints", {"points": HUGE}, ["body", "points"]),
    ("accruePoints", {"points": 5, "pending_days": HUGE}, ["body", "pending_days"]),
    ("redeemPoints", {"points": HUGE}, ["body", "points"]),
    ("adjustPoints", {"points": -HUGE, "reason": "r"}, ["body", "points"]),
    ("holdPoints", {"points": 1, "ttl_seconds": HUGE}, ["body", "ttl_seconds"]),
    ("captureHold", {"points": HUGE}, ["body", "points"]),
    ("reverseTransaction", {"points": HUGE}, ["body", "points"]),
    ("registerCardBatch", {"name": "n", "first_number": card(1), "count": HUGE}, ["body", "count"]),
    ("updateTenant", {"hold_ttl_seconds": HUGE}, ["body", "hold_ttl_seconds"]),
    (
        "upsertProducts",
        {"products": [{"sku": "s", "price": HUGE}]},
        ["body", "products", 0, "price"],
    ),
    (
        "calculatePurchase",
        {"outlet": "OUT-1", "lines": [{"sku": "s", "qty": 1, "price": HUGE}]},
        ["body", "lines", 0, "price"],
    ),
    (
        "calculatePurchase",
        {"outlet": "OUT-1", "lines": [{"sku": "s", "qty": HUGE, "price": 1}]},
        ["body", "lines", 0, "qty"],
    ),
    (
        "calculatePurchase",
        {"outlet": "OUT-1", "redeem_points": HUGE, "lines": [{"sku": "s", "qty": 1, "price": 1}]},
        ["body", "redeem_points"],
    ),
    ("accruePoints", {"points": "10"}, ["body", "points"]),
    ("accruePoints", {"points": 10.5}, ["body", "points"]),
    ("accruePoints", {"points": True}, ["body", "points"]),
    ("accruePoints", {"points": None}, ["body", "points"]),
    ("accruePoints", {}, ["body", "points"]),
    ("enrollMember", {"phone": 79161234567}, ["body", "phone"]),
    ("enrollMember", {"attributes": ["a"]}, ["body", "attributes"]),
    ("enrollMember", {"consents": {"newsletter": True}}, ["body", "consents", "newsletter"]),
    ("enrollMember", {"issue_virtual_card": "maybe"}, ["body", "issue_virtual_card"]),
    ("enrollMember", {"name": "x" * 201}, ["body", "name"]),
    ("enrollMember", {"email": "a@" + "b" * 320 + ".ru"}, ["body", "email"]),
    ("enrollMember", {"external_id": ""}, ["body", "external_id"]),
    ("mergeMembers", {"duplicate_id": "not-a-uuid"}, ["body", "duplicate_id"]),
    # Counts of days and seconds are JSON integers: true was 1 day, "30" and 30.0 were 30
    # (found by tests/e2e/test_api_fuzz.py).
    ("updateTenant", {"backdate_days": True}, ["body", "backdate_days"]),
    ("updateTenant", {"pending_days": "30"}, ["body", "pending_days"]),
    ("updateTenant", {"hold_ttl_seconds": 600.0}, ["body", "hold_ttl_seconds"]),
    ("updateTenant", {"qr_window_seconds": "60"}, ["body", "qr_window_seconds"]),
    ("accruePoints", {"points": 5, "pending_days": True}, ["body", "pending_days"]),
    ("holdPoints", {"points": 1, "ttl_seconds": "60"}, ["body", "ttl_seconds"]),
    (
        "confirmPurchase",
        {"receipt_number": "R-9", "hold": True, "hold_ttl_seconds": "60", "lines": LINES},
        ["body", "hold_ttl_seconds"],
    ),
    (
        "refundPurchase",
        {"lines": [{"line": True, "qty": 1}]},
        ["body", "lines", 0, "line"],
    ),
    ("bindCard", {"member_id": 12}, ["body", "member_id"]),
    # Flags are JSON true or false: lax validation took "yes", "0", 1 and 1.0 for them.
    ("updateTenant", {"allow_debt": "yes"}, ["body", "allow_debt"]),
    ("updateTenant", {"allow_debt": 1}, ["body", "allow_debt"]),
    ("enrollMember", {"issue_virtual_card": "0"}, ["body", "issue_virtual_card"]),
    ("enrollMember", {"consents": {"marketing_sms": 1.0}}, ["body", "consents"]),
    (
        "enrollMember",
        {"consents": {"marketing_sms": {"granted": "true"}}},
        ["body", "consents"],
    ),
    ("upsertProducts", {"products": [{"sku": "S1", "no_points": "1"}]}, ["body", "products", 0]),
    (
        "confirmPurchase",
        {"receipt_number": "R-9", "hold": "true", "lines": LINES},
        ["body", "hold"],
    ),
]


@pytest.mark.parametrize(
    ("operation", "payload", "path"),
    NUMBERS,
    ids=[f"{op}-{'.'.join(map(str, p[1:]))}" for op, _, p in NUMBERS],
)
def test_wrong_types_and_huge_numbers_are_422_with_the_field_path(
    pair: Pair,
    operation: str,
    payload: dict[str, Any],
    path: list[str | int],
) -> None:
    route, client, world = ROUTES[operation], pair.client, pair.a
    before = writes(pair.engine)
    r = client.request(
        route.method, _url(operation, world), headers=world.merchant.headers(), json=payload
    )
    body = assert_problem(r, 422, "validation_failed")
    # Pydantic adds union members and "[key]" after the field; the field comes first.
    assert any(p[: len(path)] == path for p in error_paths(body)), body
    assert writes(pair.engine) == before


# ---- phones, dates, card numbers -----------------------------------------------------------
@pytest.mark.parametrize(
    "phone",
    ["abc", "+1", "8916", "+7916123456789012", "+7 000 000-00-00", "٨٩١٦", "8 (916) 123-45-6"],
)
def test_bad_phones(pair: Pair, phone: str) -> None:
    before = writes(pair.engine)
    r = pair.client.post(
        "/v1/members", headers=pair.a.merchant.headers("pos"), json={"phone": phone}
    )
    body = assert_problem(r, 422, "validation_failed")
    assert body["errors"] == [
        {"path": ["phone"], "message": body["errors"][0]["message"], "code": "invalid_phone"}
    ]
    assert writes(pair.engine) == before


@pytest.mark.parametrize(
    "birthday",
    [
        "1990-13-01",
        "1990-02-30",
        "1990-00-10",
        "2030-01-01",
        "2026-01-16",
        "1899-12-31",
        "17.05.1990",
        "--13-01",
        "--02-30",
        "1990-1-1",
        "yesterday",
    ],
)
def test_bad_birthdays(pair: Pair, birthday: str) -> None:
    before = writes(pair.engine)
    r = pair.client.post(
        "/v1/members", headers=pair.a.merchant.headers("pos"), json={"birthday": birthday}
    )
    body = assert_problem(r, 422, "validation_failed")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [(["birthday"], "invalid_birthday")]
    assert writes(pair.engine) == before


def test_birthday_today_and_leap_day_are_fine(client: TestClient, merchant: Merchant) -> None:
    assert enrol(client, merchant, birthday="2026-01-15")["birthday"] == "2026-01-15"
    assert enrol(client, merchant, birthday="2000-02-29")["birthday"] == "2000-02-29"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("available_at", "9999-12-31T23:59:59-05:00"),
        ("available_at", "0001-01-01T00:00:00+05:00"),
        ("expires_at", "9999-12-31T23:59:59Z"),
        ("expires_at", "2026-02-30T00:00:00Z"),
        ("expires_at", "tomorrow"),
        ("expires_at", "2026-02-01T00:00:00"),
    ],
)
def test_bad_moments(pair: Pair, field: str, value: str) -> None:
    before = writes(pair.engine)
    r = pair.client.post(
        f"/v1/members/{pair.a.member_id}/accruals",
        headers=pair.a.merchant.headers(),
        json={"points": 5, field: value},
    )
    assert ["body", field] in error_paths(assert_problem(r, 422, "validation_failed"))
    assert writes(pair.engine) == before


@pytest.mark.parametrize(
    ("operation", "payload", "path"),
    [
        ("publishProgram", {"starts_at": "9999-12-31T23:59:59-05:00"}, "starts_at"),
        ("calculatePurchase", {"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at"),
        (
            "enrollMember",
            {"consents": {"marketing_sms": {"granted": True, "at": "0001-01-01T00:00:00+05:00"}}},
            "at",
        ),
    ],
)
def test_out_of_range_moments_elsewhere(
    pair: Pair,
    operation: str,
    payload: dict[str, Any],
    path: str,
) -> None:
    route = ROUTES[operation]
    before = writes(pair.engine)
    r = pair.client.request(
        route.method,
        sample_url(route),
        headers=pair.a.merchant.headers(),
        json={**(route.body or {}), **payload},
    )
    body = assert_problem(r, 422)
    assert any(path in e["path"] for e in body["errors"]), body
    assert writes(pair.engine) == before


@pytest.mark.parametrize(
    ("operation", "payload", "path"),
    [
        ("accruePoints", {"points": 5, "expires_at": 1_900_000_000}, ["body", "expires_at"]),
        ("accruePoints", {"points": 5, "available_at": "1900000000"}, ["body", "available_at"]),
        ("calculatePurchase", {"occurred_at": 0}, ["body", "occurred_at"]),
        ("publishProgram", {"starts_at": 0.0}, ["starts_at"]),
        ("createPromoCode", {"valid_until": 1_900_000_000}, ["body", "valid_until"]),
        ("createCampaign", {"schedule": {"start": 0, "end": 1}}, ["body", "schedule", "start"]),
        ("createDraw", {"starts_on": 0}, ["body", "starts_on"]),
        ("setMemberTier", {"locked_until": "0"}, ["body", "locked_until"]),
    ],
)
def test_moments_and_days_are_iso_text_not_seconds_since_1970(
    pair: Pair, operation: str, payload: dict[str, Any], path: list[str]
) -> None:
    """A number (or text of digits) is not taken for seconds since 1970 (it was: 0 became
    1970-01-01); the document promises ISO 8601 text. Found by tests/e2e/test_api_fuzz.py."""
    route = ROUTES[operation]
    before = writes(pair.engine)
    r = pair.client.request(
        route.method,
        _url(operation, pair.a),
        headers=pair.a.merchant.headers(),
        json={**(route.body or {}), **payload},
    )
    body = assert_problem(r, 422, "validation_failed")
    assert any(p[: len(path)] == path for p in error_paths(body)), body
    assert writes(pair.engine) == before


@pytest.mark.parametrize("value", ["0", "0.0", "1700000000"])
def test_a_report_window_in_seconds_is_refused(pair: Pair, value: str) -> None:
    """``?from=0`` was 1970-01-01 (found by tests/e2e/test_api_fuzz.py)."""
    club = pair.a.extra["club_code"]
    for name in ("from", "to"):
        r = pair.client.get(
            f"/v1/clubs/{club}/report", headers=pair.a.merchant.headers(), params={name: value}
        )
        assert ["query", name] in error_paths(assert_problem(r, 422, "validation_failed"))
    ok(
        pair.client.get(
            f"/v1/clubs/{club}/report",
            headers=pair.a.merchant.headers(),
            params={"from": "2026-01-01T00:00:00Z"},
        )
    )


def test_bad_check_digits(pair: Pair) -> None:
    client, world = pair.client, pair.a
    h = world.merchant.headers()
    wrong = bad_check_digit(world.card_number)
    before = writes(pair.engine)
    calls = [
        ("POST", "/v1/members", {"card": bad_check_digit(card(77))}, ["card"]),
        ("GET", f"/v1/cards/{wrong}", None, ["number"]),
        ("GET", f"/v1/cards/{wrong}/qr", None, ["number"]),
        ("POST", f"/v1/cards/{wrong}/block", None, ["number"]),
        (
            "POST",
            f"/v1/cards/{bad_check_digit(world.spare_card)}/bind",
            {"member_id": world.other_member_id},
            ["card"],
        ),
        (
            "POST",
            f"/v1/cards/{world.card_number}/replace",
            {"new_number": bad_check_digit(world.spare_card)},
            ["card"],
        ),
        (
            "POST",
            "/v1/card-batches",
            {"name": "x", "first_number": wrong, "count": 2},
            ["first_number"],
        ),
    ]
    for method, url, payload, path in calls:
        body = assert_problem(client.request(method, url, headers=h, json=payload), 422)
        assert path in error_paths(body), (url, body)
    assert_problem(
        client.get("/v1/cards/lookup", headers=h, params={"number": wrong}),
        422,
        "invalid_card_number",
    )
    assert writes(pair.engine) == before


# ---- ids, cursors, page sizes --------------------------------------------------------------
@pytest.mark.parametrize("operation", WITH_UUID)
def test_bad_uuids_in_paths(pair: Pair, operation: str) -> None:
    route = ROUTES[operation]
    [param] = [p for p in path_params(route.path) if p in UUID_PARAMS]
    before = writes(pair.engine)
    for bad in ("not-a-uuid", "1", "0190000-0000-7000-8000-00000000000g", "' OR 1=1 --"):
        r = pair.client.request(
            route.method,
            route.path.replace("{" + param + "}", bad),
            headers=pair.a.merchant.headers(),
            json=route.body,
        )
        body = assert_problem(r, 422, "validation_failed")
        assert ["path", param] in error_paths(body)
    assert writes(pair.engine) == before


@pytest.mark.parametrize("operation", PAGED)
def test_page_size_is_capped(pair: Pair, operation: str) -> None:
    client, world = pair.client, pair.a
    url = _url(operation, world)
    h = world.merchant.headers()
    ok(client.get(url, headers=h, params={"limit": 200}))
    for limit in ("201", "0", "-1", str(HUGE), "ten", "1.5"):
        body = assert_problem(client.get(url, headers=h, params={"limit": limit}), 422)
        assert ["query", "limit"] in error_paths(body)


@pytest.mark.parametrize("operation", ["listMembers", "getMemberLedger", "listMemberPurchases"])
def test_bad_cursors(pair: Pair, operation: str) -> None:
    client, world = pair.client, pair.a
    url = _url(operation, world)
    for cursor in ("x", "not base64!", "AAAA", "A" * 30):
        body = assert_problem(
            client.get(url, headers=world.merchant.headers(), params={"cursor": cursor}),
            422,
            "invalid_cursor",
        )
        assert body["detail"]
    body = assert_problem(
        client.get(url, headers=world.merchant.headers(), params={"cursor": "A" * 65}), 422
    )
    assert ["query", "cursor"] in error_paths(body)


# ---- NUL characters (PostgreSQL cannot store them) -----------------------------------------
@pytest.mark.parametrize(
    ("method", "url", "payload", "params"),
    [
        ("POST", "/v1/members", {"name": "Ann\u0000a"}, None),
        ("POST", "/v1/members", {"attributes": {"k\u0000": 1}}, None),
        ("POST", "/v1/members", {"attributes": {"deep": [{"x": "\u0000"}]}}, None),
        ("PUT", "/v1/products", {"products": [{"sku": "A\u0000"}]}, None),
        (
            "PUT",
            "/v1/programs/main",
            {"document": {"type": "bonus", "name": "\u0000", "rules": []}},
            None,
        ),
        (
            "POST",
            "/v1/purchases",
            {
                "outlet": "OUT-1",
                "receipt_number": "R\u0000",
                "lines": [{"sku": "a", "qty": 1, "price": 1}],
            },
            None,
        ),
        ("GET", "/v1/members", None, {"external_id": "x\u0000"}),
        ("GET", "/v1/members", None, {"email": "a\u0000@b.ru"}),
        ("GET", "/v1/products", None, {"cursor": "\u0000"}),
        ("GET", "/v1/programs/a%00b", None, None),
    ],
)
def test_nul_characters_are_refused(
    pair: Pair,
    method: str,
    url: str,
    payload: dict[str, Any] | None,
    params: dict[str, str] | None,
) -> None:
    before = writes(pair.engine)
    r = pair.client.request(
        method, url, headers=pair.a.merchant.headers(), json=payload, params=params
    )
    body = assert_problem(r, 422, "validation_failed")
    assert {e["code"] for e in body["errors"]} == {"invalid_character"}
    assert writes(pair.engine) == before


def test_an_escaped_backslash_before_u0000_is_plain_text(
    client: TestClient, merchant: Merchant
) -> None:
    """``"\\\\u0000"`` in JSON is a backslash and the text u0000, not a NUL."""
    m = ok(
        client.post(
            "/v1/members",
            headers=merchant.headers(**{"Content-Type": "application/json"}),
            content=rb'{"name": "a\\u0000b"}',
        ),
        201,
    )
    assert m["name"] == "a\\u0000b"


# ---- fuzz ----------------------------------------------------------------------------------
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ENROL_KEYS = [
    "phone",
    "email",
    "name",
    "birthday",
    "external_id",
    "attributes",
    "consents",
    "card",
    "issue_virtual_card",
    "unknown",
]
PLAUSIBLE = {
    "phone": st.sampled_from(["+79161234567", "89161234567", "123", "", "+7 916 ١٢٣"]),
    "birthday": st.sampled_from(["1990-05-17", "--02-29", "1990-13-01", "2030-01-01", ""]),
    "card": st.sampled_from([card(5), bad_check_digit(card(5)), "1" * 32, "abc"]),
    "consents": st.dictionaries(
        st.sampled_from(["program_rules", "marketing_sms", "x"]),
        st.booleans() | st.fixed_dictionaries({"granted": st.booleans()}) | JSON,
        max_size=3,
    ),
}


@st.composite
def enrol_bodies(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(ENROL_KEYS), unique=True, max_size=6))
    return {k: draw(PLAUSIBLE[k] | JSON if k in PLAUSIBLE else JSON) for k in keys}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=enrol_bodies())
def test_fuzzed_enrolment_never_answers_500(
    client: TestClient, merchant: Merchant, body: dict[str, Any]
) -> None:
    r = client.post("/v1/members", headers=merchant.headers("pos"), json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == r.status_code


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operation=st.sampled_from(WITH_BODY), body=JSON)
def test_fuzzed_bodies_on_every_route_never_answer_500(
    client: TestClient, world: World, operation: str, body: Any
) -> None:
    route = ROUTES[operation]
    r = client.request(
        route.method, _url(operation, world), headers=world.merchant.headers(), json=body
    )
    assert r.status_code < 500, (operation, body, r.text)
