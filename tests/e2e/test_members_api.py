"""Members over HTTP: enrol, read, search and page, change, block, erase, merge, audit, cards."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kopilka.bootstrap import Container
from tests.conftest import Merchant
from tests.e2e.helpers import (
    accrue,
    assert_problem,
    balance,
    card,
    enrol,
    error_paths,
    ok,
    writes,
)


# ---- enrol ---------------------------------------------------------------------------------
def test_enrol_normalises_the_profile_and_issues_a_virtual_card(
    client: TestClient, merchant: Merchant
) -> None:
    """Phones become E.164, e-mails lower case; one active virtual card comes with it."""
    body = {
        "phone": "8 (916) 123-45-67",
        "email": "Anna@Example.COM",
        "name": "  Anna ",
        "birthday": "1990-05-17",
        "external_id": "crm-1",
        "attributes": {"tier": "gold"},
        "consents": {
            "program_rules": True,
            "marketing_sms": {"granted": False, "at": "2025-12-01T10:00:00+03:00"},
        },
    }
    r = client.post("/v1/members", headers=merchant.headers("pos"), json=body)
    m = ok(r, 201)
    assert m["phone"] == "+79161234567"
    assert m["email"] == "anna@example.com"
    assert m["name"] == "Anna"
    assert m["birthday"] == "1990-05-17"
    assert m["external_id"] == "crm-1"
    assert m["attributes"] == {"tier": "gold"}
    assert m["status"] == "active"
    assert m["consents"]["program_rules"]["granted"] is True
    assert m["consents"]["marketing_sms"] == {"granted": False, "at": "2025-12-01T10:00:00+03:00"}
    [virtual] = m["cards"]
    assert virtual["kind"] == "virtual"
    assert virtual["status"] == "active"
    assert len(virtual["number"]) == 13
    assert virtual["number"].startswith("2")
    assert virtual["member_id"] == m["id"]


def test_enrol_without_a_year_and_without_a_card(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant, birthday="--02-29", issue_virtual_card=False)
    assert m["birthday"] == "--02-29"
    assert m["cards"] == []


def test_enrol_binds_a_pre_printed_card(client: TestClient, merchant: Merchant) -> None:
    numbers = [card(100), card(101)]
    ok(
        client.post(
            "/v1/card-batches", headers=merchant.headers(), json={"name": "b1", "numbers": numbers}
        ),
        201,
    )
    m = enrol(client, merchant, card=numbers[0])
    [bound] = m["cards"]
    assert bound["number"] == numbers[0]
    assert bound["kind"] == "physical"
    assert bound["status"] == "active"
    # The same card cannot go to a second member; nothing is written by the failed try.
    r = client.post("/v1/members", headers=merchant.headers("pos"), json={"card": numbers[0]})
    assert_problem(r, 409, "card_already_bound")
    # An unregistered card with a valid check digit is not found.
    r = client.post("/v1/members", headers=merchant.headers("pos"), json={"card": card(999)})
    assert_problem(r, 404, "card_not_found")


def test_enrol_refuses_duplicates_with_field_paths(
    client: TestClient, merchant: Merchant, container: Container
) -> None:
    enrol(client, merchant, phone="+79161234567", email="a@b.ru", external_id="x1")
    before = writes(container.engine)
    r = client.post(
        "/v1/members",
        headers=merchant.headers("pos"),
        json={"phone": "89161234567", "email": "A@B.RU", "external_id": "x1"},
    )
    body = assert_problem(r, 409, "member_exists")
    assert sorted(e["code"] for e in body["errors"]) == [
        "duplicate_email",
        "duplicate_external_id",
        "duplicate_phone",
    ]
    assert writes(container.engine) == before


# ---- get and list --------------------------------------------------------------------------
def test_get_member(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant, name="Ivan")
    got = ok(client.get(f"/v1/members/{m['id']}", headers=merchant.headers("readonly")))
    assert got == m


def test_get_unknown_member_is_404(client: TestClient, merchant: Merchant) -> None:
    r = client.get(
        "/v1/members/01900000-0000-7000-8000-000000000000", headers=merchant.headers("readonly")
    )
    assert_problem(r, 404, "member_not_found")


def test_list_filters(client: TestClient, merchant: Merchant) -> None:
    a = enrol(client, merchant, phone="+79161112233", email="a@x.ru", external_id="e-a")
    b = enrol(client, merchant, phone="+79164445566", email="b@x.ru", external_id="e-b")
    h = merchant.headers("readonly")

    def ids(**params: str) -> list[str]:
        return [i["id"] for i in ok(client.get("/v1/members", headers=h, params=params))["items"]]

    assert sorted(ids()) == sorted([a["id"], b["id"]])
    assert ids(phone="8 916 111-22-33") == [a["id"]]  # normalised like on enrolment
    assert ids(email="B@X.RU") == [b["id"]]
    assert ids(external_id="e-b") == [b["id"]]
    assert ids(card=a["cards"][0]["number"]) == [a["id"]]
    assert ids(phone="+79160000000") == []
    assert ids(status="active", email="a@x.ru") == [a["id"]]
    assert ids(status="blocked") == []


def test_list_filter_with_an_invalid_phone_is_422(client: TestClient, merchant: Merchant) -> None:
    r = client.get("/v1/members", headers=merchant.headers(), params={"phone": "12"})
    body = assert_problem(r, 422)
    assert ["phone"] in error_paths(body)


def test_list_empty_filters_are_refused_not_read_as_null(
    client: TestClient, merchant: Merchant
) -> None:
    """``?phone=`` must not turn into "members without a phone"."""
    enrol(client, merchant, name="no phone, no e-mail")
    for param in ("phone", "email", "external_id", "card"):
        r = client.get("/v1/members", headers=merchant.headers(), params={param: ""})
        body = assert_problem(r, 422, "validation_failed")
        assert ["query", param] in error_paths(body)


def test_list_pages_with_a_cursor(client: TestClient, merchant: Merchant) -> None:
    made = [enrol(client, merchant, name=f"m{i}", issue_virtual_card=False)["id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = ok(client.get("/v1/members", headers=merchant.headers("readonly"), params=params))
        assert len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(made)  # ids are time-ordered: oldest first, no gaps, no repeats


def test_list_page_size_is_capped(client: TestClient, merchant: Merchant) -> None:
    h = merchant.headers("readonly")
    assert ok(client.get("/v1/members", headers=h, params={"limit": 200}))["next_cursor"] is None
    for limit in (201, 0, -1, 10**30):
        body = assert_problem(client.get("/v1/members", headers=h, params={"limit": limit}), 422)
        assert ["query", "limit"] in error_paths(body)


def test_list_exact_page_has_no_next_cursor(client: TestClient, merchant: Merchant) -> None:
    for i in range(2):
        enrol(client, merchant, name=f"m{i}")
    page = ok(client.get("/v1/members", headers=merchant.headers(), params={"limit": 2}))
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


# ---- patch ---------------------------------------------------------------------------------
def test_patch_changes_only_sent_fields_and_null_clears(
    client: TestClient, merchant: Merchant
) -> None:
    m = enrol(
        client,
        merchant,
        phone="+79161234567",
        email="a@b.ru",
        name="A",
        attributes={"tier": "silver", "city": "Msk"},
    )
    r = client.patch(
        f"/v1/members/{m['id']}",
        headers=merchant.headers("pos"),
        json={"email": None, "name": "Anna", "attributes": {"tier": "gold", "city": None}},
    )
    got = ok(r)
    assert got["email"] is None
    assert got["name"] == "Anna"
    assert got["phone"] == "+79161234567"
    assert got["attributes"] == {"tier": "gold"}  # merged; a null value removes a key


def test_patch_to_another_members_phone_is_409(client: TestClient, merchant: Merchant) -> None:
    enrol(client, merchant, phone="+79161234567")
    m = enrol(client, merchant, phone="+79167654321")
    r = client.patch(
        f"/v1/members/{m['id']}", headers=merchant.headers("pos"), json={"phone": "+79161234567"}
    )
    body = assert_problem(r, 409, "member_exists")
    assert error_paths(body) == [["phone"]]


def test_patch_validates_like_enrol(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant)
    r = client.patch(
        f"/v1/members/{m['id']}",
        headers=merchant.headers("pos"),
        json={"phone": "not a phone", "birthday": "1990-13-01", "email": "x"},
    )
    body = assert_problem(r, 422, "validation_failed")
    assert sorted(e["code"] for e in body["errors"]) == [
        "invalid_birthday",
        "invalid_email",
        "invalid_phone",
    ]


# ---- block / unblock -----------------------------------------------------------------------
def test_block_stops_earning_and_spending_until_unblocked(
    client: TestClient, merchant: Merchant
) -> None:
    m = enrol(client, merchant)
    accrue(client, merchant, m["id"], 100)
    r = client.post(
        f"/v1/members/{m['id']}/block", headers=merchant.headers(), json={"reason": "fraud check"}
    )
    got = ok(r)
    assert got["status"] == "blocked"
    assert got["block_reason"] == "fraud check"
    r = client.post(
        f"/v1/members/{m['id']}/accruals", headers=merchant.headers(), json={"points": 5}
    )
    assert_problem(r, 422, "member_blocked")
    r = client.post(
        f"/v1/members/{m['id']}/redemptions", headers=merchant.headers("pos"), json={"points": 5}
    )
    assert_problem(r, 422, "member_blocked")
    # Blocking twice changes nothing; unblocking restores.
    assert (
        ok(client.post(f"/v1/members/{m['id']}/block", headers=merchant.headers(), json={}))[
            "status"
        ]
        == "blocked"
    )
    got = ok(client.post(f"/v1/members/{m['id']}/unblock", headers=merchant.headers()))
    assert got["status"] == "active"
    assert got["block_reason"] is None
    ok(
        client.post(
            f"/v1/members/{m['id']}/redemptions",
            headers=merchant.headers("pos"),
            json={"points": 5},
        ),
        201,
    )


# ---- erase ---------------------------------------------------------------------------------
def test_erase_pseudonymises_but_keeps_the_ledger(client: TestClient, merchant: Merchant) -> None:
    m = enrol(
        client,
        merchant,
        phone="+79161234567",
        email="a@b.ru",
        name="Anna",
        birthday="1990-01-01",
        external_id="crm",
        attributes={"a": 1},
        consents={"marketing_sms": True},
    )
    accrue(client, merchant, m["id"], 70)
    got = ok(client.post(f"/v1/members/{m['id']}/erase", headers=merchant.headers()))
    assert got["status"] == "erased"
    for field in ("phone", "email", "name", "birthday", "external_id"):
        assert got[field] is None, field
    assert got["attributes"] == {}
    assert got["consents"] == {}
    assert [c["status"] for c in got["cards"]] == ["blocked"]
    assert balance(client, merchant, m["id"])["available"] == 70
    history = ok(client.get(f"/v1/members/{m['id']}/ledger", headers=merchant.headers()))
    assert [t["kind"] for t in history["items"]] == ["accrual"]
    # Not findable by the old phone; the phone is free for a new member.
    found = ok(
        client.get("/v1/members", headers=merchant.headers(), params={"phone": "+79161234567"})
    )
    assert found["items"] == []
    enrol(client, merchant, phone="+79161234567")
    # Erasing twice is harmless; changing an erased profile is refused.
    assert (
        ok(client.post(f"/v1/members/{m['id']}/erase", headers=merchant.headers()))["status"]
        == "erased"
    )
    r = client.patch(f"/v1/members/{m['id']}", headers=merchant.headers(), json={"name": "B"})
    assert_problem(r, 422, "member_erased")


# ---- merge ---------------------------------------------------------------------------------
def test_merge_moves_points_cards_and_history(client: TestClient, merchant: Merchant) -> None:
    keep = enrol(client, merchant, phone="+79161234567", name="Keep")
    dup = enrol(client, merchant, email="dup@x.ru", name="Dup")
    accrue(client, merchant, keep["id"], 100)
    accrue(client, merchant, dup["id"], 40)
    accrue(client, merchant, dup["id"], 10, pending_days=7)
    r = client.post(
        f"/v1/members/{keep['id']}/merge",
        headers=merchant.headers(),
        json={"duplicate_id": dup["id"]},
    )
    got = ok(r)
    assert got["email"] == "dup@x.ru"  # filled from the duplicate
    assert got["name"] == "Keep"  # the survivor's own value wins
    assert sorted(c["number"] for c in got["cards"]) == sorted(
        [keep["cards"][0]["number"], dup["cards"][0]["number"]]
    )
    bal = balance(client, merchant, keep["id"])
    assert (bal["available"], bal["pending"]) == (140, 10)
    gone = ok(client.get(f"/v1/members/{dup['id']}", headers=merchant.headers()))
    assert gone["status"] == "merged"
    assert gone["merged_into_id"] == keep["id"]
    history = ok(client.get(f"/v1/members/{keep['id']}/ledger", headers=merchant.headers()))
    kinds = [t["kind"] for t in history["items"]]
    assert kinds.count("accrual") == 3
    assert "merge" in kinds
    # The duplicate's card now finds the survivor.
    found = ok(
        client.get(
            "/v1/cards/lookup",
            headers=merchant.headers("pos"),
            params={"number": dup["cards"][0]["number"]},
        )
    )
    assert found["member"]["id"] == keep["id"]


def test_merge_refusals(client: TestClient, merchant: Merchant) -> None:
    a = enrol(client, merchant)
    b = enrol(client, merchant)
    r = client.post(
        f"/v1/members/{a['id']}/merge", headers=merchant.headers(), json={"duplicate_id": a["id"]}
    )
    assert_problem(r, 422, "merge_same_member")
    accrue(client, merchant, b["id"], 20)
    ok(
        client.post(f"/v1/members/{b['id']}/holds", headers=merchant.headers(), json={"points": 5}),
        201,
    )
    r = client.post(
        f"/v1/members/{a['id']}/merge", headers=merchant.headers(), json={"duplicate_id": b["id"]}
    )
    assert_problem(r, 409, "member_has_active_holds")
    r = client.post(
        f"/v1/members/{a['id']}/merge",
        headers=merchant.headers(),
        json={"duplicate_id": "not-a-uuid"},
    )
    assert ["body", "duplicate_id"] in error_paths(assert_problem(r, 422))


# ---- audit and cards -----------------------------------------------------------------------
def test_audit_trail_records_who_did_what(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant, role="pos")
    client.patch(f"/v1/members/{m['id']}", headers=merchant.headers(), json={"name": "X"})
    client.post(f"/v1/members/{m['id']}/block", headers=merchant.headers(), json={})
    client.post(
        f"/v1/members/{m['id']}/adjustments",
        headers=merchant.headers(),
        json={"points": 5, "reason": "goodwill"},
    )
    trail = ok(client.get(f"/v1/members/{m['id']}/audit", headers=merchant.headers("readonly")))
    assert [e["action"] for e in trail] == [
        "member.enroll",
        "member.update",
        "member.block",
        "ledger.adjust",
    ]
    assert all(e["actor"].startswith("apikey:") for e in trail)
    assert trail[0]["actor"] != trail[1]["actor"]  # the pos key, then the admin key
    assert trail[1]["details"] == {"fields": ["name"]}


def test_issue_another_virtual_card(client: TestClient, merchant: Merchant) -> None:
    m = enrol(client, merchant)
    new = ok(client.post(f"/v1/members/{m['id']}/cards", headers=merchant.headers("pos")), 201)
    assert new["kind"] == "virtual"
    assert new["member_id"] == m["id"]
    got = ok(client.get(f"/v1/members/{m['id']}", headers=merchant.headers()))
    assert {c["number"] for c in got["cards"]} == {m["cards"][0]["number"], new["number"]}
    ok(client.post(f"/v1/members/{m['id']}/erase", headers=merchant.headers()))
    r = client.post(f"/v1/members/{m['id']}/cards", headers=merchant.headers("pos"))
    assert_problem(r, 422, "member_erased")
