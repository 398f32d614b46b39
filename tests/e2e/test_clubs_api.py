"""Clubs over HTTP, on SQLite and PostgreSQL: a closed club joined with an invitation (and
refused without one), an approval club, a paid club's fee, grace, lapse and the
``membership_expired`` answer; the till's discount for members only; the clubs list, the
savings report and the member's audit trail in ru and en; bad club sections and bad
payments answered with clear problems that write nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.e2e.helpers import Pair, assert_problem, balance, enrol, error_paths, ok, writes

FEE = 29900
PROGRAM: dict[str, Any] = {
    "type": "combined",
    "pending_days": 0,
    "clubs": [
        {
            "code": "vip",
            "name": {"ru": "VIP-клуб", "en": "VIP club"},
            "join": "invitation",
            "fee": {"amount": FEE, "period": "month", "grace_days": 7},
            "welcome_points": 500,
        },
        {"code": "pros", "name": "Professionals", "join": "approval"},
    ],
    "rules": [
        {"id": "base", "effects": [{"points_percent": 5}]},
        {
            "id": "vip-10",
            "name": {"ru": "VIP: скидка 10%", "en": "VIP: 10% off"},
            "when": {"club_in": ["vip"]},
            "effects": [{"discount_percent": 10}],
        },
    ],
}
PAID_AT = "2026-01-15T09:00:00Z"


def publish(client: TestClient, m: Merchant, document: dict[str, Any] = PROGRAM) -> None:
    ok(client.put("/v1/programs/main", headers=m.headers(), json={"document": document}))


def clubs_of(m_id: str) -> str:
    return f"/v1/members/{m_id}/clubs"


def invite(client: TestClient, m: Merchant, club: str = "vip", **body: Any) -> list[str]:
    codes: list[str] = ok(
        client.post(f"/v1/clubs/{club}/invitations", headers=m.headers(), json=body), 201
    )["codes"]
    return codes


def pay(client: TestClient, m: Merchant, member_id: str, payment_id: str, **body: Any) -> Any:
    return client.post(
        f"{clubs_of(member_id)}/vip/payments",
        headers=m.headers(),
        json={"payment_id": payment_id, "amount": FEE, "paid_at": PAID_AT, **body},
    )


def buy(client: TestClient, m: Merchant, member_id: str, number: str) -> Any:
    return ok(
        client.post(
            "/v1/purchases",
            headers=m.headers("pos"),
            json={
                "member": {"id": member_id},
                "receipt_number": number,
                "lines": [{"sku": "LATTE", "qty": 1, "price": 100000}],
            },
        ),
        201,
    )


def test_a_vip_joins_with_an_invitation_pays_and_saves_at_the_till(
    client: TestClient, merchant: Merchant, clock: FakeClock
) -> None:
    publish(client, merchant)
    vip, stranger = enrol(client, merchant)["id"], enrol(client, merchant)["id"]
    till = merchant.headers("pos")
    r = client.post(clubs_of(vip), headers=till, json={"club": "vip"})
    body = assert_problem(r, 422, "invitation_required")
    assert error_paths(body) == [["invitation_code"]]
    assert "invitation" in body["detail"]
    [code] = invite(client, merchant)
    joined = ok(
        client.post(clubs_of(vip), headers=till, json={"club": "vip", "invitation_code": code}),
        201,
    )
    assert (joined["status"], joined["benefits"]) == ("unpaid", False)
    assert joined["explanation"]["ru"] == "Клуб «VIP-клуб»: ждёт оплаты взноса"
    paid = ok(pay(client, merchant, vip, "pay-1"), 201)
    assert paid["period_end"] == "2026-02-15T09:00:00Z"
    assert paid["membership"]["status"] == "active"
    assert paid["explanation"]["en"] == (
        "Fee of the club “VIP club” paid: 299\u00a0₽ for a month, membership runs until "
        "2026-02-15 12:00"
    )
    assert ok(pay(client, merchant, vip, "pay-1"), 201) == paid  # the same event again
    assert balance(client, merchant, vip)["available"] == 500  # welcome points
    mine = buy(client, merchant, vip, "R-1")
    assert mine["totals"]["discount"] == 10000
    assert {a["rule_id"] for a in mine["applied"]} == {"vip-10", "base"}
    assert buy(client, merchant, stranger, "R-2")["totals"]["discount"] == 0
    listed = ok(client.get(clubs_of(vip), headers=merchant.headers("readonly")))
    assert [(c["club"], c["status"], c["benefits"]) for c in listed] == [("vip", "active", True)]
    assert ok(client.get(clubs_of(stranger), headers=merchant.headers("readonly"))) == []
    checked = ok(client.get(f"{clubs_of(vip)}/vip", headers=till))
    assert checked["paid_until"] == "2026-02-15T09:00:00Z"
    assert_problem(
        client.get(f"{clubs_of(stranger)}/vip", headers=till), 404, "membership_not_found"
    )
    trail = ok(client.get(f"/v1/members/{vip}/audit", headers=merchant.headers()))
    clubs_trail = [e for e in trail if e["action"].startswith("club.")]
    assert [e["action"] for e in clubs_trail] == ["club.join", "club.payment"]
    assert clubs_trail[0]["details"]["explanation"] == {
        "ru": "Вступление в клуб «VIP-клуб»: членство начнётся после оплаты взноса 299\u00a0₽ "
        "за месяц",
        "en": "Joined the club “VIP club”: membership starts once the fee of 299\u00a0₽ a month "
        "is paid",
    }
    clubs = ok(client.get("/v1/clubs", headers=merchant.headers("readonly")))
    assert [(c["code"], c["members"]) for c in clubs] == [("pros", {}), ("vip", {"active": 1})]
    report = ok(client.get("/v1/clubs/vip/report", headers=merchant.headers()))
    assert report["totals"] == {
        "members": 1,
        "payments": 1,
        "fees_paid": FEE,
        "receipts": 1,
        "discount": 10000,
        "points": 0,
        "points_value": 0,
        "saved": 10000,
        "net": 10000 - FEE,
    }
    assert report["members"][0]["member_id"] == vip


def test_an_expired_membership_is_a_clear_409(
    client: TestClient, merchant: Merchant, container: Container, clock: FakeClock
) -> None:
    publish(client, merchant)
    vip = enrol(client, merchant)["id"]
    [code] = invite(client, merchant)
    ok(
        client.post(
            clubs_of(vip),
            headers=merchant.headers("pos"),
            json={"club": "vip", "invitation_code": code},
        ),
        201,
    )
    ok(pay(client, merchant, vip, "pay-1"), 201)
    clock.set(datetime(2026, 2, 20, 9, tzinfo=UTC))  # in grace: benefits go on
    assert ok(client.get(f"{clubs_of(vip)}/vip", headers=merchant.headers()))["status"] == "grace"
    assert buy(client, merchant, vip, "R-1")["totals"]["discount"] == 10000
    clock.set(datetime(2026, 2, 22, 9, tzinfo=UTC))
    container.jobs.run()
    body = assert_problem(
        client.get(f"{clubs_of(vip)}/vip", headers=merchant.headers()), 409, "membership_expired"
    )
    assert body["expired_at"] == "2026-02-22T09:00:00+00:00"
    assert "a payment renews it" in body["detail"]
    before = writes(container.engine)
    assert_problem(
        client.post(f"{clubs_of(vip)}/vip/cancel", headers=merchant.headers()),
        409,
        "membership_expired",
    )
    assert writes(container.engine) == before
    assert buy(client, merchant, vip, "R-2")["totals"]["discount"] == 0
    trail = ok(client.get(f"/v1/members/{vip}/audit", headers=merchant.headers()))
    lapse = [e for e in trail if e["action"] == "club.lapsed"]
    assert lapse[0]["actor"] == "job:scheduler"
    assert lapse[0]["details"]["explanation"]["ru"] == (
        "Членство в клубе «VIP-клуб» истекло 22.02.2026 12:00: взнос не оплачен"
    )
    # A payment renews it.
    ok(pay(client, merchant, vip, "pay-2", paid_at="2026-02-22T09:00:00Z"), 201)
    assert ok(client.get(f"{clubs_of(vip)}/vip", headers=merchant.headers()))["benefits"]


def test_an_approval_club_and_leaving(client: TestClient, merchant: Merchant) -> None:
    publish(client, merchant)
    member = enrol(client, merchant)["id"]
    till, admin = merchant.headers("pos"), merchant.headers()
    asked = ok(client.post(clubs_of(member), headers=till, json={"club": "pros"}), 201)
    assert asked["status"] == "pending"
    assert_problem(client.post(f"{clubs_of(member)}/pros/approve", headers=till), 403)
    approved = ok(client.post(f"{clubs_of(member)}/pros/approve", headers=admin))
    assert (approved["status"], approved["benefits"]) == ("active", True)
    left = ok(client.delete(f"{clubs_of(member)}/pros", headers=till))
    assert (left["status"], left["benefits"]) == ("left", False)
    assert ok(client.delete(f"{clubs_of(member)}/pros", headers=till)) == left
    other = enrol(client, merchant)["id"]
    ok(client.post(clubs_of(other), headers=till, json={"club": "pros"}), 201)
    rejected = ok(
        client.post(f"{clubs_of(other)}/pros/reject", headers=admin, json={"reason": "Sorry"})
    )
    assert rejected["status"] == "rejected"
    assert_problem(
        client.post(f"{clubs_of(other)}/pros/cancel", headers=till), 409, "membership_rejected"
    )


def test_invitations_replay_with_their_idempotency_key(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    publish(client, merchant)
    h = merchant.headers(**{"Idempotency-Key": "inv-1"})
    first = ok(client.post("/v1/clubs/vip/invitations", headers=h, json={"count": 3}), 201)
    before = writes(container.engine)
    assert ok(client.post("/v1/clubs/vip/invitations", headers=h, json={"count": 3}), 201) == first
    assert writes(container.engine) == before
    assert len(set(first["codes"])) == 3
    assert_problem(
        client.post("/v1/clubs/vip/invitations", headers=h, json={"count": 2}),
        422,
        "idempotency_key_reused",
    )


BAD_PAYMENTS: list[tuple[dict[str, Any], int, str, list[str | int] | None]] = [
    ({"amount": FEE - 100}, 422, "payment_amount_mismatch", ["amount"]),
    ({"period": "year"}, 422, "payment_period_mismatch", ["period"]),
    ({"paid_at": "2026-01-16T09:00:00Z"}, 422, "paid_in_future", ["paid_at"]),
    ({"paid_at": "2026-01-15T09:00:00"}, 422, "validation_failed", ["body", "paid_at"]),
    ({"amount": 299.0}, 422, "validation_failed", ["body", "amount"]),
    ({"amount": 10**30}, 422, "validation_failed", ["body", "amount"]),
    ({"period": "week"}, 422, "validation_failed", ["body", "period"]),
    ({"payment_id": ""}, 422, "validation_failed", ["body", "payment_id"]),
    ({"payment_id": "x" * 129}, 422, "validation_failed", ["body", "payment_id"]),
]


@pytest.mark.parametrize(
    ("change", "status", "code", "path"),
    BAD_PAYMENTS,
    ids=[f"{c}-{next(iter(b))}" for b, _, c, _ in BAD_PAYMENTS],
)
def test_bad_payments_are_refused_and_write_nothing(
    client: TestClient,
    merchant: Merchant,
    container: Container,
    change: dict[str, Any],
    status: int,
    code: str,
    path: list[str | int] | None,
) -> None:
    publish(client, merchant)
    member = enrol(client, merchant)["id"]
    [invitation] = invite(client, merchant)
    ok(
        client.post(
            clubs_of(member),
            headers=merchant.headers("pos"),
            json={"club": "vip", "invitation_code": invitation},
        ),
        201,
    )
    before = writes(container.engine)
    r = client.post(
        f"{clubs_of(member)}/vip/payments",
        headers=merchant.headers(),
        json={"payment_id": "pay-x", "amount": FEE, "paid_at": PAID_AT, **change},
    )
    body = assert_problem(r, status, code)
    if path is not None:
        assert path in error_paths(body), body
    assert writes(container.engine) == before


def test_a_payment_for_a_closed_club_needs_a_join_first(
    client: TestClient, merchant: Merchant
) -> None:
    publish(client, merchant)
    member = enrol(client, merchant)["id"]
    assert_problem(pay(client, merchant, member, "pay-1"), 422, "invitation_required")
    r = client.post(
        f"{clubs_of(member)}/pros/payments",
        headers=merchant.headers(),
        json={"payment_id": "pay-2", "amount": FEE, "paid_at": PAID_AT},
    )
    assert_problem(r, 422, "club_has_no_fee")
    assert_problem(
        client.post(clubs_of(member), headers=merchant.headers(), json={"club": "nope"}),
        404,
        "club_not_found",
    )


@pytest.mark.parametrize(
    ("clubs", "path"),
    [
        ([{"code": "vip", "name": "VIP", "join": "invite"}], ["clubs", 0, "join"]),
        (
            [
                {
                    "code": "vip",
                    "name": "VIP",
                    "join": "open",
                    "fee": {"amount": -1, "period": "month"},
                }
            ],
            ["clubs", 0, "fee", "amount"],
        ),
        ([{"code": "vip", "name": "VIP", "join": "condition"}], ["clubs", 0, "condition"]),
        ([{"code": "Vip!", "name": "VIP", "join": "open"}], ["clubs", 0, "code"]),
    ],
)
def test_bad_club_sections_are_refused_with_their_path(
    pair: Pair, clubs: list[dict[str, Any]], path: list[str | int]
) -> None:
    before = writes(pair.engine)
    r = pair.client.put(
        "/v1/programs/clubs",
        headers=pair.a.merchant.headers(),
        json={"document": {"type": "bonus", "clubs": clubs}},
    )
    body = assert_problem(r, 422, "validation_failed")
    assert path in error_paths(body), body
    assert writes(pair.engine) == before


def test_the_report_takes_a_window_and_checks_it(pair: Pair) -> None:
    client, a = pair.client, pair.a
    club = a.extra["club_code"]
    h = a.merchant.headers()
    report = ok(
        client.get(
            f"/v1/clubs/{club}/report",
            headers=h,
            params={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
        )
    )
    assert report["totals"]["fees_paid"] == FEE
    assert report["since"] == "2026-01-01T00:00:00Z"
    body = assert_problem(
        client.get(f"/v1/clubs/{club}/report", headers=h, params={"from": "yesterday"}), 422
    )
    assert ["query", "from"] in error_paths(body)
    assert_problem(
        client.get(
            f"/v1/clubs/{club}/report",
            headers=h,
            params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        ),
        422,
    )
