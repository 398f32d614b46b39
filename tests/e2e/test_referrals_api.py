"""Invite a friend over HTTP, on SQLite and PostgreSQL: the member's code, link and offer;
enrolment with a code (unknown, another tenant's, self-referral, bad fingerprints: clear 422s
that write nothing); the first purchase's rewards in the till's answer and the ledger, in ru
and en; a refund voiding them; the referees' list; bad referral sections of a document."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import Pair, assert_problem, balance, enrol, error_paths, ok, writes

PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "pending_days": 0,
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
    "referral": {
        "referrer": {"points": 500},
        "referee": {"points": 300, "label": {"ru": "Подарок новичку", "en": "Welcome gift"}},
        "trigger": "first_purchase",
        "min_purchase": 100_000,
        "pending_days": 14,
        "monthly_cap": 10,
        "share_url": "https://example.ru/join?ref={code}",
    },
}


def publish(client: TestClient, m: Merchant, document: dict[str, Any] = PROGRAM) -> None:
    ok(client.put("/v1/programs/main", headers=m.headers(), json={"document": document}))


def referral(client: TestClient, m: Merchant, member_id: str, role: str = "readonly") -> Any:
    return ok(client.get(f"/v1/members/{member_id}/referral", headers=m.headers(role)))


def buy(client: TestClient, m: Merchant, member_id: str, number: str, price: int) -> Any:
    return ok(
        client.post(
            "/v1/purchases",
            headers=m.headers("pos"),
            json={
                "member": {"id": member_id},
                "receipt_number": number,
                "lines": [{"sku": "TV", "qty": 1, "price": price}],
            },
        ),
        201,
    )


def test_invite_a_friend_then_a_refund_takes_the_rewards_back(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    publish(client, merchant)
    referrer = enrol(client, merchant, phone="+79161110000")
    mine = referral(client, merchant, referrer["id"])
    code = mine["code"]
    assert len(code) == 8
    assert mine["share_url"] == f"https://example.ru/join?ref={code}"
    assert mine["program"] == "main"
    assert mine["offer"] == {
        "ru": "Приведите друга: вы получите 500 баллов, друг — 300 баллов после первой покупки "
        "друга от 1\u00a0000\u00a0₽. Баллы станут доступны через 14 дней. "
        "Не больше 10 друзей в месяц.",
        "en": "Invite a friend: you get 500 points and your friend 300 points after your "
        "friend's first purchase of RUB 1,000 or more. The points become available after "
        "14 days. Up to 10 friends a month.",
    }
    assert mine["counts"]["referred"] == 0
    assert mine["referred_by"] is None

    friend = enrol(client, merchant, referral_code=code.lower(), fingerprints={"device": "d-1"})
    theirs = referral(client, merchant, friend["id"])
    assert theirs["referred_by"]["referrer_id"] == referrer["id"]
    assert theirs["referred_by"]["status"] == "awaiting_purchase"
    assert theirs["referred_by"]["explanation"]["en"] == "Waiting for the friend's first purchase"

    answer = buy(client, merchant, friend["id"], "R-1", 120_000)
    assert answer["referral"]["status"] == "pending"
    assert (answer["referral"]["referrer_points"], answer["referral"]["referee_points"]) == (
        500,
        300,
    )
    assert answer["referral"]["explanation"] == {
        "ru": "Бонус начислен и станет доступен 2026-01-29",
        "en": "Bonus granted; it becomes available on 2026-01-29",
    }
    assert balance(client, merchant, referrer["id"])["pending"] == 500
    history = ok(
        client.get(f"/v1/members/{referrer['id']}/ledger", headers=merchant.headers("readonly"))
    )["items"]
    assert history[0]["description"] == {
        "ru": "Бонус за приглашение друга: 500 баллов, станут доступны 2026-01-29",
        "en": "Referral bonus: 500 points, available from 2026-01-29",
    }
    gift = ok(
        client.get(f"/v1/members/{friend['id']}/ledger", headers=merchant.headers("readonly"))
    )["items"]
    assert "Подарок новичку: 300 баллов" in {e["description"]["ru"].split(",")[0] for e in gift}

    clock.advance(days=3)
    refund = ok(
        client.post(
            f"/v1/purchases/{answer['receipt']['id']}/refunds",
            headers=merchant.headers("pos"),
            json={"refund_number": "RF-1"},
        ),
        201,
    )
    assert refund["referral"]["status"] == "voided"
    assert refund["referral"]["explanation"]["en"] == (
        "The friend's first purchase was refunded, so the bonus was cancelled"
    )
    assert balance(client, merchant, referrer["id"])["pending"] == 0
    listed = ok(
        client.get(f"/v1/members/{referrer['id']}/referrals", headers=merchant.headers("readonly"))
    )
    [item] = listed["items"]
    assert (item["referee_id"], item["status"], item["reason"]) == (
        friend["id"],
        "voided",
        "first_purchase_refunded",
    )
    assert referral(client, merchant, referrer["id"])["counts"]["voided"] == 1


def test_the_referees_list_pages_and_filters(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    publish(client, merchant)
    referrer = enrol(client, merchant)
    code = referral(client, merchant, referrer["id"], role="pos")["code"]
    friends = []
    for _ in range(5):
        friends.append(enrol(client, merchant, referral_code=code)["id"])
        clock.advance(seconds=1)
    buy(client, merchant, friends[0], "R-0", 100_000)
    url = f"/v1/members/{referrer['id']}/referrals"
    h = merchant.headers("readonly")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ok(client.get(url, headers=h, params=params))
        seen += [item["referee_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(friends))  # newest first
    pending = ok(client.get(url, headers=h, params={"status": "pending"}))["items"]
    assert [item["referee_id"] for item in pending] == [friends[0]]
    clock.advance(days=15)  # the window is over: read as rewarded before the job runs
    rewarded = ok(client.get(url, headers=h, params={"status": "rewarded"}))["items"]
    assert [item["referee_id"] for item in rewarded] == [friends[0]]
    assert rewarded[0]["explanation"]["ru"] == "Бонус начислен"
    counts = referral(client, merchant, referrer["id"])["counts"]
    assert (counts["referred"], counts["rewarded"], counts["awaiting_purchase"]) == (5, 1, 4)


def test_bad_list_parameters(pair: Pair) -> None:
    client, a = pair.client, pair.a
    url = f"/v1/members/{a.member_id}/referrals"
    h = a.merchant.headers()
    assert ok(client.get(url, headers=h, params={"limit": 200}))["items"] == []
    for limit in ("201", "0", "ten"):
        body = assert_problem(client.get(url, headers=h, params={"limit": limit}), 422)
        assert ["query", "limit"] in error_paths(body)
    assert_problem(client.get(url, headers=h, params={"cursor": "x"}), 422, "invalid_cursor")
    body = assert_problem(client.get(url, headers=h, params={"status": "lost"}), 422)
    assert ["query", "status"] in error_paths(body)


@pytest.mark.parametrize("owner", ["other_tenant", "nobody"])
def test_a_code_of_another_tenant_or_of_nobody_is_a_clear_422(pair: Pair, owner: str) -> None:
    client, a, b = pair.client, pair.a, pair.b
    if owner == "other_tenant":
        code = referral(client, b.merchant, b.member_id)["code"]
        assert code
    else:
        code = "ZZZZ-ZZZZ"
    before = writes(pair.engine)
    r = client.post(
        "/v1/members",
        headers=a.merchant.headers("pos"),
        json={"name": "Newcomer", "referral_code": code},
    )
    body = assert_problem(r, 422, "unknown_referral_code")
    assert body["errors"] == [
        {
            "path": ["referral_code"],
            "message": "No member of this program has this code.",
            "code": "unknown_referral_code",
        }
    ]
    assert writes(pair.engine) == before


def test_bad_fingerprints_are_refused_with_their_paths(pair: Pair) -> None:
    client, a = pair.client, pair.a
    code = referral(client, a.merchant, a.member_id)["code"]
    before = writes(pair.engine)
    r = client.post(
        "/v1/members",
        headers=a.merchant.headers("pos"),
        json={"referral_code": code, "fingerprints": {"bad kind!": "x", "device": " "}},
    )
    problem = assert_problem(r, 422, "validation_failed")
    assert sorted(error_paths(problem)) == [
        ["fingerprints", "bad kind!"],
        ["fingerprints", "device"],
    ]
    assert writes(pair.engine) == before


def test_self_referral_by_email_is_refused(client: TestClient, merchant: Merchant) -> None:
    publish(client, merchant)
    referrer = enrol(client, merchant, email="anna.k@gmail.com")
    code = referral(client, merchant, referrer["id"])["code"]
    r = client.post(
        "/v1/members",
        headers=merchant.headers("pos"),
        json={"email": "Anna.K+2@gmail.com", "referral_code": code},
    )
    body = assert_problem(r, 422, "self_referral")
    assert error_paths(body) == [["referral_code"]]
    assert (
        ok(
            client.get(
                "/v1/members", headers=merchant.headers(), params={"email": "anna.k+2@gmail.com"}
            )
        )["items"]
        == []
    )


def test_bad_referral_sections_are_refused_with_their_paths(
    client: TestClient, merchant: Merchant
) -> None:
    document = {
        "type": "bonus",
        "referral": {
            "referrer": {"points": 0, "label": {"ru": "Друг"}},
            "trigger": "later",
            "share_url": "https://example.ru/join",
            "code_length": 3,
            "monthly_cap": -1,
            "colour": "red",
        },
    }
    r = client.put("/v1/programs/main", headers=merchant.headers(), json={"document": document})
    paths = {tuple(p) for p in error_paths(assert_problem(r, 422))}
    assert paths >= {
        ("referral", "referrer", "points"),
        ("referral", "referrer", "label", "en"),
        ("referral", "trigger"),
        ("referral", "share_url"),
        ("referral", "code_length"),
        ("referral", "monthly_cap"),
        ("referral", "colour"),
    }
    for section, path in (
        ({"referrer": {"points": 5}, "trigger": "enrolment", "min_purchase": 100}, "min_purchase"),
        ({"pending_days": 5}, None),
    ):
        r = client.put(
            "/v1/programs/main",
            headers=merchant.headers(),
            json={"document": {"type": "bonus", "referral": section}},
        )
        expected = ("referral", path) if path else ("referral",)
        assert expected in {tuple(p) for p in error_paths(assert_problem(r, 422))}
    assert ok(client.get("/v1/programs", headers=merchant.headers())) == []


def test_a_members_referral_needs_the_member(client: TestClient, merchant: Merchant) -> None:
    missing = "01900000-0000-7000-8000-000000000000"
    for url in (f"/v1/members/{missing}/referral", f"/v1/members/{missing}/referrals"):
        assert_problem(client.get(url, headers=merchant.headers()), 404, "member_not_found")


def test_the_window_passes_and_the_rewards_become_spendable(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    publish(client, merchant)
    referrer = enrol(client, merchant)
    code = referral(client, merchant, referrer["id"])["code"]
    friend = enrol(client, merchant, referral_code=code)
    buy(client, merchant, friend["id"], "R-1", 100_000)
    clock.advance(timedelta(days=14))
    assert balance(client, merchant, referrer["id"])["available"] == 500
    assert referral(client, merchant, friend["id"])["referred_by"]["status"] == "rewarded"
