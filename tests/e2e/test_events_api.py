"""Member events over HTTP (record, replay, caps, coupons, unknown names, lists), the welcome
bonus at enrolment, and the birthday multiplier and discount at the till. Every test runs on
SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import assert_problem, balance, count, enrol, error_paths, ok, writes

REVIEW = {
    "name": "review_left",
    "label": {"ru": "Отзыв о покупке", "en": "Review left"},
    "points": 50,
    "caps": {"day": 1, "week": 2, "month": 3, "lifetime": 4},
}
APP = {
    "name": "app_installed",
    "coupon": {"benefit": {"discount_percent": 15}, "valid_days": 10, "min_basket": 50000},
}
SURVEY = {"name": "survey_answered"}


def publish(client: TestClient, m: Merchant, document: dict[str, Any], code: str = "main") -> None:
    ok(client.put(f"/v1/programs/{code}", headers=m.headers(), json={"document": document}))


def program(**sections: Any) -> dict[str, Any]:
    return {"type": "bonus", "rules": [{"id": "base", "effects": [{"points_percent": 5}]}]} | (
        sections
    )


def post_event(
    client: TestClient, m: Merchant, member_id: str, role: str = "pos", **body: Any
) -> dict[str, Any]:
    result: dict[str, Any] = ok(
        client.post(f"/v1/members/{member_id}/events", headers=m.headers(role), json=body), 201
    )
    return result


def test_an_event_earns_points_with_a_plain_history_line(
    client: TestClient, merchant: Merchant, container: Container, clock: FakeClock
) -> None:
    publish(client, merchant, program(events=[REVIEW, APP, SURVEY]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    answer = post_event(
        client,
        merchant,
        member,
        event_id="rev-1",
        name="review_left",
        properties={"stars": 5, "product": "LATTE"},
    )
    assert answer["event_id"] == "rev-1"
    assert answer["member_id"] == member
    assert answer["properties"] == {"stars": 5, "product": "LATTE"}
    assert answer["occurred_at"] == answer["recorded_at"]
    assert answer["program"] == "main"
    assert answer["capped"] is None
    reward = answer["reward"]
    assert reward["points"] == 50
    assert reward["coupon"] is None
    assert reward["description"] == {
        "ru": "Отзыв о покупке: 50 баллов",
        "en": "Review left: 50 points",
    }
    assert balance(client, merchant, member)["available"] == 50
    [line] = ok(client.get(f"/v1/members/{member}/ledger", headers=merchant.headers("readonly")))[
        "items"
    ]
    assert line["id"] == reward["transaction_id"]
    assert line["kind"] == "bonus"
    assert line["description"] == reward["description"]


def test_the_same_event_id_replays_and_another_body_is_refused(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    publish(client, merchant, program(events=[REVIEW]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    body: dict[str, Any] = {"event_id": "rev-1", "name": "review_left", "properties": {"stars": 4}}
    first = post_event(client, merchant, member, **body)
    other_member = enrol(client, merchant, phone="+79161234568")["id"]
    before = writes(container.engine)
    assert post_event(client, merchant, member, **body) == first
    assert post_event(client, merchant, member, role="admin", **body) == first
    for other in (
        {**body, "properties": {"stars": 1}},
        {**body, "occurred_at": "2026-01-14T10:00:00Z"},
        {**body, "name": "survey_answered"},
    ):
        r = client.post(f"/v1/members/{member}/events", headers=merchant.headers("pos"), json=other)
        assert_problem(r, 409, "event_id_reused")
    r = client.post(f"/v1/members/{other_member}/events", headers=merchant.headers(), json=body)
    assert_problem(r, 409, "event_id_reused")
    assert writes(container.engine) == before
    assert balance(client, merchant, member)["available"] == 50


def test_caps_per_day_week_month_and_lifetime(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    """The clock starts on Thursday 15 January 2026, 12:00 in Moscow."""
    publish(client, merchant, program(events=[REVIEW]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    plan = [
        (datetime(2026, 1, 15, 9, 0, tzinfo=UTC), None),
        (datetime(2026, 1, 15, 20, 59, tzinfo=UTC), "day"),  # 23:59 Moscow, same day
        (datetime(2026, 1, 15, 21, 0, tzinfo=UTC), None),  # Friday 00:00 Moscow
        (datetime(2026, 1, 17, 9, 0, tzinfo=UTC), "week"),  # Saturday: 2 this week
        (datetime(2026, 1, 19, 9, 0, tzinfo=UTC), None),  # Monday: a new week
        (datetime(2026, 1, 20, 9, 0, tzinfo=UTC), "month"),  # 3 in January
        (datetime(2026, 2, 2, 9, 0, tzinfo=UTC), None),  # February: the 4th ever
        (datetime(2026, 2, 10, 9, 0, tzinfo=UTC), "lifetime"),
    ]
    for i, (moment, capped) in enumerate(plan):
        clock.set(moment)
        answer = post_event(client, merchant, member, event_id=f"r{i}", name="review_left")
        assert answer["capped"] == capped, (i, answer)
        assert (answer["reward"] is None) == (capped is not None)
    assert balance(client, merchant, member)["available"] == 4 * 50
    listed = ok(client.get(f"/v1/members/{member}/events", headers=merchant.headers("readonly")))
    assert [e["capped"] for e in listed["items"]] == [c for _, c in reversed(plan)]


def test_a_coupon_for_an_event_and_an_event_that_only_records(
    client: TestClient, merchant: Merchant, container: Container, clock: FakeClock
) -> None:
    publish(client, merchant, program(events=[REVIEW, APP, SURVEY]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    answer = post_event(client, merchant, member, event_id="app-1", name="app_installed")
    coupon = answer["reward"]["coupon"]
    assert coupon["benefit"] == {"discount_percent": 15}
    assert coupon["min_basket"] == 50000
    assert datetime.fromisoformat(coupon["valid_until"]) == clock.now() + timedelta(days=10)
    assert answer["reward"]["points"] == 0
    assert answer["reward"]["transaction_id"] is None
    assert answer["reward"]["description"] == {
        "ru": "Купон: скидка 15%, действует до 2026-01-25 включительно",
        "en": "Coupon: 15% off, valid through 2026-01-25",
    }
    assert count(container.engine, "coupons", merchant.tenant_id) == 1
    survey = post_event(client, merchant, member, event_id="s-1", name="survey_answered")
    assert (survey["reward"], survey["capped"]) == (None, None)
    assert balance(client, merchant, member)["available"] == 0


def test_an_unknown_event_lists_the_declared_ones(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    member = enrol(client, merchant, phone="+79161234567")["id"]
    url, h = f"/v1/members/{member}/events", merchant.headers("pos")
    before = writes(container.engine)
    body = assert_problem(
        client.post(url, headers=h, json={"event_id": "x1", "name": "review_left"}),
        422,
        "unknown_event",
    )
    assert body["declared_events"] == []
    publish(client, merchant, program(events=[REVIEW, SURVEY]))
    publish(client, merchant, program(events=[APP]), code="extra")
    before = writes(container.engine)
    body = assert_problem(
        client.post(url, headers=h, json={"event_id": "x2", "name": "sociall_share"}),
        422,
        "unknown_event",
    )
    assert body["declared_events"] == ["app_installed", "review_left", "survey_answered"]
    assert "app_installed, review_left, survey_answered" in body["detail"]
    assert error_paths(body) == [["name"]]
    assert writes(container.engine) == before
    # Both programs' events are accepted.
    post_event(client, merchant, member, event_id="x3", name="app_installed")
    post_event(client, merchant, member, event_id="x4", name="review_left")


def test_events_are_refused_for_blocked_members_and_bad_bodies(
    client: TestClient, merchant: Merchant, container: Container, clock: FakeClock
) -> None:
    publish(client, merchant, program(events=[REVIEW]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    url, h = f"/v1/members/{member}/events", merchant.headers()
    ok(client.post(f"/v1/members/{member}/block", headers=h, json={}))
    before = writes(container.engine)
    event = {"event_id": "e1", "name": "review_left"}
    assert_problem(client.post(url, headers=h, json=event), 422, "member_blocked")
    future = (clock.now() + timedelta(hours=1)).isoformat()
    body = assert_problem(
        client.post(url, headers=h, json={**event, "occurred_at": future}),
        422,
        "occurred_in_future",
    )
    assert error_paths(body) == [["occurred_at"]]
    body = assert_problem(
        client.post(url, headers=h, json={**event, "properties": {"text": "x" * 20_000}}),
        422,
        "properties_too_large",
    )
    assert error_paths(body) == [["properties"]]
    bad: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"name": "review_left"}, ["body", "event_id"]),
        ({"event_id": "", "name": "review_left"}, ["body", "event_id"]),
        ({"event_id": "e" * 129, "name": "review_left"}, ["body", "event_id"]),
        ({"event_id": "e1"}, ["body", "name"]),
        ({**event, "properties": ["a"]}, ["body", "properties"]),
        ({**event, "properties": {str(i): i for i in range(51)}}, ["body", "properties"]),
        ({**event, "occurred_at": "2026-01-14T10:00:00"}, ["body", "occurred_at"]),
        ({**event, "occurred_at": "9999-12-31T23:59:59-05:00"}, ["body", "occurred_at"]),
        ({**event, "event_id": 17}, ["body", "event_id"]),
    ]
    for payload, path in bad:
        body = assert_problem(client.post(url, headers=h, json=payload), 422, "validation_failed")
        assert any(p[: len(path)] == path for p in error_paths(body)), (payload, body)
    assert writes(container.engine) == before


def test_a_past_event_is_judged_by_the_program_then_in_force(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    publish(client, merchant, program(events=[SURVEY]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    earlier = clock.now().isoformat()
    clock.advance(days=1)
    publish(client, merchant, program(events=[REVIEW]))
    answer = post_event(
        client, merchant, member, event_id="old", name="survey_answered", occurred_at=earlier
    )
    assert answer["occurred_at"] == earlier.replace("+00:00", "Z")
    r = client.post(
        f"/v1/members/{member}/events",
        headers=merchant.headers(),
        json={"event_id": "new", "name": "survey_answered"},
    )
    assert assert_problem(r, 422, "unknown_event")["declared_events"] == ["review_left"]


def test_listing_events_page_by_page(client: TestClient, merchant: Merchant) -> None:
    publish(client, merchant, program(events=[REVIEW, SURVEY]))
    member = enrol(client, merchant, phone="+79161234567")["id"]
    for i in range(5):
        post_event(client, merchant, member, event_id=f"s{i}", name="survey_answered")
    post_event(client, merchant, member, event_id="r0", name="review_left")
    url, h = f"/v1/members/{member}/events", merchant.headers("readonly")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = ok(client.get(url, headers=h, params=params))
        seen += [e["event_id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["r0", "s4", "s3", "s2", "s1", "s0"]
    named = ok(client.get(url, headers=h, params={"name": "review_left"}))["items"]
    assert [e["event_id"] for e in named] == ["r0"]
    assert_problem(client.get(url, headers=h, params={"cursor": "x"}), 422, "invalid_cursor")
    assert ["query", "limit"] in error_paths(
        assert_problem(client.get(url, headers=h, params={"limit": 201}), 422)
    )


# ---- welcome over HTTP ---------------------------------------------------------------------
def test_enrolment_gives_the_welcome_bonus(client: TestClient, merchant: Merchant) -> None:
    publish(
        client,
        merchant,
        program(lifecycle={"welcome": {"points": 100, "require_complete_profile": ["email"]}}),
    )
    member = enrol(client, merchant, phone="+79161234567")["id"]
    assert balance(client, merchant, member)["available"] == 0
    h = merchant.headers("pos", **{"Idempotency-Key": "p-1"})
    ok(client.patch(f"/v1/members/{member}", headers=h, json={"email": "a@example.com"}))
    ok(client.patch(f"/v1/members/{member}", headers=h, json={"email": "a@example.com"}))
    assert balance(client, merchant, member)["available"] == 100
    [line] = ok(client.get(f"/v1/members/{member}/ledger", headers=merchant.headers()))["items"]
    assert line["description"]["ru"] == "Приветственный бонус: 100 баллов"


# ---- the birthday multiplier and discount at the till --------------------------------------
BIRTHDAY_RULES = program(
    rules=[
        {"id": "base", "effects": [{"points_percent": 5}]},
        {
            "id": "birthday-x2",
            "when": {"birthday_window": {"days": 3}},
            "effects": [{"points_multiplier": 2}],
        },
        {
            "id": "birthday-10",
            "when": {"birthday_window": {"days": 3}},
            "effects": [{"discount_percent": 10}],
        },
    ]
)
LINE = {"sku": "LATTE", "qty": 1, "price": 20000}


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        # 29 February is celebrated on 28 February in 2026: the window is 25 Feb - 3 Mar.
        (datetime(2026, 2, 24, 20, 59, tzinfo=UTC), False),  # 23:59 on the 24th, Moscow
        (datetime(2026, 2, 24, 21, 0, tzinfo=UTC), True),  # 00:00 on the 25th, Moscow
        (datetime(2026, 2, 28, 9, 0, tzinfo=UTC), True),
        (datetime(2026, 3, 3, 20, 59, tzinfo=UTC), True),
        (datetime(2026, 3, 3, 21, 0, tzinfo=UTC), False),  # 4 March in Moscow
    ],
)
def test_birthday_multiplier_and_discount_around_29_february(
    client: TestClient, merchant: Merchant, clock: FakeClock, moment: datetime, inside: bool
) -> None:
    clock.set(datetime(2026, 1, 15, 9, 0, tzinfo=UTC))
    publish(client, merchant, BIRTHDAY_RULES)
    member = enrol(client, merchant, phone="+79161234567", birthday="2000-02-29")["id"]
    clock.set(moment)
    body = {"member": {"id": member}, "lines": [LINE]}
    calc = ok(client.post("/v1/purchases/calculate", headers=merchant.headers("pos"), json=body))
    applied = {a["rule_id"] for a in calc["applied"]}
    assert ({"birthday-x2", "birthday-10"} <= applied) == inside
    # 10% off 200.00, then 5% of what is paid in points, doubled: 18 points; else 10.
    assert calc["totals"]["discount"] == (2000 if inside else 0)
    assert calc["totals"]["points_earned"] == (18 if inside else 10)
    confirmed = ok(
        client.post(
            "/v1/purchases",
            headers=merchant.headers("pos"),
            json={**body, "receipt_number": "R-1"},
        ),
        201,
    )
    assert confirmed["totals"] == calc["totals"]
